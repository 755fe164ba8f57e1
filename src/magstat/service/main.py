"""The ASGI application: routers, error translation, CORS, limits and logging at the edge.

``create_app(settings)`` builds one application with:

- ``GET /healthz``; ``POST /assess`` (REST); ``GET /cds-services`` and ``POST
  /cds-services/{id}`` (CDS Hooks 2.0) with ``POST /cds-services/{id}/feedback``;
  ``GET /reports/{token}`` (the report behind a card link); ``GET /metrics`` (Prometheus,
  :mod:`magstat.service.metrics`); the OpenAPI document at
  ``/openapi.json`` (no bundled viewer: it would load Swagger UI from a CDN).
- Errors as FHIR ``OperationOutcome``: invalid input 422 naming the field, authentication 401
  with a short message only, no patient data 412, an unavailable knowledge base or database
  503, anything unexpected 500 (logged by type only, never with its message); a client that
  went away mid-request is logged as a disconnect.
- CORS open to any origin (browser-based EHRs; the bearer token, not cookies, authenticates),
  a request body limit (413), a request id on every response, JSON access logs without
  patient data, and in demo mode a loud warning and a header on every response.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from magstat import __version__
from magstat.adapters.cds_hooks.models import FeedbackRequest, HookRequest
from magstat.adapters.cds_hooks.request import prefetch_templates
from magstat.adapters.document import json_schema
from magstat.errors import InvalidInputError, KnowledgeBaseError
from magstat.kb import load
from magstat.kb.schema import KnowledgeBase
from magstat.service.accesslog import DEMO_HEADER, EdgeMiddleware
from magstat.service.feedback import DatabaseRunner, FeedbackStore, StorageError
from magstat.service.hooks import SERVICES, PreconditionFailedError
from magstat.service.metrics import ServiceMetrics
from magstat.service.reports import ReportStore
from magstat.service.routes import assess, cds_services, health, metrics, reports
from magstat.service.security import SharedReplayCache, TokenVerifier
from magstat.service.settings import Settings, load_settings
from magstat.service.smart.routes import router as smart_router
from magstat.service.smart.sessions import SharedSessionStore
from magstat.service.store import SharedStore, WalCheckpointer, sqlite_path
from magstat.service.suppression import CardMemory
from magstat.web import router as web_router
from magstat.web.routes import WebAccess

__all__ = ["create_app", "create_app_from_environment"]

log = logging.getLogger("magstat.service")

_DESCRIPTION = """\
Assesses a person's magnesium status with explained, cited findings, for EHRs.
**Decision support, not a diagnosis**: every finding shows its inputs, rule and sources.

- CDS Hooks 2.0: `GET /cds-services`, `POST /cds-services/{id}`, `POST /cds-services/{id}/feedback`.
  Every call carries `Authorization: Bearer <JWT>` signed by a trusted EHR key.
- REST: `POST /assess` with a FHIR R4 Bundle or a magstat patient document; `?format=fhir` gives a
  FHIR `RiskAssessment`.
- Errors are FHIR `OperationOutcome` resources.
"""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_app(
    settings: Settings,
    *,
    kb: KnowledgeBase | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> FastAPI:
    """Build the service.

    Args:
        settings: the service settings (see :mod:`magstat.service.settings`).
        kb: the knowledge base; default: the shipped one.
        clock: returns the current time (UTC); the as-of date of every assessment is its date.
            Default: the system clock.

    Raises:
        ConfigError: the settings cannot serve safely (authentication without trusted issuers).
        KnowledgeBaseError: the knowledge base does not load.

    .. versionadded:: 0.1.0

    """
    settings.check()
    knowledge = kb or load()
    store = FeedbackStore(settings.database.url, settings.database.timeout_seconds)
    memory = CardMemory(store, settings.cds)
    runner = DatabaseRunner(
        threads=settings.database.threads,
        queue_limit=4 * settings.database.threads,
        timeout_seconds=settings.database.timeout_seconds,
    )
    # What every worker process must see (token ids, reports behind card links) lives in the
    # shared store on the same database; it has a connection of its own.
    shared = SharedStore(settings.database.url, settings.database.timeout_seconds)
    report_secret = settings.cds.report_secret
    reports_kept = ReportStore(
        shared,
        settings.cds.report_ttl_seconds,
        settings.cds.report_max_entries,
        report_secret.get_secret_value().encode() if report_secret else secrets.token_bytes(32),
    )

    database_file = sqlite_path(settings.database.url)
    checkpointer = WalCheckpointer(database_file) if database_file else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # In the background: a database that does not answer must not hold up the start. The
        # hooks work without it; feedback answers 503 until it is back, and the table is then
        # created by the first call that reaches it.
        app.state.database_start = asyncio.ensure_future(_initialise(runner, store, shared))
        if not settings.auth_enabled:
            _warn_demo()
        # The knowledge base and the code live as long as the process: keep them out of every
        # later full collection (shorter pauses under load).
        gc.collect()
        gc.freeze()
        if checkpointer is not None:
            checkpointer.start()
        yield
        if checkpointer is not None:
            checkpointer.stop()
        if app.state.http is not None:
            await app.state.http.aclose()
            app.state.http = None
        runner.stop()
        store.close()
        shared.close()

    app = FastAPI(
        title="magstat",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        license_info={"name": "Apache-2.0"},
        # No bundled viewer: Swagger UI would load its scripts from a CDN, which fails offline
        # and is a third-party script on the service's origin. /openapi.json opens in any viewer.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.kb = knowledge
    app.state.templates = prefetch_templates(knowledge)
    app.state.feedback = store
    app.state.memory = memory
    app.state.database = runner
    app.state.store = shared
    app.state.checkpointer = checkpointer
    app.state.reports = reports_kept
    app.state.run_hot = run_hot = _hot_path_runner(settings, runner)
    app.state.verifier = TokenVerifier(settings.cds, replay=SharedReplayCache(shared, run_hot))
    app.state.metrics = service_metrics = ServiceMetrics()
    app.state.clock = clock or _utc_now
    app.state.http = None
    app.state.auth_log = logging.getLogger("magstat.service.auth")
    # SMART app sessions (docs/ehr-deployment.md), in the shared store every worker sees.
    app.state.smart_sessions = SharedSessionStore(shared)
    # The clinician web app: open in demo mode; with authentication on, only for the operator's
    # web credential, and disabled without one (docs/web.md, "Who may use the web app").
    password = settings.web.password.get_secret_value() if settings.web.password else None
    app.state.web_access = WebAccess(
        open=not settings.auth_enabled, username=settings.web.username, password=password
    )

    app.include_router(health.router)
    app.include_router(assess.router)
    app.include_router(cds_services.router)
    app.include_router(reports.router)
    app.include_router(metrics.router)
    # The clinician web app and the self-check, at "/" (issue: web app served by magstat serve).
    app.include_router(web_router)
    # The web app as a SMART app launched from the EHR (/smart/...).
    app.include_router(smart_router)
    _handlers(app)
    _document_models(app, HookRequest, FeedbackRequest)

    # Added last = outermost: the edge middleware sees every response, CORS ones included.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.server.cors_allow_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Accept", "X-Request-Id"],
        expose_headers=["X-Request-Id", DEMO_HEADER],
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.server.max_body_bytes,
        demo=not settings.auth_enabled,
        metrics=service_metrics,
    )
    return app


def _hot_path_runner(
    settings: Settings, runner: DatabaseRunner
) -> Callable[[Callable[[], Any]], Awaitable[Any]]:
    """How a hook call runs its database calls (token id, card memory, report).

    PostgreSQL: on the database pool, waiting at most the FHIR deadline. SQLite: on the event
    loop itself. A SQLite call on a local file takes tens of microseconds; handing it to a
    thread costs more, because under load the thread waits for the interpreter lock while the
    loop parses and assesses (measured: tens of milliseconds per call at 100 calls/s). SQLite
    in WAL mode never makes a reader wait, and its writers hold the lock for microseconds.
    """
    if settings.database.url.split(":", 1)[0].lower().startswith("sqlite"):

        async def inline(call: Callable[[], Any]) -> Any:
            return call()

        return inline
    deadline = settings.cds.fhir_deadline_seconds

    async def pooled(call: Callable[[], Any]) -> Any:
        return await runner.run(call, deadline)

    return pooled


def create_app_from_environment() -> FastAPI:
    """Build the service from ``MAGSTAT_CONFIG`` and the ``MAGSTAT_*`` environment (a worker's factory).

    ``magstat serve --workers N`` names this factory to uvicorn, which calls it in each worker
    process; ``serve`` has put its options in the environment first, so every worker builds the
    same service.

    Raises:
        ConfigError: the settings are invalid or cannot serve safely.
        KnowledgeBaseError: the knowledge base does not load.

    .. versionadded:: 0.3.0

    """
    # Each request parses a FHIR record into many short-lived objects; collecting the young
    # generation less often shortens the pauses that make the latency tail (see benchmarks/).
    gc.set_threshold(20_000, 20, 20)
    return create_app(load_settings())


async def _initialise(runner: DatabaseRunner, store: FeedbackStore, shared: SharedStore) -> None:
    try:
        await runner.run(store.initialise)
        await runner.run(shared.initialise)
    except StorageError as exc:
        log.error("feedback database unavailable at start-up: %s", exc)


def _document_models(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add models that handlers validate themselves to the OpenAPI components, and finish the document.

    The document then states what the handlers require: one path per CDS service with the hook
    it answers and the context fields it needs, and, in demo mode, no security scheme at all.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, part in definition.pop("$defs", {}).items():
                components.setdefault(name, part)
            components.setdefault(model.__name__, definition)
        _hook_paths(schema)
        _assess_body(schema, app.state.kb)
        for name in ("Feedback", "OverrideReason", "AcceptedSuggestion", "Coding"):
            for prop in components.get(name, {}).get("properties", {}).values():
                for option in [prop, *prop.get("anyOf", [])]:
                    if option.get("type") == "string":
                        option["pattern"] = "^[^\\u0000]*$"  # no database stores a NUL character
        feedback = components.get("Feedback")
        if isinstance(feedback, dict):
            # What the model's own check says: an accepted card names the suggestions accepted.
            feedback["if"] = {"properties": {"outcome": {"const": "accepted"}}, "required": ["outcome"]}
            feedback["then"] = {
                "required": ["acceptedSuggestions"],
                "properties": {"acceptedSuggestions": {"type": "array", "minItems": 1}},
            }
        if not app.state.settings.auth_enabled:
            _without_security(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _assess_body(schema: dict[str, Any], kb: KnowledgeBase) -> None:
    """State what ``POST /assess`` reads: a patient document (this KB's schema) or a FHIR R4 resource.

    The handler reads the body itself (JSON or YAML, a Bundle or resource told apart by
    ``resourceType``), so the document is completed here rather than from a model.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    document = {k: v for k, v in json_schema(kb).items() if k not in ("$schema", "$id")}
    components.setdefault("PatientDocument", document)
    components.setdefault(
        "FhirResource",
        {
            "title": "FHIR R4 resource",
            "description": "A FHIR R4 Bundle holding the patient's resources, or a single resource",
            "type": "object",
            "required": ["resourceType"],
            "properties": {"resourceType": {"type": "string", "pattern": "^[A-Z][A-Za-z]+$"}},
            "additionalProperties": True,
        },
    )
    document_ref = {"$ref": "#/components/schemas/PatientDocument"}
    fhir_ref = {"$ref": "#/components/schemas/FhirResource"}
    operation = schema.get("paths", {}).get("/assess", {}).get("post")
    content = (operation or {}).get("requestBody", {}).get("content", {})
    for media, body in (
        ("application/json", {"anyOf": [fhir_ref, document_ref]}),
        ("application/fhir+json", fhir_ref),
        ("application/yaml", document_ref),
    ):
        if media in content:
            content[media]["schema"] = body


def _context_schema(hook: str) -> dict[str, Any]:
    """The hook context a magstat service needs (CDS Hooks 2.0 hook definitions, fields it reads)."""
    # A FHIR R4 id (the id datatype); the service itself refuses only a blank one.
    fhir_id = {"type": "string", "pattern": r"^[A-Za-z0-9\-.]{1,64}$"}
    properties: dict[str, Any] = {"patientId": {**fhir_id, "description": "the FHIR id of the patient"}}
    required = ["patientId"]
    if hook in ("order-select", "order-sign"):
        properties["draftOrders"] = {
            "type": "object",
            "description": "a FHIR Bundle of the draft orders",
            "required": ["resourceType"],
            "properties": {"resourceType": {"const": "Bundle"}},
        }
        required.append("draftOrders")
    if hook == "order-select":
        properties["selections"] = {"type": "array", "items": {"type": "string"}}
    return {"type": "object", "required": required, "properties": properties}


def _hook_paths(schema: dict[str, Any]) -> None:
    """Document ``POST /cds-services/{service_id}`` as one path per service, with its hook and context."""
    paths = schema.get("paths", {})
    generic = paths.pop("/cds-services/{service_id}", None)
    if generic is None:
        return
    operation = generic["post"]
    for service in SERVICES.values():
        body = {
            "allOf": [
                {"$ref": "#/components/schemas/HookRequest"},
                {
                    "type": "object",
                    "properties": {"hook": {"const": service.hook}, "context": _context_schema(service.hook)},
                    # fhirAuthorization needs fhirServer (the request model checks it too).
                    "dependentSchemas": {
                        "fhirAuthorization": {
                            "required": ["fhirServer"],
                            "properties": {"fhirServer": {"type": "string", "minLength": 1}},
                        }
                    },
                },
            ]
        }
        one = {
            **operation,
            "operationId": f"call_{service.id.replace('-', '_')}",
            "summary": f"{service.title} ({service.hook})",
            "parameters": [p for p in operation.get("parameters", []) if p.get("name") != "service_id"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        }
        paths[f"/cds-services/{service.id}"] = {"post": one}


def _without_security(schema: dict[str, Any]) -> None:
    """Demo mode: no operation asks for a credential, so the document advertises none."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
    schema.get("components", {}).pop("securitySchemes", None)


def _warn_demo() -> None:
    banner = "!" * 78
    for line in (
        banner,
        "DEMO MODE: AUTHENTICATION IS DISABLED. Any caller can use this service.",
        "Never use demo mode with real patient data. Every response carries " + DEMO_HEADER + ".",
        banner,
    ):
        log.warning(line)


def outcome(status: int, code: str, text: str, field: str | None = None, **headers: str) -> JSONResponse:
    """An error response as a FHIR OperationOutcome."""
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": text}
    if field:
        issue["expression"] = [field]
    return JSONResponse(
        {"resourceType": "OperationOutcome", "issue": [issue]},
        status_code=status,
        media_type="application/fhir+json",
        headers=headers or None,
    )


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidInputError)
    async def invalid_input(request: Request, exc: InvalidInputError) -> JSONResponse:
        return outcome(422, "invalid", exc.message, exc.field or None)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        issues = []
        for error in exc.errors()[:20]:
            loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
            # The message and the place only: the refused value may be patient data.
            issues.append(
                {
                    "severity": "error",
                    "code": "invalid",
                    "diagnostics": f"{loc}: {error.get('msg')}",
                    "expression": [loc],
                }
            )
        return JSONResponse(
            {"resourceType": "OperationOutcome", "issue": issues},
            status_code=422,
            media_type="application/fhir+json",
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "login", 404: "not-found", 405: "not-supported", 413: "too-costly"}.get(
            exc.status_code, "processing"
        )
        return outcome(exc.status_code, code, str(exc.detail), **(exc.headers or {}))

    @app.exception_handler(PreconditionFailedError)
    async def no_data(request: Request, exc: PreconditionFailedError) -> JSONResponse:
        return outcome(
            412,
            "incomplete",
            "no patient data: the request had none of the prefetch and the FHIR server could not be read",
        )

    @app.exception_handler(StorageError)
    async def storage(request: Request, exc: StorageError) -> JSONResponse:
        log.error("feedback database error: %s", exc)
        return outcome(503, "transient", "the feedback database is unavailable; try again later")

    @app.exception_handler(KnowledgeBaseError)
    async def knowledge_base(request: Request, exc: KnowledgeBaseError) -> JSONResponse:
        log.error("knowledge base error (%s)", type(exc).__name__)
        return outcome(503, "exception", "the knowledge base is unavailable")

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        return outcome(422, "structure", "the input is nested too deeply")

    @app.exception_handler(ClientDisconnect)
    async def disconnected(request: Request, exc: ClientDisconnect) -> Response:
        # The caller went away before sending its whole request: not an error of the service.
        log.info("client disconnected", extra={"fields": {"event": "client_disconnected"}})
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The type only: an exception's message or traceback can carry patient data.
        log.error(
            "internal error", extra={"fields": {"event": "internal_error", "exception": type(exc).__name__}}
        )
        return outcome(500, "exception", "internal error; it has been logged")
