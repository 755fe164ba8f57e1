"""A recorded allergy or intolerance to a magnesium product, read alike by every path."""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest

from magstat.adapters.document import facts_from_document
from magstat.adapters.fhir import facts_from_fhir
from magstat.batch import ScreenOptions, screen
from magstat.core import assess
from magstat.errors import InvalidInputError

AS_OF = dt.date(2024, 5, 2)


def allergy(status: str = "active", text: str = "Magnesium sulfate", **extra: object) -> dict:
    """An AllergyIntolerance of patient p1 (the patient is named by ``patient``, not ``subject``)."""
    return {
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "patient": {"reference": "Patient/p1"},
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": status,
                }
            ]
        },
        "type": "allergy",
        "criticality": "high",
        "code": {"text": text},
        "reaction": [{"manifestation": [{"text": "Anaphylaxis"}]}],
        **extra,
    }


def resources(*extra: dict) -> list[dict]:
    """Patient p1 with serum magnesium 0.35 mmol/L (a severe deficit: IV magnesium in question)."""
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
                "value": 0.35,
                "unit": "mmol/L",
                "system": "http://unitsofmeasure.org",
                "code": "mmol/L",
            },
        },
        *extra,
    ]


def bundle(*extra: dict) -> dict:
    """The resources as a collection Bundle."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources(*extra)],
    }


def safety(result) -> dict[str, str]:
    """Safety note id -> priority."""
    return {a.id: a.priority for a in result.safety}


def test_a_magnesium_allergy_is_read_and_urgent_when_iv_magnesium_is_in_question(kb):
    """An active allergy to magnesium sulfate with a severe deficit: an urgent note naming it and its reaction."""
    facts = facts_from_fhir(bundle(allergy()), kb, as_of=AS_OF)
    assert [("Magnesium sulfate", ("magnesium_sulfate",), True)] == [
        (a.text, a.drugs, a.current) for a in facts.allergies or ()
    ]
    result = assess(facts, kb)
    assert "urgent" == safety(result)["sf.mg_allergy"]
    note = next(a for a in result.safety if a.id == "sf.mg_allergy")
    assert "Magnesium sulfate (allergy, reaction: Anaphylaxis, criticality high)" in note.reason


@pytest.mark.parametrize(
    "record",
    [
        allergy(status="resolved"),
        allergy(text="No known allergy to magnesium sulfate"),
        allergy(text="Penicillin"),
        allergy(verificationStatus={"coding": [{"code": "refuted"}]}),
        allergy(patient={"reference": "Patient/someone-else"}),
    ],
)
def test_no_note_for_an_allergy_that_is_not_current_not_magnesium_refuted_or_another_patients(kb, record):
    """Resolved, negated, another substance, refuted or another patient's: no magnesium allergy note."""
    result = assess(facts_from_fhir(bundle(record), kb, as_of=AS_OF, strict=False), kb)
    assert "sf.mg_allergy" not in safety(result)


def test_an_unknown_clinical_status_is_refused_with_its_field(kb):
    """clinicalStatus 'remission' is not an allergy status: the error names the field and what is allowed."""
    with pytest.raises(InvalidInputError) as err:
        facts_from_fhir(bundle(allergy(status="remission")), kb, as_of=AS_OF)
    assert "clinicalStatus" in str(err.value) and "active, inactive, resolved" in str(err.value)


def test_no_note_when_no_magnesium_is_in_question(kb):
    """A normal serum magnesium and no magnesium product: the allergy is not a reason for a note."""
    items = resources(allergy())
    items[1]["valueQuantity"]["value"] = 0.9
    facts = facts_from_fhir(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in items]},
        kb,
        as_of=AS_OF,
    )
    assert "sf.mg_allergy" not in safety(assess(facts, kb))


def test_a_document_lists_allergies_and_intolerances(kb):
    """A patient document's allergies: an intolerance to magnesium oxide gives the note, a negated entry does not count."""
    doc = {
        "magstat": "1",
        "as_of": "2024-05-02",
        "age": 60,
        "allergies": [
            {"name": "magnesium oxide", "type": "intolerance", "reaction": "diarrhoea"},
            "no known allergy to magnesium sulfate",
        ],
        "labs": [{"test": "serum_mg", "value": 0.6, "unit": "mmol/L", "date": "2024-05-01"}],
    }
    facts = facts_from_document(doc, kb)
    assert [True, False] == [a.current for a in facts.allergies or ()]
    result = assess(facts, kb)
    assert "high" == safety(result)["sf.mg_allergy"]
    note = next(a for a in result.safety if a.id == "sf.mg_allergy")
    assert "magnesium oxide (intolerance, reaction: diarrhoea)" in note.reason


def test_the_screening_reads_the_allergy_as_the_bundle_path_does(kb, tmp_path):
    """The same resources screened on DuckDB give the same assessment, the allergy note included."""
    export = tmp_path / "export"
    export.mkdir()
    for r in resources(allergy()):
        with (export / f"{r['resourceType']}.ndjson").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(r) + "\n")
    screen(ScreenOptions(input=export, out=tmp_path / "out", as_of=AS_OF, workers=0, details=True))
    with gzip.open(tmp_path / "out" / "assessments.ndjson.gz", "rt", encoding="utf-8") as handle:
        screened = json.loads(handle.readline())
    expected = assess(facts_from_fhir(bundle(allergy()), kb, as_of=AS_OF), kb).to_dict()
    assert [a["id"] for a in expected["safety"]] == [a["id"] for a in screened["safety"]]
    assert "sf.mg_allergy" in [a["id"] for a in screened["safety"]]
