"""``GET /metrics``: the Prometheus text exposition of the service's metrics.

Off (404) when ``metrics.enabled`` is false; with ``metrics.bearer_token`` set, only a request
carrying that token is answered (401 otherwise). The series hold counts and timings only, with
labels from fixed sets (:mod:`magstat.service.metrics`): no patient data.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from magstat.service.deps import SettingsDep
from magstat.service.metrics import CONTENT_TYPE, ServiceMetrics

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "the text exposition format"},
        401: {"description": "metrics.bearer_token is set and the request did not carry it"},
        404: {"description": "metrics are disabled"},
    },
)
def metrics(request: Request, settings: SettingsDep) -> Response:
    """Every series, summed over the service's worker processes."""
    if not settings.metrics.enabled:
        raise HTTPException(status_code=404, detail="metrics are disabled")
    token = settings.metrics.bearer_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(
                status_code=401,
                detail="metrics need their bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
    registry: ServiceMetrics = request.app.state.metrics
    return Response(registry.exposition(), media_type=CONTENT_TYPE)
