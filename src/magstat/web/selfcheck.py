"""The patient self-check: plain-language questions, and the core's answer in plain words.

The questions come from the knowledge base (conditions, signs by their plain names, drugs,
supplement forms, foods). The answers become a magstat patient document, and the same
:func:`magstat.core.assess` as everywhere else judges them. This module only words the
result for a lay reader: the status and the urgency are the core's (its status and the
priorities of its next steps and safety notes), the reasons are the core's findings, and the
explanations of conditions, drugs and signs come from the knowledge base's own fields
(effect, specificity). It never names a condition the person has; it says what the answers
may mean and when to see a clinician.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from magstat.core.result import Assessment, Finding
from magstat.kb.cache import per_kb
from magstat.kb.schema import KnowledgeBase
from magstat.web.form import (
    FORMAT_VERSION,
    Built,
    Choice,
    condition_item,
    field_text,
    food_answers,
    number_or_text,
    rows,
)
from magstat.web.view import fmt

__all__ = [
    "SelfCheckSpec",
    "Urgency",
    "document_from_answers",
    "plain_result",
    "selfcheck_spec",
    "urgent_signs",
]

MEDICINE_ROWS = 4
SUPPLEMENT_ROWS = 3
_ASKED_APART = ("pregnancy", "chronic_stress", "high_metabolic_demand")
# Magnesium disorders someone has already been told about are for their clinician, not a
# self-check.
_NOT_ASKED_CATEGORIES = ("magnesium",)
# Sign domains a person notices in themselves; the others are found by a clinician or a test.
_FELT_DOMAINS = ("neuromuscular", "general", "neuropsychiatric")

_GROUP_NAMES = {
    "gi_malabsorption": "Bowel and digestion",
    "gi_inflammation": "Bowel and digestion",
    "alcohol": "Alcohol",
    "metabolic": "Blood sugar and weight",
    "nutrition": "Eating and nutrition",
    "pregnancy": "Pregnancy",
    "endocrine": "Hormones and glands",
    "renal_tubular": "Kidneys",
    "kidney": "Kidneys",
    "bone": "Bones",
    "critical_illness": "Hospital care",
    "cancer_therapy": "Cancer treatment",
    "cardiac": "Heart and blood pressure",
    "neuro": "Mood, sleep and headache",
}

Urgency = Literal["today", "soon", "next_visit", "none"]


@dataclass(frozen=True, slots=True)
class SelfCheckSpec:
    """The questions: knowledge-base entries in the groups a lay reader sees."""

    conditions: tuple[tuple[str, tuple[Choice, ...]], ...]
    signs_felt: tuple[Choice, ...]
    signs_found: tuple[Choice, ...]
    medicine_names: tuple[str, ...]
    supplements: tuple[Choice, ...]
    foods: tuple[Choice, ...]


@per_kb
def selfcheck_spec(kb: KnowledgeBase) -> SelfCheckSpec:
    """The self-check's questions for this knowledge base (built once per knowledge base)."""
    groups: dict[str, list[Choice]] = {}
    for c in kb.conditions.values():
        if c.id in _ASKED_APART or c.category in _NOT_ASKED_CATEGORIES:
            continue
        name = _GROUP_NAMES.get(c.category, c.category.replace("_", " ").capitalize())
        groups.setdefault(name, []).append(Choice(c.id, c.name, name))
    signs = [Choice(s.id, s.plain_name, s.domain) for s in kb.signs.values()]
    names = sorted({d.name for d in kb.drugs.values()} | {s for d in kb.drugs.values() for s in d.synonyms})
    return SelfCheckSpec(
        conditions=tuple((g, tuple(v)) for g, v in groups.items()),
        signs_felt=tuple(s for s in signs if s.group in _FELT_DOMAINS),
        signs_found=tuple(s for s in signs if s.group not in _FELT_DOMAINS),
        medicine_names=tuple(names),
        supplements=tuple(
            Choice(s.id, s.name, s.route) for s in kb.supplements.values() if s.route != "parenteral"
        ),
        foods=tuple(Choice(f.id, f.name, "food", f.serving) for f in kb.foods.values()),
    )


def document_from_answers(values: Mapping[str, str], kb: KnowledgeBase, today: dt.date) -> Built:
    """Turn the self-check answers into a patient document, assessed as of ``today``.

    An unanswered question is left out (unknown); "none of these" makes a list known and
    empty. A sign that is not ticked stays unknown: not ticking is not saying no.
    """
    spec = selfcheck_spec(kb)
    out = Built()
    doc = out.document
    doc["magstat"] = FORMAT_VERSION
    doc["as_of"] = today.isoformat()
    if field_text(values, "age"):
        doc["age"] = number_or_text(field_text(values, "age"))
        out.put("age", "age")
        out.put("age_years", "age")
    if field_text(values, "sex") in ("female", "male"):
        doc["sex"] = field_text(values, "sex")
    for key in ("pregnant", "lactating", "chronic_stress", "high_metabolic_demand"):
        answer = {"yes": True, "no": False}.get(field_text(values, key))
        if answer is not None:
            doc[key] = answer
            out.put(key, key)
    if field_text(values, "alcohol_drinks_per_day"):
        doc["alcohol_drinks_per_day"] = number_or_text(field_text(values, "alcohol_drinks_per_day"))
        out.put("alcohol_drinks_per_day", "alcohol_drinks_per_day")

    conditions: list[dict[str, Any]] = []
    for _group, choices in spec.conditions:
        for choice in choices:
            if field_text(values, f"cond-{choice.id}"):
                out.put(f"conditions[{len(conditions)}]", f"cond-{choice.id}")
                conditions.append(condition_item(kb.conditions[choice.id]))
    if conditions or field_text(values, "conds_none"):
        doc["conditions"] = conditions

    medicines: list[dict[str, Any]] = []
    for n in rows(values, "med"):
        name = field_text(values, f"med-{n}-name")
        if name:
            out.put(f"medications[{len(medicines)}]", f"med-{n}-name")
            medicines.append({"name": name})
    if medicines or field_text(values, "meds_none"):
        doc["medications"] = medicines

    signs = {s.id: True for s in (*spec.signs_felt, *spec.signs_found) if field_text(values, f"sign-{s.id}")}
    if signs:
        doc["signs"] = signs

    foods = food_answers(values, spec.foods, out)
    if foods:
        doc["diet"] = {"food_frequency": foods}

    supplements: list[dict[str, Any]] = []
    for n in rows(values, "supp"):
        form, amount, basis = (field_text(values, f"supp-{n}-{k}") for k in ("form", "amount", "basis"))
        if not form:
            continue
        where = f"supplements[{len(supplements)}]"
        item: dict[str, Any] = {
            "name": kb.supplements[form].name if form in kb.supplements else form,
            "form": form,
        }
        if amount and basis in ("elemental", "product"):
            item[f"{basis}_mg_per_day"] = number_or_text(amount)
        for path in ("", ".form", ".name"):
            out.put(f"{where}{path}", f"supp-{n}-form")
        for path in (".elemental_mg_per_day", ".product_mg_per_day"):
            out.put(f"{where}{path}", f"supp-{n}-amount")
        supplements.append(item)
    if supplements or field_text(values, "supps_none"):
        doc["supplements"] = supplements
    return out


# --------------------------------------------------------------------------------------------
# The answer in plain words


@dataclass(frozen=True, slots=True)
class Reason:
    """One plain-language reason, and the sources behind the finding it words."""

    text: str
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlainResult:
    """The self-check's answer: what it may mean, why, and when to see a clinician."""

    headline: str
    meaning: str
    reasons: tuple[Reason, ...]
    reassuring: tuple[Reason, ...]
    diet: str
    supplements: tuple[str, ...]
    urgency: Urgency
    when: str
    urgent_because: tuple[str, ...]
    more_answers: tuple[str, ...]
    sources: tuple[str, ...]


_MEANING = {
    "excess": (
        "Your answers include things linked with too much magnesium",
        "Some answers together point to magnesium that could build up too high. Only a clinician, "
        "with a blood test, can tell whether this is so.",
    ),
    "deficient": (
        "Your answers include several things linked with low magnesium",
        "Several of your answers together are linked with low magnesium. This check cannot measure "
        "your magnesium: only a clinician, with tests, can tell what is going on.",
    ),
    "likely_deficient": (
        "Your answers include several things linked with low magnesium",
        "Several of your answers together are linked with low magnesium. This check cannot measure "
        "your magnesium: only a clinician, with tests, can tell what is going on.",
    ),
    "at_risk": (
        "Some of your answers can lower the body's magnesium",
        "Some of your answers are things that can lower the magnesium in your body. That does not "
        "mean your magnesium is low: many people with these answers have normal levels.",
    ),
    "unlikely": (
        "Nothing in your answers points to low magnesium",
        "None of your answers is a known reason for low magnesium.",
    ),
    "indeterminate": (
        "Your answers do not say enough either way",
        "There is too little in your answers to say anything about your magnesium. Answering more "
        "of the questions may help.",
    ),
}

_WHEN = {
    "today": (
        "Contact a clinician today. If you have a fit (seizure), faint, have chest pain, or your "
        "heart is racing or beating irregularly right now, call emergency services."
    ),
    "soon": (
        "Book an appointment with a clinician in the next few weeks, and take this page with you. "
        "A simple blood test can show whether your magnesium is too low or too high."
    ),
    "next_visit": "Mention these answers at your next routine appointment with a clinician.",
    "none": (
        "You do not need an appointment because of these answers. See a clinician if you feel "
        "unwell, or if a symptom lasts or gets worse."
    ),
}

_EFFECT = {
    "lowers": "can lower the magnesium in your body",
    "raises": "can raise the magnesium in your body",
    "both": "can change the magnesium in your body",
    "interaction": "can interact with magnesium",
}


def urgent_signs(result: Assessment, kb: KnowledgeBase) -> tuple[str, ...]:
    """The reported signs that the knowledge base marks as urgent (``urgent = true``)."""
    found = (f.id.partition(".")[2] for f in result.findings if f.category == "sign")
    return tuple(sid for sid in found if sid in kb.signs and kb.signs[sid].urgent)


def _urgency(result: Assessment, kb: KnowledgeBase) -> Urgency:
    """How soon to see a clinician, from the knowledge base's urgent signs and the core's result.

    "Today" is kept for a reported sign that the knowledge base marks as urgent (tetany,
    seizures, arrhythmia): a lay answer alone, without a blood test, escalates no further. The
    core's urgent or important actions and an abnormal status ask for an appointment soon.
    """
    if urgent_signs(result, kb):
        return "today"
    priorities = {a.priority for a in (*result.next_steps, *result.safety)}
    if priorities & {"urgent", "high"} or result.status in ("excess", "deficient", "likely_deficient"):
        return "soon"
    if result.status == "at_risk":
        return "next_visit"
    return "none"


def _reason(f: Finding, kb: KnowledgeBase) -> str | None:
    """A plain sentence for a finding, from the finding's inputs and the knowledge base."""
    kind, _, key = f.id.partition(".")
    given = [str(i.value) for i in f.inputs if isinstance(i.value, str)]
    if kind == "drug" and key in kb.drug_classes:
        cls = kb.drug_classes[key]
        what = ", ".join(given) or cls.name.lower()
        return f"You take {what}. Medicines of this kind ({cls.name.lower()}) {_EFFECT[cls.effect]}."
    if kind == "condition" and key in kb.conditions:
        cond = kb.conditions[key]
        return f"You said you have: {cond.name.lower()}. This {_EFFECT[cond.effect]}."
    if kind == "sign" and key in kb.signs:
        sign = kb.signs[key]
        return {
            "specific": f"{sign.plain_name}: this is one of the signs most closely linked with low "
            "magnesium, although it has other causes too.",
            "supportive": f"{sign.plain_name}: this can go with low magnesium, among other causes.",
            "nonspecific": f"{sign.plain_name}: this is common and has many causes; on its own it says "
            "little about magnesium.",
        }[sign.specificity]
    if kind == "alcohol":
        return "Drinking alcohol as often as in your answers makes the body lose magnesium."
    if f.id == "age.older":
        return "With age, people tend to take in and absorb less magnesium."
    return None


_KIDNEY_SAFETY = ("sf.ckd_mg_products", "sf.renal_avoid_oral")
"""The safety notes that say reduced kidney function and magnesium products do not mix."""


def plain_result(result: Assessment, kb: KnowledgeBase) -> PlainResult:
    """Word an assessment for the person who answered the self-check."""
    headline, meaning = _MEANING[result.status]
    reasons: list[Reason] = []
    reassuring: list[Reason] = []
    for f in result.findings:
        if f.category not in ("risk_factor", "sign", "protective"):
            continue
        text = _reason(f, kb)
        if text is None:
            continue
        if f.weight in ("reassuring", "info") or f.category == "protective":
            reassuring.append(Reason(text, f.sources))
        else:
            reasons.append(Reason(text, f.sources))
    intake = result.intake
    diet = ""
    if intake.mg_per_day is not None:
        diet = f"From your food answers, you get roughly {fmt(intake.mg_per_day, 0)} mg of magnesium a day from the foods asked about."
        if intake.rda_mg is not None:
            diet += f" The amount recommended for someone of your age and sex is about {fmt(intake.rda_mg, 0)} mg a day."
        else:
            diet += " Give your age and sex to compare it with the recommended amount."
        diet += " Other foods (bread, vegetables, water) add more, so this is a low estimate."
    supplements: list[str] = []
    sup = result.supplements
    if sup.elemental_mg_per_day:
        line = f"Your supplements add about {fmt(sup.elemental_mg_per_day, 0)} mg of magnesium a day."
        if sup.above_ul and sup.ul_mg:
            line += (
                f" That is more than the upper limit of {fmt(sup.ul_mg, 0)} mg a day advised for supplements; "
                "ask a clinician or pharmacist before going on at this amount."
            )
        supplements.append(line)
    if sup.unknown_content:
        supplements.append(
            f"You take magnesium ({', '.join(sup.unknown_content)}) but the amount was not given, so it "
            "cannot be compared with the upper limit for supplements."
        )
    kidney = [a for a in result.safety if a.id in _KIDNEY_SAFETY]
    kidney_warned = bool(kidney) and bool(sup.elemental_mg_per_day or sup.unknown_content)
    if kidney_warned:
        supplements.append(
            "You said you have kidney disease. The kidneys remove extra magnesium, so with kidney disease "
            "magnesium from supplements can build up too high. Ask your clinician before going on with it."
        )
    if sup.not_counted:
        supplements.append(
            f"Not counted: {', '.join(sup.not_counted)}. Magnesium oil, sprays, flakes and bath salts go on the "
            "skin, and there is no good evidence that they raise the body's magnesium the way food or tablets do."
        )
    more = []
    if "age" in result.missing_inputs:
        more.append("your age")
    if "medications" in result.missing_inputs:
        more.append("your medicines (or tick “I take no regular medicines”)")
    if "conditions" in result.missing_inputs:
        more.append("your health conditions (or tick “None of these”)")
    if "sex" in result.missing_inputs:
        more.append("your sex (it sets the recommended amount)")
    if "alcohol" in result.missing_inputs:
        more.append("how many alcoholic drinks you have a day")
    if "diet" in result.missing_inputs:
        more.append("how often you eat the foods listed")
    urgency = _urgency(result, kb)
    cited = [s for r in (*reasons, *reassuring) for s in r.sources]
    cited += [s for f in result.findings if f.category in ("diet", "supplement") for s in f.sources]
    cited += [s for a in result.safety if a.id == "sf.transdermal" for s in a.sources]
    if kidney_warned:
        cited += [s for a in kidney for s in a.sources]
    sources = tuple(dict.fromkeys(cited))
    return PlainResult(
        headline=headline,
        meaning=meaning,
        reasons=tuple(reasons),
        reassuring=tuple(reassuring),
        diet=diet,
        supplements=tuple(supplements),
        urgency=urgency,
        when=_WHEN[urgency],
        urgent_because=tuple(kb.signs[sid].plain_name for sid in urgent_signs(result, kb)),
        more_answers=tuple(more),
        sources=sources,
    )
