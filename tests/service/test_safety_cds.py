"""The safety rules through the CDS Hooks service: patient-view with prefetch, order-select."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from magstat.adapters.cds_hooks.request import prefetch_templates
from magstat.adapters.fhir import facts_from_fhir
from magstat.core import assess
from tests import safety_cases as cases
from tests.batch.test_allergies import allergy
from tests.batch.test_allergies import bundle as allergy_bundle
from tests.service.conftest import Live, hook_request, live, post
from tests.service.ehr import Record, prefetch_for

PV = "/cds-services/magstat-patient-view"
SELECT = "/cds-services/magstat-order-select"
SIGN = "/cds-services/magstat-order-sign"


def clock() -> dt.datetime:
    """The service clock for the constructed cases (their as-of date, midday UTC)."""
    return dt.datetime(cases.AS_OF.year, cases.AS_OF.month, cases.AS_OF.day, 12, tzinfo=dt.UTC)


@pytest.fixture
def server(make_settings) -> Iterator[Live]:
    """A demo-mode service whose clock is the cases' as-of date."""
    with live(make_settings(demo=True), clock=clock) as running:
        yield running


def patient_view(server: Live, kb, bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """POST patient-view with the prefetch an EHR would send for the record; the cards."""
    record = Record(bundle)
    body = hook_request("patient-view", record.patient_id)
    body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
    response = post(server, PV, body)
    assert 200 == response.status_code, response.text
    return response.json()["cards"]


def test_qt_risk_reaches_the_card(server, kb):
    """Methadone, citalopram, low-normal Mg and low K: the card asks for an ECG and carries the QT note."""
    cards = patient_view(server, kb, cases.qt_low_k())
    assert 1 <= len(cards)
    detail = cards[0]["detail"]
    assert "ECG" in detail
    assert "torsades de pointes" in detail
    assert "methadone" in detail


def test_an_infant_card_quotes_no_adult_dose(server, kb):
    """A 4-month-old with Mg 0.35 mmol/L: a card for IV treatment that quotes no adult label dose."""
    cards = patient_view(server, kb, cases.infant_severe())
    details = " ".join(c["detail"] for c in cards)
    assert "intravenous treatment" in details
    assert "paediatric" in details
    assert "5 g in 1 L" not in details


def test_therapeutic_mgso4_gets_a_monitoring_card_not_stop(server, kb):
    """IV MgSO4 for pre-eclampsia, Mg 1.9 mmol/L: a safety card with monitoring and antidote, no 'stop'."""
    cards = patient_view(server, kb, cases.mg_therapy(1.9))
    assert ["safety"] == [c["source"]["topic"]["code"] for c in cards]
    detail = cards[0]["detail"]
    assert "calcium gluconate" in detail
    assert "patellar reflex" in detail
    assert "Stop magnesium-containing products" not in detail
    assert "warning" == cards[0]["indicator"]


def test_mgso4_above_range_is_critical(server, kb):
    """IV MgSO4 with Mg 3.0 mmol/L: a critical status card with the stop advice."""
    cards = patient_view(server, kb, cases.mg_therapy(3.0))
    assert "critical" == cards[0]["indicator"]
    assert "Stop magnesium-containing products" in cards[0]["detail"]


def test_digoxin_without_mg_gets_a_card(server, kb):
    """A digoxin user with no Mg result gets a safety card naming digoxin toxicity."""
    cards = patient_view(server, kb, cases.digoxin_no_mg())
    assert cards
    assert "digoxin toxicity" in cards[0]["detail"]


def test_refractory_hypokalaemia_card_is_critical_with_iv(server, kb):
    """Mg 0.52 with refractory hypokalaemia: critical card, IV advice and 'correct magnesium first'."""
    cards = patient_view(server, kb, cases.refractory())
    assert "critical" == cards[0]["indicator"]
    assert "Correct magnesium (and potassium) first" in cards[0]["detail"]
    assert "intravenous" in cards[0]["detail"]


def order_call(server: Live, kb, hook: str, record: Record, text: str, *, authored: str, **extra: Any) -> Any:
    """Call order-select (the draft selected) or order-sign with one draft MedicationRequest ``d1``."""
    draft = {
        "resourceType": "MedicationRequest",
        "id": "d1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{record.patient_id}"},
        "authoredOn": authored,
        "medicationCodeableConcept": {"text": text},
        **extra,
    }
    body = hook_request(
        hook,
        record.patient_id,
        context={
            **({"selections": ["MedicationRequest/d1"]} if hook == "order-select" else {}),
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]},
        },
    )
    body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
    return post(server, SELECT if hook == "order-select" else SIGN, body)


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_order_select_iv_mgso4_with_poor_kidney_function(server, kb, hook):
    """order-select or order-sign of IV MgSO4 for pre-eclampsia with eGFR about 25: the IV renal limit, not the oral one."""
    bundle = cases.Case("os-mgso4", birth="1990-01-01").condition("Pre-eclampsia").creatinine(2.4).bundle()
    response = order_call(
        server,
        kb,
        hook,
        Record(bundle),
        "magnesium sulfate 50 MG/ML Injectable Solution",
        authored="2024-06-01T08:00:00Z",
        dosageInstruction=[{"route": {"coding": [{"system": cases.SNOMED, "code": cases.IV[0]}]}}],
        reasonCode=[{"text": "Severe pre-eclampsia"}],
    )
    assert 200 == response.status_code, response.text
    cards = response.json()["cards"]
    assert ["magnesium-product-kidney"] == [c["source"]["topic"]["code"] for c in cards]
    assert "20 g in 48 hours" in cards[0]["detail"]
    assert "oral magnesium aspartate contraindicates" not in cards[0]["detail"]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
@pytest.mark.parametrize("when", ["2024-05-30T08:00:00Z", "2024-06-01T07:00:00Z"])
def test_ordering_iv_magnesium_for_a_patient_already_in_excess_is_critical(server, kb, hook, when):
    """A high serum Mg taken before the order (days before, or this morning) is excess, not a
    therapeutic level of the magnesium being ordered: the product card is critical and says so."""
    bundle = cases.Case(f"os-high-{hook}-{when[8:10]}", birth="1990-01-01").mg(1.6, when).bundle()
    response = order_call(
        server,
        kb,
        hook,
        Record(bundle),
        "magnesium sulfate 4 g IV over 4 hours",
        authored="2024-06-01T08:00:00Z",
        dosageInstruction=[{"route": {"coding": [{"system": cases.SNOMED, "code": cases.IV[0]}]}}],
    )
    assert 200 == response.status_code, response.text
    (card,) = [
        c for c in response.json()["cards"] if c["source"]["topic"]["code"] == "magnesium-product-kidney"
    ]
    assert "critical" == card["indicator"]
    assert "while serum magnesium is above the upper" in card["summary"]
    assert "Serum magnesium 1.60 mmol/L (above lab range" in card["detail"]
    assert "therapeutic range" not in card["detail"]


def test_low_magnesium_on_oral_magnesium_card_asks_what_to_check_before_more(server, kb):
    """Low Mg while magnesium oxide is taken: the card names the product and the checks, with the PPI."""
    cards = patient_view(server, kb, cases.low_on_oral_magnesium())
    details = " ".join(c["detail"] for c in cards)
    assert "already taken by mouth" in details
    assert "magnesium oxide 400 MG Oral Tablet" in details
    assert "proton-pump inhibitor" in details


def test_a_magnesium_allergy_reaches_the_card(server, kb):
    """An allergy to magnesium sulfate, prefetched under 'allergies', is named on the card of a severe deficit."""
    cards = patient_view(server, kb, allergy_bundle(allergy()))
    details = " ".join(c["detail"] for c in cards)
    assert "allergy or intolerance to a magnesium product" in details
    assert "Anaphylaxis" in details


def test_ordering_magnesium_for_a_patient_with_a_magnesium_allergy_gets_a_card(server, kb):
    """order-select of IV magnesium sulfate with 'Magnesium sulfate: anaphylaxis' recorded: a critical card leads with it."""
    record = Record(allergy_bundle(allergy()))
    text = "Magnesium Sulfate 500 MG/ML Injectable Solution"
    response = order_call(server, kb, "order-select", record, text, authored="2024-05-02T08:00:00Z")
    assert 200 == response.status_code, response.text
    card = next(
        c for c in response.json()["cards"] if c["source"]["topic"]["code"] == "magnesium-product-kidney"
    )
    assert "critical" == card["indicator"]
    assert "recorded magnesium allergy" in card["summary"]
    assert "Anaphylaxis" in card["detail"]
    assert any(a["type"] == "delete" for s in card["suggestions"] for a in s["actions"])


def test_iv_magnesium_given_reaches_the_service_assessment_as_the_cli_reads_it(server, kb):
    """IV magnesium prefetched under 'medicationAdministrations': the service's assessment equals the bundle's."""
    bundle = cases.iv_magnesium_given().bundle()
    cards = patient_view(server, kb, bundle)
    details = " ".join(c["detail"] for c in cards)
    assert "given as treatment" in details
    token = cards[0]["links"][0]["url"].rsplit("/", 1)[1]
    kept = server.app.state.reports.get(token)
    assert kept is not None
    expected = assess(facts_from_fhir(bundle, kb, as_of=cases.AS_OF), kb).to_dict()
    assert expected == kept.to_dict()


def test_an_ehr_without_the_administrations_key_gets_no_unread_note(server, kb):
    """The optional key left out with no FHIR server: no 'not read' note and no unread card, as before it existed."""
    record = Record(cases.Case("no-admin").mg(0.9).bundle())
    body = hook_request("patient-view", record.patient_id)
    prefetch = prefetch_for(prefetch_templates(kb), body["context"], record)
    del prefetch["medicationAdministrations"]
    body["prefetch"] = prefetch
    response = post(server, PV, body)
    assert 200 == response.status_code, response.text
    cards = response.json()["cards"]
    assert "medicationAdministrations" not in json.dumps(cards)
    assert all(c["source"]["topic"]["code"] != "data-not-read" for c in cards)
    # A required key left out the same way is still reported.
    del body["prefetch"]["allergies"]
    cards = post(server, PV, body).json()["cards"]
    assert "allergies" in json.dumps(cards)
