"""Cards clinicians keep reading: overrides, accepted orders and repeats across hooks hold cards back.

Every test runs a live service with its own SQLite database and a clock it moves by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from magstat.adapters.cds_hooks.cards import OVERRIDE_SYSTEM, SUGGESTION_ORDER_SERUM_MG
from magstat.service import Settings
from magstat.service.feedback import FeedbackStore
from tests.service.conftest import AS_OF, Live, live, post

PV = "/cds-services/magstat-patient-view"
SELECT = "/cds-services/magstat-order-select"
SIGN = "/cds-services/magstat-order-sign"
PATIENT = "p-suppression-7"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


class Clock:
    """A service clock that tests move forward (published to worker processes through ``file`` when set)."""

    def __init__(self) -> None:
        self.now = AS_OF
        self.file: Path | None = None

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move the clock forward."""
        self.now += dt.timedelta(**delta)
        if self.file is not None:
            self.file.write_text(self.now.isoformat(), encoding="utf-8")


PG_URL = os.environ.get("MAGSTAT_TEST_POSTGRES_URL")


@contextmanager
def service(
    make_settings: Callable[..., Settings], database: str | None = None, **cds: Any
) -> Iterator[tuple[Live, Clock]]:
    """A demo-mode service with a hand-moved clock."""
    clock = Clock()
    with live(make_settings(demo=True, database=database, **cds), clock=clock) as server:
        yield server, clock


def medication(rid: str, text: str, rxnorm: str, status: str = "active") -> dict[str, Any]:
    """A MedicationRequest of the patient."""
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": "2021-01-10",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": rxnorm, "display": text}],
            "text": text,
        },
    }


OMEPRAZOLE = medication("m-ome", "omeprazole 20 mg capsule", "7646")
FUROSEMIDE = medication("m-furo", "furosemide 40 mg tablet", "4603")


def serum_mg(rid: str, value_mg_dl: float, when: str) -> dict[str, Any]:
    """A serum magnesium result in mg/dL."""
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when,
        "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
        "valueQuantity": {
            "value": value_mg_dl,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    }


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    """A searchset Bundle."""
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def prefetch(meds: tuple[dict[str, Any], ...] = (OMEPRAZOLE,), labs: tuple[dict[str, Any], ...] = ()) -> dict:
    """The prefetch an EHR sends for the patient."""
    return {
        "patient": {"resourceType": "Patient", "id": PATIENT, "gender": "female", "birthDate": "1950-03-01"},
        "observations": searchset(*labs),
        "conditions": searchset(),
        "medicationRequests": searchset(*meds),
        "medicationStatements": searchset(),
    }


def call(server: Live, path: str, hook: str, pre: dict[str, Any], **context: Any) -> list[dict[str, Any]]:
    """Call a service as a new hook instance and return its cards."""
    body = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": PATIENT, **context},
        "prefetch": pre,
    }
    response = post(server, path, body)
    assert 200 == response.status_code, response.text
    return list(response.json()["cards"])


def draft_orders(*orders: dict[str, Any]) -> dict[str, Any]:
    """A draftOrders Bundle of draft versions of the given orders."""
    drafts = [{**o, "id": "draft-" + o["id"], "status": "draft"} for o in orders]
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in drafts]}


def feedback(server: Live, path: str, item: dict[str, Any], clock: Clock) -> None:
    """Send one feedback item; it must be stored."""
    item = {"outcomeTimestamp": clock.now.isoformat(), **item}
    response = post(server, path + "/feedback", {"feedback": [item]})
    assert 200 == response.status_code, response.text


def override(server: Live, path: str, card: dict[str, Any], code: str, clock: Clock) -> None:
    """Override a card with one reason."""
    reason = {"system": OVERRIDE_SYSTEM, "code": code, "display": code}
    feedback(
        server,
        path,
        {"card": card["uuid"], "outcome": "overridden", "overrideReason": {"reason": reason}},
        clock,
    )


def test_override_with_a_reason_holds_the_card_back_until_worse(make_settings):
    """Overridden with its own reason: the same call gives no card; a new lowering drug or a low result brings it back."""
    with service(make_settings) as (server, clock):
        cards = call(server, PV, "patient-view", prefetch())
        assert ["status"] == [c["source"]["topic"]["code"] for c in cards]
        card = cards[0]
        assert "already-monitored" in [r["code"] for r in card["overrideReasons"]]
        override(server, PV, card, "already-monitored", clock)
        clock.advance(hours=2)
        assert [] == call(server, PV, "patient-view", prefetch())
        # a new drug of a class that lowers magnesium: worse, the card is back
        again = call(server, PV, "patient-view", prefetch(meds=(OMEPRAZOLE, FUROSEMIDE)))
        assert ["status"] == [c["source"]["topic"]["code"] for c in again]
        # a new low result: worse, the card is back
        low = call(server, PV, "patient-view", prefetch(labs=(serum_mg("mg-low", 1.5, "2021-06-01"),)))
        assert "status" in [c["source"]["topic"]["code"] for c in low]


def test_override_lasts_the_configured_period(make_settings):
    """After cds.override_suppression_days the overridden card shows again."""
    with service(make_settings, override_suppression_days=10, repeat_window_hours=0) as (server, clock):
        card = call(server, PV, "patient-view", prefetch())[0]
        override(server, PV, card, "not-applicable", clock)
        clock.advance(days=9)
        assert [] == call(server, PV, "patient-view", prefetch())
        clock.advance(days=2)
        assert [card["source"]["topic"]] == [
            c["source"]["topic"] for c in call(server, PV, "patient-view", prefetch())
        ]


def test_override_without_one_of_the_cards_reasons_changes_nothing(make_settings):
    """An override with no reason, or a reason the card did not offer, does not hold the card back."""
    with service(make_settings) as (server, clock):
        card = call(server, PV, "patient-view", prefetch())[0]
        feedback(server, PV, {"card": card["uuid"], "outcome": "overridden"}, clock)
        override(server, PV, card, "benefit-outweighs-risk", clock)  # offered by other cards only
        assert 1 == len(call(server, PV, "patient-view", prefetch()))


def test_override_is_per_patient(make_settings):
    """An override for one patient does not hold back the same card for another patient."""
    with service(make_settings) as (server, clock):
        card = call(server, PV, "patient-view", prefetch())[0]
        override(server, PV, card, "already-monitored", clock)
        other = json.loads(json.dumps(prefetch()).replace(PATIENT, "someone-else"))
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/example", "patientId": "someone-else"},
            "prefetch": other,
        }
        assert 1 == len(post(server, PV, body).json()["cards"])


def test_accepted_order_holds_back_the_no_recent_magnesium_card_until_due(make_settings):
    """An accepted serum Mg order: no "no recent Mg" card on any hook until the result is due."""
    with service(make_settings, order_result_due_days=3, repeat_window_hours=0) as (server, clock):
        card = call(server, PV, "patient-view", prefetch())[0]
        assert SUGGESTION_ORDER_SERUM_MG in [s["uuid"] for s in card["suggestions"]]
        accepted = {
            "card": card["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": SUGGESTION_ORDER_SERUM_MG}],
        }
        feedback(server, PV, accepted, clock)
        clock.advance(days=1)
        assert [] == call(server, PV, "patient-view", prefetch())
        assert [] == call(server, SELECT, "order-select", prefetch(), draftOrders=draft_orders(OMEPRAZOLE))
        clock.advance(days=2, hours=1)
        assert 1 == len(call(server, PV, "patient-view", prefetch()))


def test_one_card_per_concern_across_hooks(make_settings):
    """patient-view and order-select for the same PPI say it once; a new drug or the end of the window says it again."""
    with service(make_settings, repeat_window_hours=24) as (server, clock):
        assert 1 == len(call(server, PV, "patient-view", prefetch()))
        clock.advance(minutes=5)
        assert [] == call(server, SELECT, "order-select", prefetch(), draftOrders=draft_orders(OMEPRAZOLE))
        # the chart-open card itself is not held back by its own earlier showing
        assert 1 == len(call(server, PV, "patient-view", prefetch()))
        # another drug that lowers magnesium is news
        cards = call(server, SELECT, "order-select", prefetch(), draftOrders=draft_orders(FUROSEMIDE))
        assert ["drug-lowers-magnesium"] == [c["source"]["topic"]["code"] for c in cards]
        clock.advance(hours=25)
        cards = call(server, SIGN, "order-sign", prefetch(), draftOrders=draft_orders(OMEPRAZOLE))
        assert ["drug-lowers-magnesium"] == [c["source"]["topic"]["code"] for c in cards]


def test_a_chart_opened_again_and_again_keeps_one_rule_per_concern(make_settings, tmp_path: Path):
    """The same card shown many times in the same state leaves one "shown" rule, and still holds back the other hook."""
    with service(make_settings, repeat_window_hours=24) as (server, clock):
        for _ in range(5):
            assert 1 == len(call(server, PV, "patient-view", prefetch()))
            clock.advance(minutes=1)
        assert [] == call(server, SELECT, "order-select", prefetch(), draftOrders=draft_orders(OMEPRAZOLE))
        conn = sqlite3.connect(tmp_path / "feedback.sqlite3")
        try:
            rules = conn.execute(
                "SELECT service_id, until FROM magstat_cds_suppression WHERE cause = 'shown'"
            ).fetchall()
        finally:
            conn.close()
        assert [
            (
                "magstat-patient-view",
                (AS_OF + dt.timedelta(minutes=4, hours=24)).isoformat(timespec="milliseconds"),
            )
        ] == rules


def test_critical_cards_are_never_held_back(make_settings):
    """A critical card (severe deficit) is shown again even after an override."""
    with service(make_settings) as (server, clock):
        pre = prefetch(labs=(serum_mg("mg-severe", 0.7, "2021-05-31"),))
        cards = call(server, PV, "patient-view", pre)
        critical = [c for c in cards if c["indicator"] == "critical"]
        assert critical
        override(server, PV, critical[0], critical[0]["overrideReasons"][0]["code"], clock)
        assert critical[0]["source"]["topic"] in [
            c["source"]["topic"] for c in call(server, PV, "patient-view", pre)
        ]


def test_info_cards_can_be_switched_off(make_settings):
    """With cds.show_info_cards false, the info card is not shown and a warning still is."""
    with service(make_settings, show_info_cards=False, repeat_window_hours=0) as (server, _clock):
        info = call(server, PV, "patient-view", prefetch())
        assert [] == info
        low = call(server, PV, "patient-view", prefetch(labs=(serum_mg("mg-low", 1.5, "2021-05-31"),)))
        assert low
        assert {"warning"} == {c["indicator"] for c in low}
    with service(make_settings) as (server, _clock):
        assert ["info"] == [c["indicator"] for c in call(server, PV, "patient-view", prefetch())]


def test_no_patient_id_or_drug_is_stored_in_the_clear(make_settings, tmp_path: Path):
    """The card memory holds keyed hashes, never the patient id, a drug name or a result."""
    with service(make_settings) as (server, clock):
        card = call(server, PV, "patient-view", prefetch(meds=(OMEPRAZOLE, FUROSEMIDE)))[0]
        override(server, PV, card, "already-monitored", clock)
    conn = sqlite3.connect(tmp_path / "feedback.sqlite3")
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert "magstat_cds_suppression" in dump
    for secret in (PATIENT, "omeprazole", "furosemide", "serum-mg"):
        assert secret not in dump


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(
                not PG_URL, reason="MAGSTAT_TEST_POSTGRES_URL is not set (CI starts PostgreSQL and sets it)"
            ),
        ),
    ],
)
def test_override_holds_back_on_each_database(make_settings, tmp_path: Path, backend: str):
    """The override rule works the same on SQLite and PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'own.sqlite3'}"
    if backend == "postgresql":
        assert PG_URL
        url = PG_URL
        store = FeedbackStore(url)
        store.execute(
            [(f"DROP TABLE IF EXISTS {t}", ()) for t in ("magstat_cds_card", "magstat_cds_suppression")]
        )
        store.close()
    with service(make_settings, database=url) as (server, clock):
        card = call(server, PV, "patient-view", prefetch())[0]
        override(server, PV, card, "already-monitored", clock)
        assert [] == call(server, PV, "patient-view", prefetch())
        assert 1 == len(call(server, PV, "patient-view", prefetch(meds=(OMEPRAZOLE, FUROSEMIDE))))


def test_cards_are_shown_when_the_card_memory_is_down(make_settings):
    """With the database unreachable every warranted card is shown (a repeat is safer than a gap)."""
    with service(make_settings, database="postgresql://magstat@127.0.0.1:9/none") as (server, _clock):
        assert ["status"] == [
            c["source"]["topic"]["code"] for c in call(server, PV, "patient-view", prefetch())
        ]
        assert 1 == len(call(server, PV, "patient-view", prefetch()))
