"""Dependencies of the route handlers: settings, knowledge base, stores, clock, the caller.

Handlers declare what they need with the ``...Dep`` aliases; the application keeps one of
each in ``app.state`` (see :func:`magstat.service.main.create_app`).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import httpx
from fastapi import Depends, HTTPException, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from magstat.kb.schema import KnowledgeBase
from magstat.service.feedback import DatabaseRunner, FeedbackStore
from magstat.service.reports import ReportStore
from magstat.service.security import AuthError, ClientIdentity, TokenVerifier
from magstat.service.settings import Settings

__all__ = [
    "AuthenticatedRoute",
    "ClientDep",
    "ClockDep",
    "DatabaseDep",
    "FeedbackDep",
    "HttpDep",
    "KBDep",
    "ReportsDep",
    "SettingsDep",
    "authenticate_route",
    "base_url",
    "get_http",
]


def get_settings(request: Request) -> Settings:
    """The service settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_kb(request: Request) -> KnowledgeBase:
    """The knowledge base, loaded once at start-up."""
    kb: KnowledgeBase = request.app.state.kb
    return kb


def get_feedback(request: Request) -> FeedbackStore:
    """The feedback store."""
    store: FeedbackStore = request.app.state.feedback
    return store


def get_database(request: Request) -> DatabaseRunner:
    """The bounded pool the feedback store's calls run on."""
    runner: DatabaseRunner = request.app.state.database
    return runner


def get_reports(request: Request) -> ReportStore:
    """The report store behind card links."""
    reports: ReportStore = request.app.state.reports
    return reports


def get_clock(request: Request) -> Callable[[], dt.datetime]:
    """The clock of the service (UTC); tests replace it."""
    clock: Callable[[], dt.datetime] = request.app.state.clock
    return clock


def get_http(request: Request) -> httpx.AsyncClient:
    """The shared HTTP client for FHIR servers and JWKS URLs (created on first use)."""
    state = request.app.state
    if state.http is None:
        state.http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=3.0),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            headers={"User-Agent": "magstat-cds"},
        )
        state.verifier.http = state.http
    client: httpx.AsyncClient = state.http
    return client


def base_url(request: Request, settings: Settings) -> str:
    """The public base URL of the service: configured, else that of the request."""
    if settings.server.public_base_url:
        return settings.server.public_base_url
    return str(request.base_url).rstrip("/")


def endpoint_url(request: Request, settings: Settings) -> str:
    """The public URL of the endpoint called (the JWT audience it expects)."""
    root = request.scope.get("root_path", "")
    path = request.url.path
    if root and path.startswith(root):
        path = path[len(root) :]
    if settings.server.public_base_url:
        return settings.server.public_base_url + path
    return str(request.base_url).rstrip("/") + path


async def authenticate(request: Request) -> ClientIdentity | None:
    """Verify the EHR's JWT (``None`` in demo mode).

    The audience is the URL of the endpoint called; for the feedback endpoint the URL of the
    service it belongs to is accepted too, as EHRs differ there.

    Raises:
        HTTPException: 401 when the token does not pass (the reason is logged, not returned).

    """
    settings = get_settings(request)
    if not settings.auth_enabled:
        return None
    url = endpoint_url(request, settings)
    audiences = [url, url + "/"]
    if url.endswith("/feedback"):
        audiences.append(url.removesuffix("/feedback"))
    verifier: TokenVerifier = request.app.state.verifier
    get_http(request)
    try:
        return await verifier.verify(request.headers.get("authorization"), audiences)
    except AuthError as exc:
        request.app.state.auth_log.info(
            "authentication refused", extra={"fields": {"event": "auth_refused", "reason": exc.reason}}
        )
        raise HTTPException(
            status_code=401,
            detail="authentication failed",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None


class AuthenticatedRoute(APIRoute):
    """A route whose caller is authenticated before anything else, the request body included.

    A request without a valid token is refused with 401 before its body is read or validated,
    so that an unauthenticated caller learns nothing from validation errors and costs little.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler: authenticate, keep the caller in ``request.state.client``."""
        handler = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            await authenticate_route(request)
            return await handler(request)

        return authenticated


async def authenticate_route(request: Request) -> ClientIdentity | None:
    """What :class:`AuthenticatedRoute` does first: authenticate, count a refusal, time it.

    The caller is kept in ``request.state.client`` and the seconds spent in
    ``request.state.auth_seconds``.

    Raises:
        HTTPException: 401 when the token does not pass.

    """
    started = time.perf_counter()
    try:
        client = await authenticate(request)
    except HTTPException:
        request.app.state.metrics.auth_refused.inc()
        raise
    request.state.client = client
    request.state.auth_seconds = time.perf_counter() - started
    return client


_bearer = HTTPBearer(auto_error=False, description="A JWT signed by a trusted EHR key (CDS Hooks 2.0)")


def get_client(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> ClientIdentity | None:
    """The caller verified by :class:`AuthenticatedRoute` (``None`` in demo mode)."""
    client: ClientIdentity | None = getattr(request.state, "client", None)
    return client


SettingsDep = Annotated[Settings, Depends(get_settings)]
KBDep = Annotated[KnowledgeBase, Depends(get_kb)]
FeedbackDep = Annotated[FeedbackStore, Depends(get_feedback)]
DatabaseDep = Annotated[DatabaseRunner, Depends(get_database)]
ReportsDep = Annotated[ReportStore, Depends(get_reports)]
ClockDep = Annotated[Callable[[], dt.datetime], Depends(get_clock)]
HttpDep = Annotated[httpx.AsyncClient, Depends(get_http)]
ClientDep = Annotated[ClientIdentity | None, Depends(get_client)]
