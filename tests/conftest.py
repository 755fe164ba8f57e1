"""Shared fixtures: the knowledge base and the paths of the shared test data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from magstat.kb import KnowledgeBase, load

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    """The shipped knowledge base."""
    return load()


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
