"""One presentation model of an assessment, read by every renderer.

Text, the HTML page (web result and ``--format html``), the printable report, the PDF and the
CDS card detail all lay out an :class:`AssessmentView`; none of them formats a number, names a
unit, orders actions or draws a threshold of its own. The model fixes, once:

- the order: the status first, then the urgent and important actions in priority order, then
  the basis (measurements, findings with their rule, inputs and sources), then the rest;
- the words: labels for people instead of identifiers (``Proton-pump inhibitor``, not ``ppi``)
  and units as people write them (``mL/min/1.73 m²``, not ``mL/min/{1.73_m2}``);
- the rounding: one rule per quantity (serum magnesium 0.45 mmol/L everywhere).

Nothing here decides anything clinical: status, bands, scores, findings, next steps and safety
come from :func:`magstat.core.assess`; thresholds drawn in charts come from the assessment,
which took them from the knowledge base.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from magstat.core.facts import Lab, PatientFacts
from magstat.core.result import Action, Assessment, Finding, InputUsed
from magstat.core.rules.report import EXCLUDED_NAMED
from magstat.kb.schema import KnowledgeBase, Source

__all__ = [
    "PRIORITY_LABELS",
    "STATUS_LABELS",
    "ActionView",
    "AssessmentView",
    "BarChart",
    "FindingGroup",
    "FindingView",
    "LabResult",
    "LabView",
    "Row",
    "SourceView",
    "TrendChart",
    "assessment_view",
    "fmt",
    "quantity",
    "unit_label",
]

STATUS_LABELS = {
    "excess": "Excess",
    "deficient": "Deficient",
    "likely_deficient": "Likely deficient",
    "at_risk": "At risk",
    "unlikely": "Deficiency unlikely",
    "indeterminate": "Indeterminate",
}
"""Display names of the core's statuses."""

BAND_LABELS = {
    "below_lab_range": "below the lab range",
    "low_normal": "low-normal: within the lab range, below the evidence-based lower limit",
    "normal": "normal: at or above the evidence-based lower limit",
    "above_lab_range": "above the lab range",
}
"""Display names of the core's serum magnesium bands."""

PRIORITY_LABELS = {"urgent": "Urgent", "high": "Important", "routine": "Routine"}
"""Display names of action priorities."""

_PRIORITY_RANK = {"urgent": 0, "high": 1, "routine": 2}

WEIGHT_LABELS = {
    "deficit": "deficit",
    "excess": "excess",
    "major": "major risk factor",
    "minor": "minor risk factor",
    "specific": "specific sign",
    "supportive": "supportive sign",
    "nonspecific": "nonspecific sign",
    "reassuring": "reassuring",
    "info": "information",
}
"""Display names of finding weights (an unknown weight is shown with spaces for underscores)."""

UNIT_LABELS = {
    "{drinks}/d": "drinks a day",
    "mL/min/{1.73_m2}": "mL/min/1.73 m²",
    "mL/min/1.73 m2": "mL/min/1.73 m²",
    "mL/min/1.73m2": "mL/min/1.73 m²",
    "mg/d": "mg/day",
    "mmol/d": "mmol/day",
    "{score}": "points",
    "a": "years",
    "umol/L": "µmol/L",
    "10*3/uL": "×10³/µL",
}
"""UCUM codes as people write the unit; a unit not listed is shown as it is."""

# Decimals per unit (as shown): one rule per quantity, on every surface.
_DECIMALS = {
    "mmol/L": 2,
    "mg/dL": 2,
    "mEq/L": 2,
    "µmol/L": 0,
    "mL/min/1.73 m²": 0,
    "mg/day": 0,
    "mmol/day": 1,
    "mmol": 1,
    "%": 1,
    "years": 0,
    "drinks a day": 1,
    "g/L": 0,
    "points": 0,
}

# Identifiers that reach the page as input names; the knowledge base names the rest.
_NAME_LABELS = {
    "heavy": "Heavy drinking",
    "audit_c_positive": "Unhealthy drinking (AUDIT-C)",
    "ppi": "Proton-pump inhibitors",
    "diuretic": "Diuretics",
    "kidney": "Kidney function",
    "alcohol": "Heavy drinking",
    "alcohol_drinks_per_day": "Alcohol",
    "audit_c": "AUDIT-C score",
    "eGFR": "eGFR",
    "previously_low": "Low serum magnesium found before",
    "recently_low": "Low serum magnesium before the current value",
}

_CATEGORY_HEADINGS = (
    ("serum_magnesium", "Serum magnesium"),
    ("test", "Other magnesium tests"),
    ("calculator", "Calculators"),
    ("risk_factor", "Risk factors"),
    ("sign", "Signs and symptoms"),
    ("diet", "Diet"),
    ("supplement", "Supplements"),
    ("protective", "Protective or raising factors"),
)

# Results read as facts but shown elsewhere (questions, the loading test).
_NOT_LABS = ("alcohol_drinks_per_day", "audit_c", "loading_retention")


def unit_label(unit: str | None) -> str:
    """A unit as people write it (UCUM annotations and codes replaced); empty if none."""
    if not unit:
        return ""
    return UNIT_LABELS.get(unit, unit)


def fmt(value: float | None, digits: int | None = None) -> str:
    """A number for display: ``digits`` decimals, or three significant ones; a dash if unknown.

    Without ``digits`` trailing zeros are dropped (0.700 -> 0.7); with them the decimals are
    kept (0.70 mmol/L), because a fixed number of decimals is the rule of that quantity.
    """
    if value is None:
        return "—"
    if digits is not None:
        return f"{value:.{digits}f}"
    size = abs(value)
    places = 3 if size < 1 else 2 if size < 10 else 1 if size < 100 else 0
    text = f"{value:.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def quantity(value: float | None, unit: str | None) -> str:
    """A value with its unit for people, rounded by the one rule of that unit.

    Args:
        value: the number, in ``unit``.
        unit: a UCUM code or a display unit.

    Returns:
        For example ``0.45 mmol/L``, ``53 mL/min/1.73 m²``, ``2 drinks a day``; ``unknown``
        when the value is unknown.

    """
    if value is None:
        return "unknown"
    shown = unit_label(unit)
    digits = _DECIMALS.get(shown)
    number = fmt(value, digits)
    if shown in ("drinks a day",):
        number = fmt(value)
    if not shown:
        return number
    return f"{number}%" if shown == "%" else f"{number} {shown}"


def label(identifier: str, kb: KnowledgeBase | None = None) -> str:
    """A name for people for an identifier that reached the page (``thiazide_diuretic``)."""
    if kb is not None:
        for table in (kb.drug_classes, kb.conditions, kb.signs):
            entry = table.get(identifier)
            if entry is not None:
                return entry.name
    if identifier in _NAME_LABELS:
        return _NAME_LABELS[identifier]
    if identifier in STATUS_LABELS:
        return STATUS_LABELS[identifier]
    text = identifier.replace("_", " ")
    return text[:1].upper() + text[1:]


@dataclass(frozen=True, slots=True)
class SourceView:
    """A cited source as shown: id, citation, evidence level and a reference to find it."""

    id: str
    citation: str
    level: str
    reference: str
    url: str

    @classmethod
    def of(cls, source: Source) -> SourceView:
        """Build from a knowledge-base source (DOI, then PMID, then URL, as text)."""
        ref = (
            f"doi:{source.doi}"
            if source.doi
            else f"PMID {source.pmid}"
            if source.pmid
            else (source.url or "")
        )
        url = f"https://doi.org/{source.doi}" if source.doi else source.url or ""
        return cls(source.id, source.citation, source.evidence_level, ref, url)


@dataclass(frozen=True, slots=True)
class Row:
    """One labelled line of the measurements: ``Serum magnesium`` -> ``0.45 mmol/L ...``."""

    label: str
    value: str
    detail: str = ""
    secondary: bool = False


@dataclass(frozen=True, slots=True)
class ActionView:
    """A next step or safety note, with its priority for people and where it came from."""

    id: str
    priority: Literal["urgent", "high", "routine"]
    priority_label: str
    kind: Literal["next step", "safety"]
    text: str
    reason: str
    sources: tuple[str, ...]

    @property
    def first_sentence(self) -> str:
        """The action's first sentence (for banners and headlines)."""
        head = self.text.split(". ", 1)[0].rstrip(".")
        return head + "."


@dataclass(frozen=True, slots=True)
class InputView:
    """One input of a finding, worded: ``Serum magnesium: 0.45 mmol/L · 2024-04-29 · labs[0]``."""

    name: str
    value: str
    date: str
    source: str
    matched_by: str

    @property
    def text(self) -> str:
        """The input on one line."""
        extra = "; ".join(p for p in (self.date, self.source) if p)
        return f"{self.name}: {self.value}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True, slots=True)
class FindingView:
    """A finding with its basis, worded for people."""

    id: str
    category: str
    text: str
    weight: str
    weight_label: str
    rule: str
    strength: str
    inputs: tuple[InputView, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FindingGroup:
    """Findings of one category, under a heading."""

    heading: str
    findings: tuple[FindingView, ...]


@dataclass(frozen=True, slots=True)
class LabResult:
    """One laboratory result as read: value, what was reported, the interval."""

    date: str
    value: str
    unit: str
    reported: str
    interval: str
    interval_from: str
    flag: str


@dataclass(frozen=True, slots=True)
class LabView:
    """A test with its most recent result and the earlier ones."""

    test: str
    name: str
    latest: LabResult
    earlier: tuple[LabResult, ...]


@dataclass(frozen=True, slots=True)
class TrendChart:
    """Serum magnesium over time against the lab interval and the evidence-based lower limit.

    Every number here comes from the assessment (the lab's interval or the knowledge base's
    default, the knowledge base's lower limit); the chart module only draws it.
    """

    points: tuple[tuple[dt.date, float], ...]
    unit: str
    band: tuple[float, float] | None
    band_label: str
    limit: float | None
    limit_label: str
    note: str

    @property
    def y_range(self) -> tuple[float, float]:
        """The value axis: every point, the band and the limit, with a margin."""
        values = [v for _, v in self.points]
        if self.band:
            values += list(self.band)
        if self.limit is not None:
            values.append(self.limit)
        low, high = min(values), max(values)
        margin = max((high - low) * 0.15, 0.05)
        return low - margin, high + margin


@dataclass(frozen=True, slots=True)
class BarChart:
    """A value against labelled reference marks (intake against EAR and RDA; supplements and UL)."""

    label: str
    value: float
    unit: str
    marks: tuple[tuple[str, float], ...]
    text: str


@dataclass(frozen=True, slots=True)
class AssessmentView:
    """Everything every surface shows, in the order it shows it."""

    result: Assessment
    status: str
    status_label: str
    summary: str  # the core's summary, worded for people (see _headline)
    severity_reason: str
    banner: str
    who: str
    first_actions: tuple[ActionView, ...]
    other_actions: tuple[ActionView, ...]
    next_steps: tuple[ActionView, ...]
    safety: tuple[ActionView, ...]
    measurements: tuple[Row, ...]
    serum_band: str
    trend: TrendChart | None
    trend_points: tuple[tuple[str, str], ...]
    labs: tuple[LabView, ...]
    diet: str
    diet_bar: BarChart | None
    supplements: tuple[str, ...]
    supplement_bar: BarChart | None
    mds_rows: tuple[Row, ...]
    mds_text: str
    mds_secondary: bool
    groups: tuple[FindingGroup, ...]
    status_basis: FindingView | None
    limitations: tuple[str, ...]
    not_known: str
    unrecognised: str
    excluded: tuple[str, ...]
    """Entries left out beyond those the limitation ``lim.excluded_input`` names."""
    sources: dict[str, SourceView]
    cited: tuple[SourceView, ...]
    kb_line: str
    relevance: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = field(default=())

    @property
    def urgent(self) -> tuple[ActionView, ...]:
        """The urgent actions, in priority order."""
        return tuple(a for a in self.first_actions if a.priority == "urgent")

    @property
    def actions(self) -> tuple[ActionView, ...]:
        """Every action, urgent first."""
        return (*self.first_actions, *self.other_actions)


def ordered_actions(result: Assessment) -> tuple[ActionView, ...]:
    """Next steps and safety notes in priority order: urgent, important, routine.

    Within a priority, safety notes come before next steps (what to do for the patient's
    safety before what to find out), and each list keeps the core's order.
    """
    views = [_action(a, "safety") for a in result.safety] + [
        _action(a, "next step") for a in result.next_steps
    ]
    return tuple(sorted(views, key=lambda a: _PRIORITY_RANK[a.priority]))


def _action(a: Action, kind: Literal["next step", "safety"]) -> ActionView:
    return ActionView(a.id, a.priority, PRIORITY_LABELS[a.priority], kind, a.text, a.reason, a.sources)


def _value_text(item: InputUsed) -> str:
    value = item.value
    if isinstance(value, bool):
        return "reported" if value else "not present"
    if value is None:
        return "unknown"
    if isinstance(value, int | float):
        return quantity(float(value), item.unit)
    text = str(value)
    return text + (f" ({unit_label(item.unit)})" if item.unit and item.unit not in ("mg/day",) else "")


def _input(item: InputUsed, kb: KnowledgeBase) -> InputView:
    return InputView(
        name=label(item.name, kb),
        value=_value_text(item),
        date=item.date.isoformat() if item.date else "",
        source=item.source or "",
        matched_by=item.matched_by or "",
    )


def _finding(f: Finding, kb: KnowledgeBase) -> FindingView:
    shown = [i for i in f.inputs if i.name != "finding"]
    return FindingView(
        id=f.id,
        category=f.category,
        text=f.text,
        weight=f.weight,
        weight_label=WEIGHT_LABELS.get(f.weight, f.weight.replace("_", " ")),
        rule=f.rule,
        strength=f.strength,
        inputs=tuple(_input(i, kb) for i in shown),
        sources=f.sources,
    )


def _serum_rows(result: Assessment) -> tuple[list[Row], str]:
    s = result.serum_magnesium
    if s.mmol_l is None:
        return [Row("Serum magnesium", "no result")], ""
    band = BAND_LABELS.get(s.band or "", "") if s.current else ""
    c = s.comparator or ""  # a reported bound: "<0.20 mmol/L = <0.49 mg/dL"
    value = f"{c}{quantity(s.mmol_l, 'mmol/L')} = {c}{quantity(s.mg_dl, 'mg/dL')} = {c}{quantity(s.meq_l, 'mEq/L')}"
    detail = [p for p in (band, s.date.isoformat() if s.date else "") if p]
    if not s.current:
        detail.append("not recent: not used for the status")
    rows = [Row("Serum magnesium", value, "; ".join(detail))]
    if s.interval_from:
        origin = "reported by the lab" if s.interval_from == "lab" else "default interval: the lab gave none"
        rows.append(Row("Lab interval", f"{fmt(s.lab_low, 2)}–{quantity(s.lab_high, 'mmol/L')}", origin))
    if s.evidence_lower is not None:
        # Below-range thresholds say nothing about an excess: shown, but not prominently.
        rows.append(
            Row(
                "Evidence-based lower limit",
                quantity(s.evidence_lower, "mmol/L"),
                secondary=result.status == "excess" or s.band == "above_lab_range",
            )
        )
    if s.ctcae_grade:
        rows.append(Row("CTCAE grade", str(s.ctcae_grade)))
    return rows, band


def _trend(result: Assessment) -> TrendChart | None:
    s = result.serum_magnesium
    points = tuple((d, v) for d, v in s.history if d is not None)
    if not points:
        return None
    excess = result.status == "excess" or s.band == "above_lab_range"
    band = (s.lab_low, s.lab_high) if s.lab_low is not None and s.lab_high is not None else None
    limit = None if excess else s.evidence_lower
    note = (
        f"One result only ({points[0][0].isoformat()}: {quantity(points[0][1], 'mmol/L')}): no trend yet."
        if len(points) == 1
        else f"{len(points)} results from {points[0][0].isoformat()} to {points[-1][0].isoformat()}."
    )
    return TrendChart(
        points=points,
        unit="mmol/L",
        band=band,
        band_label="lab reference interval" if band else "",
        limit=limit,
        limit_label=f"evidence-based lower limit {quantity(limit, 'mmol/L')}" if limit is not None else "",
        note=note,
    )


def _calculator_rows(result: Assessment) -> list[Row]:
    rows = []
    e = result.egfr
    if e.value is None:
        rows.append(Row("eGFR", "unknown"))
    else:
        origin = "computed" if e.origin == "computed" else "reported"
        detail = ", ".join(p for p in (e.equation or "", origin, e.date.isoformat() if e.date else "") if p)
        rows.append(Row("eGFR", (e.comparator or "") + quantity(e.value, "mL/min/{1.73_m2}"), detail))
    f = result.femg
    if f.percent is not None:
        rows.append(Row("FEMg", quantity(f.percent, "%"), f.interpretation or ""))
    lt = result.loading_test
    if lt.retention_percent is not None:
        note = (lt.interpretation or "") + ("; not valid here" if lt.valid is False else "")
        rows.append(Row("Loading test", f"{quantity(lt.retention_percent, '%')} retained", note))
    return rows


def _mds(result: Assessment) -> tuple[list[Row], str, bool]:
    m = result.mds
    rows = [Row(label(k), "unknown" if v is None else f"{v}") for k, v in m.components.items()]
    if m.score is None:
        text = "No component is known."
    else:
        text = f"Score {m.score}"
        if not m.complete and m.possible_range:
            text += f" from the known components (could be {m.possible_range[0]}–{m.possible_range[1]})"
        text += f"; band {m.band or 'undecided until the unknown components are known'}"
    # The score estimates depletion risk: it does not bear on an excess.
    return rows, text, result.status == "excess"


def _diet(result: Assessment) -> tuple[str, BarChart | None]:
    i = result.intake
    ref = "AI" if i.rda_is_ai else "RDA"
    if i.mg_per_day is None:
        text = "Dietary intake not known."
        if i.rda_mg:
            text += f" The {ref} for this life stage is {quantity(i.rda_mg, 'mg/day')}"
            text += f" (EAR {quantity(i.ear_mg, 'mg/day')})." if i.ear_mg else "."
        return text, None
    text = f"Dietary magnesium about {quantity(i.mg_per_day, 'mg/day')}"
    if i.estimated_from == "food_frequency":
        text += " (estimated from the food-frequency answers)"
    if i.rda_mg:
        text += f": {fmt(i.percent_of_rda, 0)}% of the {ref} of {quantity(i.rda_mg, 'mg/day')}"
        if i.ear_mg:
            text += f"; EAR {quantity(i.ear_mg, 'mg/day')}"
        if i.below_ear:
            text += "; below the EAR"
    text += "."
    bar = None
    if i.rda_mg is not None:
        marks = [("EAR", i.ear_mg)] if i.ear_mg is not None else []
        marks.append((ref, i.rda_mg))
        bar = BarChart(
            "Intake", i.mg_per_day, "mg/day", tuple((n, v) for n, v in marks if v is not None), text
        )
    return text, bar


def _supplements(result: Assessment) -> tuple[tuple[str, ...], BarChart | None]:
    u = result.supplements
    lines = []
    bar = None
    ul = f"upper level for supplements {quantity(u.ul_mg, 'mg/day')}" if u.ul_mg else ""
    if u.elemental_mg_per_day is None:
        lines.append("Supplements not known.")
    elif u.elemental_mg_per_day == 0 and u.unknown_content:
        lines.append(
            f"Magnesium taken, amount not known: no dose for {', '.join(u.unknown_content)}"
            + (f" ({ul})." if ul else ".")
        )
    elif u.elemental_mg_per_day == 0:
        lines.append("No supplemental magnesium counted" + (f" ({ul})." if ul else "."))
    else:
        about = "at least" if u.unknown_content else "about"
        text = f"Supplemental elemental magnesium {about} {quantity(u.elemental_mg_per_day, 'mg/day')}"
        if ul:
            text += f"; {ul}" + (": above the UL" if u.above_ul else "")
        lines.append(text + ".")
        if u.ul_mg:
            bar = BarChart("Supplements", u.elemental_mg_per_day, "mg/day", (("UL", u.ul_mg),), lines[-1])
    if u.not_counted:
        lines.append(
            f"Not counted toward intake: {', '.join(u.not_counted)} (transdermal products; see Safety)."
        )
    return tuple(lines), bar


def _lab_result(lab: Lab, kb: KnowledgeBase) -> LabResult:
    test = kb.tests.get(lab.test)
    low, high, source = lab.ref_low, lab.ref_high, "lab"
    if low is None and high is None and test is not None:
        low, high, source = test.default_low, test.default_high, "default"
    unit = unit_label(lab.unit)
    digits = _DECIMALS.get(unit)
    if low is None and high is None:
        interval, source = "", ""
    else:
        interval = (
            f"{fmt(low, digits) if low is not None else ''}–{fmt(high, digits) if high is not None else ''}"
        )
    flag = (
        "low"
        if low is not None and lab.value < low
        else "high"
        if high is not None and lab.value > high
        else ""
    )
    reported = ""
    if lab.reported_value is not None and lab.reported_unit and lab.reported_unit != lab.unit:
        reported = quantity(lab.reported_value, lab.reported_unit)
    return LabResult(
        date=lab.when.isoformat() if lab.when else "date unknown",
        value=(lab.comparator or "") + fmt(lab.value, digits),
        unit=unit,
        reported=reported,
        interval=interval,
        interval_from=source,
        flag=flag,
    )


def _labs(facts: PatientFacts | None, kb: KnowledgeBase) -> tuple[LabView, ...]:
    if facts is None:
        return ()
    by_test: dict[str, list[Lab]] = {}
    for lab in facts.labs:
        if lab.test not in _NOT_LABS:
            by_test.setdefault(lab.test, []).append(lab)
    out = []
    for test_id in (t for t in kb.tests if t in by_test):
        labs = sorted(by_test[test_id], key=lambda x: (x.when is not None, x.when), reverse=True)
        results = [_lab_result(lab, kb) for lab in labs]
        out.append(LabView(test_id, kb.tests[test_id].name, results[0], tuple(results[1:])))
    return tuple(out)


def _groups(findings: Sequence[FindingView]) -> tuple[FindingGroup, ...]:
    groups = []
    for category, heading in _CATEGORY_HEADINGS:
        found = tuple(f for f in findings if f.category == category)
        if found:
            groups.append(FindingGroup(heading, found))
    known = {c for c, _ in _CATEGORY_HEADINGS} | {"status"}
    others = tuple(f for f in findings if f.category not in known)
    if others:
        groups.append(FindingGroup("Other findings", others))
    return tuple(groups)


def _cited(result: Assessment, kb: KnowledgeBase) -> tuple[dict[str, SourceView], tuple[SourceView, ...]]:
    ids: set[str] = set(result.sources)
    for f in result.findings:
        ids.update(f.sources)
    for a in (*result.next_steps, *result.safety, *result.limitations):
        ids.update(a.sources)
    for r in result.relevance:
        ids.update(r.sources)
        for ev in r.evidence:
            ids.update(ev.get("sources", ()))
    sources = {sid: SourceView.of(kb.sources[sid]) for sid in sorted(ids) if sid in kb.sources}
    order = list(dict.fromkeys([*result.sources, *sorted(ids)]))
    return sources, tuple(sources[sid] for sid in order if sid in sources)


def _who(result: Assessment) -> str:
    return " · ".join(
        x
        for x in (
            f"Patient {result.patient_id}" if result.patient_id else "",
            f"age {fmt(result.age_years, 0)}" if result.age_years is not None else "age unknown",
            result.sex or "sex unknown",
            f"assessed as of {result.as_of.isoformat()}",
        )
        if x
    )


def _headline(result: Assessment, kb: KnowledgeBase, status_label: str) -> str:
    """The core's summary in words for people: names of risk factors, not their identifiers.

    It says what the core's ``summary`` says (status, serum value and band, MDS, major risk
    factors), from the same fields; the JSON keeps the core's own sentence.
    """
    s = result.serum_magnesium
    if s.mmol_l is None:
        parts = ["no serum magnesium result"]
    else:
        band = BAND_LABELS.get(s.band or "", "").split(":")[0] if s.current else "not recent"
        parts = [
            f"serum magnesium {s.comparator or ''}{quantity(s.mmol_l, 'mmol/L')}"
            + (f" ({band})" if band else "")
        ]
    m = result.mds
    if m.score is not None:
        parts.append(f"Magnesium Depletion Score {m.score}" + ("" if m.complete else " or more"))
    drivers = [
        label(f.id.split(".", 1)[-1], kb)
        for f in result.findings
        if f.weight == "major" and f.category == "risk_factor"
    ]
    if drivers:
        parts.append("major risk factors: " + ", ".join(dict.fromkeys(drivers)))
    return f"{status_label}: " + "; ".join(parts) + "."


def _banner(status_label: str, urgent: Iterable[ActionView]) -> str:
    first = list(urgent)
    text = f"Status: {status_label}"
    if first:
        more = (
            f" (and {len(first) - 1} more urgent action{'s' if len(first) > 2 else ''})"
            if len(first) > 1
            else ""
        )
        text += f". Urgent: {first[0].first_sentence}{more}"
    return text


def assessment_view(
    result: Assessment, kb: KnowledgeBase, facts: PatientFacts | None = None
) -> AssessmentView:
    """Arrange an assessment for every surface.

    Args:
        result: the core's assessment.
        kb: the knowledge base it was made with (names and citations).
        facts: the facts it was made from, when the surface lists the laboratory results read.

    Returns:
        The presentation model.

    """
    status_label = STATUS_LABELS.get(result.status, result.status)
    if result.severity:
        status_label += f" ({result.severity})"
    reason = result.severity_reason
    severity_reason = f"Graded {result.severity}: {reason}." if result.severity and reason else ""
    actions = ordered_actions(result)
    first = tuple(a for a in actions if a.priority in ("urgent", "high"))
    serum_rows, band = _serum_rows(result)
    mds_rows, mds_text, mds_secondary = _mds(result)
    calc = _calculator_rows(result)
    mds_row = Row("Magnesium Depletion Score", mds_text, secondary=mds_secondary)
    diet, diet_bar = _diet(result)
    supplements, supplement_bar = _supplements(result)
    measurements = [
        *serum_rows,
        *calc,
        mds_row,
        Row("Diet", diet),
        *(Row("Supplements", s) for s in supplements),
    ]
    findings = [_finding(f, kb) for f in result.findings]
    status_basis = next((f for f in findings if f.category == "status"), None)
    sources, cited = _cited(result, kb)
    s = result.serum_magnesium
    limitations = tuple(a.text + (f" {a.reason}" if a.reason else "") for a in result.limitations)
    return AssessmentView(
        result=result,
        status=result.status,
        status_label=status_label,
        summary=_headline(result, kb, status_label),
        severity_reason=severity_reason,
        banner=_banner(status_label, (a for a in first if a.priority == "urgent")),
        who=_who(result),
        first_actions=first,
        other_actions=tuple(a for a in actions if a not in first),
        next_steps=tuple(a for a in actions if a.kind == "next step"),
        safety=tuple(a for a in actions if a.kind == "safety"),
        measurements=tuple(measurements),
        serum_band=band,
        trend=_trend(result),
        trend_points=tuple(
            (d.isoformat() if d else "date unknown", fmt(v, _DECIMALS["mmol/L"])) for d, v in s.history
        ),
        labs=_labs(facts, kb),
        diet=diet,
        diet_bar=diet_bar,
        supplements=supplements,
        supplement_bar=supplement_bar,
        mds_rows=tuple(mds_rows),
        mds_text=mds_text,
        mds_secondary=mds_secondary,
        groups=_groups([f for f in findings if f.category != "status"]),
        status_basis=status_basis,
        limitations=limitations,
        not_known=", ".join(label(m) for m in result.missing_inputs),
        unrecognised="; ".join(result.unrecognised),
        # The limitation lim.excluded_input names the first ones; the view lists only the rest.
        excluded=tuple(result.excluded[EXCLUDED_NAMED:]),
        sources=sources,
        cited=cited,
        kb_line=f"Knowledge base {result.kb_version}, SHA-256 {result.kb_sha256}. Developed by the magstat developers.",
        relevance=tuple(
            (
                r.name,
                r.why,
                tuple(
                    f"{ev.get('text', '')} Effect: {ev.get('effect', '')}. {ev.get('strength', '')}."
                    for ev in r.evidence
                ),
                r.sources,
            )
            for r in result.relevance
        ),
    )
