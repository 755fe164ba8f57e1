"""CDS Hooks 2.0, service side: one test per group of requirements of the traced matrix.

The requirement ids are those of ``tests/data/standards/cds-hooks-2.0-service-requirements.csv``;
``tests/data/standards/cds-hooks-2.0-trace.toml`` maps each id to the tests here (or elsewhere)
that prove it. Every test runs against a live server over HTTP, with data made in the test.
"""

from __future__ import annotations

import json
import re
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest

from magstat.adapters.cds_hooks.request import prefetch_templates
from magstat.kb import load
from magstat.service import load_settings
from magstat.service.settings import ASYMMETRIC_ALGORITHMS, ConfigError
from tests.service.conftest import Live, live, post
from tests.service.ehr import Record, Signer, fhir_server

PV = "/cds-services/magstat-patient-view"
SELECT = "/cds-services/magstat-order-select"
SIGN = "/cds-services/magstat-order-sign"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
HOOK_CONTEXT = {
    # CDS Hooks 2.0 hook definitions: the root-level context fields of each hook
    "patient-view": {"userId": "string", "patientId": "string", "encounterId": "string"},
    "order-select": {
        "userId": "string",
        "patientId": "string",
        "encounterId": "string",
        "selections": "array",
        "draftOrders": "object",
    },
    "order-sign": {
        "userId": "string",
        "patientId": "string",
        "encounterId": "string",
        "draftOrders": "object",
    },
}
USER_TOKENS = {"userPractitionerId", "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"}


# --------------------------------------------------------------------------------------------
# Data made here: a few patients that give every kind of card


def _patient(pid: str, gender: str = "female", born: str = "1950-03-01") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": born}


def _obs(pid: str, rid: str, loinc: str, value: float, unit: str, when: str = "2021-05-30") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def _med(pid: str, rid: str, text: str, rxnorm: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": "2021-01-10",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": rxnorm, "display": text}],
            "text": text,
        },
    }


def _bundle(*resources: dict[str, Any], kind: str = "searchset") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}


def _prefetch(pid: str, obs: tuple = (), meds: tuple = (), **patient: str) -> dict[str, Any]:
    return {
        "patient": _patient(pid, **patient),
        "observations": _bundle(*obs),
        "conditions": _bundle(),
        "medicationRequests": _bundle(*meds),
        "medicationStatements": _bundle(),
        "allergies": _bundle(),
    }


def _call(hook: str, pid: str, prefetch: dict[str, Any] | None = None, **context: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/example", "patientId": pid, **context},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def scenarios() -> dict[str, tuple[str, dict[str, Any]]]:
    """Hook calls that between them give every kind of magstat card (path, body)."""
    ppi = _med("c1", "m1", "omeprazole 20 mg capsule", "7646")
    furosemide = _med("c2", "m2", "furosemide 40 mg tablet", "4603")
    draft_ppi = {**_med("c4", "d1", "omeprazole 20 mg capsule", "7646", "draft")}
    draft_mg = {**_med("c5", "d2", "Magnesium oxide 400 MG Oral Tablet", "6582", "draft")}
    mg_urine = (
        _obs("c3", "mg", "19123-9", 1.2, "mg/dL"),
        _obs("c3", "umg", "19124-7", 6.0, "mg/dL"),
        _obs("c3", "ucr", "2161-8", 100.0, "mg/dL"),
        _obs("c3", "scr", "2160-0", 0.9, "mg/dL"),
    )
    return {
        "at risk, no recent magnesium": (
            "patient-view",
            _call("patient-view", "c1", _prefetch("c1", meds=(ppi,))),
        ),
        "severe deficit on a diuretic": (
            "patient-view",
            _call(
                "patient-view",
                "c2",
                _prefetch("c2", obs=(_obs("c2", "mg", "19123-9", 0.7, "mg/dL"),), meds=(furosemide,)),
            ),
        ),
        "renal wasting": ("patient-view", _call("patient-view", "c3", _prefetch("c3", obs=mg_urine))),
        "excess": (
            "patient-view",
            _call("patient-view", "c6", _prefetch("c6", obs=(_obs("c6", "mg", "19123-9", 4.8, "mg/dL"),))),
        ),
        "no guidance": (
            "patient-view",
            _call("patient-view", "c7", _prefetch("c7", obs=(_obs("c7", "mg", "19123-9", 2.2, "mg/dL"),))),
        ),
        "part of the record not read": (
            "patient-view",
            _call("patient-view", "c8", {"patient": _patient("c8"), "observations": _bundle()}),
        ),
        "order-select PPI": (
            "order-select",
            _call(
                "order-select",
                "c4",
                _prefetch("c4"),
                draftOrders=_bundle(draft_ppi, kind="collection"),
                selections=["MedicationRequest/d1"],
                encounterId="e1",
            ),
        ),
        "order-sign magnesium with kidney failure": (
            "order-sign",
            _call(
                "order-sign",
                "c5",
                _prefetch("c5", obs=(_obs("c5", "egfr", "62238-1", 22, "mL/min/{1.73_m2}"),), gender="male"),
                draftOrders=_bundle(draft_mg, kind="collection"),
            ),
        ),
    }


_PATHS = {"patient-view": PV, "order-select": SELECT, "order-sign": SIGN}


@pytest.fixture(scope="module")
def workers() -> int:
    """Worker processes of this module's services (1: in the test process; see test_conformance_cds_workers.py)."""
    return 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, workers: int) -> Iterator[Live]:
    """A demo-mode service that holds nothing back (each call is answered afresh)."""
    folder = tmp_path_factory.mktemp("conformance")
    settings = load_settings(
        None,
        demo=True,
        cds={"repeat_window_hours": 0, "allow_http_fhir_server": True},
        database={"url": f"sqlite:///{folder / 'fb.sqlite3'}"},
    )
    with live(settings, workers=workers) as running:
        yield running


@pytest.fixture(scope="module")
def answers(server: Live) -> dict[str, httpx.Response]:
    """The response to each scenario."""
    return {name: post(server, _PATHS[hook], body) for name, (hook, body) in scenarios().items()}


@pytest.fixture(scope="module")
def cards(answers: dict[str, httpx.Response]) -> list[dict[str, Any]]:
    """Every card of every scenario."""
    return [card for response in answers.values() for card in response.json()["cards"]]


def _walk(value: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


def _absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# --------------------------------------------------------------------------------------------
# Discovery


def test_discovery_endpoint_answers_json_with_the_services(server):
    """GET {baseUrl}/cds-services is 200 JSON: an object with a services array (4, 5, 6, 13, 1)."""
    response = httpx.get(server.url("/cds-services"))
    assert 200 == response.status_code
    assert "application/json" == response.headers["content-type"].split(";")[0]
    body = response.json()
    assert ["services"] == list(body)
    assert isinstance(body["services"], list)
    assert body["services"]


def test_each_service_has_the_described_attributes(server):
    """Each service has hook, title, description, id (strings), prefetch (object) and usageRequirements (7-12)."""
    for service in httpx.get(server.url("/cds-services")).json()["services"]:
        for key in ("hook", "title", "description", "id", "usageRequirements"):
            assert isinstance(service[key], str)
            assert service[key].strip()
        assert isinstance(service["prefetch"], dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in service["prefetch"].items())
        assert set(service) <= {"hook", "title", "description", "id", "prefetch", "usageRequirements"}


def test_service_endpoint_is_base_url_and_id(server):
    """Each service answers at {baseUrl}/cds-services/{id} (16, 74)."""
    calls = {body["hook"]: body for _, body in scenarios().values()}
    for service in httpx.get(server.url("/cds-services")).json()["services"]:
        response = post(server, f"/cds-services/{service['id']}", calls[service["hook"]])
        assert 200 == response.status_code
        assert isinstance(response.json()["cards"], list)


# --------------------------------------------------------------------------------------------
# Prefetch


def _tokens(template: str) -> list[str]:
    return re.findall(r"\{\{(.*?)\}\}", template)


def test_prefetch_tokens_are_allowed_context_fields_or_user_ids(server):
    """Every token is {{context.field}} of a root-level primitive of the hook's context, or a user id (55-57, 59)."""
    for service in httpx.get(server.url("/cds-services")).json()["services"]:
        fields = HOOK_CONTEXT[service["hook"]]
        for key, template in service["prefetch"].items():
            assert template.count("{{") == template.count("}}") == len(_tokens(template)), key
            for token in _tokens(template):
                assert token == token.strip()
                if token in USER_TOKENS:
                    continue
                assert token.startswith("context.")
                name = token.removeprefix("context.")
                assert "string" == fields.get(name), f"{key}: {token}"


def test_prefetch_queries_use_the_recommended_subset(server):
    """Queries are instance reads or searches by patient, token equality and _count/_sort only (58)."""
    for service in httpx.get(server.url("/cds-services")).json()["services"]:
        for template in service["prefetch"].values():
            path, _, query = template.partition("?")
            segments = path.split("/")
            if not query:
                assert 2 == len(segments) and segments[1].startswith("{{"), template
                continue
            assert 1 == len(segments)
            for name, value in parse_qsl(query, keep_blank_values=True):
                assert ":" not in name, f"no modifiers: {template}"
                assert name in ("patient", "code", "status", "_count", "_sort"), template
                if name == "patient":
                    assert "{{context.patientId}}" == value
                assert not value.startswith(("ne", "sa", "eb", "ap")) or name != "date"


def test_prefetch_keys_identify_the_values_in_the_request(server, kb):
    """Each prefetch key of discovery is read from the request under that key (36, 28, 29)."""
    templates = httpx.get(server.url("/cds-services")).json()["services"][0]["prefetch"]
    assert prefetch_templates(kb) == templates
    pid = "k1"
    low = _obs(pid, "mg", "19123-9", 1.3, "mg/dL")
    with_obs = post(server, PV, _call("patient-view", pid, _prefetch(pid, obs=(low,)))).json()["cards"]
    renamed = _prefetch(pid)
    renamed["labs"] = _bundle(low)  # not a key of discovery: not read
    without = post(server, PV, _call("patient-view", pid, renamed)).json()["cards"]
    assert "0.53 mmol/L" in with_obs[0]["detail"]
    assert all("0.53 mmol/L" not in c["detail"] for c in without)


def test_prefetch_operation_outcome_is_checked(server):
    """A prefetch value that is an OperationOutcome is not read as data and is noted on the card (52)."""
    pid = "c1"
    prefetch = scenarios()["at risk, no recent magnesium"][1]["prefetch"]
    prefetch = {
        **prefetch,
        "observations": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "timeout"}],
        },
    }
    response = post(server, PV, _call("patient-view", pid, prefetch))
    assert 200 == response.status_code
    assert "the EHR reported an error for this query" in response.json()["cards"][0]["detail"]


def _record(pid: str) -> Record:
    return Record(
        _bundle(
            _patient(pid),
            _med(pid, "m1", "omeprazole 20 mg capsule", "7646"),
            _obs(pid, "mg", "19123-9", 1.3, "mg/dL"),
            kind="collection",
        )
    )


def test_fhir_server_is_read_when_prefetch_is_missing_with_the_access_token(server):
    """Without prefetch the service reads the EHR's FHIR server, sending the access token on every call (34, 60, 61)."""
    with fhir_server([_record("f1")], token="secret-access-token") as fhir:
        body = _call("patient-view", "f1")
        body["fhirServer"] = fhir.base
        body["fhirAuthorization"] = {
            "access_token": "secret-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "magstat",
        }
        response = post(server, PV, body)
    assert 200 == response.status_code
    assert "0.53 mmol/L" in response.json()["cards"][0]["detail"]
    assert fhir.requests
    assert {"Bearer secret-access-token"} == {auth for _, auth in fhir.requests}
    same = _prefetch(
        "f1",
        obs=(_obs("f1", "mg", "19123-9", 1.3, "mg/dL"),),
        meds=(_med("f1", "m1", "omeprazole 20 mg capsule", "7646"),),
    )
    prefetched = post(server, PV, _call("patient-view", "f1", same))
    assert response.json()["cards"][0]["summary"] == prefetched.json()["cards"][0]["summary"]


def test_unreachable_fhir_server_without_prefetch_is_412(server):
    """No prefetch and a FHIR server that cannot be reached: 412 Precondition Failed (54)."""
    with fhir_server([]) as fhir:
        base = fhir.base
    body = _call("patient-view", "u1")
    body["fhirServer"] = base  # stopped: the port refuses connections
    body["fhirAuthorization"] = {
        "access_token": "t",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "magstat",
    }
    response = post(server, PV, body)
    assert 412 == response.status_code
    assert "OperationOutcome" == response.json()["resourceType"]
    nothing = post(server, PV, _call("patient-view", "u2"))
    assert 412 == nothing.status_code


# --------------------------------------------------------------------------------------------
# Responses and cards


def test_success_is_200_with_a_cards_array_and_no_empty_values(answers):
    """Every answer is 200 JSON with a cards array; no value is null or empty except an empty cards array (3, 74, 75)."""
    for name, response in answers.items():
        assert 200 == response.status_code, name
        assert "application/json" == response.headers["content-type"].split(";")[0]
        body = response.json()
        assert set(body) <= {"cards", "systemActions"}
        assert isinstance(body["cards"], list)
        for path, value in _walk(body):
            if path == "$.cards":
                continue
            assert value is not None, f"{name}: {path}"
            assert value not in ("", [], {}), f"{name}: {path}"


def test_no_guidance_is_an_empty_cards_array(answers):
    """A patient who needs no card gets 200 with an empty cards array (77)."""
    assert {"cards": []} == answers["no guidance"].json()


def test_scenarios_give_every_kind_of_card(cards):
    """The scenarios between them give each kind of magstat card, so the card tests see them all."""
    kinds = {c["source"]["topic"]["code"] for c in cards}
    assert {
        "status",
        "renal-wasting",
        "drug-lowers-magnesium",
        "magnesium-product-kidney",
        "data-not-read",
    } <= kinds
    assert {"info", "warning", "critical"} == {c["indicator"] for c in cards}


def test_card_uuid_summary_indicator_detail(cards):
    """Each card has a uuid string, a summary under 140 characters, an allowed indicator and Markdown detail (80, 83, 85, 87, 88)."""
    for card in cards:
        assert str(uuid.UUID(card["uuid"])) == card["uuid"]
        assert isinstance(card["summary"], str)
        assert 0 < len(card["summary"]) < 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert isinstance(card["detail"], str)
        assert "<script" not in card["detail"].lower()
        assert "**" in card["detail"]  # GitHub-flavoured Markdown emphasis, not HTML


def test_card_uuids_are_unique_within_a_response(answers):
    """No two cards of one response share a uuid (80)."""
    for response in answers.values():
        uuids = [c["uuid"] for c in response.json()["cards"]]
        assert len(set(uuids)) == len(uuids)


def test_card_source(cards):
    """source is an object with a label, an absolute url, no icon, and a topic Coding with system and code (90, 105, 107, 111, 115, 216-218, 220)."""
    for card in cards:
        source = card["source"]
        assert isinstance(source["label"], str)
        assert source["label"]
        if "url" in source:
            assert _absolute(source["url"])
        if "icon" in source:
            assert _absolute(source["icon"])
        topic = source["topic"]
        assert isinstance(topic["system"], str)
        assert isinstance(topic["code"], str)
        assert isinstance(topic.get("display", ""), str)


def test_source_url_is_not_a_drill_down_and_the_link_is(cards):
    """source.url is the cited source, never the patient's report; the drill-down is card.links (109, 110)."""
    for card in cards:
        assert "/reports/" not in card["source"].get("url", "")
        assert any("/reports/" in link["url"] for link in card["links"])


def test_override_reasons_are_codings_with_display(cards):
    """overrideReasons is an array of Codings with system, code and a display for each (98, 100, 136, 216-219)."""
    for card in cards:
        reasons = card["overrideReasons"]
        assert isinstance(reasons, list)
        assert reasons
        for reason in reasons:
            assert isinstance(reason["system"], str)
            assert isinstance(reason["code"], str)
            assert isinstance(reason["display"], str)
            assert reason["display"].strip()


def test_links_have_label_url_and_type(cards):
    """links is an array of objects with label, absolute url, type absolute or smart; appContext only for smart (103, 138, 139, 141, 142, 144, 146, 147)."""
    for card in cards:
        for link in card["links"]:
            assert isinstance(link["label"], str)
            assert link["label"]
            assert _absolute(link["url"])
            assert link["type"] in ("absolute", "smart")
            if link["type"] == "absolute":
                assert "appContext" not in link
            elif "appContext" in link:
                assert isinstance(link["appContext"], str)


def test_suggestions_and_selection_behavior(cards):
    """suggestions is an array; when present selectionBehavior is given as at-most-one or any (92, 93, 95, 96)."""
    with_suggestions = [c for c in cards if "suggestions" in c]
    assert with_suggestions
    for card in cards:
        if "suggestions" not in card:
            assert "selectionBehavior" not in card
            continue
        assert isinstance(card["suggestions"], list)
        assert card["selectionBehavior"] in ("at-most-one", "any")
        recommended = [s for s in card["suggestions"] if s.get("isRecommended")]
        if card["selectionBehavior"] == "at-most-one":
            assert len(recommended) <= 1


def test_suggestion_fields(cards):
    """Each suggestion has a label, a uuid string, a boolean isRecommended if given and an actions array (117, 119, 121, 124)."""
    for card in cards:
        for suggestion in card.get("suggestions", ()):
            assert isinstance(suggestion["label"], str)
            assert suggestion["label"]
            assert str(uuid.UUID(suggestion["uuid"])) == suggestion["uuid"]
            if "isRecommended" in suggestion:
                assert isinstance(suggestion["isRecommended"], bool)
            assert isinstance(suggestion["actions"], list)
            assert suggestion["actions"]


def test_actions(cards):
    """Actions have a type and description; create carries a new FHIR resource, delete a resourceId and no resource (125, 127, 128, 130, 131, 133-135)."""
    seen = set()
    for card in cards:
        for suggestion in card.get("suggestions", ()):
            # one action per suggestion: accepting it applies all of it, never a part (125)
            assert 1 == len(suggestion["actions"])
            for action in suggestion["actions"]:
                seen.add(action["type"])
                assert action["type"] in ("create", "update", "delete")
                assert isinstance(action["description"], str)
                assert action["description"]
                if action["type"] == "create":
                    resource = action["resource"]
                    assert isinstance(resource["resourceType"], str)
                    assert "id" not in resource  # a new resource: the EHR gives the id
                    assert "resourceId" not in action
                if action["type"] == "delete":
                    assert "resource" not in action
                    assert isinstance(action["resourceId"], str)
                    assert re.fullmatch(r"[A-Za-z]+/[A-Za-z0-9\-.]{1,64}", action["resourceId"])
    assert {"create", "delete"} == seen


def test_no_update_actions_or_system_actions(answers):
    """The service never sends update actions or systemActions, so it never sends a partial update (75, 132)."""
    for response in answers.values():
        body = response.json()
        assert "systemActions" not in body
        for card in body["cards"]:
            for suggestion in card.get("suggestions", ()):
                assert all(a["type"] != "update" for a in suggestion["actions"])


def test_extensions_are_objects(answers, server):
    """No extension is sent; any extension element would have to be a JSON object (214)."""
    bodies = [r.json() for r in answers.values()] + [httpx.get(server.url("/cds-services")).json()]
    for body in bodies:
        for path, value in _walk(body):
            if path.endswith(".extension"):
                assert isinstance(value, dict)


def test_patient_view_answers_quickly(server):
    """A patient-view call with prefetch is answered well within 500 ms (median of five calls) (27)."""
    body = scenarios()["at risk, no recent magnesium"][1]
    times = []
    for _ in range(5):
        body = {**body, "hookInstance": str(uuid.uuid4())}
        start = time.perf_counter()
        assert 200 == post(server, PV, body).status_code
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.5


def test_errors_are_4xx_with_an_operation_outcome(server):
    """Bad calls get 4xx answers (an OperationOutcome), never a 5xx (14, 76)."""
    assert 404 == post(server, "/cds-services/unknown", _call("patient-view", "x")).status_code
    bad = post(server, PV, {"hook": "patient-view", "context": {}})
    assert 422 == bad.status_code
    assert "OperationOutcome" == bad.json()["resourceType"]


# --------------------------------------------------------------------------------------------
# Trusting CDS clients


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory, workers: int) -> Iterator[tuple[Live, Signer]]:
    """A service that requires the test EHR's JWT, its keys given out of band (a JWKS file)."""
    folder = tmp_path_factory.mktemp("conformance-auth")
    signer = Signer()
    jwks = signer.write_jwks(folder / "ehr.jwks.json")
    settings = load_settings(
        None,
        cds={"trusted_issuers": [{"iss": signer.iss, "jwks_file": str(jwks)}]},
        database={"url": f"sqlite:///{folder / 'fb.sqlite3'}"},
    )
    with live(settings, workers=workers) as running:
        yield running, signer


def _get(url: str, token: str | None) -> httpx.Response:
    return httpx.get(url, headers={"Authorization": f"Bearer {token}"} if token else {})


def test_jwt_signed_by_a_trusted_client_is_required(auth):
    """Calls need a JWT signed with a key of an allowlisted issuer; keys come out of band (176, 177, 195, 199)."""
    server, signer = auth
    url = server.url("/cds-services")
    assert 401 == _get(url, None).status_code
    assert 200 == _get(url, signer.token(url, kid="es384")).status_code
    assert 401 == _get(url, signer.token(url, iss="https://unknown.example.org")).status_code
    jku = signer.token(url, headers={"jku": "https://unknown.example.org/jwks.json"})
    assert 401 == _get(url, jku).status_code


def test_unsigned_and_symmetric_jwts_are_refused(auth):
    """alg none and HMAC-signed tokens are refused (201, 203)."""
    server, signer = auth
    url = server.url("/cds-services")
    now = int(time.time())
    claims = {"iss": signer.iss, "aud": url, "iat": now, "exp": now + 60}
    unsigned = jwt.encode(
        {**claims, "jti": str(uuid.uuid4())}, key=None, algorithm="none", headers={"kid": "es384"}
    )
    hs = jwt.encode(
        {**claims, "jti": str(uuid.uuid4())}, key="x" * 48, algorithm="HS384", headers={"kid": "es384"}
    )
    assert 401 == _get(url, unsigned).status_code
    assert 401 == _get(url, hs).status_code


def test_recommended_algorithms_are_accepted_and_the_list_is_configurable(auth, tmp_path: Path):
    """ES384 and RS384 are accepted; the algorithms are RFC 7518 asymmetric ones and can be narrowed (200, 205, 206)."""
    server, signer = auth
    url = server.url("/cds-services")
    for kid in ("es384", "rs384"):
        assert 200 == _get(url, signer.token(url, kid=kid)).status_code
    rfc7518 = {f"{f}{n}" for f in ("ES", "RS", "PS") for n in (256, 384, 512)}
    assert set(ASYMMETRIC_ALGORITHMS) - {"EdDSA"} <= rfc7518
    narrowed = load_settings(None, demo=True, cds={"algorithms": ["ES384"]})
    assert ("ES384",) == narrowed.cds.algorithms
    with pytest.raises(ConfigError):
        load_settings(None, demo=True, cds={"algorithms": ["HS256"]})


def test_cors_for_browser_based_clients(server):
    """Preflight and simple requests from another origin are allowed with the Authorization header (208)."""
    response = httpx.options(
        server.url(PV),
        headers={
            "Origin": "https://ehr.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert 200 == response.status_code
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    simple = httpx.get(server.url("/cds-services"), headers={"Origin": "https://ehr.example.org"})
    assert simple.headers["access-control-allow-origin"] in ("*", "https://ehr.example.org")


def test_feedback_endpoint(server, answers):
    """The feedback endpoint takes feedback on a card the service returned (148)."""
    card = answers["at risk, no recent magnesium"].json()["cards"][0]
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2021-06-01T12:00:00Z"}
    response = post(server, PV + "/feedback", {"feedback": [item]})
    assert 200 == response.status_code
    assert {"stored": 1} == response.json()


def test_kb_loads_for_the_conformance_tests():
    """The knowledge base the service uses loads (a guard for the tests above)."""
    assert load().version
    assert json.dumps(prefetch_templates(load()))


def test_critical_only_with_an_urgent_action(kb):
    """Across serum magnesium values, drugs and kidney function, a card is critical exactly when an action is urgent."""
    import datetime as dt  # noqa: PLC0415

    from magstat.adapters.cds_hooks.cards import CardContext, DraftDrug, order_cards, patient_view_cards  # noqa: PLC0415
    from magstat.core import assess  # noqa: PLC0415
    from magstat.core.facts import Lab, Medication, Origin, PatientFacts  # noqa: PLC0415
    from magstat.core.match import match_drug  # noqa: PLC0415

    as_of = dt.date(2024, 3, 1)
    ctx = CardContext(service_id="magstat-patient-view", hook_instance="h", patient_id="p", version="0")
    seen = set()
    for mg in (None, 0.3, 0.45, 0.6, 0.8, 0.95, 1.3, 2.5):
        for drug in ((), ("furosemide",), ("omeprazole",), ("magnesium oxide",)):
            for egfr in (None, 20.0, 90.0):
                labs = []
                if mg is not None:
                    labs.append(
                        Lab("serum_mg", mg, "mmol/L", as_of, origin=Origin("Observation/mg", "LOINC"))
                    )
                if egfr is not None:
                    labs.append(
                        Lab(
                            "egfr",
                            egfr,
                            kb.tests["egfr"].canonical_unit,
                            as_of,
                            origin=Origin("Observation/e", "LOINC"),
                        )
                    )
                meds = tuple(
                    Medication(
                        d, match_drug(kb, (), d).ids, True, origin=Origin("MedicationRequest/m", "text")
                    )
                    for d in drug
                )
                facts = PatientFacts(
                    as_of=as_of,
                    patient_id="p",
                    age_years=70.0,
                    sex="female",
                    medications=meds,
                    conditions=(),
                    labs=tuple(labs),
                )
                result = assess(facts, kb)
                urgent = any(a.priority == "urgent" for a in (*result.next_steps, *result.safety))
                drafts = [
                    DraftDrug("MedicationRequest/m", d, m.drugs) for d, m in zip(drug, meds, strict=True)
                ]
                for card in (*patient_view_cards(result, kb, ctx), *order_cards(result, kb, ctx, drafts)):
                    seen.add(card["indicator"])
                    if card["indicator"] == "critical":
                        assert urgent, (mg, drug, egfr, card["summary"])
                    elif card["source"]["topic"]["code"] in (
                        "status",
                        "safety",
                        "drug-lowers-magnesium",
                        "magnesium-product-kidney",
                    ):
                        assert not urgent, (mg, drug, egfr, card["summary"])
    assert {"info", "warning", "critical"} == seen
