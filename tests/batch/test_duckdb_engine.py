"""The DuckDB engine's own steps: cutting the sorted rows into units of whole patients, and
reading again only the files its scan names for lines of another type.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from magstat.batch import ScreenOptions, screen
from magstat.batch.engines import duckdb as engine_mod
from magstat.batch.issues import StrictError
from magstat.batch.readers import fhir_bulk

AS_OF = dt.date(2021, 6, 1)


def _batches(pids: list[str], size: int) -> list[pa.RecordBatch]:
    rows = [(pid, "Observation", f"[{i}]") for i, pid in enumerate(pids)]
    return [
        pa.RecordBatch.from_pylist(
            [{"pid": p, "rt": r, "line": t} for p, r, t in rows[i : i + size]],
            schema=pa.schema([("pid", pa.string()), ("rt", pa.string()), ("line", pa.string())]),
        )
        for i in range(0, len(rows), size)
    ]


def test_units_hold_whole_patients_in_order(monkeypatch):
    """Every unit holds whole patients (one larger than a unit stays whole), and the units keep every row in order."""
    monkeypatch.setattr(engine_mod, "CHUNK_ROWS", 3)
    pids = ["a", "a", "b", "c", "c", "c", "c", "c", "c", "c", "d", "e", "e", "f"]
    units = [pa.ipc.open_stream(data).read_all() for data in engine_mod._arrow_chunks(_batches(pids, 2))]
    seen = [pid for unit in units for pid in unit.column("pid").to_pylist()]
    assert pids == seen
    assert [f"[{i}]" for i in range(len(pids))] == [
        t for unit in units for t in unit.column("line").to_pylist()
    ]
    assert len(units) > 1
    for earlier, later in itertools.pairwise(units):
        assert set(earlier.column("pid").to_pylist()).isdisjoint(later.column("pid").to_pylist())
    assert any(7 == unit.column("pid").to_pylist().count("c") for unit in units)


def test_a_unit_is_sent_with_its_own_rows_only(monkeypatch):
    """A unit cut from a large batch is serialised with its own rows, not the whole batch's buffers."""
    monkeypatch.setattr(engine_mod, "CHUNK_ROWS", 10)
    pids = [f"p{i:04d}" for i in range(1000)]
    first, last = engine_mod._arrow_chunks(_batches(pids, 1000))
    assert ["p0999"] == pa.ipc.open_stream(last).read_all().column("pid").to_pylist()
    assert 999 == pa.ipc.open_stream(first).read_all().num_rows
    assert len(last) * 20 < len(first)


def _export(folder: Path, stray_in: str | None) -> Path:
    folder.mkdir()
    patients = [
        {"resourceType": "Patient", "id": f"p{i}", "birthDate": "1950-01-01", "gender": "female"}
        for i in range(3)
    ]
    conditions = [
        {
            "resourceType": "Condition",
            "id": f"c{i}",
            "subject": {"reference": f"Patient/p{i}"},
            "code": {"text": "x"},
        }
        for i in range(3)
    ]
    if stray_in == "Condition":
        conditions.insert(1, patients.pop())
    for name, rows in (("Patient.ndjson", patients), ("Condition.ndjson", conditions)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


@pytest.mark.parametrize("stray_in", [None, "Condition"])
def test_only_files_the_scan_names_are_read_line_by_line(tmp_path, monkeypatch, stray_in):
    """Before the scan no file is read line by line; after it only a file holding another type's line is."""
    calls: list[tuple[str, bool]] = []
    original = fhir_bulk.check_file

    def spy(f: fhir_bulk.BulkFile, max_wrong_type: int = 1000, *, types: bool = True) -> list:
        calls.append((f.name, types))
        return original(f, max_wrong_type, types=types)

    monkeypatch.setattr(fhir_bulk, "check_file", spy)
    folder = _export(tmp_path / "bulk", stray_in)
    outcome = screen(ScreenOptions(input=folder, out=tmp_path / "out", as_of=AS_OF, threads=1))
    line_by_line = [name for name, types in calls if types]
    if stray_in is None:
        assert [] == line_by_line
        assert "resource_in_wrong_file" not in outcome.summary["issues"]["counts"]
    else:
        assert ["Condition.ndjson"] == line_by_line
        assert 1 == outcome.summary["issues"]["counts"]["resource_in_wrong_file"]
    assert 3 == outcome.summary["patients"]


def test_small_units_give_the_same_outputs(tmp_path, monkeypatch, bulk):
    """Screening with units of a few rows writes the same bytes as with the default units."""
    default = screen(ScreenOptions(input=bulk, out=tmp_path / "a", as_of=AS_OF, workers=0))
    monkeypatch.setattr(engine_mod, "CHUNK_ROWS", 7)
    small = screen(ScreenOptions(input=bulk, out=tmp_path / "b", as_of=AS_OF, workers=0))
    assert default.summary["patients"] == small.summary["patients"]
    for name in ("results.parquet", "issues.csv", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_strict_stops_at_a_line_of_another_type(tmp_path):
    """With --strict a line of another type, found by the scan, stops the run naming its file; nothing is written."""
    folder = _export(tmp_path / "bulk", "Condition")
    with pytest.raises(StrictError, match=r"Condition\.ndjson"):
        screen(ScreenOptions(input=folder, out=tmp_path / "out", as_of=AS_OF, strict=True))
    assert not (tmp_path / "out").exists()


def test_a_worker_imports_neither_duckdb_nor_the_pipeline():
    """What a worker imports to assess a unit leaves out DuckDB, the pipeline and the report."""
    code = (
        "import sys, magstat.batch.rows, magstat.adapters.fhir\n"
        "print(sorted(m for m in ('duckdb', 'magstat.batch.pipeline', 'magstat.batch.report') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "[]" == done.stdout.strip()
