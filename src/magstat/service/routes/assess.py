"""``POST /assess``: a patient document or FHIR R4 input in, the assessment out (JSON, FHIR or HTML)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from magstat import __version__
from magstat.adapters.cds_hooks.fhir_out import risk_assessment_json
from magstat.adapters.read import MAX_INFLATED_BYTES, facts_from_data, parse_bytes
from magstat.core.assess import assess
from magstat.core.result import Assessment
from magstat.errors import InvalidInputError
from magstat.kb.schema import KnowledgeBase
from magstat.render import render_html
from magstat.service.deps import AuthenticatedRoute, ClientDep, ClockDep, KBDep
from magstat.service.routes.reports import REPORT_HEADERS

router = APIRouter(tags=["assess"], route_class=AuthenticatedRoute)

_BODY = {
    "required": True,
    "description": (
        "A FHIR R4 Bundle or resource (detected by `resourceType`), or a magstat patient document "
        "(see `magstat schema`). JSON, or YAML for a patient document."
    ),
    "content": {
        "application/json": {"schema": {"type": "object", "additionalProperties": True}},
        "application/fhir+json": {"schema": {"type": "object", "additionalProperties": True}},
        "application/yaml": {"schema": {"type": "object", "additionalProperties": True}},
    },
}


@router.post(
    "/assess",
    summary="Assess one patient",
    openapi_extra={"requestBody": _BODY},
    responses={
        200: {
            "description": "The assessment: magstat's JSON contract, a FHIR RiskAssessment, or HTML",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/fhir+json": {"schema": {"type": "object"}},
                "text/html": {"schema": {"type": "string"}},
            },
        },
        401: {"description": "authentication failed"},
        413: {"description": "body too large"},
        422: {"description": "invalid input (an OperationOutcome naming the field)"},
    },
)
async def assess_patient(
    request: Request,
    *,
    kb: KBDep,
    clock: ClockDep,
    _client: ClientDep,
    format: Annotated[
        Literal["json", "fhir", "html"], Query(description="json (default), fhir (RiskAssessment) or html")
    ] = "json",
    as_of: Annotated[
        str | None,
        Query(
            description="date the assessment is for (YYYY-MM-DD); default: a document's as_of, else today (UTC)",
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            json_schema_extra={"format": "date"},
        ),
    ] = None,
    patient: Annotated[
        str | None, Query(max_length=256, description="Patient.id when the Bundle holds several")
    ] = None,
    strict: Annotated[
        bool, Query(description="refuse the input at the first bad FHIR resource instead of leaving it out")
    ] = False,
) -> Response:
    """Assess a patient; bad FHIR resources are left out and listed unless ``strict``."""
    day = _date(as_of)
    raw = await request.body()
    # Compressed bodies may inflate to a bounded multiple of the body limit (a gzip bomb is 422).
    inflated = min(MAX_INFLATED_BYTES, 8 * request.app.state.settings.server.max_body_bytes)
    options = _Options(day, clock().date(), patient, strict, inflated)
    result = await run_in_threadpool(_assess, raw, kb, options)
    if format == "fhir":
        # The same text as `magstat assess --format fhir` (one function makes both).
        return Response(
            risk_assessment_json(result, kb, version=__version__), media_type="application/fhir+json"
        )
    if format == "html":
        return HTMLResponse(render_html(result, kb), headers=REPORT_HEADERS)
    return JSONResponse(result.to_dict())


def _date(text: str | None) -> dt.date | None:
    """A calendar date written YYYY-MM-DD (a number such as 0 is not a date)."""
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            "as_of", "is not a calendar date", value=text[:16], allowed="YYYY-MM-DD"
        ) from None


@dataclass(frozen=True, slots=True)
class _Options:
    as_of: dt.date | None
    today: dt.date
    patient: str | None
    strict: bool
    max_inflated: int


def _assess(raw: bytes, kb: KnowledgeBase, options: _Options) -> Assessment:
    try:
        data: Any = parse_bytes(raw, "body", max_inflated=options.max_inflated)
    except RecursionError:
        raise InvalidInputError("body", "nested too deeply") from None
    as_of = options.as_of
    if as_of is None and not (isinstance(data, dict) and "resourceType" not in data and data.get("as_of")):
        as_of = options.today  # a patient document's own as_of wins over today, as in the CLI
    facts = facts_from_data(data, kb, as_of=as_of, strict=options.strict, patient_id=options.patient)
    return assess(facts, kb)
