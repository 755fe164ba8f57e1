"""Fixtures of every test: the knowledge base and the test data that ship with the repository.

The synthetic patients and the NHANES extract live in ``tests/data`` (each set with its
SOURCE.md and licence), so a fresh clone tests on its own. Set ``MAGSTAT_FULL_DATA`` to a folder
laid out the same way (``synthea/``, ``synthea-py/``, ``nhanes/``) to run the tests that loop
over every patient (``every_patient`` below) on a larger set instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from magstat.kb import KnowledgeBase, load

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
"""The repository's own test data."""

SYNTHEA = DATA / "synthea"
"""Synthea FHIR R4 patients (smart-on-fhir/generated-sample-data), gzip."""

SYNTHEA_PY = DATA / "synthea-py"
"""Synthetic FHIR R4 patients from the tietai-synthea Python port, with magnesium results."""

NHANES = DATA / "nhanes"
"""NHANES 2017-2018: every participant, only the columns magstat reads, gzip CSV."""

_NOT_PATIENTS = ("hospital", "practitioner")  # Synthea's Organization/Practitioner bundles


def full_data() -> Path | None:
    """The folder named by ``MAGSTAT_FULL_DATA``, or ``None`` when it is not set."""
    value = os.environ.get("MAGSTAT_FULL_DATA")
    if not value:
        return None
    folder = Path(value)
    if not (folder / "synthea").is_dir() and not (folder / "synthea-py").is_dir():
        raise pytest.UsageError(f"MAGSTAT_FULL_DATA={value}: no synthea/ or synthea-py/ folder there")
    return folder


def bundle_files(folder: Path, *, patients_only: bool = True) -> list[Path]:
    """The FHIR bundles of one set (``.json`` or ``.json.gz``), sorted by name."""
    files = sorted(p for p in folder.glob("*.json*") if p.name.endswith((".json", ".json.gz")))
    return [p for p in files if not (patients_only and p.name.startswith(_NOT_PATIENTS))]


def every_patient(name: str, *, patients_only: bool = True) -> list[Path]:
    """Every bundle of the set ``synthea`` or ``synthea-py``: the repository's, or MAGSTAT_FULL_DATA's."""
    root = full_data() or DATA
    return bundle_files(root / name, patients_only=patients_only)


def synthea(stem: str) -> Path:
    """One Synthea patient of the repository's set by the start of its file name."""
    [path] = [p for p in bundle_files(SYNTHEA, patients_only=False) if p.name.startswith(stem)]
    return path


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    """The shipped knowledge base."""
    return load()


@pytest.fixture(scope="session")
def compiled_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``src`` with the core and the FHIR reading compiled, made once per session (or a skip).

    See ``tests/compiled_build.py``.
    """
    from tests.compiled_build import build  # noqa: PLC0415 - loads hatch_build.py only when asked

    return build(tmp_path_factory)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under MAGSTAT_CI_STRICT=1 (set by .ci/run) a skipped test fails the run.

    On a newcomer's machine the browser, Spark and PostgreSQL tests skip with a reason when
    Chromium, Java or PostgreSQL is missing; CI installs all three, so a skip there means an
    install step broke and must not pass unnoticed.
    """
    if os.environ.get("MAGSTAT_CI_STRICT") != "1" or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            sys.stderr.write(f"skipped under MAGSTAT_CI_STRICT: {report.nodeid}: {reason}\n")
        session.exitstatus = 1


_T = TypeVar("_T")


def run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine on its own event loop in a fresh thread.

    Playwright's sync API (the browser tests, in the same session) keeps an event loop running
    in the main thread, where asyncio.run refuses to start; a test's order must not matter.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
