"""The patient's chart, read with the SMART access token, and its assessment.

The app reads what the CDS services read: the searches of the prefetch templates
(:func:`magstat.adapters.cds_hooks.request.prefetch_templates`) for the launch patient, from
the EHR's FHIR server, following ``Bundle.link[next]`` within a deadline
(:func:`magstat.service.fhirclient.fetch_templates`). The results go through the same FHIR
adapter and :func:`magstat.core.assess.assess`: one implementation of the rules.

A chart is assessed only when every search came back whole: a part that could not be read
(the server failed, refused or did not answer in time) or a search cut short at the page limit
could change the answer, so the app says what failed and assesses nothing rather than show a
result built on part of the record. The exception is an optional search
(:data:`~magstat.adapters.cds_hooks.request.OPTIONAL_KEYS`: the doses given in hospital, which
a server may not offer or the user may not have granted): it is left out, and the notes say so. Searches ask for pages of ``_count=100`` (a server may
give fewer) to keep the round trips few.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import httpx

from magstat.adapters.cds_hooks.request import (
    CONDITION_KEYS,
    MEDICATION_KEYS,
    OPTIONAL_KEYS,
    patient_bundle,
    prefetch_templates,
    render_template,
)
from magstat.adapters.fhir import facts_from_fhir
from magstat.core.assess import assess
from magstat.core.facts import PatientFacts
from magstat.core.result import Assessment
from magstat.kb.schema import KnowledgeBase
from magstat.service.fhirclient import fetch_templates

__all__ = ["PAGE_SIZE", "ChartAssessment", "ChartUnreadableError", "assess_chart"]

PAGE_SIZE = 100
"""The page size asked of each search (``_count``)."""


class ChartUnreadableError(Exception):
    """Part of the chart could not be read; ``keys`` says which searches, ``notes`` why."""

    def __init__(self, keys: list[str], notes: list[str]) -> None:
        self.keys = keys
        self.notes = notes
        super().__init__(", ".join(keys))


@dataclass(frozen=True, slots=True)
class ChartAssessment:
    """The assessment of a chart, the facts it rests on, and notes on what was read."""

    result: Assessment
    facts: PatientFacts
    notes: tuple[str, ...]
    patient_name: str | None


def _name(patient: object) -> str | None:
    """The patient's name for the banner an EHR may ask for (``need_patient_banner``)."""
    if not isinstance(patient, dict):
        return None
    for name in patient.get("name") or []:
        if not isinstance(name, dict):
            continue
        if isinstance(name.get("text"), str) and name["text"].strip():
            return str(name["text"]).strip()
        given = " ".join(g for g in name.get("given") or [] if isinstance(g, str))
        family = name.get("family") if isinstance(name.get("family"), str) else ""
        full = f"{given} {family}".strip()
        if full:
            return full
    return None


async def assess_chart(
    http: httpx.AsyncClient,
    fhir_base: str,
    access_token: str,
    patient_id: str,
    kb: KnowledgeBase,
    *,
    today: dt.date,
    deadline_seconds: float,
    max_pages: int,
) -> ChartAssessment:
    """Read the launch patient's chart with the access token and assess it.

    Args:
        http: the shared HTTP client.
        fhir_base: the FHIR base URL (the EHR's ``iss``).
        access_token: the SMART access token (sent only to URLs under ``fhir_base``).
        patient_id: the patient of the launch context.
        kb: the knowledge base.
        today: the date of the assessment.
        deadline_seconds: the time allowed for every search together.
        max_pages: the most pages read of one search.

    Raises:
        ChartUnreadableError: a search failed or did not finish in time, or the patient was not found.

    """
    templates = prefetch_templates(kb)
    queries = {}
    for key, template in templates.items():
        query = render_template(template, {"patientId": patient_id})
        if query is None:  # only an empty patient id leaves a token unfilled
            raise ChartUnreadableError([key], ["the launch gave no patient"])
        queries[key] = query if "?" not in query else f"{query}&_count={PAGE_SIZE}"
    fetched = await fetch_templates(
        http, fhir_base, access_token, queries, deadline_seconds=deadline_seconds, max_pages=max_pages
    )
    cut = [key for key in fetched.values if key not in fetched.complete]
    unread = {*fetched.failed, *cut}
    if unread - set(OPTIONAL_KEYS):
        raise ChartUnreadableError(sorted(unread), list(fetched.notes))
    skipped = sorted(unread)  # optional searches that failed or were cut short: left out, said so
    for key in skipped:
        fetched.values.pop(key, None)
    if fetched.values.get("patient") is None:
        raise ChartUnreadableError(["patient"], ["the FHIR server has no such patient"])
    reading = patient_bundle(fetched.values, ())
    facts = facts_from_fhir(reading.bundle, kb, as_of=today, strict=False, patient_id=patient_id)
    # An empty search result is a known empty list only when every search of that list came back
    # whole and usable (as in the CDS services).
    known = fetched.complete - reading.unusable
    if facts.medications is None and all(k in known for k in MEDICATION_KEYS):
        facts = dataclasses.replace(facts, medications=())
    if facts.conditions is None and all(k in known for k in CONDITION_KEYS):
        facts = dataclasses.replace(facts, conditions=())
    result = assess(facts, kb)
    return ChartAssessment(
        result=result,
        facts=facts,
        notes=(
            *fetched.notes,
            *(f"{key}: not read completely; left out of the assessment" for key in skipped),
            *reading.notes,
        ),
        patient_name=_name(fetched.values.get("patient")),
    )
