"""CDS Hooks 2.0: discovery, the three services and their feedback endpoint."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from magstat.adapters.cds_hooks.models import (
    CdsResponse,
    Discovery,
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
    FeedbackDep,
    HttpDep,
    KBDep,
    ReportsDep,
    SettingsDep,
    base_url,
)
from magstat.service.feedback import FeedbackRecord

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


@router.post(
    "/{service_id}",
    response_model=CdsResponse,
    summary="Call a CDS service",
    responses={**_ERRORS, 412: {"description": "no patient data could be obtained"}},
    openapi_extra={"requestBody": _HOOK_BODY},
)
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
) -> JSONResponse:
    """Answer a hook call with cards (none when nothing needs saying)."""
    service = hooks.SERVICES.get(service_id)
    if service is None:
        raise HTTPException(status_code=404, detail="no such CDS service")
    # Parsed and validated in one pass by pydantic's JSON reader: a prefetch of a few hundred
    # kilobytes is the larger part of the request's cost.
    try:
        body = HookRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
    if body.hook != service.hook:
        raise InvalidInputError("hook", f"this service answers {service.hook}", value=body.hook[:64])
    allowed: tuple[str, ...] = ()
    if client is not None:
        issuer = request.app.state.verifier.issuer(client.iss)
        allowed = issuer.fhir_servers if issuer else ()
    gathered = await hooks.gather(
        body, request.app.state.templates, settings=settings, issuer_servers=allowed, http=http
    )
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
    )
    return JSONResponse(response)


@router.post(
    "/{service_id}/feedback",
    response_model=FeedbackResponse,
    summary="Feedback on cards",
    responses={**_ERRORS, 503: {"description": "the feedback database is unavailable"}},
)
async def feedback(
    service_id: ServiceId,
    body: FeedbackRequest,
    *,
    request: Request,
    client: ClientDep,
    store: FeedbackDep,
    clock: ClockDep,
) -> FeedbackResponse:
    """Store what the clinician did with cards: accepted suggestions or an override reason."""
    if service_id not in hooks.SERVICES:
        raise HTTPException(status_code=404, detail="no such CDS service")
    records = [
        FeedbackRecord(
            service_id=service_id,
            card_uuid=item.card,
            outcome=item.outcome,
            accepted_suggestions=tuple(s.id for s in item.acceptedSuggestions or ()),
            outcome_timestamp=item.outcomeTimestamp,
            override_system=item.overrideReason.reason.system
            if item.overrideReason and item.overrideReason.reason
            else None,
            override_code=item.overrideReason.reason.code
            if item.overrideReason and item.overrideReason.reason
            else None,
            override_display=item.overrideReason.reason.display
            if item.overrideReason and item.overrideReason.reason
            else None,
            user_comment=item.overrideReason.userComment if item.overrideReason else None,
            issuer=client.iss if client else None,
            tenant=client.tenant if client else None,
        )
        for item in body.feedback
    ]
    stored = await run_in_threadpool(store.add, records)
    # Overrides with the card's own reasons and accepted lab orders hold the card back for a while.
    await run_in_threadpool(request.app.state.memory.learn, records, clock())
    return FeedbackResponse(stored=stored)
