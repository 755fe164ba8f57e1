"""Schemathesis against the service's OpenAPI document: no generated request gets a 5xx.

The service runs in demo mode (no authentication) so that the generated bodies reach the
handlers; a second run with authentication checks that refusals stay 401, never 5xx. The number
of examples per operation is bounded so that the whole file runs in well under two minutes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from tests.service.conftest import live  # noqa: E402

EXAMPLES = 100


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

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
            )
            def check(case):
                response = case.call(timeout=30)
                assert response.status_code < 500, (
                    case.method,
                    case.path,
                    response.status_code,
                    response.text[:300],
                )
                if expect_401 and case.path.startswith(("/cds-services", "/assess")):
                    assert 401 == response.status_code

            try:
                check()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # nothing to get wrong (no parameters, no body)
    return seen


def test_no_server_error(api_schema):
    """Any request the OpenAPI document allows, or nearly allows, gets an answer below 500."""
    seen = fuzz(api_schema, EXAMPLES)
    assert {"GET /healthz", "POST /assess", "GET /cds-services", "POST /cds-services/{service_id}"} <= set(
        seen
    )


def test_no_server_error_with_auth(auth_schema):
    """With authentication on, generated requests without a valid token are refused, never a 5xx."""
    fuzz(auth_schema, 10, expect_401=True)
