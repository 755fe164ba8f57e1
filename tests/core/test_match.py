"""Recognition of codes and names: hyphens, history and negation."""

from __future__ import annotations

import datetime as dt

import pytest

from magstat.adapters.document import facts_from_document
from magstat.adapters.fhir import facts_from_fhir
from magstat.core.match import (
    describes_absence,
    describes_past,
    match_condition,
    match_drug,
    match_sign,
    match_test,
)


def test_hyphens_and_spaces_match_alike(kb):
    """'AUDIT-C' and 'audit c' name the same test; 'pre-eclampsia' the same condition."""
    assert ("audit_c",) == match_test(kb, (), "AUDIT-C total score").ids
    assert ("audit_c",) == match_test(kb, (), "audit c").ids
    assert ("pre_eclampsia",) == match_condition(kb, (), "Pre eclampsia").ids


@pytest.mark.parametrize(
    ("text", "absent"),
    [
        ("No seizures", True),
        ("Denies tetany", True),
        ("negative for hypokalemia", True),
        ("Seizure", False),
        ("Tetany noted", False),
    ],
)
def test_describes_absence(text, absent):
    """A negation at the start of a text reports absence; elsewhere it is not read."""
    assert absent == describes_absence(text)


def test_describes_past():
    """'History of' marks a past entry."""
    assert describes_past("History of single seizure (situation)")
    assert not describes_past("Seizure disorder")


def test_negated_sign_text_in_document_is_absent(kb):
    """A document listing 'no tetany' as a sign records tetany as absent, not present."""
    facts = facts_from_document({"signs": ["no tetany"]}, kb, as_of=dt.date(2024, 5, 1))
    assert [("tetany", False)] == [(s.sign, s.present) for s in facts.signs]
    assert match_sign(kb, (), "no tetany").ids == ("tetany",)


def test_negated_condition_text_is_not_current(kb):
    """'No alcohol use disorder' is recognised but not current."""
    facts = facts_from_document({"conditions": ["No alcohol use disorder"]}, kb, as_of=dt.date(2024, 5, 1))
    assert [("alcohol_use_disorder", False)] == [(c.condition, c.current) for c in facts.conditions]


def condition_bundle(text: str, status: str = "active") -> dict:
    """A bundle of one patient and one Condition with this text and clinical status."""
    clinical = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": "p1",
                    "gender": "female",
                    "birthDate": "1960-01-01",
                }
            },
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": "c1",
                    "subject": {"reference": "Patient/p1"},
                    "clinicalStatus": clinical,
                    "code": {"text": text},
                }
            },
        ],
    }


def test_negated_condition_in_fhir_gives_no_sign(kb):
    """A FHIR Condition whose text is 'No seizures' does not report a current seizure."""
    bundle = condition_bundle("No seizures")
    facts = facts_from_fhir(bundle, kb, as_of=dt.date(2024, 5, 1))
    assert [] == [s for s in facts.signs if s.present]


@pytest.mark.parametrize(
    "text",
    ["Dependence on renal dialysis (finding)", "Hemodialysis dependence", "Peritoneal dialysis"],
)
def test_dialysis_is_read_as_chronic_kidney_disease(kb, text):
    """A patient on dialysis has chronic kidney disease (reduced magnesium excretion)."""
    assert ("chronic_kidney_disease",) == match_condition(kb, (), text).ids


def test_epsom_salt_is_magnesium_sulfate(kb):
    """Epsom salt on a medication list is magnesium sulfate, a magnesium-containing product."""
    assert ("magnesium_sulfate",) == match_drug(kb, (), "Epsom salts 1 tablespoon as needed").ids


@pytest.mark.parametrize(
    ("text", "drug"),
    [
        ("MgSO4 4 g IV over 20 min", "magnesium_sulfate"),
        ("Lasix 40 mg tablet", "furosemide"),
        ("Nexium 40 mg", "esomeprazole"),
        ("Protonix", "pantoprazole"),
        ("Prilosec OTC", "omeprazole"),
        ("Demadex 20 mg", "torasemide"),
    ],
)
def test_brand_names_and_abbreviations_name_their_drug(kb, text, drug):
    """A medication written by its US brand name or as MgSO4 is recognised as its ingredient."""
    assert (drug,) == match_drug(kb, (), text).ids


@pytest.mark.parametrize(
    ("text", "condition", "context"),
    [
        ("Status post Roux-en-Y gastric bypass", "bariatric_surgery", "current"),
        ("s/p small bowel resection 2009", "short_bowel", "current"),
        ("History of ileal resection", "short_bowel", "current"),
        ("history of Gitelman syndrome", "gitelman_syndrome", "current"),
        ("no history of gastric bypass", "bariatric_surgery", "negated"),
        ("Mother had gastric bypass", "bariatric_surgery", "family"),
        ("History of Crohn disease", "crohns_disease", "historical"),
    ],
)
def test_a_lasting_condition_named_in_the_past_is_still_present(kb, text, condition, context):
    """An operation or inherited tubulopathy named in the past is current; negation, family and other conditions keep their context."""
    found = match_condition(kb, text=text)
    assert ((condition,), context) == (found.ids, found.context)


@pytest.mark.parametrize(("status", "current"), [("active", True), ("resolved", False)])
def test_a_lasting_condition_in_fhir_follows_its_clinical_status(kb, status, current):
    """A FHIR Condition 'History of gastric bypass' counts when active; a resolved status still decides."""
    bundle = condition_bundle("History of gastric bypass", status)
    facts = facts_from_fhir(bundle, kb, as_of=dt.date(2024, 5, 1))
    assert [("bariatric_surgery", current)] == [(c.condition, c.current) for c in facts.conditions or ()]
