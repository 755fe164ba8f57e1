"""Assessment to CDS Hooks cards: when a card appears, its indicator, and the shape the specification asks."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest

from magstat.adapters.cds_hooks.cards import (
    SUGGESTION_ORDER_SERUM_MG,
    CardContext,
    DraftDrug,
    order_cards,
    patient_view_cards,
)
from magstat.adapters.cds_hooks.models import Card
from magstat.core import assess
from magstat.core.facts import ConditionFact, Lab, Medication, Origin, PatientFacts

AS_OF = dt.date(2024, 3, 1)


def ctx(**kwargs) -> CardContext:
    """A card context for a hook call."""
    return CardContext(
        service_id=kwargs.pop("service_id", "magstat-patient-view"),
        hook_instance=kwargs.pop("hook_instance", "7b0e5f0e-8c4b-4a0c-9c8e-2f0e1d1a2b3c"),
        patient_id="p1",
        version="0.1.0",
        **kwargs,
    )


def lab(kb, test: str, value: float, when: dt.date = AS_OF, source: str = "Observation/o1") -> Lab:
    """A lab result in the test's canonical unit."""
    return Lab(test, value, kb.tests[test].canonical_unit, when, origin=Origin(source, "LOINC"))


def med(kb, name: str, source: str = "MedicationRequest/m1") -> Medication:
    """A current medication recognised by name."""
    from magstat.core.match import match_drug  # noqa: PLC0415

    return Medication(name, match_drug(kb, (), name).ids, True, origin=Origin(source, "text"))


def facts(**kwargs) -> PatientFacts:
    """Facts of a 60-year-old woman with medications and conditions known."""
    base = {
        "as_of": AS_OF,
        "patient_id": "p1",
        "age_years": 60.0,
        "sex": "female",
        "medications": (),
        "conditions": (),
    }
    base.update(kwargs)
    return PatientFacts(**base)


def check_spec(card: dict) -> None:
    """A card meets CDS Hooks 2.0: required fields, summary length, no null or empty values."""
    Card.model_validate(card)
    assert len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"]
    assert card["source"]["topic"]["system"] and card["source"]["topic"]["code"]
    uuid.UUID(card["uuid"])
    for reason in card["overrideReasons"]:
        assert reason["display"]
    if "suggestions" in card:
        assert "any" == card["selectionBehavior"]
        for suggestion in card["suggestions"]:
            uuid.UUID(suggestion["uuid"])

    def walk(value):
        assert value is not None and value != "" and value != [] and value != {}
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(card)


def test_severe_deficiency_is_critical(kb):
    """A severe deficiency gives one critical status card showing its inputs and sources."""
    result = assess(facts(labs=(lab(kb, "serum_mg", 0.35),)), kb)
    assert "deficient" == result.status
    cards = patient_view_cards(result, kb, ctx())
    assert ["status"] == [c["source"]["topic"]["code"] for c in cards]
    card = cards[0]
    check_spec(card)
    assert "critical" == card["indicator"]
    assert "Observation/o1" in card["detail"]
    assert "**Sources**" in card["detail"]
    for attribute in (
        "Developer:",
        "funding:",
        "Version: magstat 0.1.0",
        kb.version,
        "released",
        "Assessed as of 2024-03-01",
    ):
        assert attribute in card["detail"]


def test_mild_deficiency_is_a_warning(kb):
    """A mild deficiency without symptoms gives a warning."""
    result = assess(facts(labs=(lab(kb, "serum_mg", 0.68),)), kb)
    assert ("deficient", "mild") == (result.status, result.severity)
    card = patient_view_cards(result, kb, ctx())[0]
    assert "warning" == card["indicator"]


def test_excess_card(kb):
    """A serum magnesium above the lab range gives an excess card."""
    result = assess(facts(labs=(lab(kb, "serum_mg", 1.6),)), kb)
    assert "excess" == result.status
    card = patient_view_cards(result, kb, ctx())[0]
    check_spec(card)
    assert card["indicator"] in ("warning", "critical")
    assert card["summary"].startswith("Magnesium excess")


def test_no_card_when_nothing_warrants_one(kb):
    """A normal serum magnesium without risk factors gives no card."""
    result = assess(facts(labs=(lab(kb, "serum_mg", 0.92),)), kb)
    assert "unlikely" == result.status
    assert [] == patient_view_cards(result, kb, ctx())


def test_high_mds_without_recent_magnesium_prompts_a_card_with_a_lab_order(kb):
    """Strong risk (PPI and diuretic) with no recent magnesium: a card that offers the serum Mg order."""
    result = assess(
        facts(medications=(med(kb, "omeprazole"), med(kb, "furosemide", "MedicationRequest/m2"))), kb
    )
    assert "at_risk" == result.status
    card = patient_view_cards(result, kb, ctx())[0]
    check_spec(card)
    assert SUGGESTION_ORDER_SERUM_MG == card["suggestions"][0]["uuid"]
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert ("ServiceRequest", "Patient/p1") == (resource["resourceType"], resource["subject"]["reference"])


def test_renal_wasting_card(kb):
    """Low magnesium with a renal FEMg gives a renal wasting card next to the status card."""
    labs = (
        lab(kb, "serum_mg", 0.55),
        lab(kb, "serum_creatinine", 0.9),
        lab(kb, "urine_mg_spot", 3.0),
        lab(kb, "urine_creatinine", 100.0),
    )
    result = assess(facts(labs=labs), kb)
    if result.femg.interpretation != "renal":
        pytest.skip(f"these values give FEMg {result.femg.percent} ({result.femg.interpretation})")
    kinds = [c["source"]["topic"]["code"] for c in patient_view_cards(result, kb, ctx())]
    assert ["status", "renal-wasting"] == kinds


def test_card_uuids_are_stable_per_hook_instance(kb):
    """The same hook call gives the same card uuid; another call another uuid; suggestion uuids are constant."""
    result = assess(facts(labs=(lab(kb, "serum_mg", 0.35),)), kb)
    first = patient_view_cards(result, kb, ctx())[0]
    again = patient_view_cards(result, kb, ctx())[0]
    other = patient_view_cards(result, kb, ctx(hook_instance="another"))[0]
    assert first["uuid"] == again["uuid"]
    assert first["uuid"] != other["uuid"]


def test_ehr_text_cannot_inject_markdown_links(kb):
    """A drug name with Markdown link syntax from the EHR is escaped in the card detail."""
    evil = "omeprazole [click](https://evil.example.org) <img src=x>"
    result = assess(facts(medications=(med(kb, evil), med(kb, "furosemide", "MedicationRequest/m2"))), kb)
    card = patient_view_cards(result, kb, ctx())[0]
    assert "[click](" not in card["detail"]
    assert re.search(r"(?<!\\)<img", card["detail"]) is None
    assert r"\[click\]" in card["detail"]


def test_lowering_draft_card_info_without_low_magnesium(kb):
    """A PPI draft with a normal recent magnesium: an info card with the FDA advice and the lab suggestion."""
    draft = med(kb, "pantoprazole 40 mg", "MedicationRequest/d1")
    result = assess(facts(labs=(lab(kb, "serum_mg", 0.9),), medications=(draft,)), kb)
    drafts = [DraftDrug("MedicationRequest/d1", draft.text, draft.drugs)]
    cards = order_cards(result, kb, ctx(service_id="magstat-order-select"), drafts)
    assert ["drug-lowers-magnesium"] == [c["source"]["topic"]["code"] for c in cards]
    check_spec(cards[0])
    assert "info" == cards[0]["indicator"]
    assert "FDA (2011)" in cards[0]["detail"]


def test_lowering_draft_card_warns_on_low_magnesium(kb):
    """A thiazide draft when the latest magnesium is in the grey zone: a warning."""
    draft = med(kb, "hydrochlorothiazide", "MedicationRequest/d1")
    result = assess(facts(labs=(lab(kb, "serum_mg", 0.78),), medications=(draft,)), kb)
    cards = order_cards(result, kb, ctx(), [DraftDrug("MedicationRequest/d1", draft.text, draft.drugs)])
    assert "warning" == cards[0]["indicator"]
    assert "is low" in cards[0]["summary"]


def test_no_order_card_for_unrelated_drafts(kb):
    """A draft that does not lower magnesium and is not a magnesium product gives no card."""
    draft = med(kb, "amoxicillin", "MedicationRequest/d1")
    result = assess(facts(medications=(draft,)), kb)
    assert [] == order_cards(result, kb, ctx(), [DraftDrug("MedicationRequest/d1", draft.text, draft.drugs)])


def test_magnesium_product_with_ckd(kb):
    """A magnesium product drafted for a patient with CKD: a safety card with a cancel suggestion."""
    draft = med(kb, "magnesium oxide 400 mg", "MedicationRequest/d1")
    ckd = ConditionFact(
        "Chronic kidney disease stage 4", "chronic_kidney_disease", True, origin=Origin("Condition/c1")
    )
    result = assess(facts(labs=(lab(kb, "egfr", 25.0),), medications=(draft,), conditions=(ckd,)), kb)
    cards = order_cards(result, kb, ctx(), [DraftDrug("MedicationRequest/d1", draft.text, draft.drugs)])
    product = [c for c in cards if c["source"]["topic"]["code"] == "magnesium-product-kidney"]
    assert 1 == len(product)
    check_spec(product[0])
    assert "Magnesium oxide ordered with reduced kidney function (eGFR 25)" in product[0]["summary"]
    assert "delete" == product[0]["suggestions"][0]["actions"][0]["type"]


def test_magnesium_product_with_good_kidney_function_gives_no_card(kb):
    """A magnesium product for a patient with normal kidney function and no excess: no card."""
    draft = med(kb, "magnesium citrate", "MedicationRequest/d1")
    result = assess(facts(labs=(lab(kb, "egfr", 95.0), lab(kb, "serum_mg", 0.8)), medications=(draft,)), kb)
    cards = order_cards(result, kb, ctx(), [DraftDrug("MedicationRequest/d1", draft.text, draft.drugs)])
    assert [] == [c for c in cards if c["source"]["topic"]["code"] == "magnesium-product-kidney"]


def test_documented_suggestion_uuid(kb):
    """The suggestion uuid that docs/service.md gives integrators is the one the cards carry."""
    from tests.conftest import ROOT  # noqa: PLC0415

    assert SUGGESTION_ORDER_SERUM_MG in (ROOT / "docs" / "service.md").read_text(encoding="utf-8")
