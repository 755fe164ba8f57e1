"""The edge of every request: request id, body size limit, demo marking and the access log.

The access log is one JSON object per request with the method, the route template (never the
raw path or query string, which may carry identifiers), the status, the duration, the request
size and the request id. No header, body or patient data is logged.

A CDS Hooks call adds its timing record: ``service``, ``hook``, ``hook_instance`` (the EHR's
UUID of the call, which lets the EHR's and the service's logs be matched), ``cards`` (how many)
and ``stages_ms``, the milliseconds of each stage (``parse``, ``auth``, ``fetch``, ``adapter``,
``assess``, ``cards``); ``hook_instance`` is logged only when it is a UUID, as CDS Hooks asks
(null otherwise). ``duration_ms`` is the total, from the first byte received to the last
sent. From these lines an operator computes, for example, the share of calls answered within
500 ms (docs/service.md, "Timing of hook calls"). The same figures feed the Prometheus
metrics (:mod:`magstat.service.metrics`).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson

from magstat.service.metrics import CallTiming, ServiceMetrics

__all__ = ["DEMO_HEADER", "EdgeMiddleware", "JsonFormatter", "logging_config"]

DEMO_HEADER = "X-Magstat-Demo-Mode"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HOOK_INSTANCE = re.compile(
    r"^[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}$"
)
"""A UUID, as CDS Hooks asks of ``hookInstance``."""

log = logging.getLogger("magstat.service.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class _TooLargeError(Exception):
    """The request body went past the limit while it was read."""


class EdgeMiddleware:
    """Pure ASGI middleware around the whole application (see the module documentation)."""

    def __init__(
        self, app: Any, *, max_body_bytes: int, demo: bool, metrics: ServiceMetrics | None = None
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.demo = demo
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        state = {"status": 0, "bytes_in": 0, "started": False}
        extra = [(b"x-request-id", request_id.encode())]
        if self.demo:
            extra.append((DEMO_HEADER.lower().encode(), b"authentication disabled"))

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                state["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        async def receive_wrapper() -> Message:
            message: Message = await receive()
            if message["type"] == "http.request":
                state["bytes_in"] += len(message.get("body", b""))
                if state["bytes_in"] > self.max_body:
                    raise _TooLargeError
            return message

        try:
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                await _too_large(send_wrapper, self.max_body)
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except _TooLargeError:
            if not state["started"]:
                await _too_large(send_wrapper, self.max_body)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            status = state["status"] or 500
            method = str(scope.get("method"))
            fields: dict[str, Any] = {
                "event": "access",
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "bytes_in": state["bytes_in"],
                "request_id": request_id,
            }
            timing = (scope.get("state") or {}).get("cds_timing")
            if isinstance(timing, CallTiming):
                fields["service"] = timing.service
                fields["hook"] = timing.hook
                # The EHR's UUID of the call; anything else it put there is not logged.
                given_instance = timing.hook_instance or ""
                fields["hook_instance"] = given_instance if _HOOK_INSTANCE.match(given_instance) else None
                fields["cards"] = len(timing.cards)
                fields["stages_ms"] = timing.stage_ms()
            log.info("access", extra={"fields": fields})
            if self.metrics is not None:
                self.metrics.observe_request(method, route, status, seconds)
                if isinstance(timing, CallTiming):
                    self.metrics.observe_call(timing, status, seconds)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "too-costly",
                    "diagnostics": f"request body larger than the limit of {limit} bytes",
                }
            ],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/fhir+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, message and structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Format a record as JSON (exception tracebacks are reduced to the exception type)."""
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which worker process (magstat serve --workers N)
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: a traceback's locals and messages can carry patient data.
            data["exception"] = record.exc_info[0].__name__
        try:
            # One line per request: orjson writes it in a fraction of the standard library's time.
            return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):
            return json.dumps(data, ensure_ascii=False, default=str)


def logging_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the service and uvicorn: JSON lines on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "magstat": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
