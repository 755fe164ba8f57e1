"""The three CDS services and the steps of one hook call: gather data, assess, make cards.

The clinical content comes from :func:`magstat.core.assess` and the knowledge base; the cards
from :mod:`magstat.adapters.cds_hooks.cards`. This module only moves data between them.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from magstat import __version__
from magstat.adapters.cds_hooks.cards import CardContext, add_report_link, order_cards, patient_view_cards
from magstat.adapters.cds_hooks.concerns import card_concern, card_state
from magstat.adapters.cds_hooks.models import HookRequest
from magstat.adapters.cds_hooks.request import (
    CONDITION_KEYS,
    MEDICATION_KEYS,
    OPTIONAL_KEYS,
    draft_drugs,
    draft_orders,
    mark_drafts,
    patient_bundle,
    render_template,
)
from magstat.adapters.fhir import facts_from_fhir
from magstat.core.assess import assess
from magstat.errors import InvalidInputError
from magstat.kb.schema import KnowledgeBase
from magstat.service.datagaps import TOPIC_DATA_UNREAD, unread_data_card
from magstat.service.feedback import StorageError
from magstat.service.fhirclient import fetch_templates
from magstat.service.metrics import CallTiming
from magstat.service.reports import ReportStore
from magstat.service.settings import Settings
from magstat.service.suppression import CardMemory, ShownCard

__all__ = ["SERVICES", "CdsService", "Gathered", "PreconditionFailedError", "answer", "discovery", "gather"]

log = logging.getLogger("magstat.service.hooks")


@dataclass(frozen=True, slots=True)
class CdsService:
    """One CDS service of the discovery response."""

    id: str
    hook: str
    title: str
    description: str


SERVICES: dict[str, CdsService] = {
    s.id: s
    for s in (
        CdsService(
            "magstat-patient-view",
            "patient-view",
            "Magnesium status",
            "Assesses the patient's magnesium status from labs, medications and problems when the chart "
            "opens; shows a card only when the assessment warrants one (deficiency, excess, strong risk "
            "with no recent magnesium result, renal magnesium wasting, treatment safety).",
        ),
        CdsService(
            "magstat-order-select",
            "order-select",
            "Magnesium and drug orders (select)",
            "When a drug that lowers magnesium (proton-pump inhibitor, diuretic and the other classes of "
            "magstat's knowledge base) is selected, advises baseline and follow-up serum magnesium and "
            "offers the lab order; warns about a magnesium product when kidney function is reduced.",
        ),
        CdsService(
            "magstat-order-sign",
            "order-sign",
            "Magnesium and drug orders (sign)",
            "The same checks as magstat-order-select, on every draft order just before signing.",
        ),
    )
}

USAGE = (
    "Every call needs an Authorization: Bearer JWT signed by a trusted EHR key (CDS Hooks 2.0 "
    "security). Send the prefetch listed, or fhirServer with fhirAuthorization. Decision support, "
    "not a diagnosis."
)


class PreconditionFailedError(Exception):
    """No patient data could be had, from prefetch or from the FHIR server (HTTP 412)."""


def discovery(templates: Mapping[str, str]) -> dict[str, Any]:
    """The discovery response: the three services with their prefetch templates."""
    return {
        "services": [
            {
                "hook": s.hook,
                "title": s.title,
                "description": s.description,
                "id": s.id,
                "prefetch": dict(templates),
                "usageRequirements": USAGE,
            }
            for s in SERVICES.values()
        ]
    }


@dataclass(slots=True)
class Gathered:
    """The patient data of one call: prefetch values (sent or fetched) and what is missing."""

    values: dict[str, Any] = field(default_factory=dict)
    complete: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    unread: set[str] = field(default_factory=set)
    """Keys that were neither sent nor read (failed, timed out, refused): unknown, not empty."""
    fetched: bool = False
    """Whether the FHIR server was read."""
    fetched_failed: set[str] = field(default_factory=set)
    """Keys whose read from the FHIR server failed or timed out."""


async def gather(
    body: HookRequest,
    templates: Mapping[str, str],
    *,
    settings: Settings,
    issuer_servers: tuple[str, ...],
    http: httpx.AsyncClient,
) -> Gathered:
    """Take the prefetch the EHR sent and read what it did not send from its FHIR server.

    A key left out with no FHIR server to read (or one the settings refuse) is unread, except
    an optional key (:data:`~magstat.adapters.cds_hooks.request.OPTIONAL_KEYS`), which is then
    simply not read; a failed read from the server is unread for every key.

    Args:
        body: the hook request.
        templates: the service's prefetch templates.
        settings: deadline, page limit, allowed FHIR servers.
        issuer_servers: the FHIR servers the caller's configuration allows (empty: any).
        http: the shared HTTP client.

    """
    out = Gathered()
    sent = body.prefetch or {}
    for key in templates:
        if key in sent:
            out.values[key] = sent[key]
            out.complete.add(key)  # a prefetch value is the whole result (no next pages allowed)
    missing = [k for k in templates if k not in sent]
    if not missing:
        return out
    # An optional key the EHR neither sent nor lets the service read is not a gap in the record.
    required = [k for k in missing if k not in OPTIONAL_KEYS]
    server = body.fhirServer
    if not server:
        if required:
            out.notes.append(f"not sent and no FHIR server to read: {', '.join(required)}")
            out.unread.update(required)
        return out
    refusal = _server_refused(server, settings, issuer_servers)
    if refusal:
        if required:
            out.notes.append(f"the FHIR server was not read ({refusal}): {', '.join(required)}")
            out.unread.update(required)
        return out
    queries: dict[str, str] = {}
    for key in missing:
        query = render_template(templates[key], body.context)
        if query is None:
            out.notes.append(f"{key}: the hook context lacks a value the query needs")
            out.unread.add(key)
        else:
            queries[key] = query
    token = body.fhirAuthorization.access_token if body.fhirAuthorization else None
    fetched = await fetch_templates(
        http,
        server,
        token,
        queries,
        deadline_seconds=settings.cds.fhir_deadline_seconds,
        max_pages=settings.cds.fhir_max_pages,
    )
    out.values.update(fetched.values)
    out.complete |= fetched.complete
    out.notes += fetched.notes
    out.unread |= fetched.failed
    out.fetched = True
    out.fetched_failed = set(fetched.failed)
    return out


def _server_refused(server: str, settings: Settings, allowed: tuple[str, ...]) -> str | None:
    parts = urlsplit(server)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.username or parts.password:
        return "not an http(s) URL"
    if parts.scheme == "http" and not settings.cds.allow_http_fhir_server:
        return "plain http is not allowed"
    if allowed:
        norm = server.rstrip("/") + "/"
        if not any(norm.startswith(a.rstrip("/") + "/") for a in allowed):
            return "not a FHIR server configured for this EHR"
    return None


async def answer(
    service: CdsService,
    body: HookRequest,
    gathered: Gathered,
    *,
    kb: KnowledgeBase,
    settings: Settings,
    today: dt.date,
    reports: ReportStore,
    base_url: str,
    memory: CardMemory | None = None,
    now: dt.datetime | None = None,
    run_db: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None,
    timing: CallTiming | None = None,
) -> dict[str, Any]:
    """Assess the patient and return the CDS Hooks response (``{"cards": [...]}``).

    ``info`` cards are left out when ``cds.show_info_cards`` is false; with a ``memory``, cards
    that feedback or an earlier hook already covered are held back
    (:mod:`magstat.service.suppression`). The database calls run through ``run_db`` (default: a
    worker thread); when it fails, every card is shown. The report behind the cards' link is
    kept in the shared store; when that fails, the cards go without the link. ``timing``, if
    given, receives the seconds of the ``adapter``, ``assess`` and ``cards`` stages.

    Raises:
        InvalidInputError: the hook context is not what the hook defines, or the data name
            another patient than ``context.patientId``.
        PreconditionFailedError: ``patient-view`` had no patient data at all.

    """
    context = body.context
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not patient_id.strip():
        raise InvalidInputError("context.patientId", "is required", allowed="the FHIR id of the patient")
    encounter = context.get("encounterId")
    order_hook = service.hook in ("order-select", "order-sign")
    drafts = None
    if order_hook:
        bundle = context.get("draftOrders")
        if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
            raise InvalidInputError("context.draftOrders", "must be a FHIR Bundle of the draft orders")
        selections = context.get("selections") if service.hook == "order-select" else None
        if selections is not None and (
            not isinstance(selections, list) or not all(isinstance(s, str) for s in selections)
        ):
            raise InvalidInputError("context.selections", "must be a list of Type/id strings")
        drafts = draft_orders(kb, bundle, selections)
    run = run_db or asyncio.to_thread
    started = time.perf_counter()
    reading = patient_bundle(gathered.values, drafts.resources if drafts else ())
    obtained = [k for k in gathered.values if k not in reading.unusable]
    if not obtained and not order_hook:
        raise PreconditionFailedError
    facts = facts_from_fhir(reading.bundle, kb, as_of=today, strict=False, patient_id=patient_id)
    if drafts is not None:
        facts = mark_drafts(facts, drafts)
    # An empty search result is a known empty list only when every query of that list came back
    # whole; the FHIR adapter cannot tell "no MedicationRequest" from "not asked".
    known = gathered.complete - reading.unusable
    if facts.medications is None and all(k in known for k in MEDICATION_KEYS):
        facts = dataclasses.replace(facts, medications=())
    if facts.conditions is None and all(k in known for k in CONDITION_KEYS):
        facts = dataclasses.replace(facts, conditions=())
    adapted = time.perf_counter()
    result = assess(facts, kb)
    assessed = time.perf_counter()
    if timing is not None:
        timing.add("adapter", adapted - started)
        timing.add("assess", assessed - adapted)
    notes = [*gathered.notes, *reading.notes]
    if not obtained:
        notes.append("no patient data could be read: the cards rest on the draft orders alone")
    ctx = CardContext(
        service_id=service.id,
        hook_instance=body.hookInstance,
        patient_id=patient_id,
        encounter_id=encounter if isinstance(encounter, str) and encounter else None,
        data_notes=tuple(notes),
        version=__version__,
        developer=settings.cds.developer,
        funding_source=settings.cds.funding_source,
    )
    if drafts is not None:
        cards = order_cards(
            result, kb, ctx, draft_drugs(kb, drafts, today), serum_mg_ordered=drafts.serum_mg_ordered
        )
    else:
        cards = patient_view_cards(result, kb, ctx)
        if not cards and gathered.unread:
            # Part of the record could not be read: no card would read as "no concern".
            cards = [
                unread_data_card(
                    service_id=service.id,
                    hook_instance=body.hookInstance,
                    version=__version__,
                    kb_version=kb.version,
                    unread=gathered.unread,
                    notes=notes,
                )
            ]
    if not settings.cds.show_info_cards:
        cards = [c for c in cards if c["indicator"] != "info"]
    # The "could not read" card comes alone and only when nothing else is said: never held back.
    if memory is not None and cards and cards[0]["source"]["topic"]["code"] != TOPIC_DATA_UNREAD:
        candidates = [ShownCard(c, card_concern(c, result), card_state(c, result, facts, kb)) for c in cards]
        select = functools.partial(
            memory.select, service.id, patient_id, candidates, now or dt.datetime.now(dt.UTC)
        )
        try:
            cards = await run(select)
        except StorageError as exc:
            log.error("card memory unavailable, every card is shown: %s", exc)
    if cards:
        # The report is kept only when a card links to it: no card, no patient data kept.
        try:
            token = await run(functools.partial(reports.put, result))
        except StorageError as exc:
            log.error("report store unavailable, the cards go without their report link: %s", exc)
        else:
            add_report_link(cards, f"{base_url}/reports/{token}")
    if timing is not None:
        timing.add("cards", time.perf_counter() - assessed)
    return {"cards": cards}
