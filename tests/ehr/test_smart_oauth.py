"""The OAuth pieces of the SMART app against servers that answer in unusual or wrong ways."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import httpx
import pytest

from magstat.service.smart.config import SmartEhr
from magstat.service.smart.oauth import SmartAuthError, SmartEndpoints, discover, exchange_code

EHR = SmartEhr(iss="https://ehr.example/fhir", client_id="magstat")
ENDPOINTS = SmartEndpoints("https://ehr.example/auth/authorize", "https://ehr.example/auth/token", ())


def run(coroutine: Any) -> Any:
    """Run a coroutine on an event loop of its own thread (the browser tests hold the main thread's)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def client(status: int, body: Any) -> httpx.AsyncClient:
    """An HTTP client whose every request gets this answer."""
    return httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(status, json=body)))


async def _exchange(http: httpx.AsyncClient) -> Any:
    async with http:
        return await exchange_code(
            http,
            ENDPOINTS,
            EHR,
            None,
            code="c",
            redirect_uri="https://m.example/smart/callback",
            code_verifier="v",
            timeout=5,
        )


async def _discover(http: httpx.AsyncClient, ehr: SmartEhr = EHR) -> Any:
    async with http:
        return await discover(http, ehr, timeout=5, allow_http=False)


def test_expires_in_as_a_string_is_read():
    """A token response giving expires_in as a string of digits still sets the token's expiry."""
    body = {
        "access_token": "a",
        "token_type": "bearer",
        "expires_in": "3600",
        "patient": "p1",
        "scope": "launch",
    }
    tokens = run(_exchange(client(200, body)))
    assert tokens.expires_at is not None and "p1" == tokens.patient


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, {"error": "invalid_grant", "error_description": "code expired"}, "invalid_grant"),
        (401, {"error": "invalid_client"}, "token"),
        (200, {"access_token": "a", "token_type": "mac"}, "token"),
        (200, {"token_type": "Bearer"}, "token"),
        (502, ["not", "an", "object"], "token"),
    ],
)
def test_refused_or_malformed_token_responses(status, body, kind):
    """Each refusal or malformed token answer is a SmartAuthError of its kind, never a crash."""
    with pytest.raises(SmartAuthError) as caught:
        run(_exchange(client(status, body)))
    assert kind == caught.value.kind


@pytest.mark.parametrize(
    ("config", "kind", "confidential"),
    [
        ({"authorization_endpoint": "https://e.example/a"}, "discovery", False),
        (
            {"authorization_endpoint": "http://e.example/a", "token_endpoint": "https://e.example/t"},
            "discovery",
            False,
        ),
        (
            {
                "authorization_endpoint": "https://e/a",
                "token_endpoint": "https://e/t",
                "code_challenge_methods_supported": ["plain"],
            },
            "unsupported",
            False,
        ),
        (
            {
                "authorization_endpoint": "https://e/a",
                "token_endpoint": "https://e/t",
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            },
            "unsupported",
            True,
        ),
    ],
)
def test_discovery_refuses_what_the_app_cannot_use(config, kind, confidential, tmp_path):
    """A configuration without an endpoint, with plain http, without S256 or private_key_jwt is refused."""
    ehr = EHR
    if confidential:
        ehr = SmartEhr(iss=EHR.iss, client_id="magstat", private_key_file=tmp_path / "k.pem")
    with pytest.raises(SmartAuthError) as caught:
        run(_discover(client(200, config), ehr))
    assert kind == caught.value.kind


def test_discovery_reads_a_complete_configuration():
    """A SMART 2.2 configuration gives the two endpoints and the capabilities."""
    config = {
        "authorization_endpoint": "https://e.example/a",
        "token_endpoint": "https://e.example/t",
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["launch-ehr", "client-public", 7],
    }
    found = run(_discover(client(200, config)))
    assert ("https://e.example/a", "https://e.example/t") == (
        found.authorization_endpoint,
        found.token_endpoint,
    )
    assert ("launch-ehr", "client-public") == found.capabilities
