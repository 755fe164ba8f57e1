"""The SMART app's routes: launch, callback, the result page, "Save to chart", the app's JWKS.

- ``GET /smart/launch?iss=...&launch=...``: an EHR launch. ``iss`` must be a registered EHR
  (``[[smart.ehrs]]``); anything else gets a page saying so and nothing is fetched from it.
- ``GET /smart/start``: the standalone launch: a page listing the registered EHRs; each link
  (``/smart/start?iss=...``) starts the authorization with ``launch/patient``.
- ``GET /smart/callback``: the redirect URI. Checks ``state`` against the session, handles the
  EHR's refusal (``error=access_denied`` and the rest), exchanges the code with the PKCE
  verifier, and starts a new session (a new id) holding the tokens and the patient.
- ``GET /smart/app``: reads the chart with the access token (refreshing it when it has
  expired and a refresh token was given), assesses it and shows the web app's result page.
- ``POST /smart/save``: "Save to chart", a ``RiskAssessment`` created on the FHIR server when
  the granted scopes allow it; protected by a per-session CSRF token.
- ``GET /smart/jwks.json``: the public keys of the confidential clients, for registration.

The browser holds only an opaque session id in an ``HttpOnly`` cookie; every failure has its
own page, and no page shows a token, a patient's data from a failed step or an exception.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from magstat import __version__
from magstat.adapters.cds_hooks.fhir_out import risk_assessment
from magstat.errors import InvalidInputError
from magstat.service.deps import base_url, get_http
from magstat.service.deps import get_kb as _kb
from magstat.service.deps import get_settings as _settings
from magstat.service.feedback import DatabaseRunner, StorageError
from magstat.service.settings import Settings
from magstat.service.smart.chart import ChartAssessment, ChartUnreadableError, assess_chart
from magstat.service.smart.config import SmartEhr, SmartSettings
from magstat.service.smart.oauth import (
    SmartAuthError,
    SmartEndpoints,
    Tokens,
    authorization_url,
    discover,
    exchange_code,
    load_client_key,
    new_secret,
    refresh,
)
from magstat.service.smart.sessions import SESSION_ID_PATTERN, SessionStore, new_session_id
from magstat.web.pages import render
from magstat.web.routes import SECURITY_HEADERS
from magstat.web.view import result_view

__all__ = ["COOKIE", "can_create", "router", "smart_headers"]

log = logging.getLogger("magstat.service.smart")

COOKIE = "magstat_smart"
"""The session cookie: an opaque random id, nothing else."""

_SESSION_ID = re.compile(SESSION_ID_PATTERN)
_OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "login_required",
        "consent_required",
        "interaction_required",
    }
)

_REDIRECT_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
"""Redirects carry the launch or the code in their URLs: never cached, never sent on as Referer."""

router = APIRouter(prefix="/smart", include_in_schema=False)


# --------------------------------------------------------------------------------------------
# Headers, cookies, pages


def smart_headers(smart: SmartSettings) -> dict[str, str]:
    """The web app's security headers, with ``frame-ancestors`` naming exactly the EHR origins.

    With no EHR registered the SMART pages, like every other page, cannot be framed.
    """
    headers = dict(SECURITY_HEADERS)
    ancestors = " ".join(smart.frame_origins) or "'none'"
    headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(
        "frame-ancestors 'none'", f"frame-ancestors {ancestors}"
    )
    return headers


def _sessions(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.smart_sessions
    return store


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _over_tls(request: Request, settings: Settings) -> bool:
    public = settings.server.public_base_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def _set_cookie(response: Response, request: Request, session_id: str, max_age: int) -> None:
    """Set the session cookie.

    Over TLS: ``SameSite=None; Secure; Partitioned``, so that it is sent inside the EHR's
    iframe (a cross-site frame) and kept apart per top-level site. Over plain http (loopback
    tests and development only): ``SameSite=Lax``, which loopback ports share as one site.
    """
    settings = _settings(request)
    path = f"{_root(request)}/smart"
    if _over_tls(request, settings):
        response.headers.append(
            "Set-Cookie",
            f"{COOKIE}={session_id}; Max-Age={max_age}; Path={path}; HttpOnly; Secure; SameSite=None; Partitioned",
        )
    else:
        response.headers.append(
            "Set-Cookie", f"{COOKIE}={session_id}; Max-Age={max_age}; Path={path}; HttpOnly; SameSite=Lax"
        )


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("back", False)
    context.setdefault("relaunch", False)
    html = render(template, kb=_kb(request), root=_root(request), nav="smart", **context)
    return HTMLResponse(html, status_code=status, headers=smart_headers(_settings(request).smart))


def _problem(
    request: Request, status: int, heading: str, message: str, *, relaunch: bool = True
) -> HTMLResponse:
    """An error page: what happened and what to do, never a token, patient data or a traceback."""
    return _page(request, "smart_message.html", status, heading=heading, message=message, relaunch=relaunch)


class _StoreDownError(Exception):
    """The session store cannot be reached (a shared store on a database that is down)."""


async def _store(request: Request, method: str, *args: Any) -> Any:
    """Call the session store off the event loop (a shared store waits on its database).

    Through the service's bounded database pool when there is one (its calls wait at most
    ``database.timeout_seconds``), else a worker thread.
    """
    call = functools.partial(getattr(_sessions(request), method), *args)
    runner: DatabaseRunner | None = getattr(request.app.state, "database", None)
    try:
        if runner is not None:
            return await runner.run(call)
        return await run_in_threadpool(call)
    except StorageError as exc:
        log.error("SMART session store unavailable: %s", type(exc).__name__)
        raise _StoreDownError from None


async def _session(request: Request) -> tuple[str, dict[str, Any]] | None:
    sid = request.cookies.get(COOKIE, "")
    if not _SESSION_ID.match(sid):
        return None
    data = await _store(request, "get", sid)
    return (sid, data) if data is not None else None


def _guarded(
    handler: Callable[..., Awaitable[Response]],
) -> Callable[..., Awaitable[Response]]:
    """Give the session store's failure its own page (503) instead of the service's JSON error."""

    @functools.wraps(handler)
    async def guarded(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(request, *args, **kwargs)
        except _StoreDownError:
            return _problem(
                request,
                503,
                "magstat is unavailable",
                "Its session store cannot be reached. Try again in a moment.",
            )

    return guarded


def _http(request: Request) -> httpx.AsyncClient:
    return get_http(request)


def _ehr_of(request: Request, session: dict[str, Any]) -> SmartEhr | None:
    return _settings(request).smart.find(str(session.get("iss", "")))


# --------------------------------------------------------------------------------------------
# Launch


@router.get("/launch", response_model=None)
@_guarded
async def launch(request: Request, iss: str = "", launch: str = "") -> Response:
    """An EHR launch: check ``iss``, read its SMART configuration, send the browser to authorize."""
    smart = _settings(request).smart
    if not iss:
        return _problem(
            request,
            400,
            "Launch from the EHR",
            "This address is opened by the EHR with its iss and launch values.",
        )
    ehr = smart.find(iss)
    if ehr is None:
        log.warning(
            "SMART launch refused: unregistered iss", extra={"fields": {"event": "smart_unknown_iss"}}
        )
        return _problem(
            request,
            403,
            "This EHR is not registered",
            "magstat can be launched only from an EHR its administrator has registered "
            "([[smart.ehrs]] in the service configuration). Nothing was sent to the EHR that made this launch.",
            relaunch=False,
        )
    if not launch or len(launch) > 2048:
        return _problem(
            request, 400, "Launch from the EHR", "The EHR's launch carried no usable launch value."
        )
    return await _begin(request, ehr, launch, aud=iss.strip())


@router.get("/start", response_model=None)
@_guarded
async def start(request: Request, iss: str = "") -> Response:
    """The standalone launch: pick a registered EHR, then sign in there and choose a patient."""
    smart = _settings(request).smart
    if not iss:
        return _page(request, "smart_start.html", ehrs=smart.ehrs)
    ehr = smart.find(iss)
    if ehr is None:
        return _problem(request, 404, "No such EHR", "Choose one of the EHRs listed on the start page.")
    return await _begin(request, ehr, None)


async def _begin(
    request: Request, ehr: SmartEhr, launch_value: str | None, aud: str | None = None
) -> Response:
    settings = _settings(request)
    smart = settings.smart
    timeout = min(smart.fhir_deadline_seconds, 10.0)
    try:
        endpoints = await discover(_http(request), ehr, timeout=timeout, allow_http=smart.allow_http)
    except SmartAuthError as exc:
        log.warning(
            "SMART discovery failed", extra={"fields": {"event": "smart_discovery", "reason": exc.detail}}
        )
        if exc.kind == "unsupported":
            message = f"The EHR's SMART configuration does not offer what magstat needs: {exc.detail}."
        else:
            message = "The EHR's SMART configuration (.well-known/smart-configuration) could not be read. Try again later."
        return _problem(request, 502, "The EHR could not be reached", message)
    state, verifier = new_secret(), new_secret()
    redirect_uri = f"{base_url(request, settings)}/smart/callback"
    scope = smart.scopes_for(ehr, standalone=launch_value is None)
    url = authorization_url(
        endpoints,
        ehr,
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        code_verifier=verifier,
        launch=launch_value,
        aud=aud,
    )
    pending = {
        "phase": "authorizing",
        "iss": ehr.iss,
        "state": state,
        "code_verifier": verifier,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "authorization_endpoint": endpoints.authorization_endpoint,
        "token_endpoint": endpoints.token_endpoint,
    }
    old = await _session(request)
    if old is not None:
        await _store(request, "delete", old[0])  # a new launch replaces whatever this browser had
    sid = new_session_id()
    await _store(request, "put", sid, pending, smart.launch_ttl_seconds)
    response = RedirectResponse(url, status_code=302, headers=_REDIRECT_HEADERS)
    _set_cookie(response, request, sid, smart.launch_ttl_seconds)
    return response


# --------------------------------------------------------------------------------------------
# Callback


@router.get("/callback", response_model=None)
@_guarded
async def callback(
    request: Request, code: str = "", state: str = "", error: str = "", error_description: str = ""
) -> Response:
    """The redirect URI: check ``state``, then the EHR's answer, then exchange the code.

    ``error_description`` is accepted and never shown: it is text from outside, and the page
    names the error code only.
    """
    found = await _session(request)
    if found is None or found[1].get("phase") != "authorizing":
        return _problem(
            request,
            400,
            "This sign-in has expired",
            "The launch took too long, was already used, or the browser did not keep magstat's cookie. "
            "Launch magstat again from the EHR.",
        )
    sid, pending = found
    await _store(request, "delete", sid)  # one callback per launch: the state and the verifier are used up
    expected = str(pending.get("state", ""))
    if not state or not hmac.compare_digest(state.encode("utf-8"), expected.encode("utf-8")):
        log.warning("SMART callback refused: state mismatch", extra={"fields": {"event": "smart_state"}})
        return _problem(
            request,
            400,
            "This sign-in cannot be trusted",
            "The answer from the EHR does not belong to the launch made in this browser (state mismatch). "
            "Nothing was read. Launch magstat again from the EHR.",
        )
    if error:
        reason = error if error in _OAUTH_ERRORS else "unknown error"
        log.info(
            "SMART authorization refused", extra={"fields": {"event": "smart_refused", "reason": reason}}
        )
        if error == "access_denied":
            return _problem(
                request,
                403,
                "Access was not granted",
                "magstat was not given access to the patient's chart, so it has read nothing. "
                "To assess this patient, launch magstat again and allow access.",
            )
        return _problem(
            request,
            502,
            "The EHR refused the sign-in",
            f"The EHR answered the authorization request with “{reason}”.",
        )
    ehr = _ehr_of(request, pending)
    if not code or ehr is None:
        return _problem(request, 400, "This sign-in cannot be finished", "The EHR's answer carried no code.")
    settings = _settings(request)
    try:
        key = load_client_key(ehr)
        tokens = await exchange_code(
            _http(request),
            SmartEndpoints(str(pending["authorization_endpoint"]), str(pending["token_endpoint"]), ()),
            ehr,
            key,
            code=code,
            redirect_uri=str(pending["redirect_uri"]),
            code_verifier=str(pending["code_verifier"]),
            timeout=min(settings.smart.fhir_deadline_seconds, 10.0),
        )
    except SmartAuthError as exc:
        log.warning(
            "SMART token request failed", extra={"fields": {"event": "smart_token", "reason": exc.detail}}
        )
        if exc.kind == "invalid_grant":
            return _problem(
                request,
                400,
                "The sign-in code was refused",
                "The EHR did not accept the code of this sign-in: it has expired or was used already. "
                "Launch magstat again from the EHR.",
            )
        return _problem(
            request,
            502,
            "The sign-in could not be finished",
            "The EHR's token endpoint refused or did not answer.",
        )
    except ValueError:
        log.error("SMART client key unusable", extra={"fields": {"event": "smart_key"}})
        return _problem(
            request, 500, "magstat is misconfigured", "The app's key for this EHR cannot be used."
        )
    if tokens.patient is None:
        return _problem(
            request,
            502,
            "No patient was chosen",
            "The EHR granted access without a patient context; magstat assesses one patient at a time. "
            "Launch magstat from a patient's chart.",
        )
    ready = {
        "phase": "ready",
        "iss": ehr.iss,
        "token_endpoint": pending["token_endpoint"],
        "requested_scope": pending["scope"],
        "tokens": tokens.to_dict(),
        "csrf": new_secret(),
        "ends_at": time.time() + settings.smart.session_ttl_seconds,
    }
    # A new id once signed in: an id seen before the sign-in never carries the tokens.
    new_sid = new_session_id()
    await _store(request, "put", new_sid, ready, settings.smart.session_ttl_seconds)
    response = RedirectResponse(f"{_root(request)}/smart/app", status_code=303, headers=_REDIRECT_HEADERS)
    _set_cookie(response, request, new_sid, settings.smart.session_ttl_seconds)
    return response


# --------------------------------------------------------------------------------------------
# The result page and "Save to chart"


def can_create(scopes: str, resource_type: str) -> bool:
    """Whether granted scopes let the app create a resource of this type for the patient.

    SMART scopes v2 (``patient/RiskAssessment.c``, ``patient/*.cruds``, also ``user/``) and
    v1 (``patient/RiskAssessment.write``, ``patient/*.*``). A scope narrowed by a query
    (``?category=...``) is not taken as leave to create.
    """
    for scope in scopes.split():
        context, _, rest = scope.partition("/")
        if context not in ("patient", "user") or "?" in rest:
            continue
        rtype, _, perms = rest.partition(".")
        if rtype not in (resource_type, "*"):
            continue
        if perms in ("write", "*") or (re.fullmatch(r"c?r?u?d?s?", perms) and "c" in perms):
            return True
    return False


class _ExpiredError(Exception):
    """The access token has expired and cannot be renewed."""


async def _fresh_tokens(
    request: Request, sid: str, session: dict[str, Any], *, force: bool = False
) -> Tokens:
    """The session's tokens, renewed with the refresh token when expired (or ``force``)."""
    tokens = Tokens.from_dict(session["tokens"])
    if not force and not tokens.expired(time.time()):
        return tokens
    ehr = _ehr_of(request, session)
    if ehr is None or tokens.refresh_token is None:
        raise _ExpiredError
    settings = _settings(request)
    try:
        renewed = await refresh(
            _http(request),
            str(session["token_endpoint"]),
            ehr,
            load_client_key(ehr),
            tokens,
            timeout=min(settings.smart.fhir_deadline_seconds, 10.0),
        )
    except (SmartAuthError, ValueError) as exc:
        reason = exc.detail if isinstance(exc, SmartAuthError) else "client key"
        log.info("SMART token refresh failed", extra={"fields": {"event": "smart_refresh", "reason": reason}})
        raise _ExpiredError from None
    session["tokens"] = renewed.to_dict()
    # The session keeps its end: a refresh does not lengthen it.
    ends = float(session.get("ends_at") or time.time() + settings.smart.session_ttl_seconds)
    await _store(request, "put", sid, session, max(1.0, ends - time.time()))
    return renewed


async def _assess(
    request: Request, sid: str, session: dict[str, Any]
) -> tuple[Tokens, ChartAssessment] | Response:
    settings = _settings(request)
    try:
        tokens = await _fresh_tokens(request, sid, session)
    except _ExpiredError:
        return _expired(request)
    assert tokens.patient is not None
    today = request.app.state.clock().date()
    for attempt in (1, 2):
        try:
            chart = await assess_chart(
                _http(request),
                str(session["iss"]),
                tokens.access_token,
                tokens.patient,
                _kb(request),
                today=today,
                deadline_seconds=settings.smart.fhir_deadline_seconds,
                max_pages=settings.smart.fhir_max_pages,
            )
        except ChartUnreadableError as exc:
            refused = any("HTTP 401" in note for note in exc.notes)
            if refused and attempt == 1 and tokens.refresh_token is not None:
                try:  # the EHR ended the token early: renew it once and read again
                    tokens = await _fresh_tokens(request, sid, session, force=True)
                except _ExpiredError:
                    return _expired(request)
                continue
            log.warning(
                "SMART chart read failed",
                extra={"fields": {"event": "smart_chart", "searches": ",".join(exc.keys)}},
            )
            return _problem(
                request,
                502 if not refused else 403,
                "The chart could not be read",
                "Part of the patient's chart could not be read from the EHR ("
                + ", ".join(exc.keys)
                + (
                    "; access was refused"
                    if refused
                    else f"; the EHR did not answer in full within {settings.smart.fhir_deadline_seconds:g} s"
                    f" and {settings.smart.fhir_max_pages} pages per search"
                )
                + "). magstat shows no assessment built on part of a chart. Try again in a moment.",
            )
        except InvalidInputError as exc:
            log.warning(
                "SMART chart not usable",
                extra={"fields": {"event": "smart_chart_invalid", "field": exc.field}},
            )
            return _problem(
                request,
                422,
                "The chart could not be assessed",
                f"The patient's record could not be used ({exc.field or 'record'}: {exc.message}).",
            )
        return tokens, chart
    return _expired(request)  # unreachable: the loop returns or continues once


def _expired(request: Request) -> HTMLResponse:
    return _problem(
        request,
        401,
        "Your session has ended",
        "Access to the chart has expired. Launch magstat again from the EHR to continue.",
    )


def _granted(session: dict[str, Any], tokens: Tokens) -> str:
    # RFC 6749 5.1: a token response without scope grants what was asked.
    return tokens.scope or str(session.get("requested_scope", ""))


@router.get("/app", response_model=None)
@_guarded
async def app_page(request: Request) -> Response:
    """The assessment of the launch patient, read from the chart now."""
    found = await _session(request)
    if found is None or found[1].get("phase") != "ready":
        return _expired(request)
    sid, session = found
    outcome = await _assess(request, sid, session)
    if isinstance(outcome, Response):
        return outcome
    tokens, chart = outcome
    ehr = _ehr_of(request, session)
    view = result_view(chart.result, chart.facts, _kb(request))
    mds = next((f for f in chart.result.findings if f.id == "mds"), None)
    return _page(
        request,
        "smart_result.html",
        view=view,
        origin=f"From the chart in {ehr.label if ehr else 'the EHR'}",  # the date is in view.who
        mds_finding=mds,
        notes=chart.notes,
        banner=chart.patient_name if tokens.need_patient_banner else None,
        can_save=can_create(_granted(session, tokens), "RiskAssessment"),
        csrf=session["csrf"],
    )


@router.post("/save", response_model=None)
@_guarded
async def save(request: Request) -> Response:
    """Save to chart: create the assessment as a ``RiskAssessment`` on the FHIR server."""
    found = await _session(request)
    if found is None or found[1].get("phase") != "ready":
        return _expired(request)
    sid, session = found
    async with request.form(max_files=0, max_fields=5, max_part_size=4096) as form:
        given = form.get("csrf")
    expected = str(session.get("csrf", ""))
    if not isinstance(given, str) or not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        return _problem(
            request,
            403,
            "This request was not sent by magstat's page",
            "Saving needs the button on the assessment page (the request's CSRF token did not match). Nothing was saved.",
            relaunch=False,
        )
    outcome = await _assess(request, sid, session)
    if isinstance(outcome, Response):
        return outcome
    tokens, chart = outcome
    if not can_create(_granted(session, tokens), "RiskAssessment"):
        return _problem(
            request,
            403,
            "Saving is not allowed",
            "The EHR did not grant magstat leave to write a RiskAssessment (scope patient/RiskAssessment.c). Nothing was saved.",
            relaunch=False,
        )
    resource = risk_assessment(chart.result, _kb(request), version=__version__)
    url = f"{session['iss']}/RiskAssessment"
    try:
        response = await _http(request).post(
            url,
            content=json.dumps(resource).encode("utf-8"),
            headers={
                "Authorization": f"Bearer {tokens.access_token}",
                "Content-Type": "application/fhir+json",
                "Accept": "application/fhir+json",
                "Prefer": "return=minimal",
            },
            timeout=_settings(request).smart.fhir_deadline_seconds,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        log.warning(
            "SMART write-back failed", extra={"fields": {"event": "smart_save", "reason": type(exc).__name__}}
        )
        return _problem(
            request,
            502,
            "Not saved",
            "The EHR's FHIR server did not answer. Nothing was saved.",
            relaunch=False,
        )
    if response.status_code not in (200, 201):
        log.warning(
            "SMART write-back refused",
            extra={"fields": {"event": "smart_save", "reason": f"HTTP {response.status_code}"}},
        )
        return _problem(
            request,
            502,
            "Not saved",
            f"The EHR's FHIR server refused the RiskAssessment (HTTP {response.status_code}). Nothing was saved.",
            relaunch=False,
        )
    saved_id = _created_id(response)
    log.info("SMART write-back done", extra={"fields": {"event": "smart_saved"}})
    return _page(
        request,
        "smart_message.html",
        heading="Saved to the chart",
        message=(
            "The assessment was saved in the patient's chart as a RiskAssessment"
            + (f" ({saved_id})." if saved_id else ".")
        ),
        relaunch=False,
        back=True,
    )


def _created_id(response: httpx.Response) -> str | None:
    """``RiskAssessment/<id>`` from the ``Location`` header (or the body), for the confirmation."""
    location = response.headers.get("location", "")
    match = re.search(r"RiskAssessment/([A-Za-z0-9\-.]{1,64})", urlsplit(location).path or location)
    if match:
        return f"RiskAssessment/{match.group(1)}"
    try:
        body = response.json()
    except ValueError:
        return None
    rid = body.get("id") if isinstance(body, dict) else None
    return (
        f"RiskAssessment/{quote(rid)}"
        if isinstance(rid, str) and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", rid)
        else None
    )


# --------------------------------------------------------------------------------------------
# The app's public keys


@router.get("/jwks.json", response_model=None)
def jwks(request: Request) -> Response:
    """The public keys of the app's confidential clients (a JWK Set an EHR may register by URL)."""
    keys: dict[str, dict[str, Any]] = {}
    for ehr in _settings(request).smart.ehrs:
        try:
            key = load_client_key(ehr)
        except ValueError:
            continue
        if key is not None:
            keys.setdefault(key.kid, key.public_jwk())
    return JSONResponse({"keys": list(keys.values())}, headers={"Cache-Control": "max-age=300"})
