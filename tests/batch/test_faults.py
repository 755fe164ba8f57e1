"""Faults of a screening run: damaged gzip files, resources in the wrong file, unknown patients, kills.

The exports are written here, a few synthetic resources each (no shared data).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from magstat.batch import ScreenOptions, screen
from magstat.batch.issues import StrictError
from magstat.batch.output import StagedOutput, remove_stale_staging

AS_OF = dt.date(2021, 6, 1)


def _patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1950-01-01", "gender": "female"}


def _mg(pid: str, rid: str, value: float = 0.45) -> dict:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2601-3"}]},
        "effectiveDateTime": "2021-05-01",
        "valueQuantity": {
            "value": value,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }


def _ndjson(resources: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in resources).encode()


def _export(folder: Path) -> Path:
    """Two patients; the observations gzip-compressed."""
    folder.mkdir()
    (folder / "Patient.ndjson").write_bytes(_ndjson([_patient("p1"), _patient("p2")]))
    (folder / "Observation.ndjson.gz").write_bytes(gzip.compress(_ndjson([_mg("p1", "o1"), _mg("p2", "o2")])))
    return folder


def _issues(out: Path) -> list[dict]:
    with (out / "issues.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_damaged_gzip_is_an_input_problem_of_that_file(tmp_path, damage):
    """A truncated or corrupt .gz is counted as an issue naming the file; the other files are screened."""
    folder = _export(tmp_path / "bulk")
    data = _ndjson([_mg("p1", "o3")])
    packed = gzip.compress(data)
    bad = packed[: len(packed) // 2] if damage == "truncated" else packed[:10] + b"\x00garbage" * 8
    (folder / "Observation.2.ndjson.gz").write_bytes(bad)
    outcome = screen(ScreenOptions(input=folder, out=tmp_path / "out", as_of=AS_OF))
    assert 2 == outcome.summary["patients"]
    rows = [r for r in _issues(tmp_path / "out") if r["kind"] == "unreadable_file"]
    assert ["Observation.2.ndjson.gz"] == [r["file"] for r in rows]
    assert 1 == outcome.summary["issues"]["counts"]["unreadable_file"]


def test_damaged_gzip_with_strict_stops_naming_the_file(tmp_path):
    """With --strict the damaged file stops the run (exit 2 in the CLI), naming it, writing nothing."""
    folder = _export(tmp_path / "bulk")
    packed = gzip.compress(_ndjson([_mg("p1", "o3")]))
    (folder / "Observation.2.ndjson.gz").write_bytes(packed[:-12])
    with pytest.raises(StrictError, match=r"Observation\.2\.ndjson\.gz"):
        screen(ScreenOptions(input=folder, out=tmp_path / "out", as_of=AS_OF, strict=True))
    assert not (tmp_path / "out").exists()


def test_damaged_gzip_cli_is_not_exit_4(tmp_path):
    """The CLI counts the damaged file (exit 0, the file named in issues.csv), never 'cannot write output'."""
    folder = _export(tmp_path / "bulk")
    (folder / "Condition.ndjson.gz").write_bytes(gzip.compress(b'{"resourceType": "Condition"}\n')[:-20])
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "magstat", "screen", str(folder), "--out", str(out), "--as-of", "2021-06-01"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    assert ["Condition.ndjson.gz"] == [r["file"] for r in _issues(out) if r["kind"] == "unreadable_file"]


def test_resource_in_another_types_file_is_reported_by_line(tmp_path):
    """A Condition inside Patient.ndjson is recorded as an issue with its file and line (and read as its type)."""
    folder = _export(tmp_path / "bulk")
    stray = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}
    (folder / "Patient.ndjson").write_bytes(_ndjson([_patient("p1"), stray, _patient("p2")]))
    screen(ScreenOptions(input=folder, out=tmp_path / "out", as_of=AS_OF))
    rows = [r for r in _issues(tmp_path / "out") if r["kind"] == "resource_in_wrong_file"]
    assert [("Patient.ndjson", "2")] == [(r["file"], r["line"]) for r in rows]


def test_patient_not_in_export_has_file_and_line(tmp_path):
    """An observation naming a patient the export lacks is reported with the file and line that name it."""
    folder = _export(tmp_path / "bulk")
    (folder / "Observation.ndjson.gz").write_bytes(
        gzip.compress(_ndjson([_mg("p1", "o1"), _mg("ghost", "o9"), _mg("p2", "o2")]))
    )
    screen(ScreenOptions(input=folder, out=tmp_path / "out", as_of=AS_OF))
    rows = [r for r in _issues(tmp_path / "out") if r["kind"] == "patient_not_in_export"]
    assert [("Observation.ndjson.gz", "2", "Patient/ghost")] == [
        (r["file"], r["line"], r["resource"]) for r in rows
    ]


def test_staging_left_by_a_killed_run_is_removed_by_the_next(tmp_path):
    """A run killed with SIGKILL leaves a hidden staging folder; the next run for the same OUT removes it."""
    target = tmp_path / "out"
    code = (
        "import sys, time; from pathlib import Path; from magstat.batch.output import StagedOutput\n"
        "s = StagedOutput(Path(sys.argv[1])); print(s.path, flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        staging = Path(proc.stdout.readline().strip())
        assert staging.is_dir()
        # While its run lives, the folder is kept.
        assert [] == remove_stale_staging(target.resolve())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert staging.is_dir()
    staged = StagedOutput(target)  # the next run
    try:
        assert not staging.exists()
        assert staged.path.is_dir()
    finally:
        staged.abort()


def test_old_unlocked_staging_is_removed_recent_one_kept(tmp_path):
    """A staging folder without a lock is removed only when it is over a day old."""
    target = (tmp_path / "out").resolve()
    old = tmp_path / ".out.magstat-tmp-0000aaaa"
    new = tmp_path / ".out.magstat-tmp-0000bbbb"
    old.mkdir()
    new.mkdir()
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (day_ago, day_ago))
    assert [old] == remove_stale_staging(target)
    assert new.is_dir()
