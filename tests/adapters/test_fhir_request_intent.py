"""MedicationRequest.intent: an order counts by its status; a proposal, plan or option is not taken."""

from __future__ import annotations

from typing import Any

import pytest

from magstat.adapters.cds_hooks.request import draft_drugs, draft_orders, patient_bundle
from magstat.adapters.fhir import facts_from_fhir
from magstat.core import assess
from magstat.errors import InvalidInputError
from magstat.kb import load
from tests import safety_cases as cases

AS_OF = cases.AS_OF
RXNORM = cases.RXNORM


def request(
    intent: str | None, text: str = "omeprazole 20 mg", code: str | None = "7646", **extra: Any
) -> dict:
    """An active MedicationRequest of patient p1 with the given intent (none when ``None``)."""
    concept: dict[str, Any] = {"text": text}
    if code:
        concept["coding"] = [{"system": RXNORM, "code": code}]
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": "r1",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "authoredOn": "2023-01-01",
        "medicationCodeableConcept": concept,
        **extra,
    }
    if intent is not None:
        resource["intent"] = intent
    return resource


def read(*resources: dict, strict: bool = True) -> Any:
    """The facts of patient p1 with the resources."""
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01", "gender": "female"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (patient, *resources)],
    }
    return facts_from_fhir(bundle, load(), as_of=AS_OF, strict=strict)


@pytest.mark.parametrize(
    "intent", ["order", "original-order", "reflex-order", "filler-order", "instance-order", None]
)
def test_an_order_counts_by_its_status(intent):
    """Every order intent (and a request without one) is current when active, as before intent was read."""
    assert [True] == [m.current for m in read(request(intent)).medications or ()]


@pytest.mark.parametrize("intent", ["proposal", "plan", "option"])
def test_a_proposed_or_planned_drug_is_listed_but_not_current(intent, kb):
    """An active proposal, plan or option of omeprazole is not a current PPI: no drug.ppi, MDS PPI point 0."""
    facts = read(request(intent))
    assert [(("omeprazole",), False)] == [(m.drugs, m.current) for m in facts.medications or ()]
    result = assess(facts, kb)
    assert "drug.ppi" not in [f.id for f in result.findings]
    assert 0 == result.mds.components["ppi"]


def test_proposed_iv_magnesium_is_not_magnesium_therapy(kb):
    """IV magnesium sulfate only proposed, with a low serum value: not read as magnesium given as treatment."""
    bundle = (
        cases.Case("proposed-mg")
        .mg(0.55, when="2024-06-01T08:00:00Z")
        .drug(cases.MG_IV, route=cases.IV)
        .bundle()
    )
    ordered = assess(facts_from_fhir(bundle, kb, as_of=AS_OF), kb)
    [order] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"]
    order["intent"] = "proposal"
    proposed = assess(facts_from_fhir(bundle, kb, as_of=AS_OF), kb)
    assert "drug.magnesium_therapy" in [f.id for f in ordered.findings]
    assert "drug.magnesium_therapy" not in [f.id for f in proposed.findings]


def test_an_unknown_intent_is_refused_naming_field_value_and_the_allowed_intents():
    """intent 'suggestion' is refused, naming intent, the value and the sorted intents; lenient paths leave it out."""
    with pytest.raises(InvalidInputError) as err:
        read(request("suggestion"))
    message = str(err.value)
    assert "intent" in message and "suggestion" in message
    expected = "filler-order, instance-order, option, order, original-order, plan, proposal, reflex-order"
    assert expected in message
    lenient = read(request("suggestion"), strict=False)
    assert not [m for m in lenient.medications or () if m.current]
    assert any("MedicationRequest/r1" in note for note in lenient.excluded)


def test_a_proposed_draft_order_is_read_as_the_order_it_becomes(kb):
    """order-select with a draft PPI whose intent is proposal: the hook still reads it as a current order."""
    draft = request("proposal", text="pantoprazole 40 mg tablet", code="40790", status="draft")
    drafts = draft_orders(
        kb, {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]}, None
    )
    [drug] = draft_drugs(kb, drafts, AS_OF)
    assert ("pantoprazole",) == drug.drugs
    facts = facts_from_fhir(patient_bundle({}, drafts.resources).bundle, kb, as_of=AS_OF, strict=False)
    assert [True] == [m.current for m in facts.medications or ()]
