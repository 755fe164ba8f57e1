"""The context rules through CDS Hooks ``patient-view`` with the prefetch an EHR would send."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from magstat.adapters.cds_hooks.request import prefetch_templates
from magstat.core import assess
from magstat.kb import load
from magstat.service import Settings
from tests import context_cases as cases
from tests.service.conftest import Live, hook_request, live, post
from tests.service.ehr import Record, prefetch_for

SERVICE = "/cds-services/magstat-patient-view"


def clock() -> dt.datetime:
    """The service clock of these tests: the as-of date of the constructed cases."""
    return dt.datetime.combine(cases.AS_OF, dt.time(12), tzinfo=dt.UTC)


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[Live]:
    """A live demo service whose clock reads the cases' as-of date."""
    with live(make_settings(demo=True), clock=clock) as running:
        yield running


def call(server: Live, bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Send patient-view with the prefetch of the service's own templates; return the cards."""
    record = Record(bundle)
    body = hook_request("patient-view", record.patient_id)
    body["prefetch"] = prefetch_for(prefetch_templates(load()), body["context"], record)
    response = post(server, SERVICE, body)
    assert 200 == response.status_code, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards


def text_of(cards: list[dict[str, Any]]) -> str:
    """All the words of the cards, for looking up what they say."""
    return " ".join(f"{c['summary']} {c.get('detail', '')}" for c in cards)


def test_denial_gives_no_urgent_card(server):
    """'Patient denies tetany, seizures or muscle cramps': no critical card, no tetany named as a sign."""
    cards = call(server, cases.denial())
    assert cards
    assert [] == [c for c in cards if c["indicator"] == "critical"]
    reported = call(server, cases.denial("reports"))
    assert "critical" in {c["indicator"] for c in reported}  # the same entry, affirmed, is urgent


def test_epilepsy_card_has_no_iv_advice(server):
    """Epilepsy since birth with Mg 0.68: the card does not call for intravenous magnesium."""
    words = text_of(call(server, cases.epilepsy_from_birth())).lower()
    assert "intravenous" not in words
    acute = text_of(call(server, cases.epilepsy_from_birth(acute_seizure=True))).lower()
    assert "intravenous" in acute


def test_deceased_patient_gets_no_card(server):
    """A patient who died before the visit date gets no card (no advice); one who dies later does."""
    assert [] == call(server, cases.deceased(deceasedDateTime="2023-01-10"))
    assert [] == call(server, cases.deceased(deceasedBoolean=True))
    later = call(server, cases.deceased(deceasedDateTime="2025-01-10"))
    assert later
    assert "magnesium" in text_of(later).lower()


def test_service_gives_what_assess_gives(server):
    """For each constructed case, the service's status is the core's on the same bundle."""
    from magstat.adapters.fhir import facts_from_fhir  # noqa: PLC0415

    kb = load()
    for bundle in (cases.denial(), cases.epilepsy_from_birth(), cases.diabetes_for_twenty_years(5.9)):
        core = assess(facts_from_fhir(bundle, kb, as_of=cases.AS_OF), kb)
        cards = call(server, bundle)
        assert core.summary in text_of(cards) or core.status.replace("_", " ") in text_of(cards).lower()
