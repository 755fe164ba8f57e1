"""The opt-in compiled build (core and FHIR reading, ``MAGSTAT_COMPILE_CORE=1``) screens as the pure build does.

The shared synthetic patients (both sets, as the parity tests export them) are screened on
DuckDB twice, each in its own process with two workers: once importing magstat from this
checkout's ``src`` and once from the compiled copy (the session's ``compiled_src`` fixture,
compiled once for this test and ``tests/core/test_compiled_core.py``). Every output file must
be the same byte for byte, and the compiled process must have run the compiled reading.
Skipped, with the reason, where the build cannot be compiled (see ``tests/compiled_build.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.batch.conftest import AS_OF
from tests.compiled_build import RUN_TIMEOUT_S
from tests.conftest import ROOT

_SCREEN = """
import datetime as dt, json, sys
from pathlib import Path
from magstat.batch import ScreenOptions, screen
from magstat.build_info import compiled_modules
outcome = screen(ScreenOptions(input=Path(sys.argv[1]), out=Path(sys.argv[2]),
                               as_of=dt.date.fromisoformat(sys.argv[3]), details=True, workers=2))
print(json.dumps({"compiled": list(compiled_modules()), "patients": outcome.summary["patients"]}))
"""


def _screen(src: Path, bulk: Path, out: Path) -> dict:
    """Screen ``bulk`` into ``out`` in a process importing magstat from ``src``; what it reports."""
    done = subprocess.run(
        [sys.executable, "-c", _SCREEN, str(bulk), str(out), AS_OF.isoformat()],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def both(compiled_src, bulk, tmp_path_factory) -> tuple[dict, dict[str, bytes], dict, dict[str, bytes]]:
    """The pure and the compiled screening of the shared export: each process's report and output files."""
    root = tmp_path_factory.mktemp("compiled-screen")
    pure = _screen(ROOT / "src", bulk, root / "pure")
    compiled = _screen(compiled_src, bulk, root / "compiled")
    return pure, _files(root / "pure"), compiled, _files(root / "compiled")


def test_the_compiled_build_runs_the_compiled_reading(both):
    """The compiled process read FHIR with the compiled modules; the pure one compiled nothing."""
    pure, _, compiled, _ = both
    assert [] == pure["compiled"]
    assert {"magstat.adapters.fhir.extract", "magstat.adapters.fhir.flatten", "magstat.core.assess"} <= set(
        compiled["compiled"]
    )


def test_the_compiled_build_screens_byte_for_byte_as_the_pure_build(both, expected):
    """results.parquet, summary.json, issues.csv, report.html and the assessments are the same bytes."""
    pure, pure_files, compiled, compiled_files = both
    assert len(expected) == pure["patients"] == compiled["patients"]
    assert {"results.parquet", "summary.json", "issues.csv", "report.html", "assessments.ndjson.gz"} <= set(
        pure_files
    )
    assert sorted(pure_files) == sorted(compiled_files)
    assert [] == [name for name in sorted(pure_files) if pure_files[name] != compiled_files[name]]
