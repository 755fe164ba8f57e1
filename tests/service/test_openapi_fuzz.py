"""Schemathesis against the service's OpenAPI document: no 5xx, no answer outside the document.

The service runs in demo mode (no authentication) so that the generated bodies reach the
handlers; a second run with authentication checks that refusals stay 401, never 5xx.

The run is deterministic, so that a bug found stays found: every operation's examples come from
a fixed seed, and each failing example is kept in a Hypothesis example database in the
repository (``tests/service/fuzz-examples``), replayed first by every later run until it passes.
The number of examples per operation is bounded so that the file runs in a minute or two; the
longer run with the ``schemathesis`` command is described in ``benchmarks/RESULTS.md``.

Checks on every response: not a server error; its status, content type, headers and body as the
document states them. For schema-valid requests to the CDS services and the feedback endpoint,
the answer is not a validation error: the document states what those handlers require.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis.database import DirectoryBasedExampleDatabase  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402

from tests.service.conftest import live  # noqa: E402

EXAMPLES = 25
SEED = 20240601
EXAMPLE_DB = Path(__file__).parent / "fuzz-examples"

CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_headers_conformance,
    st_checks.response_schema_conformance,
]

STRICT_BODIES = ("/cds-services/",)
"""Paths whose schema-valid requests must be accepted (2xx), or answered 404/412 as documented."""


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory) -> Iterator[object]:
    """The OpenAPI document of a live demo-mode service."""
    from magstat.service import load_settings  # noqa: PLC0415

    db = tmp_path_factory.mktemp("fuzz") / "feedback.sqlite3"
    with live(load_settings(None, demo=True, database={"url": f"sqlite:///{db}"})) as server:
        yield schemathesis.openapi.from_url(server.url("/openapi.json"))


@pytest.fixture(scope="module")
def auth_schema(tmp_path_factory) -> Iterator[object]:
    """The OpenAPI document of a live service that requires authentication."""
    from magstat.service import load_settings  # noqa: PLC0415
    from tests.service.ehr import Signer  # noqa: PLC0415

    tmp = tmp_path_factory.mktemp("fuzz-auth")
    jwks = Signer().write_jwks(tmp / "jwks.json")
    settings = load_settings(
        None,
        cds={"trusted_issuers": [{"iss": "https://ehr.example.org", "jwks_file": str(jwks)}]},
        database={"url": f"sqlite:///{tmp / 'feedback.sqlite3'}"},
    )
    with live(settings) as server:
        yield schemathesis.openapi.from_url(server.url("/openapi.json"))


def fuzz(api, examples: int, *, expect_401: bool = False) -> list[str]:
    """Run generated requests (valid and invalid, per the document) against every operation."""
    from schemathesis import GenerationMode  # noqa: PLC0415

    seen = []
    for result in api.get_all_operations():
        operation = result.ok()
        seen.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            check = _checker(operation, mode, examples, expect_401=expect_401)
            try:
                check()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # nothing to get wrong (no parameters, no body)
    return seen


def _checker(operation, mode, examples: int, *, expect_401: bool):
    """The seeded Hypothesis test of one operation and mode, with its own stored failures."""
    from schemathesis import GenerationMode  # noqa: PLC0415

    name = re.sub(r"[^A-Za-z0-9]+", "-", f"{operation.label}-{mode.value}-{expect_401}").strip("-")

    @seed(SEED)
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=DirectoryBasedExampleDatabase(str(EXAMPLE_DB / name)),
    )
    def check(case):
        response = case.call(timeout=30)
        case.validate_response(response, checks=[] if expect_401 else CHECKS)
        assert response.status_code < 500, (case.method, case.path, response.status_code)
        if expect_401 and case.path.startswith(("/cds-services", "/assess")):
            assert 401 == response.status_code
        if not expect_401 and mode == GenerationMode.POSITIVE and case.path.startswith(STRICT_BODIES):
            assert response.status_code in (200, 404, 412), (
                case.path,
                response.status_code,
                response.text[:300],
            )

    return check


def test_no_server_error_and_no_answer_outside_the_document(api_schema):
    """Any request the OpenAPI document allows, or nearly allows, gets a documented answer below 500."""
    seen = fuzz(api_schema, EXAMPLES)
    assert {
        "GET /healthz",
        "POST /assess",
        "GET /cds-services",
        "POST /cds-services/magstat-patient-view",
        "POST /cds-services/magstat-order-select",
        "POST /cds-services/magstat-order-sign",
        "POST /cds-services/{service_id}/feedback",
    } <= set(seen)


def test_no_server_error_with_auth(auth_schema):
    """With authentication on, generated requests without a valid token are refused, never a 5xx."""
    fuzz(auth_schema, 10, expect_401=True)


def test_demo_mode_advertises_no_credential(api_schema):
    """In demo mode the document names no security scheme (nothing asks for a credential)."""
    raw = api_schema.raw_schema
    assert "securitySchemes" not in raw.get("components", {})
    assert all("security" not in op for ops in raw["paths"].values() for op in ops.values())


def test_each_cds_service_documents_its_hook_and_patient_id(api_schema):
    """Each CDS service path states the hook it answers and requires context.patientId."""
    paths = api_schema.raw_schema["paths"]
    for service, hook in (
        ("magstat-patient-view", "patient-view"),
        ("magstat-order-select", "order-select"),
        ("magstat-order-sign", "order-sign"),
    ):
        body = paths[f"/cds-services/{service}"]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]
        extra = body["allOf"][1]
        assert {"const": hook} == extra["properties"]["hook"]
        assert "patientId" in extra["properties"]["context"]["required"]


def test_assess_documents_its_body_as_a_patient_document_or_fhir(api_schema):
    """POST /assess states its body: the patient document of `magstat schema`, or a FHIR resource."""
    from magstat.adapters.document import json_schema  # noqa: PLC0415
    from magstat.kb import load  # noqa: PLC0415

    raw = api_schema.raw_schema
    content = raw["paths"]["/assess"]["post"]["requestBody"]["content"]
    document = {"$ref": "#/components/schemas/PatientDocument"}
    fhir = {"$ref": "#/components/schemas/FhirResource"}
    assert {"anyOf": [fhir, document]} == content["application/json"]["schema"]
    assert fhir == content["application/fhir+json"]["schema"]
    assert document == content["application/yaml"]["schema"]
    expected = json_schema(load())
    assert expected["properties"] == raw["components"]["schemas"]["PatientDocument"]["properties"]
    assert ["resourceType"] == raw["components"]["schemas"]["FhirResource"]["required"]
