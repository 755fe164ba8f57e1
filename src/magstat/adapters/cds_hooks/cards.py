"""Assessment (and draft orders) to CDS Hooks 2.0 cards.

No clinical judgement is made here: which card appears, and how urgent it is, follows from the
assessment's status, severity, calculators and the priority of its next steps and safety
actions, and from the knowledge base's drug classes of the draft drugs. This module only words
and shapes them.

Card rules:

- ``patient-view``: a *status* card for ``excess``, ``deficient``, ``likely_deficient``, and for
  ``at_risk`` when a next step or safety action is of high or urgent priority (for example a
  high MDS with no recent magnesium result); a *renal wasting* card when FEMg reads renal; a
  *safety* card when no status card is shown but a high or urgent safety action exists.
  Indicator: ``critical`` only when the assessment holds an urgent action (the knowledge base's
  statements that the core marks urgent: a severe or symptomatic deficit, an excess, an unsafe
  product with kidney failure), ``warning`` for the other deficit and excess statuses, ``info``
  for ``at_risk``.
- ``order-select`` / ``order-sign``: a *drug lowers magnesium* card when a selected draft drug
  belongs to a knowledge-base class whose effect is ``lowers`` (``warning`` when the latest serum
  magnesium is below the lab range or in the grey zone, ``critical`` only with an urgent action,
  otherwise ``info``), with the FDA 2011 advice when the assessment carries it
  (``ns.ppi_baseline``) and a suggestion that creates a serum magnesium order; a *magnesium
  product* card when a selected draft is a magnesium-containing product and the assessment
  carries a kidney or excess safety action (``critical`` when one is urgent).

Every card has a ``uuid`` derived from the hook instance and the card kind (the same request
gives the same uuids), suggestions have stable uuids (one per kind of suggestion), the source
names magstat and the knowledge-base version with a topic and the URL of the main cited source,
and the detail (GitHub-flavoured Markdown) shows the inputs used, the cited sources and the
source attributes of ONC's HTI-1 rule (developer, funding, citations, version, dates).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from magstat.core.result import Action, Assessment, Finding, InputUsed
from magstat.kb.schema import KnowledgeBase
from magstat.render.model import ActionView, assessment_view, label, quantity, unit_label

__all__ = [
    "NAMESPACE",
    "OVERRIDE_REASONS",
    "OVERRIDE_SYSTEM",
    "SUGGESTION_ORDER_SERUM_MG",
    "TOPIC_SYSTEM",
    "CardContext",
    "DraftDrug",
    "add_report_link",
    "add_smart_link",
    "order_cards",
    "patient_view_cards",
    "serum_mg_order",
]

NAMESPACE = uuid.UUID("3b0f9b8e-6f35-4c59-9d0e-5c7a2a61d4f1")
"""Namespace of every card and suggestion uuid (uuid5); never change it."""
TOPIC_SYSTEM = "urn:magstat:cds:card-topic"
OVERRIDE_SYSTEM = "urn:magstat:cds:override-reason"
SUMMARY_MAX = 139
"""Card summaries stay under 140 characters (CDS Hooks 2.0, Card.summary)."""

SUGGESTION_ORDER_SERUM_MG = str(uuid.uuid5(NAMESPACE, "suggestion/order-serum-magnesium"))
"""The uuid of every "order serum magnesium" suggestion (stable, for feedback analysis)."""

_TOPICS: dict[str, str] = {
    "status": "Magnesium status",
    "renal-wasting": "Renal magnesium wasting",
    "safety": "Magnesium treatment safety",
    "drug-lowers-magnesium": "Drug that lowers magnesium",
    "magnesium-product-kidney": "Magnesium product safety",
}

OVERRIDE_REASONS: dict[str, str] = {
    "recent-result": "Magnesium was measured recently (result not in this record)",
    "already-monitored": "Magnesium is already being monitored",
    "short-course": "Short course: not expected to be taken long term",
    "benefit-outweighs-risk": "Benefit outweighs the risk for this patient",
    "specialist-advice": "Given on specialist advice",
    "patient-declined": "Patient declined",
    "not-applicable": "Does not apply to this patient",
}

_CARD_WEIGHTS = ("deficit", "excess", "excess_risk", "major", "minor", "specific", "supportive")
_MG_PRODUCT_SAFETY = (
    "sf.mg_allergy",
    "sf.myasthenia",
    "sf.renal_avoid_oral",
    "sf.renal_reduce",
    "sf.iv_renal_limit",
    "sf.iv_renal_limit_child",
    "sf.ckd_mg_products",
    "sf.excess",
    "sf.above_ul",
    "sf.heart_block",
)
_MAX_INPUTS = 4


@dataclass(frozen=True, slots=True)
class CardContext:
    """What the cards need beyond the assessment: the call, the links, the source attributes.

    Attributes:
        service_id: the CDS service called.
        hook_instance: the hook call's ``hookInstance`` (seeds the card uuids).
        patient_id: ``context.patientId``, for the orders that suggestions create.
        encounter_id: ``context.encounterId``, if given.
        report_url: the absolute URL of the full HTML report, if one was kept.
        data_notes: what could not be read (a FHIR query that failed, a bad prefetch value).
        version: the magstat version.
        developer: who developed the decision support (HTI-1 source attribute).
        funding_source: who funded it (HTI-1 source attribute).

    """

    service_id: str
    hook_instance: str
    patient_id: str | None = None
    encounter_id: str | None = None
    report_url: str | None = None
    data_notes: tuple[str, ...] = ()
    version: str = ""
    developer: str = "magstat developers"
    funding_source: str = "not declared"


@dataclass(frozen=True, slots=True)
class DraftDrug:
    """A draft medication order, as recognised by the FHIR adapter.

    Attributes:
        reference: ``MedicationRequest/<id>`` (or where it sits in the Bundle).
        text: the drug as named in the order.
        drugs: knowledge-base drug ids recognised in it.
        selected: whether the hook is about this order (``order-select`` selections).

    """

    reference: str
    text: str
    drugs: tuple[str, ...]
    selected: bool = True


# --------------------------------------------------------------------------------------------
# patient-view


def patient_view_cards(result: Assessment, kb: KnowledgeBase, ctx: CardContext) -> list[dict[str, Any]]:
    """The cards of ``patient-view``: none unless the assessment warrants one (see module doc)."""
    cards: list[dict[str, Any]] = []
    actions = (*result.next_steps, *result.safety)
    urgent = any(a.priority == "urgent" for a in actions)
    pressing = any(a.priority in ("urgent", "high") for a in actions)
    show_status = result.status in ("excess", "deficient", "likely_deficient") or (
        result.status == "at_risk" and pressing
    )
    if show_status:
        cards.append(_status_card(result, kb, ctx, urgent))
    if result.femg.interpretation == "renal":
        cards.append(_renal_wasting_card(result, kb, ctx))
    safety = [a for a in result.safety if a.priority in ("urgent", "high")]
    if not show_status and safety:
        cards.append(_safety_card(result, kb, ctx, safety))
    return cards


def _status_card(result: Assessment, kb: KnowledgeBase, ctx: CardContext, urgent: bool) -> dict[str, Any]:
    if urgent:
        indicator = "critical"
    elif result.status == "at_risk":
        indicator = "info"
    else:
        indicator = "warning"
    detail = _status_detail(result, kb)
    detail.limitations(result, ctx)
    suggestions = []
    if any(a.id == "ns.measure_serum_mg" for a in result.next_steps):
        suggestions.append(serum_mg_order(kb, ctx, "No recent serum magnesium result.", recommended=True))
    reasons = ["recent-result", "already-monitored", "not-applicable", "patient-declined"]
    primary = _primary_source(kb, [*result.findings, *result.next_steps])
    return _card(
        ctx,
        kb,
        result,
        kind="status",
        summary=result.summary,
        indicator=indicator,
        detail=detail,
        source_url=primary,
        suggestions=suggestions,
        reasons=reasons,
    )


def _status_detail(result: Assessment, kb: KnowledgeBase, only: Sequence[Action] | None = None) -> _Detail:
    """A card's detail in the order of every surface: status, actions by priority, the basis.

    The urgent and important actions come first, in the order of the presentation model
    (:mod:`magstat.render.model`); ``only`` narrows them to the actions a card is about. The
    rest of the actions follow the basis.
    """
    view = assessment_view(result, kb)
    wanted = None if only is None else {a.id for a in only}
    first = [a for a in view.first_actions if wanted is None or a.id in wanted]
    rest = [a for a in view.other_actions if wanted is None or a.id in wanted]
    detail = _Detail(kb)
    detail.para(f"**Status: {_md_text(view.status_label)}.** {_md_text(view.summary)}")
    detail.actions("Act first", first)
    detail.findings("Why", [f for f in result.findings if f.weight in _CARD_WEIGHTS])
    detail.status_basis(result)
    detail.calculators(result)
    detail.actions("Other next steps and safety notes", rest)
    return detail


def _renal_wasting_card(result: Assessment, kb: KnowledgeBase, ctx: CardContext) -> dict[str, Any]:
    femg = result.femg
    detail = _Detail(kb)
    pct = f"{femg.percent:.1f}%" if femg.percent is not None else "unknown"
    detail.para(f"**Fractional excretion of magnesium {pct}: the kidneys are losing magnesium.**")
    if femg.note:
        detail.para(_md_text(femg.note))
    detail.inputs_block("Inputs used", femg.inputs)
    detail.cite(femg.sources)
    detail.findings(
        "Related findings",
        [f for f in result.findings if f.category in ("risk_factor", "serum_magnesium", "calculator")][:6],
    )
    detail.actions("Next steps", [a for a in result.next_steps if a.priority in ("urgent", "high")])
    detail.limitations(result, ctx)
    return _card(
        ctx,
        kb,
        result,
        kind="renal-wasting",
        summary=f"Renal magnesium wasting: FEMg {pct} points to loss through the kidneys",
        indicator="warning",
        detail=detail,
        source_url=_url_of(kb, femg.sources),
        suggestions=[],
        reasons=["already-monitored", "not-applicable"],
    )


def _safety_card(
    result: Assessment, kb: KnowledgeBase, ctx: CardContext, safety: Sequence[Action]
) -> dict[str, Any]:
    detail = _status_detail(result, kb, only=safety)
    detail.limitations(result, ctx)
    first = safety[0]
    return _card(
        ctx,
        kb,
        result,
        kind="safety",
        summary=f"Magnesium safety: {_first_sentence(first.text)}",
        indicator="critical" if any(a.priority == "urgent" for a in safety) else "warning",
        detail=detail,
        source_url=_url_of(kb, first.sources),
        suggestions=[],
        reasons=["benefit-outweighs-risk", "specialist-advice", "not-applicable"],
    )


# --------------------------------------------------------------------------------------------
# order-select / order-sign


def order_cards(
    result: Assessment,
    kb: KnowledgeBase,
    ctx: CardContext,
    drafts: Sequence[DraftDrug],
    *,
    serum_mg_ordered: bool = False,
) -> list[dict[str, Any]]:
    """The cards of ``order-select`` and ``order-sign`` for the selected draft drugs.

    Args:
        result: the assessment of the patient with the draft orders taken as current.
        kb: the knowledge base (drug classes of the draft drugs).
        ctx: the call.
        drafts: the draft medication orders.
        serum_mg_ordered: a serum magnesium test is already among the draft orders (no
            suggestion to order another).

    """
    selected = [d for d in drafts if d.selected]
    lowering: dict[str, list[DraftDrug]] = {}
    products: list[DraftDrug] = []
    for draft in selected:
        for drug_id in draft.drugs:
            drug = kb.drugs.get(drug_id)
            for class_id in drug.classes if drug else ():
                klass = kb.drug_classes[class_id]
                if klass.effect == "lowers":
                    group = lowering.setdefault(class_id, [])
                    if draft not in group:
                        group.append(draft)
                elif class_id == "magnesium_product" and draft not in products:
                    products.append(draft)
    cards = []
    if lowering:
        cards.append(_lowering_card(result, kb, ctx, lowering, serum_mg_ordered=serum_mg_ordered))
    safety = [a for a in result.safety if a.id in _MG_PRODUCT_SAFETY]
    if products and safety:
        cards.append(_product_card(result, kb, ctx, products, safety, serum_mg_ordered=serum_mg_ordered))
    return cards


def _lowering_card(
    result: Assessment,
    kb: KnowledgeBase,
    ctx: CardContext,
    lowering: dict[str, list[DraftDrug]],
    *,
    serum_mg_ordered: bool,
) -> dict[str, Any]:
    serum = result.serum_magnesium
    low = serum.band in ("below_lab_range", "low_normal")
    names = _join(
        dict.fromkeys(
            kb.drugs[d].name
            for drafts in lowering.values()
            for draft in drafts
            for d in draft.drugs
            if d in kb.drugs
        )
    )
    if any(a.priority == "urgent" for a in (*result.next_steps, *result.safety)):
        indicator = "critical"
    elif low:
        indicator = "warning"
    else:
        indicator = "info"
    if low and serum.mmol_l is not None:
        summary = f"Latest serum Mg {serum.comparator or ''}{serum.mmol_l:.2f} mmol/L is low; {names} can lower it further"
    else:
        summary = f"{_cap(names)} can lower magnesium: check serum Mg at baseline and during treatment"
    detail = _Detail(kb)
    detail.para(f"**{_md_text(summary)}.**")
    detail.heading("Draft orders")
    sources: list[str] = []
    for class_id, drafts in lowering.items():
        klass = kb.drug_classes[class_id]
        detail.bullet(
            f"{_md(_join(d.text for d in drafts))} ({_md(_join(d.reference for d in drafts))}): "
            f"{klass.name.lower()}. {klass.mechanism} Onset: {klass.onset} Evidence: {klass.evidence}"
            + detail.cite(klass.sources)
        )
        sources.extend(klass.sources)
    detail.heading("Latest serum magnesium")
    detail.bullet(_serum_line(result))
    ids = ("ns.ppi_baseline", "ns.measure_serum_mg", "ns.review_culprit_drugs", "ns.check_k_ca")
    advice = [a for i in ids for a in result.next_steps if a.id == i]
    detail.actions("What to do", advice)
    detail.para(f"Assessment with the draft orders taken as current: {_md_text(result.summary)}")
    detail.limitations(result, ctx)
    suggestions = []
    if not serum_mg_ordered:
        reason = (
            "Baseline before a drug that lowers magnesium" if not low else "Latest serum magnesium is low"
        )
        suggestions.append(
            serum_mg_order(kb, ctx, reason, recommended=low or not serum.current or serum.mmol_l is None)
        )
    reasons = ["recent-result", "already-monitored"]
    if "ppi" in lowering:
        reasons.append("short-course")
    reasons += ["benefit-outweighs-risk", "patient-declined"]
    ppi_advice = [a for a in advice if a.id == "ns.ppi_baseline"]
    url = _url_of(kb, ppi_advice[0].sources) if ppi_advice else _url_of(kb, sources)
    return _card(
        ctx,
        kb,
        result,
        kind="drug-lowers-magnesium",
        summary=summary,
        indicator=indicator,
        detail=detail,
        source_url=url,
        suggestions=suggestions,
        reasons=reasons,
    )


def _product_card(
    result: Assessment,
    kb: KnowledgeBase,
    ctx: CardContext,
    products: Sequence[DraftDrug],
    safety: Sequence[Action],
    *,
    serum_mg_ordered: bool,
) -> dict[str, Any]:
    names = _cap(
        _join(
            dict.fromkeys(
                kb.drugs[d].name
                for draft in products
                for d in draft.drugs
                if d in kb.drugs and "magnesium_product" in kb.drugs[d].classes
            )
        )
        or "magnesium product"
    )
    egfr = result.egfr.value
    kidney = any(a.id.startswith(("sf.renal", "sf.iv_renal", "sf.ckd")) for a in safety)
    # A recorded allergy to magnesium leads: it may rule the ordered product out.
    safety = sorted(safety, key=lambda a: a.id != "sf.mg_allergy")
    if safety[0].id == "sf.mg_allergy":
        summary = f"{names} ordered for a patient with a recorded magnesium allergy or intolerance"
    elif kidney:
        gfr = f" (eGFR {result.egfr.comparator or ''}{egfr:.0f})" if egfr is not None else ""
        summary = f"{names} ordered with reduced kidney function{gfr}: risk of magnesium accumulation"
    else:
        summary = f"{names} ordered: {_first_sentence(safety[0].text)}"
    detail = _Detail(kb)
    detail.para(f"**{_md_text(summary)}.**")
    detail.heading("Draft orders")
    for draft in products:
        detail.bullet(f"{_md(draft.text)} ({_md(draft.reference)})")
    detail.actions("Safety", safety)
    if result.egfr.value is not None:
        detail.heading("Kidney function")
        detail.bullet(
            f"eGFR {result.egfr.comparator or ''}{result.egfr.value:.0f} mL/min/1.73 m² ({_md(result.egfr.origin or '')}"
            f"{', ' + _md(result.egfr.equation) if result.egfr.equation else ''}"
            f"{', ' + result.egfr.date.isoformat() if result.egfr.date else ''})"
            + detail.cite(result.egfr.sources)
        )
        detail.inputs_list(result.egfr.inputs)
    detail.heading("Latest serum magnesium")
    detail.bullet(_serum_line(result))
    detail.actions("Next steps", [a for a in result.next_steps if a.priority in ("urgent", "high")])
    detail.limitations(result, ctx)
    suggestions = []
    for draft in products:
        if draft.reference.startswith("MedicationRequest/"):
            suggestions.append(
                {
                    "label": f"Cancel the draft order: {draft.text}"[:80],
                    "uuid": str(uuid.uuid5(NAMESPACE, f"suggestion/cancel-draft/{draft.reference}")),
                    "actions": [
                        {
                            "type": "delete",
                            "description": f"Remove the draft order {draft.text}",
                            "resourceId": draft.reference,
                        }
                    ],
                }
            )
    if not serum_mg_ordered:
        why = "Magnesium product with reduced kidney function" if kidney else "Magnesium product ordered"
        suggestions.append(serum_mg_order(kb, ctx, why))
    return _card(
        ctx,
        kb,
        result,
        kind="magnesium-product-kidney",
        summary=summary,
        indicator="critical" if any(a.priority == "urgent" for a in safety) else "warning",
        detail=detail,
        source_url=_url_of(kb, safety[0].sources),
        suggestions=suggestions,
        reasons=["benefit-outweighs-risk", "specialist-advice", "already-monitored"],
    )


# --------------------------------------------------------------------------------------------
# Shared pieces


def serum_mg_order(
    kb: KnowledgeBase, ctx: CardContext, reason: str, *, recommended: bool = False
) -> dict[str, Any]:
    """A suggestion that creates a draft serum magnesium lab order (FHIR R4 ServiceRequest)."""
    test = kb.tests.get("serum_mg")
    codings = [
        {"system": "http://loinc.org", "code": code.code, "display": code.display}
        for code in (test.loinc[:1] if test else ())
    ]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                        "display": "Laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": codings, "text": test.name if test else "Serum magnesium"},
        "reasonCode": [{"text": reason}],
    }
    if ctx.patient_id:
        resource["subject"] = {"reference": f"Patient/{ctx.patient_id}"}
    if ctx.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{ctx.encounter_id}"}
    suggestion: dict[str, Any] = {
        "label": "Order serum magnesium",
        "uuid": SUGGESTION_ORDER_SERUM_MG,
        "actions": [
            {"type": "create", "description": "Create a serum magnesium lab order", "resource": resource}
        ],
    }
    if recommended:
        suggestion["isRecommended"] = True
    return suggestion


def _card(
    ctx: CardContext,
    kb: KnowledgeBase,
    result: Assessment,
    *,
    kind: str,
    summary: str,
    indicator: str,
    detail: _Detail,
    source_url: str | None,
    suggestions: list[dict[str, Any]],
    reasons: Iterable[str],
) -> dict[str, Any]:
    detail.sources_and_attributes(result, ctx)
    source: dict[str, Any] = {
        "label": " ".join(f"magstat {ctx.version}".split()) + f" · knowledge base {kb.version}",
        "topic": {"system": TOPIC_SYSTEM, "code": kind, "display": _TOPICS[kind]},
    }
    if source_url:
        source["url"] = source_url
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid5(NAMESPACE, f"card/{ctx.hook_instance}/{ctx.service_id}/{kind}")),
        "summary": _shorten(summary, SUMMARY_MAX),
        "indicator": indicator,
        "detail": detail.text(),
        "source": source,
        "overrideReasons": [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": OVERRIDE_REASONS[code]} for code in reasons
        ],
    }
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    if ctx.report_url:
        add_report_link([card], ctx.report_url)
    return card


def add_report_link(cards: Sequence[dict[str, Any]], url: str) -> None:
    """Link each card to the full HTML report of the assessment (in place)."""
    for card in cards:
        card["links"] = [
            {"label": "Full magstat report (inputs, rules, sources)", "url": url, "type": "absolute"}
        ]


def add_smart_link(cards: Sequence[dict[str, Any]], launch_url: str, app_context: str | None = None) -> None:
    """Offer the SMART app on each card (in place), after the report link.

    A CDS Hooks ``smart`` link: the EHR launches the app at ``launch_url`` with its own ``iss``
    and ``launch`` (SMART App Launch), so that the app reads the chart with the user's access
    and can save its assessment. ``appContext``, when given, reaches the app in the token
    response.
    """
    for card in cards:
        link: dict[str, Any] = {"label": "Open in magstat (SMART app)", "url": launch_url, "type": "smart"}
        if app_context:
            link["appContext"] = app_context
        card.setdefault("links", []).append(link)


class _Detail:
    """Builds a card's Markdown detail and collects the sources it cites, in order."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.lines: list[str] = []
        self.cited: list[str] = []

    def para(self, text: str) -> None:
        self.lines += [text, ""]

    def heading(self, text: str) -> None:
        self.lines += [f"**{text}**", ""]

    def bullet(self, text: str) -> None:
        if (
            self.lines
            and self.lines[-1] == ""
            and len(self.lines) >= 2
            and self.lines[-2].lstrip().startswith("- ")
        ):
            self.lines.pop()
        self.lines += [f"- {text}", ""]

    def cite(self, ids: Iterable[str]) -> str:
        ids = [i for i in dict.fromkeys(ids) if i in self.kb.sources]
        for i in ids:
            if i not in self.cited:
                self.cited.append(i)
        return f" [{', '.join(ids)}]" if ids else ""

    def findings(self, title: str, findings: Sequence[Finding]) -> None:
        if not findings:
            return
        self.heading(title)
        for f in findings:
            self.bullet(f"{_md_text(f.text)}{self.cite(f.sources)}")
            self.inputs_list(f.inputs)

    def inputs_list(self, inputs: Sequence[InputUsed]) -> None:
        shown = [i for i in inputs if i.name != "finding"]
        if not shown:
            return
        text = "; ".join(_input_text(i) for i in shown[:_MAX_INPUTS])
        if len(shown) > _MAX_INPUTS:
            text += f"; and {len(shown) - _MAX_INPUTS} more"
        self.lines[-1:] = [f"  - inputs: {text}", ""]

    def inputs_block(self, title: str, inputs: Sequence[InputUsed]) -> None:
        shown = [i for i in inputs if i.name != "finding"]
        if not shown:
            return
        self.heading(title)
        for i in shown[: _MAX_INPUTS * 2]:
            self.bullet(_input_text(i))

    def status_basis(self, result: Assessment) -> None:
        basis = [f for f in result.findings if f.id == "status"]
        if basis:
            self.heading("Rule applied")
            self.bullet(_md_text(basis[0].text) + self.cite(basis[0].sources))

    def calculators(self, result: Assessment) -> None:
        self.heading("Calculators")
        self.bullet(_serum_line(result))
        mds = result.mds
        if mds.score is not None:
            parts = ", ".join(f"{label(k)} {'?' if v is None else v}" for k, v in mds.components.items())
            self.bullet(
                f"Magnesium Depletion Score {mds.score}{'' if mds.complete else ' (incomplete)'}"
                f"{', band ' + mds.band if mds.band else ''}: {parts}" + self.cite(mds.sources)
            )
        if result.egfr.value is not None:
            self.bullet(
                f"eGFR {result.egfr.comparator or ''}{quantity(result.egfr.value, 'mL/min/{1.73_m2}')}"
                f" ({_md(result.egfr.origin or '')}"
                f"{', ' + _md(result.egfr.equation) if result.egfr.equation else ''})"
                + self.cite(result.egfr.sources)
            )
        if result.femg.percent is not None:
            self.bullet(
                f"FEMg {quantity(result.femg.percent, '%')} ({result.femg.interpretation or 'not interpreted'})"
                + self.cite(result.femg.sources)
            )

    def actions(self, title: str, actions: Sequence[Action | ActionView]) -> None:
        if not actions:
            return
        self.heading(title)
        for a in actions:
            flag = f"**{a.priority.replace('high', 'important')}**: " if a.priority != "routine" else ""
            self.bullet(f"{flag}{_md_text(a.text)} *Why: {_md_text(a.reason)}*{self.cite(a.sources)}")

    def limitations(self, result: Assessment, ctx: CardContext) -> None:
        notes = [*ctx.data_notes]
        if result.missing_inputs:
            notes.append("not known: " + ", ".join(m.replace("_", " ") for m in result.missing_inputs))
        if result.excluded:
            notes.append(
                f"{len(result.excluded)} resource(s) left out because they failed checks (see the full report)"
            )
        if result.unrecognised:
            notes.append(f"{len(result.unrecognised)} medication or problem-list entries not recognised")
        if notes:
            self.heading("Data limits")
            for note in notes:
                self.bullet(_md(note))

    def sources_and_attributes(self, result: Assessment, ctx: CardContext) -> None:
        if self.cited:
            self.heading("Sources")
            for sid in self.cited:
                source = self.kb.sources[sid]
                where = f"https://doi.org/{source.doi}" if source.doi else source.url
                link = f" <{where}>" if where else ""
                self.bullet(f"[{sid}] {_md_text(source.citation)}{link} (evidence: {source.evidence_level})")
        kb = self.kb
        revised = max((str(h.get("date", "")) for h in kb.history), default="") or kb.released
        basis = kb.statements.get("lim.decision_support")
        self.heading("About this advice (source attributes)")
        self.bullet(f"Developer: {_md(ctx.developer)}; funding: {_md(ctx.funding_source)}")
        self.bullet(
            f"Version: magstat {_md(ctx.version)}, knowledge base {_md(kb.version)} "
            f"(SHA-256 {kb.sha256[:12]}…), released {_md(kb.released)}, last revised {_md(revised)}"
        )
        self.bullet(f"Assessed as of {result.as_of.isoformat()}; citations: the sources listed above")
        if basis is not None:
            self.bullet(_md_text(basis.text) + self.cite(basis.sources))

    def text(self) -> str:
        return "\n".join(self.lines).strip() + "\n"


def _serum_line(result: Assessment) -> str:
    serum = result.serum_magnesium
    if serum.mmol_l is None:
        return "Serum magnesium: no result in the data received"
    band = (serum.band or "no interval").replace("_", " ")
    when = serum.date.isoformat() if serum.date else "undated"
    recent = "" if serum.current else ", not recent"
    where = f"; {_md(serum.source)}" if serum.source else ""
    return f"Serum magnesium {serum.comparator or ''}{quantity(serum.mmol_l, 'mmol/L')} ({band}; {when}{recent}{where})"


def _input_text(item: InputUsed) -> str:
    value = item.value
    if isinstance(value, bool):
        shown = "yes" if value else "no"
    elif isinstance(value, int | float):
        shown = quantity(float(value), item.unit)  # the presentation model's rounding and units
    else:
        shown = str(value) if value is not None else "unknown"
        shown += f" {unit_label(item.unit)}" if item.unit else ""
    text = f"{label(item.name)} {shown}"
    extra = [p for p in (item.date.isoformat() if item.date else None, item.source) if p]
    if extra:
        text += f" ({'; '.join(extra)})"
    return _md(text)


def _primary_source(kb: KnowledgeBase, items: Sequence[Finding | Action]) -> str | None:
    for item in items:
        if isinstance(item, Finding) and (item.weight not in _CARD_WEIGHTS or item.id == "status"):
            continue
        url = _url_of(kb, item.sources)
        if url:
            return url
    return None


def _url_of(kb: KnowledgeBase, ids: Iterable[str]) -> str | None:
    for sid in ids:
        source = kb.sources.get(sid)
        if source is None:
            continue
        if source.doi:
            return f"https://doi.org/{source.doi}"
        if source.url:
            return source.url
    return None


_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|#!~"})


def _md(text: str) -> str:
    """Escape text that comes from the EHR so that it cannot form links, images or HTML."""
    return " ".join(str(text).split()).translate(_MD_SPECIAL)


def _md_text(text: str) -> str:
    """Knowledge-base and assessment text: escaped the same way (it embeds EHR names)."""
    return _md(text)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "…"


def _first_sentence(text: str) -> str:
    """The first sentence, lower-cased at the start unless it opens with an acronym (IV, CKD)."""
    head = text.split(". ", 1)[0].rstrip(".")
    if head[:1].isupper() and not head[1:2].isupper():
        head = head[:1].lower() + head[1:]
    return head


def _join(items: Iterable[str]) -> str:
    seq = [i for i in items if i]
    if len(seq) <= 1:
        return "".join(seq)
    return ", ".join(seq[:-1]) + " and " + seq[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
