"""Constructed FHIR R4 cases for the context rules (negation, lifelong diagnoses, glycaemia, death).

Each case is built from the published rules it tests (ConText/NegEx for text, the FHIR R4
Condition and Patient elements, the ADA HbA1c goal), not from a real record. The CLI, the CDS
Hooks service and the adapter tests all use these same bundles.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

AS_OF = dt.date(2024, 5, 1)
PATIENT_ID = "ctx-1"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HCTZ = "5487"  # RxNorm ingredient hydrochlorothiazide
OMEPRAZOLE = "7646"  # RxNorm ingredient omeprazole


def patient(**extra: Any) -> dict[str, Any]:
    """A Patient born 1960-03-02, female, with any extra elements (``deceasedDateTime`` ...)."""
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "gender": "female",
        "birthDate": "1960-03-02",
        **extra,
    }


def _subject() -> dict[str, str]:
    return {"reference": f"Patient/{PATIENT_ID}"}


def condition(
    rid: str, *, text: str | None = None, snomed: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An active Condition with a SNOMED CT code and/or a text."""
    code: dict[str, Any] = {}
    if snomed:
        code["coding"] = [{"system": SNOMED, "code": snomed}]
    if text:
        code["text"] = text
    return {
        "resourceType": "Condition",
        "id": rid,
        "subject": _subject(),
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": code,
        **extra,
    }


def statement(rid: str, rxnorm: str, name: str) -> dict[str, Any]:
    """An active MedicationStatement of one RxNorm ingredient, started in 2022."""
    return {
        "resourceType": "MedicationStatement",
        "id": rid,
        "status": "active",
        "subject": _subject(),
        "effectiveDateTime": "2022-01-10",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxnorm}], "text": name},
    }


def lab(rid: str, loinc: str, value: float, unit: str, when: str) -> dict[str, Any]:
    """A final laboratory Observation with a UCUM quantity."""
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "subject": _subject(),
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    """A collection Bundle of the resources."""
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def serum_mg(value: float, when: str = "2024-04-28") -> dict[str, Any]:
    """Serum magnesium (LOINC 19123-9) in mmol/L."""
    return lab("mg", "19123-9", value, "mmol/L", when)


def hba1c(value: float, when: str = "2024-03-15") -> dict[str, Any]:
    """HbA1c (LOINC 4548-4) in percent."""
    return lab("a1c", "4548-4", value, "%", when)


# --- the cases ------------------------------------------------------------------------------


def denial(verb: str = "denies") -> dict[str, Any]:
    """On a thiazide, no Mg result; the problem list says the patient <verb> three signs."""
    return bundle(
        patient(),
        statement("hctz", HCTZ, "hydrochlorothiazide 25 MG Oral Tablet"),
        condition(
            "c-deny", text=f"Patient {verb} tetany, seizures or muscle cramps", recordedDate="2024-04-20"
        ),
    )


def epilepsy_from_birth(acute_seizure: bool = False) -> dict[str, Any]:
    """Epilepsy diagnosed at birth, Mg 0.68 mmol/L; optionally a seizure recorded 5 days ago."""
    resources = [
        patient(),
        condition("c-epi", snomed="84757009", text="Epilepsy", onsetDateTime="1960-03-02"),
        serum_mg(0.68),
    ]
    if acute_seizure:
        resources.append(condition("c-seiz", snomed="91175000", text="Seizure", onsetDateTime="2024-04-26"))
    return bundle(*resources)


def diabetes_for_twenty_years(a1c: float | None, glucose_mg_dl: float | None = None) -> dict[str, Any]:
    """Type 2 diabetes since 2004 with a hyperglycaemia entry of 2004; an HbA1c and a glucose if given."""
    resources = [
        patient(),
        condition("c-dm", snomed="44054006", text="Diabetes", onsetDateTime="2004-02-01"),
        condition("c-hyper", snomed="80394007", text="Hyperglycemia (disorder)", onsetDateTime="2004-02-01"),
    ]
    if a1c is not None:
        resources.append(hba1c(a1c))
    if glucose_mg_dl is not None:
        resources.append(lab("glu", "2345-7", glucose_mg_dl, "mg/dL", "2024-04-21"))
    return bundle(*resources)


def deceased(**death: Any) -> dict[str, Any]:
    """On a PPI and a thiazide with Mg 0.6 mmol/L; the Patient carries ``death`` elements."""
    return bundle(
        patient(**death),
        statement("ppi", OMEPRAZOLE, "omeprazole 20 MG Delayed Release Oral Capsule"),
        statement("hctz", HCTZ, "hydrochlorothiazide 25 MG Oral Tablet"),
        serum_mg(0.6, "2022-11-02"),
    )
