"""CDS Hooks requests: prefetch templates, their tokens, and the hook data turned into one FHIR input.

Pure functions on parsed JSON: no I/O, no clock. The HTTP service fetches what the EHR did not
prefetch and calls :func:`patient_bundle` and :func:`draft_orders` to build the input of the
FHIR adapter.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

from magstat.adapters.cds_hooks.cards import DraftDrug
from magstat.adapters.fhir import facts_from_fhir
from magstat.core.facts import PatientFacts
from magstat.core.match import LOINC, match_test
from magstat.kb.schema import KnowledgeBase

__all__ = [
    "DRAFT_ID_PREFIX",
    "DraftOrders",
    "PrefetchReading",
    "draft_drugs",
    "draft_orders",
    "mark_drafts",
    "patient_bundle",
    "prefetch_templates",
    "render_template",
]

_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}

DRAFT_ID_PREFIX = "magstat-draft-"
"""The id this service gives a draft MedicationRequest that has none (``magstat-draft-1`` ...)."""

MEDICATION_KEYS = ("medicationRequests", "medicationStatements")
"""Prefetch keys that together make the medication list."""
OPTIONAL_KEYS = ("medicationAdministrations",)
"""Prefetch keys an EHR may leave out without the record counting as unread.

Doses given in hospital (MedicationAdministration) add to the medication list; an EHR that
neither sends them nor gives FHIR access leaves them unread, as before they were read, and
gets no "part of the record not read" card for it. A read of them that fails is reported
like any other."""
CONDITION_KEYS = ("conditions",)
"""Prefetch keys that make the problem list."""


def prefetch_templates(kb: KnowledgeBase) -> dict[str, str]:
    """The prefetch templates every magstat service declares in discovery.

    The minimum necessary: observations are limited to the LOINC codes of the knowledge base's
    lab tests, and medication orders and statements to the statuses the FHIR adapter reads as
    current or unknown (a completed, stopped, cancelled, draft or entered-in-error order never
    changes the assessment, and a lifetime record holds hundreds of them). Conditions are not
    filtered: ``clinicalStatus`` may be absent, and a search on it would drop those.
    Medication administrations (optional, :data:`OPTIONAL_KEYS`) are limited to the statuses
    that say a dose was given or its status is unknown; a search cannot limit them to the
    window in which a dose counts (the template has no date token), so the adapter decides.

    Args:
        kb: the knowledge base whose tests give the LOINC codes.

    Returns:
        Prefetch key to FHIR query, with ``{{context.patientId}}`` tokens.

    """
    codes = sorted({code.code for test in kb.tests.values() for code in test.loinc})
    loinc = ",".join(f"{LOINC}|{code}" for code in codes)
    patient = "{{context.patientId}}"
    return {
        "patient": f"Patient/{patient}",
        "observations": f"Observation?patient={patient}&code={loinc}",
        "conditions": f"Condition?patient={patient}",
        "medicationRequests": f"MedicationRequest?patient={patient}&status=active,on-hold,unknown",
        "medicationStatements": f"MedicationStatement?patient={patient}&status=active,intended,on-hold,unknown",
        "allergies": f"AllergyIntolerance?patient={patient}",
        "medicationAdministrations": (
            f"MedicationAdministration?patient={patient}&status=in-progress,on-hold,completed,unknown"
        ),
    }


def render_template(template: str, context: Mapping[str, Any]) -> str | None:
    """Fill the prefetch tokens of a template from the hook context.

    Only root-level primitive context fields and the user tokens of the specification
    (``{{userPractitionerId}}`` and the like, taken from ``context.userId``) can fill a token;
    values are URL-encoded.

    Returns:
        The relative FHIR URL, or ``None`` when a token cannot be filled.

    """
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        value: object = None
        if name.startswith("context.") and name.count(".") == 1:
            value = context.get(name.split(".", 1)[1])
        elif name in _USER_TOKENS:
            user = context.get("userId")
            prefix = _USER_TOKENS[name] + "/"
            if isinstance(user, str) and user.startswith(prefix):
                value = user[len(prefix) :]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
            missing = True
            return ""
        return quote(str(value), safe="")

    rendered = _TOKEN.sub(fill, template)
    return None if missing else rendered


@dataclass(frozen=True, slots=True)
class PrefetchReading:
    """The prefetch values gathered into one Bundle, and what could not be used.

    Attributes:
        bundle: a ``collection`` Bundle of every resource found.
        notes: one line per prefetch key whose value was not a FHIR resource (or an
            OperationOutcome) and was left out.
        unusable: the keys left out.

    """

    bundle: dict[str, Any]
    notes: tuple[str, ...]
    unusable: frozenset[str]


def patient_bundle(prefetch: Mapping[str, Any], extra: Sequence[Mapping[str, Any]] = ()) -> PrefetchReading:
    """Gather prefetch values (resources, searchset Bundles or ``null``) into one Bundle.

    Args:
        prefetch: prefetch key to value, as sent by the EHR or fetched by the service.
        extra: resources to add (the draft orders of an order hook).

    """
    entries: list[dict[str, Any]] = []
    notes: list[str] = []
    unusable: set[str] = set()
    for key, value in prefetch.items():
        if value is None:
            continue  # the EHR had no data for this template: nothing to add, nothing wrong
        if not isinstance(value, Mapping) or not isinstance(value.get("resourceType"), str):
            notes.append(f"prefetch {key}: not a FHIR resource; left out")
            unusable.add(key)
            continue
        if value["resourceType"] == "OperationOutcome":
            notes.append(f"prefetch {key}: the EHR reported an error for this query; left out")
            unusable.add(key)
            continue
        entries.append({"resource": value})
    entries.extend({"resource": dict(resource)} for resource in extra)
    return PrefetchReading(
        {"resourceType": "Bundle", "type": "collection", "entry": entries}, tuple(notes), frozenset(unusable)
    )


@dataclass(frozen=True, slots=True)
class DraftOrders:
    """The draft orders of an order hook, ready to be read as the patient's current orders.

    Attributes:
        resources: each draft MedicationRequest with status ``active`` and intent ``order``
            (and no ``authoredOn``, which in the EHR's time zone may read as tomorrow), plus the Medication resources
            the drafts refer to; the FHIR adapter then reads them as current medications.
        selected: ``Type/id`` references of the orders the hook is about (``selections`` of
            ``order-select``), or ``None`` when every draft is (``order-sign``, or no selections).
        serum_mg_ordered: a serum magnesium test is already among the drafts.
        refs: the ``MedicationRequest/id`` of every draft (one without an id is given
            ``magstat-draft-<n>``), so that their facts can be marked as drafts
            (:func:`mark_drafts`).

    """

    resources: tuple[dict[str, Any], ...]
    selected: frozenset[str] | None
    serum_mg_ordered: bool
    refs: frozenset[str] = frozenset()


def draft_orders(
    kb: KnowledgeBase, bundle: Mapping[str, Any] | None, selections: Sequence[str] | None
) -> DraftOrders:
    """Read ``context.draftOrders`` (a Bundle) for the assessment.

    Args:
        kb: recognises a serum magnesium test among draft ServiceRequests.
        bundle: the draft orders Bundle.
        selections: the ``Type/id`` of the newly selected orders, or ``None`` for all.

    """
    resources: list[dict[str, Any]] = []
    refs: list[str] = []
    serum_mg = False
    entries = bundle.get("entry") if isinstance(bundle, Mapping) else None
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping):
            continue
        rtype = resource.get("resourceType")
        rid = resource.get("id")
        ref = f"{rtype}/{rid}" if isinstance(rid, str) and rid else None
        if rtype == "MedicationRequest":
            current = {k: v for k, v in resource.items() if k != "authoredOn"}
            current["status"] = "active"
            current["intent"] = "order"  # read as the order it is about to become, even if proposed
            if ref is None:  # named, so that its facts can be told from the record's (mark_drafts)
                current["id"] = f"{DRAFT_ID_PREFIX}{len(resources) + 1}"
            resources.append(current)
            refs.append(f"MedicationRequest/{current['id']}")
        elif rtype == "Medication":
            resources.append(dict(resource))
        elif rtype == "ServiceRequest" and _is_serum_mg(kb, resource):
            serum_mg = True
    chosen = frozenset(s for s in selections or () if isinstance(s, str))
    return DraftOrders(tuple(resources), chosen or None, serum_mg, frozenset(refs))


def mark_drafts(facts: PatientFacts, drafts: DraftOrders) -> PatientFacts:
    """The facts with the medications read from the draft orders marked ``draft``.

    A draft counts as a current order for its risks and safety checks, but it has not been
    given: no sample on the record was taken during it (a raised serum magnesium is not
    explained by magnesium ordered in this very hook).
    """
    meds = facts.medications
    if not meds or not drafts.refs:
        return facts
    marked = tuple(
        dataclasses.replace(m, draft=True) if m.origin.resource in drafts.refs else m for m in meds
    )
    return dataclasses.replace(facts, medications=marked)


def draft_drugs(kb: KnowledgeBase, drafts: DraftOrders, as_of: date) -> tuple[DraftDrug, ...]:
    """The draft medication orders with the drugs the FHIR adapter recognises in them.

    A draft that cannot be read (malformed) is left out, as the lenient reading of the whole
    input leaves it out of the assessment.
    """
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in drafts.resources],
    }
    facts = facts_from_fhir(bundle, kb, as_of=as_of, strict=False)
    out = []
    for med in facts.medications or ():
        ref = med.origin.resource or med.text
        if ref.startswith(f"MedicationRequest/{DRAFT_ID_PREFIX}"):
            ref = med.text  # an id this service gave: the EHR knows the draft by its text
        selected = drafts.selected is None or ref in drafts.selected
        out.append(DraftDrug(ref, med.text, med.drugs, selected))
    return tuple(out)


def _is_serum_mg(kb: KnowledgeBase, resource: Mapping[str, Any]) -> bool:
    code = resource.get("code")
    if not isinstance(code, Mapping):
        return False
    codings = code.get("coding")
    pairs = [
        (c.get("system") if isinstance(c.get("system"), str) else None, c["code"])
        for c in (codings if isinstance(codings, list) else ())
        if isinstance(c, Mapping) and isinstance(c.get("code"), str)
    ]
    text = code.get("text") if isinstance(code.get("text"), str) else None
    return "serum_mg" in match_test(kb, pairs, text).ids
