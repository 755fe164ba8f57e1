"""Prometheus metrics of the service, served at ``GET /metrics``, and the timing of each hook call.

The series (every label value comes from a fixed set: route templates, service ids, hook names,
stage names, prefetch keys, card indicators, status codes; never a patient id, a path, a query
or anything else a caller sends):

- ``magstat_http_requests_total{method, route, status}`` and
  ``magstat_http_request_duration_seconds{method, route}``: every request, by route template.
- ``magstat_http_errors_total{route, status}``: answers with a 4xx or 5xx status.
- ``magstat_cds_requests_total{service, hook, status}`` and
  ``magstat_cds_request_duration_seconds{service, hook}``: hook calls, from the first byte
  received to the last byte sent.
- ``magstat_cds_stage_duration_seconds{service, stage}``: the stages of a hook call (``parse``,
  ``auth``, ``fetch``, ``adapter``, ``assess``, ``cards``).
- ``magstat_cds_cards_total{service, indicator}``: cards returned.
- ``magstat_cds_prefetch_misses_total{service, key}``: prefetch keys the EHR did not send, which
  the service then had to read from the FHIR server (or could not).
- ``magstat_fhir_fetch_duration_seconds{service}`` and ``magstat_fhir_fetch_failures_total{service, key}``:
  reading the FHIR server (per hook call that needed it), and reads that failed or timed out.
- ``magstat_auth_refused_total``: requests refused for their token.

With several worker processes (``magstat serve --workers N``) the client library's
multiprocess mode is used: ``magstat serve`` makes a temporary folder, names it in
``PROMETHEUS_MULTIPROC_DIR`` for the workers and deletes it on exit; ``/metrics`` then sums the
values of every worker, whichever one answers.

.. versionadded:: 0.3.0
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE", "STAGES", "CallTiming", "ServiceMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The media type of the ``/metrics`` answer."""

STAGES = ("parse", "auth", "fetch", "adapter", "assess", "cards")
"""The stages of a hook call, in order."""

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: fine below 50 ms (the service's own target) and up to the 500 ms EHRs allow."""
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0)


@dataclass(slots=True)
class CallTiming:
    """What one hook call records for the access log and the metrics (no patient data).

    Attributes:
        service: the service id called.
        hook: the hook it answers.
        hook_instance: the EHR's id of this hook call (a UUID it made).
        stages: seconds per stage, in the order the stages ran.
        cards: indicators of the cards returned.
        prefetch_misses: prefetch keys not sent by the EHR.
        fetch_failures: keys whose read from the FHIR server failed.
        fetched: whether the FHIR server was read.

    """

    service: str
    hook: str
    hook_instance: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    cards: list[str] = field(default_factory=list)
    prefetch_misses: list[str] = field(default_factory=list)
    fetch_failures: list[str] = field(default_factory=list)
    fetched: bool = False

    def add(self, stage: str, seconds: float) -> None:
        """Add time to a stage."""
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def stage_ms(self) -> dict[str, float]:
        """Milliseconds per stage, every stage named (0 for one that did not run)."""
        return {name: round(self.stages.get(name, 0.0) * 1000, 3) for name in STAGES}


class ServiceMetrics:
    """The metrics of one application (its own registry; shared files across worker processes)."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # One process: a registry per application (tests build many). Several: the values go to
        # the shared folder whatever the registry, and /metrics reads them all back.
        self.registry = CollectorRegistry()
        reg = None if self.multiprocess else self.registry
        self.http_requests = Counter(
            "magstat_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=reg
        )
        self.http_duration = Histogram(
            "magstat_http_request_duration_seconds",
            "Time from the request's arrival to the end of the answer",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.http_errors = Counter(
            "magstat_http_errors", "Answers with a 4xx or 5xx status", ["route", "status"], registry=reg
        )
        self.cds_requests = Counter(
            "magstat_cds_requests", "CDS Hooks calls answered", ["service", "hook", "status"], registry=reg
        )
        self.cds_duration = Histogram(
            "magstat_cds_request_duration_seconds",
            "Time of a CDS Hooks call, first byte in to last byte out",
            ["service", "hook"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.cds_stage = Histogram(
            "magstat_cds_stage_duration_seconds",
            "Time of each stage of a CDS Hooks call",
            ["service", "stage"],
            buckets=_STAGE_BUCKETS,
            registry=reg,
        )
        self.cards = Counter("magstat_cds_cards", "Cards returned", ["service", "indicator"], registry=reg)
        self.prefetch_misses = Counter(
            "magstat_cds_prefetch_misses",
            "Prefetch keys the EHR did not send (read from the FHIR server, or not at all)",
            ["service", "key"],
            registry=reg,
        )
        self.fhir_duration = Histogram(
            "magstat_fhir_fetch_duration_seconds",
            "Time spent reading the EHR's FHIR server in a hook call",
            ["service"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.fhir_failures = Counter(
            "magstat_fhir_fetch_failures",
            "Prefetch keys whose read from the FHIR server failed or timed out",
            ["service", "key"],
            registry=reg,
        )
        self.auth_refused = Counter("magstat_auth_refused", "Requests refused for their token", registry=reg)
        # Labelled series by metric and label values, found again without the client library's
        # label checks and lock on every call (the label values come from fixed sets, see above).
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """The series of ``metric`` with these label values (made once)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request (``route`` is the route template, never the raw path)."""
        code = str(status)
        self._child(self.http_requests, method, route, code).inc()
        self._child(self.http_duration, method, route).observe(seconds)
        if status >= 400:
            self._child(self.http_errors, route, code).inc()

    def observe_call(self, timing: CallTiming, status: int, seconds: float) -> None:
        """Count one hook call with its stages, cards and prefetch misses."""
        service = timing.service
        child = self._child
        child(self.cds_requests, service, timing.hook, str(status)).inc()
        child(self.cds_duration, service, timing.hook).observe(seconds)
        for stage, spent in timing.stages.items():
            child(self.cds_stage, service, stage).observe(spent)
        for indicator in timing.cards:
            child(self.cards, service, indicator).inc()
        for key in timing.prefetch_misses:
            child(self.prefetch_misses, service, key).inc()
        if timing.fetched:
            child(self.fhir_duration, service).observe(timing.stages.get("fetch", 0.0))
        for key in timing.fetch_failures:
            child(self.fhir_failures, service, key).inc()

    def exposition(self) -> bytes:
        """The text exposition of every series (of every worker, in multiprocess mode)."""
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))
