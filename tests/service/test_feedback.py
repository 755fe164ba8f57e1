"""Card feedback stored in a real database: SQLite always, PostgreSQL when MAGSTAT_TEST_POSTGRES_URL is set.

CI sets ``MAGSTAT_TEST_POSTGRES_URL`` after starting a PostgreSQL server (see the report of the
service work for the ``.ci/run`` steps); without it the PostgreSQL cases are skipped with that
reason.
"""

from __future__ import annotations

import os
import uuid

import pytest

from magstat.service.feedback import FeedbackStore
from tests.service.conftest import live, post

PG_URL = os.environ.get("MAGSTAT_TEST_POSTGRES_URL")
PV = "/cds-services/magstat-patient-view"


def _backends(tmp_path_factory=None):
    params = [pytest.param("sqlite", id="sqlite")]
    params.append(
        pytest.param(
            "postgresql",
            id="postgresql",
            marks=pytest.mark.skipif(
                not PG_URL, reason="MAGSTAT_TEST_POSTGRES_URL is not set (CI starts PostgreSQL and sets it)"
            ),
        )
    )
    return params


@pytest.fixture(params=_backends())
def database_url(request, tmp_path):
    """A fresh database of each kind: a SQLite file, or a PostgreSQL schema-free table reset."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
        return
    store = FeedbackStore(PG_URL)
    store.initialise()
    store._run([("DELETE FROM magstat_cds_feedback", ())])
    store.close()
    yield PG_URL


def test_feedback_is_stored(make_settings, signer, database_url):
    """Accepted and overridden feedback is stored with the suggestion ids, reason, comment and caller."""
    card_a, card_b, suggestion = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "feedback": [
            {
                "card": card_a,
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": suggestion}],
                "outcomeTimestamp": "2021-06-01T10:00:00Z",
            },
            {
                "card": card_b,
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "system": "urn:magstat:cds:override-reason",
                        "code": "recent-result",
                        "display": "Measured",
                    },
                    "userComment": "Measured last week at another lab.",
                },
                "outcomeTimestamp": "2021-06-01T11:30:00+02:00",
            },
        ]
    }
    with live(make_settings(database=database_url)) as server:
        url = server.url(PV + "/feedback")
        response = post(server, PV + "/feedback", body, signer.token(url))
        assert 200 == response.status_code
        assert {"stored": 2} == response.json()
        rows = server.app.state.feedback.rows("magstat-patient-view")
    assert [card_a, card_b] == [r["card_uuid"] for r in rows]
    assert [suggestion] == rows[0]["accepted_suggestions"]
    assert ("recent-result", "Measured last week at another lab.") == (
        rows[1]["override_code"],
        rows[1]["user_comment"],
    )
    assert "2021-06-01T09:30:00.000+00:00" == rows[1]["outcome_timestamp"]
    assert ("https://ehr.example.org", "tenant-1") == (rows[0]["issuer"], rows[0]["tenant"])


def test_feedback_survives_a_restart(make_settings, database_url):
    """Feedback stored by one server process is there for the next (a real database, not memory)."""
    body = {"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2021-06-01T10:00:00Z"}]}
    with live(make_settings(demo=True, database=database_url)) as server:
        assert 200 == post(server, PV + "/feedback", body).status_code
    store = FeedbackStore(database_url)
    assert ["c1"] == [r["card_uuid"] for r in store.rows()]
    store.close()


@pytest.mark.parametrize(
    "item",
    [
        {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2021-06-01T10:00:00Z"},
        {"card": "c", "outcome": "maybe", "outcomeTimestamp": "2021-06-01T10:00:00Z"},
        {"card": "c", "outcome": "overridden"},
        {"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"},
        {"outcome": "overridden", "outcomeTimestamp": "2021-06-01T10:00:00Z"},
    ],
)
def test_invalid_feedback_is_422(demo_server, item):
    """Feedback that breaks the specification is refused with 422 and nothing is stored."""
    response = post(demo_server, PV + "/feedback", {"feedback": [item]})
    assert 422 == response.status_code
    assert [] == demo_server.app.state.feedback.rows()


def test_feedback_for_unknown_service_is_404(demo_server):
    """Feedback to a service that does not exist is 404."""
    body = {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "2021-06-01T10:00:00Z"}]}
    assert 404 == post(demo_server, "/cds-services/nope/feedback", body).status_code


def test_database_down_is_503_and_hooks_still_work(make_settings):
    """With the database unreachable, feedback answers 503 and the health check says degraded."""
    settings = make_settings(demo=True, database="postgresql://nobody@127.0.0.1:1/none")
    with live(settings) as server:
        body = {
            "feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "2021-06-01T10:00:00Z"}]
        }
        response = post(server, PV + "/feedback", body)
        assert 503 == response.status_code
        assert "OperationOutcome" == response.json()["resourceType"]
        import httpx  # noqa: PLC0415

        health = httpx.get(server.url("/healthz")).json()
        assert ("degraded", "unavailable") == (health["status"], health["database"]["state"])
