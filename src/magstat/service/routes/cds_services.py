"""CDS Hooks 2.0: discovery, the three services and their feedback endpoint."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import StringConstraints, TypeAdapter, ValidationError

from magstat.adapters.cds_hooks.cards import add_smart_link
from magstat.adapters.cds_hooks.models import (
    CdsResponse,
    Discovery,
    Feedback,
    FeedbackRequest,
    FeedbackResponse,
    HookRequest,
)
from magstat.errors import InvalidInputError
from magstat.service import hooks
from magstat.service.deps import (
    AuthenticatedRoute,
    ClientDep,
    ClockDep,
    DatabaseDep,
    FeedbackDep,
    HttpDep,
    KBDep,
    ReportsDep,
    SettingsDep,
    authenticate_route,
    base_url,
    get_http,
)
from magstat.service.feedback import FeedbackRecord, StorageError
from magstat.service.metrics import CallTiming
from magstat.service.security import ClientIdentity

log = logging.getLogger("magstat.service.cds")

ServiceId = Annotated[
    str,
    Path(
        description="the id of a service from discovery",
        max_length=128,
        json_schema_extra={"enum": list(hooks.SERVICES)},
    ),
]
"""A service id; documented as the three ids, answered 404 (not 422) for any other."""

router = APIRouter(prefix="/cds-services", tags=["cds-hooks"], route_class=AuthenticatedRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "authentication failed"},
    404: {"description": "no such service"},
    413: {"description": "body too large"},
    422: {"description": "invalid request (an OperationOutcome naming the field)"},
}


@router.get("", response_model=Discovery, summary="CDS Hooks discovery", responses={401: _ERRORS[401]})
async def discovery(request: Request, _client: ClientDep) -> JSONResponse:
    """The three magstat services, with the prefetch each asks for."""
    return JSONResponse(hooks.discovery(request.app.state.templates))


_HOOK_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HookRequest"}}},
}


class HookRoute(AuthenticatedRoute):
    """The route of hook calls: authenticated first, then the handler called with the application's state.

    FastAPI's own request handler would solve the handler's dependencies on every call, each
    plain function on the thread pool (a thread hand-off per dependency, measured at about a
    tenth of a hook call's CPU); the hook call is the service's hot path, so this handler
    passes them from ``app.state`` itself. The route keeps its declaration: the OpenAPI
    document, the 404 for an unknown service and the 422 for a service id past 128 characters
    are those of the declared handler.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The lean handler of ``POST /cds-services/{service_id}``."""

        async def lean(request: Request) -> Response:
            client = await authenticate_route(request)
            service_id = request.path_params["service_id"]
            try:
                _SERVICE_ID.validate_python(service_id)
            except ValidationError as exc:
                raise RequestValidationError(
                    [
                        {**e, "loc": ("path", "service_id", *e["loc"])}
                        for e in exc.errors(include_url=False, include_input=False)
                    ]
                ) from None
            state = request.app.state
            return await call_service(
                service_id,
                request=request,
                client=client,
                settings=state.settings,
                kb=state.kb,
                clock=state.clock,
                reports=state.reports,
                http=get_http(request),
            )

        return lean


_SERVICE_ID: TypeAdapter[str] = TypeAdapter(Annotated[str, StringConstraints(max_length=128)])
"""What the path parameter declares (``ServiceId``), checked by :class:`HookRoute`."""


async def call_service(
    service_id: ServiceId,
    *,
    request: Request,
    client: ClientDep,
    settings: SettingsDep,
    kb: KBDep,
    clock: ClockDep,
    reports: ReportsDep,
    http: HttpDep,
) -> Response:
    """Answer a hook call with cards (none when nothing needs saying)."""
    service = hooks.SERVICES.get(service_id)
    if service is None:
        raise HTTPException(status_code=404, detail="no such CDS service")
    # The timing record of the call, for the access log and the metrics (see accesslog.py).
    timing = CallTiming(service.id, service.hook)
    timing.add("auth", getattr(request.state, "auth_seconds", 0.0))
    request.state.cds_timing = timing
    started = time.perf_counter()
    body = hook_body(await request.body())
    timing.hook_instance = body.hookInstance
    timing.add("parse", time.perf_counter() - started)
    if body.hook != service.hook:
        raise InvalidInputError("hook", f"this service answers {service.hook}", value=body.hook[:64])
    allowed: tuple[str, ...] = ()
    if client is not None:
        issuer = request.app.state.verifier.issuer(client.iss)
        allowed = issuer.fhir_servers if issuer else ()
    started = time.perf_counter()
    templates = request.app.state.templates
    gathered = await hooks.gather(body, templates, settings=settings, issuer_servers=allowed, http=http)
    timing.add("fetch", time.perf_counter() - started)
    sent = body.prefetch or {}
    timing.prefetch_misses = [key for key in templates if key not in sent]
    timing.fetched = bool(gathered.fetched)
    timing.fetch_failures = sorted(gathered.fetched_failed)
    now = clock()
    response = await hooks.answer(
        service,
        body,
        gathered,
        kb=kb,
        settings=settings,
        today=now.date(),
        reports=reports,
        base_url=base_url(request, settings),
        memory=request.app.state.memory,
        now=now,
        # The card memory may hold a hook call up to the FHIR deadline; then every card is shown.
        run_db=request.app.state.run_hot,
        timing=timing,
    )
    # The SMART app, when this EHR is registered for it (docs/ehr-deployment.md).
    if (
        response["cards"]
        and settings.smart.ehrs
        and (not body.fhirServer or settings.smart.find(body.fhirServer))
    ):
        add_smart_link(response["cards"], f"{base_url(request, settings)}/smart/launch")
    timing.cards = [str(card.get("indicator")) for card in response["cards"]]
    return Response(orjson.dumps(response), media_type="application/json")


router.add_api_route(
    "/{service_id}",
    call_service,
    methods=["POST"],
    response_model=CdsResponse,
    summary="Call a CDS service",
    responses={**_ERRORS, 412: {"description": "no patient data could be obtained"}},
    openapi_extra={"requestBody": _HOOK_BODY},
    route_class_override=HookRoute,
)


def hook_body(raw: bytes) -> HookRequest:
    """The hook request of a body: parsed once (orjson), then validated as a model (422 if not).

    The prefetch, the larger part of the body, is handed to the model as parsed: its resources
    are checked by the FHIR adapter that reads them, not copied again here.

    Raises:
        RequestValidationError: the body is not JSON or not a hook request.

    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # The parser's message and position only (never a piece of the body).
        raise RequestValidationError(
            [{"loc": ("body",), "msg": f"Invalid JSON: {exc}", "type": "json_invalid"}]
        ) from None
    try:
        return HookRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None


_FEEDBACK_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}},
}


@router.post(
    "/{service_id}/feedback",
    response_model=FeedbackResponse,
    summary="Feedback on cards",
    responses={**_ERRORS, 503: {"description": "the feedback database is unavailable"}},
    openapi_extra={"requestBody": _FEEDBACK_BODY},
)
async def feedback(
    service_id: ServiceId,
    *,
    request: Request,
    client: ClientDep,
    store: FeedbackDep,
    database: DatabaseDep,
    clock: ClockDep,
) -> JSONResponse:
    """Store what the clinician did with cards: accepted suggestions or an override reason."""
    if service_id not in hooks.SERVICES:
        raise HTTPException(status_code=404, detail="no such CDS service")
    # Read like the hook calls, so that a body that is not JSON is a 422 as everywhere else.
    try:
        body = FeedbackRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
    records = [_record(service_id, i, item, client) for i, item in enumerate(body.feedback)]
    stored = await database.run(lambda: store.add(records))
    # Overrides with the card's own reasons and accepted lab orders hold the card back for a while.
    # The feedback is stored by now: a card memory that fails is logged, not answered with 503.
    now = clock()
    try:
        await database.run(lambda: request.app.state.memory.learn(records, now))
    except StorageError as exc:
        log.error("card memory unavailable, feedback made no suppression rule: %s", exc)
    return JSONResponse(FeedbackResponse(stored=stored).model_dump())


def _record(service_id: str, index: int, item: Feedback, client: ClientIdentity | None) -> FeedbackRecord:
    """One feedback item as a row, refusing what no database can store (a permanent 422)."""
    where = f"feedback[{index}]"
    stamp = item.outcomeTimestamp
    try:
        (stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise InvalidInputError(
            f"{where}.outcomeTimestamp",
            "is out of range once converted to UTC",
            allowed="a date-time between 0001-01-02 and 9999-12-30",
        ) from None
    reason = item.overrideReason.reason if item.overrideReason else None
    record = FeedbackRecord(
        service_id=service_id,
        card_uuid=item.card,
        outcome=item.outcome,
        accepted_suggestions=tuple(s.id for s in item.acceptedSuggestions or ()),
        outcome_timestamp=stamp,
        override_system=reason.system if reason else None,
        override_code=reason.code if reason else None,
        override_display=reason.display if reason else None,
        user_comment=item.overrideReason.userComment if item.overrideReason else None,
        issuer=client.iss if client else None,
        tenant=client.tenant if client else None,
    )
    texts = {
        "card": record.card_uuid,
        "overrideReason.reason.system": record.override_system,
        "overrideReason.reason.code": record.override_code,
        "overrideReason.reason.display": record.override_display,
        "overrideReason.userComment": record.user_comment,
        **{f"acceptedSuggestions[{n}].id": s for n, s in enumerate(record.accepted_suggestions)},
    }
    for name, text in texts.items():
        if text is not None:
            _storable(f"{where}.{name}", text)
    return record


def _storable(field: str, text: str) -> None:
    """Refuse text a database cannot store: a NUL character, or a lone surrogate (not UTF-8)."""
    if "\x00" in text:
        raise InvalidInputError(field, "contains a NUL character", allowed="text without control character 0")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(field, "is not valid Unicode text (a lone surrogate)") from None
