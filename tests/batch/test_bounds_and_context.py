"""A bounded serum magnesium and a stopped medication read alike by the FHIR reader and the screening."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from magstat.adapters.fhir import facts_from_fhir
from magstat.batch import ScreenOptions, screen
from magstat.core import assess

AS_OF = dt.date(2024, 5, 2)


def resources() -> list[dict]:
    """One patient: serum magnesium '<0.4 mmol/L', and an 'active' omeprazole whose text says discontinued."""
    return [
        {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01", "gender": "female"},
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
            "effectiveDateTime": "2024-05-01",
            "valueQuantity": {
                "value": 0.4,
                "comparator": "<",
                "unit": "mmol/L",
                "system": "http://unitsofmeasure.org",
                "code": "mmol/L",
            },
        },
        {
            "resourceType": "MedicationStatement",
            "id": "m1",
            "status": "active",
            "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {
                "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7646"}],
                "text": "omeprazole 20 mg - discontinued",
            },
        },
    ]


def test_the_fhir_reader_keeps_the_bound_and_reads_the_stopped_drug(kb):
    """The bundle gives a bounded lab and a medication that is not current: deficient, severe, no PPI."""
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources()]}
    facts = facts_from_fhir(bundle, kb, as_of=AS_OF)
    assert [("<", 0.4)] == [(lab.comparator, lab.value) for lab in facts.labs]
    assert [False] == [m.current for m in facts.medications]
    result = assess(facts, kb)
    assert ("deficient", "severe", 0) == (result.status, result.severity, result.mds.components["ppi"])


def test_the_screening_reads_them_as_the_bundle_path_does(kb, tmp_path):
    """The same resources screened on DuckDB give the same status, severity and MDS PPI item."""
    export = tmp_path / "export"
    export.mkdir()
    for r in resources():
        with (export / f"{r['resourceType']}.ndjson").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(r) + "\n")
    screen(ScreenOptions(input=export, out=tmp_path / "out", as_of=AS_OF, workers=0))
    row = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()[0]
    assert ("deficient", "severe", 0) == (row["status"], row["severity"], row["mds_ppi"])


def _mg_as_text(text: str) -> list[dict]:
    """The resources above with the serum magnesium written as valueString."""
    out = resources()
    obs = out[1]
    del obs["valueQuantity"]
    obs["valueString"] = text
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<0.3 mmol/L", [("<", 0.3)]),
        (" 0.62 mmol/L ", [(None, 0.62)]),
        ("1.5 mg/dL", [(None, 0.617)]),
        ("0.62", []),  # no unit: left out, never guessed
        ("1.2 mg/dL (L)", []),  # free text after the number: left out, not refused
        ("hemolyzed", []),
    ],
)
def test_a_result_written_as_text_is_read_only_when_number_and_unit_are_clear(kb, text, expected):
    """valueString '<0.3 mmol/L' is a bound, '0.62 mmol/L' a value; a number without a unit or other text is left out and listed."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in _mg_as_text(text)],
    }
    facts = facts_from_fhir(bundle, kb, as_of=AS_OF)
    assert expected == [(lab.comparator, round(lab.value, 3)) for lab in facts.labs]
    assert (not expected) == any("Observation/o1" in note for note in facts.excluded)


def test_the_screening_reads_a_result_written_as_text_as_the_bundle_path_does(kb, tmp_path):
    """A serum magnesium '<0.3 mmol/L' in valueString screened on DuckDB is a severe deficit, as in the bundle."""
    export = tmp_path / "export"
    export.mkdir()
    for r in _mg_as_text("<0.3 mmol/L"):
        with (export / f"{r['resourceType']}.ndjson").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(r) + "\n")
    screen(ScreenOptions(input=export, out=tmp_path / "out", as_of=AS_OF, workers=0))
    row = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()[0]
    assert ("deficient", "severe") == (row["status"], row["severity"])


@pytest.mark.parametrize(("status", "ppi"), [("active", 0), ("unknown", 0), ("completed", 0)])
def test_a_drug_named_as_stopped_is_not_current_whatever_its_status(kb, status, ppi):
    """'omeprazole 20 mg - discontinued' is not current with status active, unknown or completed: the MDS PPI item is 0, not unknown."""
    items = resources()
    items[2]["status"] = status
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in items]}
    facts = facts_from_fhir(bundle, kb, as_of=AS_OF)
    assert [False] == [m.current for m in facts.medications]
    assert ppi == assess(facts, kb).mds.components["ppi"]
