"""The HTTP service over real HTTP: health, discovery, REST /assess, errors, limits, CORS, reports."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from magstat.adapters.cds_hooks.request import prefetch_templates
from tests.conftest import ROOT
from tests.service.conftest import AS_OF, hook_request, live, post
from tests.service.ehr import prefetch_for

DEMO = ROOT / "src" / "magstat" / "demo"


def test_healthz_reports_versions_and_demo_mode(demo_server, kb):
    """/healthz answers with the knowledge-base version and says that authentication is off."""
    data = httpx.get(demo_server.url("/healthz")).json()
    assert "ok" == data["status"]
    assert kb.version == data["knowledge_base"]["version"]
    assert "DISABLED" in data["auth"]
    assert {"kind": "sqlite", "state": "ok", "feedback_table": True} == data["database"]


def test_demo_mode_marks_every_response(demo_server):
    """Every response of a demo-mode server carries the demo header; the request id is echoed."""
    response = httpx.get(demo_server.url("/healthz"), headers={"X-Request-Id": "abc-123"})
    assert "authentication disabled" == response.headers["x-magstat-demo-mode"]
    assert "abc-123" == response.headers["x-request-id"]


def test_auth_mode_has_no_demo_header(auth_server):
    """A server that requires authentication does not carry the demo header."""
    response = httpx.get(auth_server.url("/healthz"))
    assert 200 == response.status_code
    assert "x-magstat-demo-mode" not in response.headers
    assert "required" == response.json()["auth"]


def test_discovery_lists_three_services_with_prefetch(demo_server, kb):
    """Discovery lists the three services, their hooks, and prefetch templates with the patient token."""
    services = httpx.get(demo_server.url("/cds-services")).json()["services"]
    assert {
        ("magstat-patient-view", "patient-view"),
        ("magstat-order-select", "order-select"),
        ("magstat-order-sign", "order-sign"),
    } == {(s["id"], s["hook"]) for s in services}
    for service in services:
        assert service["description"] and service["title"]
        assert prefetch_templates(kb) == service["prefetch"]
        assert all("{{context.patientId}}" in t for t in service["prefetch"].values())
        assert None not in service.values()


def test_openapi_document_lists_every_endpoint(demo_server):
    """The OpenAPI document describes the REST and CDS Hooks endpoints."""
    paths = httpx.get(demo_server.url("/openapi.json")).json()["paths"]
    for path in (
        "/healthz",
        "/assess",
        "/cds-services",
        "/cds-services/magstat-patient-view",
        "/cds-services/magstat-order-select",
        "/cds-services/magstat-order-sign",
        "/cds-services/{service_id}/feedback",
    ):
        assert path in paths


def test_assess_json_contract(demo_server):
    """POST /assess with a patient document gives the core's JSON contract."""
    body = (DEMO / "case-01-ppi-diuretic-deficient.yaml").read_bytes()
    response = httpx.post(
        demo_server.url("/assess"), content=body, headers={"Content-Type": "application/yaml"}
    )
    assert 200 == response.status_code
    data = response.json()
    assert {
        "status",
        "mds",
        "egfr",
        "serum_magnesium",
        "femg",
        "findings",
        "next_steps",
        "safety",
        "knowledge_base",
    } <= set(data)
    assert data["status"] in (
        "excess",
        "deficient",
        "likely_deficient",
        "at_risk",
        "unlikely",
        "indeterminate",
    )


def test_assess_matches_core(demo_server, records, kb):
    """The service gives exactly the answer the core gives for the same FHIR input and date."""
    from magstat.adapters.fhir import facts_from_fhir  # noqa: PLC0415
    from magstat.core import assess  # noqa: PLC0415

    record = records["py06"]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for rs in record.by_type.values() for r in rs],
    }
    response = post(demo_server, "/assess?as_of=2021-06-01", bundle)
    expected = assess(facts_from_fhir(bundle, kb, as_of=AS_OF.date(), strict=False), kb).to_dict()
    assert expected == response.json()


def test_assess_as_fhir_and_html(demo_server, records):
    """?format=fhir gives a RiskAssessment and ?format=html the printable report."""
    record = records["coleman"]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for rs in record.by_type.values() for r in rs],
    }
    fhir = post(demo_server, "/assess?format=fhir", bundle)
    assert "application/fhir+json" == fhir.headers["content-type"]
    assert "RiskAssessment" == fhir.json()["resourceType"]
    html = post(demo_server, "/assess?format=html", bundle)
    assert html.text.startswith("<!DOCTYPE html>") or "<html" in html.text[:200]


def test_service_id_past_its_length_is_422_and_only_after_authentication(demo_server, auth_server, signer):
    """A service id longer than 128 characters is a 422 naming the path parameter, and a caller without a token gets 401 first."""
    path = "/cds-services/" + "x" * 129
    long_id = post(demo_server, path, hook_request("patient-view", "p1"))
    assert 422 == long_id.status_code
    assert "OperationOutcome" == long_id.json()["resourceType"]
    assert ["path.service_id"] == long_id.json()["issue"][0]["expression"]
    assert 401 == post(auth_server, path, hook_request("patient-view", "p1")).status_code
    token = signer.token(auth_server.url(path))
    assert 422 == post(auth_server, path, hook_request("patient-view", "p1"), token=token).status_code


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "input"),
        (
            json.dumps(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
                    "valueQuantity": {"value": 2.0, "unit": "furlong"},
                }
            ).encode(),
            None,
        ),
        (b"", "body"),
    ],
)
def test_assess_bad_input_is_422_operation_outcome(demo_server, body, field):
    """Bad input is a 422 OperationOutcome naming the field, never a 500."""
    response = httpx.post(
        demo_server.url("/assess?strict=true"), content=body, headers={"Content-Type": "application/json"}
    )
    assert 422 == response.status_code
    data = response.json()
    assert "OperationOutcome" == data["resourceType"]
    issue = data["issue"][0]
    assert issue["diagnostics"]
    if field:
        assert field in issue["expression"][0]


def test_deeply_nested_input_is_422(demo_server):
    """JSON nested beyond the parser's depth is refused as invalid input."""
    body = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    response = httpx.post(
        demo_server.url("/assess"), content=body, headers={"Content-Type": "application/json"}
    )
    assert 422 == response.status_code


def test_body_limit_413(make_settings):
    """A body over the configured limit is refused with 413, by declared length or while streaming."""
    settings = make_settings(demo=True)
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"max_body_bytes": 2048})}
    )
    with live(settings) as server:
        big = b'{"x": "' + b"a" * 5000 + b'"}'
        response = httpx.post(
            server.url("/assess"), content=big, headers={"Content-Type": "application/json"}
        )
        assert 413 == response.status_code
        assert "OperationOutcome" == response.json()["resourceType"]

        def chunks():
            for _ in range(10):
                yield b"a" * 1000

        streamed = httpx.post(
            server.url("/assess"), content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert 413 == streamed.status_code


def test_cors_preflight_allows_any_origin_with_authorization(demo_server):
    """A browser-based EHR's preflight is allowed from any origin with the Authorization header."""
    response = httpx.options(
        demo_server.url("/cds-services/magstat-patient-view"),
        headers={
            "Origin": "https://ehr.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert 200 == response.status_code
    assert "*" == response.headers["access-control-allow-origin"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    simple = httpx.get(demo_server.url("/cds-services"), headers={"Origin": "https://ehr.example.org"})
    assert "*" == simple.headers["access-control-allow-origin"]


def test_unknown_service_404_and_wrong_hook_422(demo_server):
    """An unknown service id is 404; a hook that the service does not answer is 422."""
    assert 404 == post(demo_server, "/cds-services/nope", hook_request("patient-view", "p1")).status_code
    wrong = post(
        demo_server, "/cds-services/magstat-patient-view", hook_request("order-sign", "p1", prefetch={})
    )
    assert 422 == wrong.status_code
    assert ["hook"] == wrong.json()["issue"][0]["expression"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hook": "patient-view", "context": {"patientId": "p"}}, "hookInstance"),
        ({"hook": "patient-view", "hookInstance": "x"}, "context"),
        (
            {"hook": "patient-view", "hookInstance": "x", "context": {}, "prefetch": {"patient": None}},
            "context.patientId",
        ),
        (
            {
                "hook": "patient-view",
                "hookInstance": "x",
                "context": {"patientId": "p"},
                "fhirAuthorization": {"access_token": "t"},
            },
            "body",
        ),
        (
            {
                "hook": "order-sign",
                "hookInstance": "x",
                "context": {"patientId": "p"},
                "prefetch": {"patient": None},
            },
            "context.draftOrders",
        ),
    ],
)
def test_malformed_hook_requests_are_422(demo_server, body, field):
    """A hook request missing what the specification requires is a 422 naming the field."""
    service = "magstat-order-sign" if body["hook"] == "order-sign" else "magstat-patient-view"
    response = post(demo_server, f"/cds-services/{service}", body)
    assert 422 == response.status_code
    expressions = [e for issue in response.json()["issue"] for e in issue.get("expression", [])]
    assert any(field in e for e in expressions), expressions


def test_no_data_at_all_is_412(demo_server):
    """patient-view with no prefetch and no FHIR server answers 412 Precondition Failed."""
    response = post(demo_server, "/cds-services/magstat-patient-view", hook_request("patient-view", "p1"))
    assert 412 == response.status_code
    assert "OperationOutcome" == response.json()["resourceType"]


def test_card_links_to_report_that_expires(make_settings, records, kb):
    """A card's link opens the full HTML report, which is gone after its time to live."""
    settings = make_settings(demo=True, report_ttl_seconds=10)
    record = records["py06"]
    with live(settings) as server:
        body = hook_request("patient-view", record.patient_id)
        body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
        cards = post(server, "/cds-services/magstat-patient-view", body).json()["cards"]
        assert cards
        url = cards[0]["links"][0]["url"]
        assert url.startswith(server.base + "/reports/")
        page = httpx.get(url)
        assert 200 == page.status_code
        assert "no-store" == page.headers["cache-control"]
        assert "text/html" in page.headers["content-type"]
        assert 404 == httpx.get(server.base + "/reports/" + "x" * 43).status_code
        store = server.app.state.store
        store.clock = lambda: time.time() + 11  # past the report's time to live
        assert 404 == httpx.get(url).status_code


def test_public_base_url_is_used_for_links(make_settings, records, kb):
    """Report links start with the configured public base URL (the URL EHRs call)."""
    settings = make_settings(demo=True)
    settings = settings.model_copy(
        update={
            "server": settings.server.model_copy(
                update={"public_base_url": "https://cds.example.org/magstat"}
            )
        }
    )
    record = records["py06"]
    with live(settings) as server:
        body = hook_request("patient-view", record.patient_id)
        body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
        cards = post(server, "/cds-services/magstat-patient-view", body).json()["cards"]
        assert cards[0]["links"][0]["url"].startswith("https://cds.example.org/magstat/reports/")
