"""The DuckDB engine's own steps: cutting the sorted rows into units of whole patients, and
reading again only the files its scan names for lines of another type.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from magstat.adapters.fhir import views_for_kb
from magstat.batch import ScreenOptions, screen
from magstat.batch import rows as rows_mod
from magstat.batch.engines import duckdb as engine_mod
from magstat.batch.engines.base import RunContext
from magstat.batch.issues import IssueLog, StrictError
from magstat.batch.readers import fhir_bulk
from magstat.kb import load

AS_OF = dt.date(2021, 6, 1)


def _batches(pids: list[str], size: int, text: pa.DataType | None = None) -> list[pa.RecordBatch]:
    rows = [(pid, "Observation", f"[{i}]") for i, pid in enumerate(pids)]
    return [
        pa.RecordBatch.from_pylist(
            [{"pid": p, "rt": r, "line": t} for p, r, t in rows[i : i + size]],
            schema=pa.schema([("pid", pa.string()), ("rt", pa.string()), ("line", text or pa.string())]),
        )
        for i in range(0, len(rows), size)
    ]


def _texts(unit: rows_mod.PackedUnit) -> list[str]:
    """The row texts of a packed unit, cut at their end offsets."""
    ends, data = unit[4], unit[5]
    stops = list(memoryview(ends).cast("q"))
    return [data[a:b].decode("utf-8") for a, b in zip([0, *stops[:-1]], stops, strict=True)]


def _row_pids(unit: rows_mod.PackedUnit) -> list[str]:
    """The patient id of each row of a packed unit."""
    pids, patient_ends = unit[0], list(memoryview(unit[1]).cast("q"))
    return [
        pid
        for pid, a, b in zip(pids, [0, *patient_ends[:-1]], patient_ends, strict=True)
        for _ in range(a, b)
    ]


def _row_types(unit: rows_mod.PackedUnit) -> list[str]:
    """The resource type of each row of a packed unit."""
    return [unit[2][t] for t in unit[3]]


def test_units_hold_whole_patients_in_order(monkeypatch):
    """Every unit holds whole patients (one larger than a unit stays whole), and the units keep every row in order."""
    monkeypatch.setattr(engine_mod, "CHUNK_ROWS", 3)
    pids = ["a", "a", "b", "c", "c", "c", "c", "c", "c", "c", "d", "e", "e", "f"]
    units = list(engine_mod._arrow_chunks(_batches(pids, 2)))
    seen = [pid for unit in units for pid in _row_pids(unit)]
    assert pids == seen
    assert ["Observation"] * len(pids) == [rtype for unit in units for rtype in _row_types(unit)]
    assert [f"[{i}]" for i in range(len(pids))] == [t for unit in units for t in _texts(unit)]
    assert len(units) > 1
    for earlier, later in itertools.pairwise(units):
        assert set(earlier[0]).isdisjoint(later[0])
    assert any(7 == _row_pids(unit).count("c") for unit in units)
    assert all(len(unit[0]) == len(set(unit[0])) for unit in units)  # each patient id sent once


@pytest.mark.parametrize("text", [pa.string(), pa.large_string()], ids=["string", "large_string"])
def test_a_unit_is_sent_with_its_own_rows_only(monkeypatch, text):
    """A unit cut from a large batch carries its own rows' bytes, not the whole batch's buffers (either offset width)."""
    monkeypatch.setattr(engine_mod, "CHUNK_ROWS", 10)
    pids = [f"p{i:04d}" for i in range(1000)]
    first, last = engine_mod._arrow_chunks(_batches(pids, 1000, text))
    assert ["p0999"] == last[0]
    assert ["[999]"] == _texts(last)
    assert 999 == len(first[0]) == len(_row_pids(first))
    assert [f"[{i}]" for i in range(999)] == _texts(first)


@pytest.fixture
def shared_bundles_rows(tmp_path, bulk) -> tuple[pa.Table, rows_mod.Job]:
    """The sorted rows the engine hands its workers for the shared export, plus a non-ASCII Condition."""
    folder = tmp_path / "bulk"
    shutil.copytree(bulk, folder)
    extra = {
        "resourceType": "Condition",
        "id": "c-accent",
        "subject": {"reference": "Patient/p-accent"},
        "code": {"text": "Hypomagnesémie – 低镁血症"},
    }
    patient = {"resourceType": "Patient", "id": "p-accent", "birthDate": "1950-01-01", "gender": "female"}
    (folder / "Condition.900.ndjson").write_text(
        json.dumps(extra, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (folder / "Patient.900.ndjson").write_text(json.dumps(patient) + "\n", encoding="utf-8")
    kb = load()
    source = fhir_bulk.discover(folder)
    engine = engine_mod.DuckDBEngine()
    con = engine._connect(RunContext(kb=kb, issues=IssueLog(strict=False), work_dir=tmp_path, threads=1))
    flat = views_for_kb(kb)
    keys = {t: k for t, k in flat.keys.items() if k is not None}
    con.execute(
        engine.stage_sql(
            [str(f.path) for f in source.read],
            fhir_bulk.code_keyword_patterns(kb, "(?i)"),
            fhir_bulk.plain_code_pattern(),
            keys=keys,
        )
    )
    table = con.sql(engine.sorted_rows_sql()).to_arrow_table()
    engine.close()
    assert any("é" in text for text in table.column("line").to_pylist())
    return table, rows_mod.Job(as_of=AS_OF, strict=False, details=True, kb_sha256=kb.sha256)


def test_a_packed_unit_reads_as_its_arrow_rows(shared_bundles_rows):
    """A packed unit gives the results of the same rows grouped by patient (non-ASCII texts included)."""
    unit_table, job = shared_bundles_rows
    rows = zip(*(unit_table.column(i).to_pylist() for i in range(3)), strict=True)
    groups = [
        (pid, [rt for _, rt, _ in group], [line for _, _, line in group])
        for pid, group in ((pid, list(g)) for pid, g in itertools.groupby(rows, key=lambda r: r[0]))
    ]
    from_rows = rows_mod.screen_rows_chunk(groups, job, projected=True)
    from_packed = rows_mod.screen_packed_chunk(engine_mod._pack(unit_table), job, projected=True)
    assert [(r.row, r.detail, r.issues) for r in from_rows] == [
        (r.row, r.detail, r.issues) for r in from_packed
    ]
    assert len(from_rows) > 1


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


def _fresh_interpreter(code: str) -> str:
    """What ``code`` prints in a new Python process (nothing imported before it)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_a_worker_imports_neither_duckdb_nor_the_pipeline():
    """What a worker imports to assess a unit leaves out DuckDB, pyarrow, the pipeline and the report."""
    code = (
        "import sys, magstat.batch.rows, magstat.adapters.fhir\n"
        "print(sorted(m for m in ('duckdb', 'pyarrow', 'magstat.batch.pipeline', 'magstat.batch.report') "
        "if m in sys.modules))"
    )
    assert "[]" == _fresh_interpreter(code)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc (Linux)")
@pytest.mark.parametrize("cli", [False, True], ids=["library", "command-line"])
def test_the_fork_server_preload_starts_no_thread(cli):
    """The modules the fork server imports before forking workers (the command line's too) load the views and start no thread."""
    code = (
        "import os, sys, magstat.batch.preload\n"
        + ("import magstat.cli\n" if cli else "")
        + "from magstat.adapters.fhir import flatten\n"
        "print(len(os.listdir('/proc/self/task')), len(flatten._CACHE),"
        " sorted(m for m in ('duckdb', 'pyarrow', 'numpy') if m in sys.modules))"
    )
    assert "1 1 []" == _fresh_interpreter(code)


def test_the_fork_server_preloads_the_command_line_only_for_a_command_line_run():
    """A run from the command line has the fork server import it once, instead of each worker."""
    code = (
        "import sys\n"
        "from magstat.batch import parallel\n"
        "before = parallel.preload_modules()\n"
        "import magstat.cli\n"
        "print(before, parallel.preload_modules())"
    )
    assert "['magstat.batch.preload'] ['magstat.batch.preload', 'magstat.cli']" == _fresh_interpreter(code)


def test_code_kinds_match_the_regular_expressions_on_every_line(monkeypatch):
    """Kinds given once per distinct code (memo, its limit, long codes) equal the scan's SQL on each line; null stays null."""
    kb = load()
    keywords, plain = fhir_bulk.code_keyword_patterns(kb, "(?i)"), fhir_bulk.plain_code_pattern()
    codes = [
        '{"coding":[{"system":"http://loinc.org","code":"19123-9","display":"Magnesium"}]}',
        '{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body Height"}],"text":"Body Height"}',
        '{"text":"MAGNÉSIUM sérique"}',
        '{"coding":[{"system":"http://loinc.org","code":"8302-2","extension":[]}]}',
        '{"coding":[{"code":7}]}',
        '{"text":"x' + "y" * 5000 + '"}',
        None,
        '{"text":"creatinine"}',
    ]
    column = codes * 3 + [None, codes[1]]
    con = duckdb.connect()
    con.register("codes", pa.table({"c": pa.array(column, pa.string())}))
    expected = [
        k
        for (k,) in con.execute(
            f"SELECT {engine_mod.code_kind_sql('c', keywords, plain)} FROM codes"
        ).fetchall()
    ]
    kinds = engine_mod.CodeKinds(keywords, plain)
    monkeypatch.setattr(engine_mod.CodeKinds, "MEMO_LIMIT", 3)
    first = kinds(pa.array(column, pa.string())).to_pylist()
    again = kinds(pa.chunked_array([column[:5], column[5:]], pa.string())).to_pylist()
    kinds.close()
    expected = [
        None if c is None else k for c, k in zip(column, expected, strict=True)
    ]  # the scan tests null first
    assert expected == first
    assert expected == again
    assert {engine_mod.USED, engine_mod.NOT_NEEDED} == {k for k in expected if k is not None}
    assert len(kinds.memo) <= 3


ODD_LINES = [
    {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01", "gender": "female"},
    {"resourceType": "Patient", "birthDate": "1950-01-01"},
    {"resourceType": "Patient", "id": 42},
    {"resourceType": "Medication", "id": "m1", "code": {"text": "magnesium oxide"}},
    {"resourceType": "Medication", "code": {"text": "no id"}},
    {
        "resourceType": "MedicationRequest",
        "id": "r1",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "medicationReference": {"reference": "Medication/m1/_history/2"},
    },
    {
        "resourceType": "MedicationStatement",
        "id": "s1",
        "subject": {"reference": "http://example.org/fhir/Patient/p1?x=1"},
        "medicationReference": {"reference": "urn:uuid:m1"},
    },
    {"resourceType": "MedicationRequest", "id": "r2", "subject": "Patient/p1"},
    {
        "resourceType": "Condition",
        "id": "c1",
        "subject": [{"reference": "Patient/p1"}],
        "code": {"text": "x"},
    },
    {"resourceType": "Condition", "id": "c2", "subject": {"reference": "#contained"}, "code": {"text": "x"}},
    {
        "resourceType": "Condition",
        "id": "c3",
        "subject": {"reference": "Patient/p1"},
        "onsetAge": {"value": 3},
    },
    {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p1"}, "code": {}},
    {"resourceType": "AllergyIntolerance", "id": "a2", "subject": {"reference": "Patient/p1"}},
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9", "display": "Magnesium"}]},
        "valueQuantity": {"value": 0.6, "unit": "mmol/L"},
    },
    {
        "resourceType": "Observation",
        "id": "o2",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]},
    },
    {"resourceType": "Observation", "id": "o3", "subject": {"reference": "Patient/p1"}, "code": "a string"},
    {"resourceType": "Observation", "id": "o4", "subject": {"reference": "Patient/p1"}, "code": None},
    {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/p1"}},
    {"resourceType": "", "id": "x"},
    ["not", "an", "object"],
]


def test_the_projected_scan_stages_what_the_whole_line_scan_does(tmp_path):
    """Kept lines projected in the scan (ids and references read from the projection) match the whole lines projected afterwards."""
    kb = load()
    flat = views_for_kb(kb)
    keys = {t: k for t, k in flat.keys.items() if k is not None}
    path = tmp_path / "Mixed.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in ODD_LINES) + "{not json\n", encoding="utf-8")
    keywords, plain = fhir_bulk.code_keyword_patterns(kb, "(?i)"), fhir_bulk.plain_code_pattern()
    engine = engine_mod.DuckDBEngine()
    con = engine._connect(RunContext(kb=kb, issues=IssueLog(strict=False), work_dir=tmp_path, threads=1))
    staged = {}
    for name, scan_keys in (("whole", None), ("projected", keys)):
        con.execute(engine.stage_sql([str(path)], keywords, plain, keys=scan_keys))
        line = engine.projection_sql(keys, "line") if scan_keys is None else "line"
        staged[name] = con.execute(
            f"SELECT file, kind, rt, pid, mkey, mref, label, {line} FROM staged ORDER BY rowid"
        ).fetchall()
    engine.close()
    assert staged["whole"] == staged["projected"]
    kinds = [row[1] for row in staged["projected"]]
    assert len(ODD_LINES) + 1 == len(kinds)
    assert {
        engine_mod.USED,
        engine_mod.MALFORMED,
        engine_mod.NOT_RESOURCE,
        engine_mod.NOT_NEEDED,
        engine_mod.NO_PATIENT,
    } == set(kinds)
    assert 8 <= kinds.count(engine_mod.USED)
