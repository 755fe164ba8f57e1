"""Nothing is lost silently; outputs appear atomically; a rerun gives the same bytes."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from magstat.adapters.fhir import facts_from_fhir
from magstat.batch import ScreenOptions, screen
from magstat.batch import pipeline as pipeline_mod
from magstat.batch.issues import StrictError
from magstat.batch.popgen import write_bulk
from magstat.core import assess
from magstat.errors import InvalidInputError
from tests.batch.conftest import AS_OF, dumps, read_ndjson, synthea_py_files


@pytest.fixture
def small(tmp_path) -> Path:
    """Three patients as a Bulk Data export."""
    sources = synthea_py_files()[:3]
    write_bulk(sources, tmp_path / "bulk")
    return tmp_path / "bulk"


def first_patient(folder: Path) -> str:
    return json.loads(read_ndjson(folder / "Patient.ndjson")[0])["id"]


def serum_mg(subject: str | None, value: float, rid: str) -> dict:
    resource = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
        "effectiveDateTime": "2019-06-01",
        "valueQuantity": {
            "value": value,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }
    if subject:
        resource["subject"] = {"reference": subject}
    return resource


@pytest.fixture
def damaged(small) -> Path:
    """The export with bad lines appended to Observation.ndjson, at known line numbers."""
    path = small / "Observation.ndjson"
    pid = first_patient(small)
    extra = [
        '{"resourceType": "Observation", "id": "cut-off", "subject": {"reference": "Pat',  # n+1 malformed
        "",  # n+2 blank: allowed
        "[1, 2]",  # n+3 not a resource
        '{"id": "no-type"}',  # n+4 no resourceType
        dumps(serum_mg(None, 0.8, "no-subject")),  # n+5 names no patient
        dumps(serum_mg("Patient/ghost", 0.8, "ghost-mg")),  # n+6 patient not in the export
        dumps(serum_mg(f"Patient/{pid}", 40.0, "implausible")),  # n+7 left out by the adapter
    ]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(extra) + "\n")
    return small


def issues_of(out: Path) -> list[dict]:
    with (out / "issues.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_malformed_lines_are_counted_and_located(damaged, tmp_path):
    """Each bad line is reported with its file and line; the rest of the input is still screened."""
    n = len(read_ndjson(damaged / "Observation.ndjson")) - 6  # the six non-blank lines added
    outcome = screen(ScreenOptions(input=damaged, out=tmp_path / "out", as_of=AS_OF))
    found = {(i["kind"], i["file"], i["line"]) for i in issues_of(tmp_path / "out")}
    assert ("malformed_line", "Observation.ndjson", str(n + 1)) in found
    assert ("not_a_resource", "Observation.ndjson", str(n + 3)) in found
    assert ("not_a_resource", "Observation.ndjson", str(n + 4)) in found
    kinds = outcome.summary["issues"]["counts"]
    assert {
        "malformed_line": 1,
        "not_a_resource": 2,
        "no_patient_reference": 1,
        "patient_not_in_export": 1,
    } == {k: v for k, v in kinds.items() if k != "resource_excluded"}
    assert 1 == kinds["resource_excluded"]
    excluded = [i for i in issues_of(tmp_path / "out") if i["kind"] == "resource_excluded"]
    assert "Observation/implausible" == excluded[0]["resource"]
    assert 3 == outcome.summary["patients"]
    stats = next(f for f in outcome.summary["input"]["files"] if f["name"] == "Observation.ndjson")
    assert 3 == stats["malformed"]
    assert 1 == stats["no_patient"]
    assert 3 == outcome.summary["issues"]["by_file"]["Observation.ndjson"]["malformed_line"] + 2


def test_half_a_surrogate_pair_is_a_malformed_line_located_by_number(small, tmp_path):
    r"""``"\ud800"`` alone parses but is not text: DuckDB refuses the line, and the issue names it."""
    path = small / "Observation.ndjson"
    n = len(read_ndjson(path))
    bad = dumps(serum_mg(f"Patient/{first_patient(small)}", 0.8, "x")).replace('"x"', '"\\ud800"')
    with path.open("a", encoding="utf-8") as handle:
        handle.write(bad + "\n")
    screen(ScreenOptions(input=small, out=tmp_path / "out", as_of=AS_OF))
    (issue,) = [i for i in issues_of(tmp_path / "out") if i["kind"] == "malformed_line"]
    assert ("Observation.ndjson", str(n + 1)) == (issue["file"], issue["line"])
    assert "half of a surrogate pair" in issue["problem"]


def test_strict_stops_and_writes_nothing(damaged, tmp_path):
    """--strict makes the first problem fatal, naming file and line, and leaves no output behind."""
    with pytest.raises(StrictError, match=r"Observation\.ndjson:\d+"):
        screen(ScreenOptions(input=damaged, out=tmp_path / "out", as_of=AS_OF, strict=True))
    assert not (tmp_path / "out").exists()
    assert [] == [p for p in tmp_path.iterdir() if "magstat-tmp" in p.name]


def test_strict_accepts_clean_input(small, tmp_path):
    """A clean export passes --strict."""
    outcome = screen(ScreenOptions(input=small, out=tmp_path / "out", as_of=AS_OF, strict=True))
    assert 0 == outcome.issues


def test_interrupted_run_leaves_earlier_output(small, tmp_path, monkeypatch):
    """A run that fails half-way leaves the earlier output untouched and no staging folder."""
    out = tmp_path / "out"
    screen(ScreenOptions(input=small, out=out, as_of=AS_OF))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_mod, "render_report", boom)
    with pytest.raises(KeyboardInterrupt):
        screen(ScreenOptions(input=small, out=out, as_of=dt.date(2021, 1, 1)))
    assert before == {p.name: p.read_bytes() for p in out.iterdir()}
    assert [] == [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_rerun_gives_identical_bytes(small, tmp_path):
    """Two runs, into a new folder and over an earlier output, write byte-identical files."""
    options = {"input": small, "as_of": AS_OF, "csv": True, "details": True}
    screen(ScreenOptions(out=tmp_path / "a", **options))
    screen(ScreenOptions(out=tmp_path / "b", **options))
    screen(ScreenOptions(out=tmp_path / "b", **options))  # over the earlier output
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert [
        "assessments.ndjson.gz",
        "issues.csv",
        "report.html",
        "results.csv",
        "results.parquet",
        "summary.json",
    ] == names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_refuses_to_replace_other_files(small, tmp_path):
    """An output folder holding other files is refused, and left as it was."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not a magstat screening output"):
        screen(ScreenOptions(input=small, out=out, as_of=AS_OF))
    assert ["notes.txt"] == [p.name for p in out.iterdir()]


def test_medication_resources_are_joined(tmp_path, kb):
    """A MedicationRequest that points to a Medication resource is read with that Medication."""
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01", "gender": "female"}
    med = {
        "resourceType": "Medication",
        "id": "m1",
        "code": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7646"}],
            "text": "omeprazole",
        },
    }
    request = {
        "resourceType": "MedicationRequest",
        "id": "r1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationReference": {"reference": "Medication/m1"},
        "authoredOn": "2019-01-01",
    }
    folder = tmp_path / "bulk"
    folder.mkdir()
    for resource in (patient, med, request):
        (folder / f"{resource['resourceType']}.ndjson").write_text(dumps(resource) + "\n")
    outcome = screen(ScreenOptions(input=folder, out=tmp_path / "out", as_of=AS_OF, details=True))
    assert 0 == outcome.issues
    row = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()[0]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (patient, med, request)],
    }
    result = assess(facts_from_fhir(bundle, kb, as_of=AS_OF), kb).to_dict()
    assert result["mds"]["components"]["ppi"] == row["mds_ppi"]
    assert 1 == row["mds_ppi"]
    assert "ppi" in row["drug_classes"]


def test_damaged_gzip_is_invalid_input(small, tmp_path):
    """With --strict, a truncated gzip file stops the run with an error that names it, and writes nothing."""
    data = gzip.compress((small / "Patient.ndjson").read_bytes())
    (small / "Patient.ndjson").unlink()
    (small / "Patient.ndjson.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match=r"Patient\.ndjson\.gz"):
        screen(ScreenOptions(input=small, out=tmp_path / "out", as_of=AS_OF, strict=True))
    assert not (tmp_path / "out").exists()
