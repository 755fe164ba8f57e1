"""``GET /reports/{token}``: the full HTML report behind a card's link."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse

from magstat.render import render_html
from magstat.service.deps import KBDep, ReportsDep

router = APIRouter(tags=["reports"])

REPORT_HEADERS = {  # every HTML assessment the service sends (cards' reports, /assess?format=html)
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors *",
}


@router.get(
    "/reports/{token}",
    response_class=HTMLResponse,
    summary="The full report linked from a card",
    responses={404: {"description": "unknown or expired report"}},
)
def report(token: str, reports: ReportsDep, kb: KBDep) -> HTMLResponse:
    """The printable report of an assessment a card was made from, while it is kept."""
    result = reports.get(token)
    if result is None:
        raise HTTPException(status_code=404, detail="unknown or expired report")
    return HTMLResponse(render_html(result, kb), headers=REPORT_HEADERS)
