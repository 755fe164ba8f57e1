"""A mock EHR against a live service: Synthea patients, every hook, both data paths, every refusal.

The EHR side is real too: prefetch built from a full Synthea record for the service's own
templates, or a local FHIR server the service reads with the access token; JWTs signed with
keys generated here (ES384, RS384, ES256).
"""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from magstat.adapters.cds_hooks.request import prefetch_templates
from magstat.adapters.fhir import facts_from_fhir
from magstat.core import assess
from tests.service.conftest import AS_OF, WORKERS, hook_request, live, post
from tests.service.ehr import Signer, fhir_server, prefetch_for

PV = "/cds-services/magstat-patient-view"
SELECT = "/cds-services/magstat-order-select"
SIGN = "/cds-services/magstat-order-sign"


def draft(rid: str, patient_id: str, text: str, rxnorm: str | None = None) -> dict:
    """A draft MedicationRequest as an EHR puts it in context.draftOrders."""
    concept: dict = {"text": text}
    if rxnorm:
        concept["coding"] = [
            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm, "display": text}
        ]
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2021-06-02T08:00:00+10:00",
        "medicationCodeableConcept": concept,
    }


def drafts(*resources: dict) -> dict:
    """A draftOrders Bundle."""
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


# --------------------------------------------------------------------------------------------
# Authentication (CDS Hooks 2.0 "Trusting CDS Clients")


@pytest.mark.parametrize("kid", ["es384", "rs384", "es256"])
def test_valid_tokens_are_accepted(auth_server, signer, kid):
    """Tokens signed with each of the EHR's keys (ES384, RS384, ES256) are accepted."""
    url = auth_server.url("/cds-services")
    response = httpx.get(url, headers={"Authorization": f"Bearer {signer.token(url, kid=kid)}"})
    assert 200 == response.status_code
    assert 3 == len(response.json()["services"])


def _refusals(signer: Signer, url: str) -> dict[str, str | None]:
    other = ec.generate_private_key(ec.SECP384R1())
    now = int(time.time())
    unsigned = jwt.encode(
        {"iss": signer.iss, "aud": url, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())},
        key=None,
        algorithm="none",
        headers={"kid": "es384", "typ": "JWT"},
    )
    hmac = jwt.encode(
        {"iss": signer.iss, "aud": url, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())},
        key="a-shared-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
        headers={"kid": "es384", "typ": "JWT"},
    )
    return {
        "no header": None,
        "not bearer": "Basic dXNlcjpwYXNz",
        "garbage": "Bearer not.a.jwt",
        "wrong signature": signer.token(url, key=other),
        "alg none": unsigned,
        "hs256": hmac,
        "expired": signer.token(url, iat_offset=-3600, lifetime=300),
        "issued in the future": signer.token(url, iat_offset=3600),
        "lifetime too long": signer.token(url, lifetime=86_400),
        "wrong aud": signer.token("https://other.example.org/cds-services"),
        "aud of another service": signer.token(url.replace("patient-view", "order-sign")),
        "unknown iss": signer.token(url, iss="https://evil.example.org"),
        "unknown kid": signer.token(url, kid="nope", key=signer.keys["es384"][1], alg="ES384"),
        "jku header": signer.token(url, headers={"jku": "https://evil.example.org/jwks.json"}),
        "alg does not fit key": signer.token(url, kid="es384", key=signer.keys["rs384"][1], alg="RS384"),
        "wrong typ": signer.token(url, headers={"typ": "at+jwt"}),
        "no jti": signer.token(url, claims={"jti": ""}),
    }


@pytest.mark.parametrize(
    "case",
    [
        "no header",
        "not bearer",
        "garbage",
        "wrong signature",
        "alg none",
        "hs256",
        "expired",
        "issued in the future",
        "lifetime too long",
        "wrong aud",
        "aud of another service",
        "unknown iss",
        "unknown kid",
        "jku header",
        "alg does not fit key",
        "wrong typ",
        "no jti",
    ],
)
def test_every_refusal_is_401_without_detail(auth_server, signer, records, kb, case):
    """Each bad token gets 401 with a short message that does not say why."""
    record = records["coleman"]
    url = auth_server.url(PV)
    authorization = _refusals(signer, url)[case]
    body = hook_request("patient-view", record.patient_id)
    body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(url, json=body, headers=headers)
    assert 401 == response.status_code
    assert 'Bearer error="invalid_token"' == response.headers["www-authenticate"]
    assert "authentication failed" == response.json()["issue"][0]["diagnostics"]


def test_replayed_jti_is_refused(auth_server, signer, records, kb):
    """The same token twice: the second call is refused (replay)."""
    record = records["coleman"]
    url = auth_server.url(PV)
    token = signer.token(url)
    body = hook_request("patient-view", record.patient_id)
    body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
    assert 200 == post(auth_server, PV, body, token).status_code
    assert 401 == post(auth_server, PV, body, token).status_code


def test_every_endpoint_requires_the_token(auth_server):
    """Discovery, services, feedback and /assess all refuse a request without a token."""
    assert 401 == httpx.get(auth_server.url("/cds-services")).status_code
    assert 401 == post(auth_server, PV, hook_request("patient-view", "p")).status_code
    assert 401 == post(auth_server, PV + "/feedback", {"feedback": []}).status_code
    assert 401 == post(auth_server, "/assess", {"resourceType": "Patient"}).status_code
    assert 200 == httpx.get(auth_server.url("/healthz")).status_code


def test_feedback_accepts_the_service_url_as_audience(auth_server, signer):
    """Feedback is accepted with aud = the feedback URL or the service URL."""
    body = {
        "feedback": [
            {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2021-06-01T10:00:00Z"}
        ]
    }
    for aud in (auth_server.url(PV + "/feedback"), auth_server.url(PV)):
        assert 200 == post(auth_server, PV + "/feedback", body, signer.token(aud)).status_code


def test_jwks_from_url_is_fetched_and_cached(make_settings, signer, records):
    """An issuer whose keys are at a URL: fetched once, then served from the cache."""
    with fhir_server([records["coleman"]]) as ehr:
        ehr.extra["/jwks.json"] = signer.jwks()
        settings = make_settings(
            trusted_issuers=[{"iss": signer.iss, "jwks_url": ehr.base.removesuffix("/fhir") + "/jwks.json"}]
        )
        with live(settings) as server:
            url = server.url("/cds-services")
            for kid in ("es384", "rs384", "es256"):
                assert (
                    200
                    == httpx.get(
                        url, headers={"Authorization": f"Bearer {signer.token(url, kid=kid)}"}
                    ).status_code
                )
            jku_ok = signer.token(url, headers={"jku": ehr.base.removesuffix("/fhir") + "/jwks.json"})
            assert 200 == httpx.get(url, headers={"Authorization": f"Bearer {jku_ok}"}).status_code
        # Once per process: each worker keeps its own cache (MAGSTAT_TEST_WORKERS).
        assert sum(1 for path, _ in ehr.requests if path == "/jwks.json") in range(1, WORKERS + 1)


# --------------------------------------------------------------------------------------------
# patient-view: prefetch and FHIR-server paths give the same answer


@pytest.mark.parametrize("name", ["py06", "py07", "coleman", "barrett", "antonio"])
def test_patient_view_prefetch_and_fhir_server_agree(auth_server, signer, records, kb, name):
    """The same patient through prefetch and through the FHIR server gives the same cards."""
    record = records[name]
    templates = prefetch_templates(kb)
    body = hook_request("patient-view", record.patient_id)
    body["prefetch"] = prefetch_for(templates, body["context"], record)
    by_prefetch = post(auth_server, PV, body, signer.token(auth_server.url(PV)))
    assert 200 == by_prefetch.status_code
    with fhir_server([record], token="fhir-access-token", page_size=25) as ehr:
        body = hook_request(
            "patient-view",
            record.patient_id,
            fhirServer=ehr.base,
            fhirAuthorization={
                "access_token": "fhir-access-token",
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "magstat",
            },
        )
        by_server = post(auth_server, PV, body, signer.token(auth_server.url(PV)))
        assert all(auth == "Bearer fhir-access-token" for _, auth in ehr.requests)
    assert 200 == by_server.status_code
    strip = lambda cards: [(c["summary"], c["indicator"], c["source"]["topic"]["code"]) for c in cards]  # noqa: E731
    assert strip(by_prefetch.json()["cards"]) == strip(by_server.json()["cards"])


def test_patient_view_card_is_the_core_assessment(demo_server, records, kb):
    """The card's summary is the core's summary for the same data: one implementation of the rules."""
    record = records["py06"]
    body = hook_request("patient-view", record.patient_id)
    body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
    cards = post(demo_server, PV, body).json()["cards"]
    entries = [
        {"resource": v} if v.get("resourceType") != "Bundle" else e
        for v in body["prefetch"].values()
        if v
        for e in (v.get("entry") or [{"resource": v}])
    ]
    facts = facts_from_fhir(
        {"resourceType": "Bundle", "type": "collection", "entry": entries},
        kb,
        as_of=AS_OF.date(),
        strict=False,
        patient_id=record.patient_id,
    )
    result = assess(facts, kb)
    status_cards = [c for c in cards if c["source"]["topic"]["code"] == "status"]
    assert [result.summary[:139]] == [c["summary"] for c in status_cards] or (
        result.status in ("unlikely", "indeterminate") and not status_cards
    )


def test_partial_prefetch_is_completed_from_the_fhir_server(demo_server, records, kb):
    """Keys the EHR did not prefetch are read from its FHIR server; the sent ones are not re-read."""
    record = records["py06"]
    templates = prefetch_templates(kb)
    with fhir_server([record]) as ehr:
        body = hook_request("patient-view", record.patient_id, fhirServer=ehr.base)
        full = prefetch_for(templates, body["context"], record)
        body["prefetch"] = {"patient": full["patient"], "observations": full["observations"]}
        response = post(demo_server, PV, body)
        paths = [p.split("?")[0] for p, _ in ehr.requests]
    assert 200 == response.status_code
    assert "/fhir/Condition" in paths and "/fhir/MedicationRequest" in paths
    assert "/fhir/Observation" not in paths and not any(p.startswith("/fhir/Patient") for p in paths)


def test_slow_fhir_server_answers_within_the_deadline(make_settings, records):
    """A FHIR server slower than the deadline: the order hook still answers in time, saying what is missing."""
    record = records["coleman"]
    with fhir_server([record]) as ehr, live(make_settings(demo=True, fhir_deadline_seconds=0.5)) as server:
        ehr.delay = 3.0
        body = hook_request(
            "order-select",
            record.patient_id,
            fhirServer=ehr.base,
            context={
                "selections": ["MedicationRequest/d1"],
                "draftOrders": drafts(draft("d1", record.patient_id, "omeprazole 20 mg", "7646")),
            },
        )
        start = time.monotonic()
        response = post(server, SELECT, body)
        elapsed = time.monotonic() - start
    assert 200 == response.status_code
    assert elapsed < 2.0
    cards = response.json()["cards"]
    assert ["drug-lowers-magnesium"] == [c["source"]["topic"]["code"] for c in cards]
    assert "did not answer within 0.5 s" in cards[0]["detail"]


def test_fhir_server_down(demo_server, records):
    """FHIR server down: patient-view has nothing to go on (412); an order hook answers from the drafts."""
    record = records["coleman"]
    with fhir_server([record]) as ehr:
        base = ehr.base
    pv = post(demo_server, PV, hook_request("patient-view", record.patient_id, fhirServer=base))
    assert 412 == pv.status_code
    body = hook_request(
        "order-sign",
        record.patient_id,
        fhirServer=base,
        context={"draftOrders": drafts(draft("d1", record.patient_id, "furosemide 40 mg"))},
    )
    sign = post(demo_server, SIGN, body)
    assert 200 == sign.status_code
    card = sign.json()["cards"][0]
    assert "could not be read from the FHIR server" in card["detail"]
    assert "no patient data could be read" in card["detail"]


def test_failing_fhir_server_and_bad_prefetch_are_noted(demo_server, records, kb):
    """A FHIR server that fails, and a prefetch value that is an OperationOutcome, are noted, not fatal."""
    record = records["py06"]
    templates = prefetch_templates(kb)
    with fhir_server([record]) as ehr:
        ehr.fail = True
        body = hook_request("patient-view", record.patient_id, fhirServer=ehr.base)
        full = prefetch_for(templates, body["context"], record)
        body["prefetch"] = {
            "patient": full["patient"],
            "observations": {"resourceType": "OperationOutcome", "issue": []},
            "conditions": full["conditions"],
        }
        response = post(demo_server, PV, body)
    assert 200 == response.status_code
    for card in response.json()["cards"]:
        assert "HTTP 500" in card["detail"]
        assert "the EHR reported an error" in card["detail"]


def test_fhir_server_is_only_read_when_allowed(make_settings, records, signer):
    """An issuer limited to its own FHIR server: another fhirServer is not read (and gets no token)."""
    record = records["coleman"]
    with fhir_server([record]) as ehr:
        settings = make_settings(
            trusted_issuers=[
                {
                    "iss": signer.iss,
                    "jwks_file": str(make_settings().cds.trusted_issuers[0].jwks_file),
                    "fhir_servers": ["https://fhir.ehr.example.org/r4"],
                }
            ]
        )
        with live(settings) as server:
            body = hook_request(
                "patient-view",
                record.patient_id,
                fhirServer=ehr.base,
                fhirAuthorization={"access_token": "secret", "token_type": "Bearer"},
            )
            response = post(server, PV, body, signer.token(server.url(PV)))
        assert [] == ehr.requests
    assert 412 == response.status_code


# --------------------------------------------------------------------------------------------
# order-select / order-sign


def test_order_select_ppi_card(auth_server, signer, records, kb):
    """Selecting a PPI: a card about baseline and follow-up magnesium with the FDA 2011 advice and a lab order."""
    record = records["py07"]
    body = hook_request(
        "order-select",
        record.patient_id,
        context={
            "selections": ["MedicationRequest/d1"],
            "draftOrders": drafts(
                draft("d1", record.patient_id, "pantoprazole 40 mg tablet", "40790"),
                draft("d2", record.patient_id, "amoxicillin 500 mg"),
            ),
        },
    )
    body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
    response = post(auth_server, SELECT, body, signer.token(auth_server.url(SELECT)))
    assert 200 == response.status_code
    cards = response.json()["cards"]
    assert ["drug-lowers-magnesium"] == [c["source"]["topic"]["code"] for c in cards]
    card = cards[0]
    assert "FDA (2011)" in card["detail"]
    assert card["source"]["url"] == kb.sources["S20"].url
    assert card["indicator"] in ("info", "warning", "critical")
    action = card["suggestions"][0]["actions"][0]
    assert "create" == action["type"]
    assert "19123-9" == action["resource"]["code"]["coding"][0]["code"]
    assert f"Patient/{record.patient_id}" == action["resource"]["subject"]["reference"]
    assert "short-course" in [r["code"] for r in card["overrideReasons"]]


def test_order_select_only_selected_orders_prompt_cards(demo_server, records, kb):
    """A PPI among the drafts but not selected does not prompt a card on order-select."""
    record = records["py07"]
    body = hook_request(
        "order-select",
        record.patient_id,
        context={
            "selections": ["MedicationRequest/d2"],
            "draftOrders": drafts(
                draft("d1", record.patient_id, "omeprazole 20 mg", "7646"),
                draft("d2", record.patient_id, "amoxicillin 500 mg"),
            ),
        },
    )
    body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
    assert [] == post(demo_server, SELECT, body).json()["cards"]


def test_order_sign_diuretic_with_low_magnesium_warns(demo_server, kb):
    """Signing a loop diuretic when the latest magnesium is low: a warning card."""
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-01-01"}
    mg = {
        "resourceType": "Observation",
        "id": "mg1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2021-05-20",
        "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
        "valueQuantity": {
            "value": 1.3,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    }
    body = hook_request(
        "order-sign",
        "p1",
        context={"draftOrders": drafts(draft("d1", "p1", "furosemide 40 mg tablet"))},
        prefetch={
            "patient": patient,
            "observations": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": mg}]},
            "conditions": None,
            "medicationRequests": None,
            "medicationStatements": None,
        },
    )
    card = post(demo_server, SIGN, body).json()["cards"][0]
    assert card["indicator"] in ("warning", "critical")
    assert card["summary"].startswith("Latest serum Mg 0.53 mmol/L is low")
    assert len(card["summary"]) < 140


def test_order_sign_magnesium_product_with_poor_kidney_function(demo_server):
    """A draft magnesium supplement with eGFR 22: a safety card, with a suggestion to cancel the draft."""
    patient = {"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1940-01-01"}
    egfr = {
        "resourceType": "Observation",
        "id": "egfr1",
        "status": "final",
        "subject": {"reference": "Patient/p2"},
        "effectiveDateTime": "2021-05-01",
        "code": {"coding": [{"system": "http://loinc.org", "code": "62238-1"}]},
        "valueQuantity": {
            "value": 22,
            "unit": "mL/min/{1.73_m2}",
            "system": "http://unitsofmeasure.org",
            "code": "mL/min/{1.73_m2}",
        },
    }
    body = hook_request(
        "order-sign",
        "p2",
        context={"draftOrders": drafts(draft("mgox", "p2", "Magnesium oxide 400 MG Oral Tablet"))},
        prefetch={
            "patient": patient,
            "observations": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": egfr}]},
        },
    )
    cards = post(demo_server, SIGN, body).json()["cards"]
    product = [c for c in cards if c["source"]["topic"]["code"] == "magnesium-product-kidney"]
    assert 1 == len(product)
    card = product[0]
    assert card["indicator"] in ("warning", "critical")
    assert "eGFR 22" in card["summary"]
    delete = [a for s in card["suggestions"] for a in s["actions"] if a["type"] == "delete"]
    assert [
        {"type": "delete", "description": delete[0]["description"], "resourceId": "MedicationRequest/mgox"}
    ] == delete


def test_order_hook_with_serum_mg_already_ordered_offers_no_lab_order(demo_server):
    """When the drafts already hold a serum magnesium order, no second one is suggested."""
    lab = {
        "resourceType": "ServiceRequest",
        "id": "lab1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p3"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
    }
    body = hook_request(
        "order-sign",
        "p3",
        context={"draftOrders": drafts(draft("d1", "p3", "hydrochlorothiazide 25 mg"), lab)},
        prefetch={"patient": {"resourceType": "Patient", "id": "p3"}},
    )
    card = post(demo_server, SIGN, body).json()["cards"][0]
    assert "suggestions" not in card
