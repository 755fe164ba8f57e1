"""What the result page and the PDF show, arranged from an Assessment and the facts it read.

Nothing here decides anything clinical: the status, bands, scores, findings, next steps and
safety come from :func:`magstat.core.assess`; this module only orders, labels and formats
them, and lists the laboratory results that were read with the interval they were read
against.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from magstat.core.facts import Lab, PatientFacts
from magstat.core.result import Action, Assessment, Finding
from magstat.kb.schema import KnowledgeBase, Source
from magstat.render.html import trend_svg

__all__ = [
    "STATUS_LABELS",
    "FindingGroup",
    "LabResult",
    "LabView",
    "ResultView",
    "SourceView",
    "bar_svg",
    "fmt",
    "result_view",
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

# Results read as facts but shown elsewhere on the page (questions, the loading test).
_NOT_LABS = ("alcohol_drinks_per_day", "audit_c", "loading_retention")


def fmt(value: float | None, digits: int | None = None) -> str:
    """A number for display: a few significant decimals, no trailing zeros, a dash if unknown."""
    if value is None:
        return "—"
    if digits is None:
        size = abs(value)
        digits = 3 if size < 1 else 2 if size < 10 else 1 if size < 100 else 0
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True, slots=True)
class SourceView:
    """A cited source as shown: id, citation, evidence level and a reference to find it."""

    id: str
    citation: str
    level: str
    reference: str

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
        return cls(source.id, source.citation, source.evidence_level, ref)


@dataclass(frozen=True, slots=True)
class LabResult:
    """One laboratory result as read: canonical value, what was reported, the interval."""

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
class FindingGroup:
    """Findings of one category, under a heading."""

    heading: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True)
class ResultView:
    """Everything the result page and the PDF show."""

    result: Assessment
    status_label: str
    who: str
    serum_band: str
    trend: str
    trend_points: tuple[tuple[str, str], ...]
    labs: tuple[LabView, ...]
    diet_bar: str
    supplement_bar: str
    groups: tuple[FindingGroup, ...]
    status_finding: Finding | None
    sources: dict[str, SourceView]
    cited: tuple[SourceView, ...]

    @property
    def next_steps(self) -> tuple[Action, ...]:
        """The core's next steps, in its order."""
        return self.result.next_steps


def _lab_result(lab: Lab, kb: KnowledgeBase) -> LabResult:
    test = kb.tests.get(lab.test)
    low, high, source = lab.ref_low, lab.ref_high, "lab"
    if low is None and high is None and test is not None:
        low, high, source = test.default_low, test.default_high, "default"
    if low is None and high is None:
        interval, source = "", ""
    else:
        interval = f"{fmt(low) if low is not None else ''}–{fmt(high) if high is not None else ''}"
    flag = (
        "low"
        if low is not None and lab.value < low
        else "high"
        if high is not None and lab.value > high
        else ""
    )
    reported = ""
    if lab.reported_value is not None and lab.reported_unit and lab.reported_unit != lab.unit:
        reported = f"{fmt(lab.reported_value)} {lab.reported_unit}"
    return LabResult(
        date=lab.when.isoformat() if lab.when else "date unknown",
        value=fmt(lab.value),
        unit=lab.unit,
        reported=reported,
        interval=interval,
        interval_from=source,
        flag=flag,
    )


def _labs(facts: PatientFacts, kb: KnowledgeBase) -> tuple[LabView, ...]:
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


def bar_svg(label: str, value: float, marks: list[tuple[str, float]], unit: str) -> str:
    """A horizontal bar of ``value`` against labelled reference marks (an inline SVG).

    The numbers are drawn to scale; the text beside the chart says the same in words, so the
    chart is decoration for sighted readers (``aria-hidden``).
    """
    width, height, pad = 520, 72, 8
    top = max([value, *(m for _, m in marks)]) * 1.15 or 1.0

    def x(v: float) -> float:
        return pad + (width - 2 * pad) * v / top

    parts = [
        f'<svg class="bar" viewBox="0 0 {width} {height}" width="100%" aria-hidden="true" focusable="false">',
        f'<rect x="{pad}" y="14" width="{width - 2 * pad}" height="18" fill="#eaeef2"/>',
        f'<rect x="{pad}" y="14" width="{x(value) - pad:.1f}" height="18" fill="#0969da"/>',
    ]
    for i, (name, mark) in enumerate(marks):
        anchor = "end" if x(mark) > width - 80 else "middle"
        parts.append(
            f'<line x1="{x(mark):.1f}" x2="{x(mark):.1f}" y1="8" y2="38" stroke="#1b1f24" stroke-width="2"/>'
            f'<text x="{x(mark):.1f}" y="{50 + (i % 2) * 14}" font-size="11" text-anchor="{anchor}" fill="#1b1f24">'
            f"{escape(name)} {fmt(mark, 0)}</text>"
        )
    parts.append(
        f'<text x="{pad}" y="10" font-size="11" fill="#1b1f24">{escape(label)}: {fmt(value, 0)} {escape(unit)}</text></svg>'
    )
    return "".join(parts)


def result_view(result: Assessment, facts: PatientFacts, kb: KnowledgeBase) -> ResultView:
    """Arrange an assessment for display."""
    s = result.serum_magnesium
    who = " · ".join(
        x
        for x in (
            f"Patient {result.patient_id}" if result.patient_id else "",
            f"age {result.age_years:.0f}" if result.age_years is not None else "age unknown",
            result.sex or "sex unknown",
            f"assessed as of {result.as_of.isoformat()}",
        )
        if x
    )
    status_label = STATUS_LABELS.get(result.status, result.status)
    if result.severity:
        status_label += f" ({result.severity})"
    groups = []
    for category, heading in _CATEGORY_HEADINGS:
        found = tuple(f for f in result.findings if f.category == category)
        if found:
            groups.append(FindingGroup(heading, found))
    known = {c for c, _ in _CATEGORY_HEADINGS} | {"status"}
    others = tuple(f for f in result.findings if f.category not in known)
    if others:
        groups.append(FindingGroup("Other findings", others))
    ids: set[str] = set(result.sources)
    for f in result.findings:
        ids.update(f.sources)
    for r in result.relevance:
        ids.update(r.sources)
        for ev in r.evidence:
            ids.update(ev.get("sources", ()))
    sources = {sid: SourceView.of(kb.sources[sid]) for sid in sorted(ids) if sid in kb.sources}
    cited = tuple(sources[sid] for sid in result.sources if sid in sources)
    intake = result.intake
    diet_bar = ""
    if intake.mg_per_day is not None and intake.rda_mg is not None:
        marks = [("EAR", intake.ear_mg)] if intake.ear_mg is not None else []
        marks.append(("AI" if intake.rda_is_ai else "RDA", intake.rda_mg))
        diet_bar = bar_svg("Intake", intake.mg_per_day, [(n, v) for n, v in marks if v is not None], "mg/day")
    sup = result.supplements
    supplement_bar = ""
    if sup.elemental_mg_per_day and sup.ul_mg:
        supplement_bar = bar_svg("Supplements", sup.elemental_mg_per_day, [("UL", sup.ul_mg)], "mg/day")
    points = tuple((d.isoformat() if d else "date unknown", fmt(v)) for d, v in s.history)
    return ResultView(
        result=result,
        status_label=status_label,
        who=who,
        serum_band=BAND_LABELS.get(s.band or "", ""),
        trend=trend_svg(result),
        trend_points=points,
        labs=_labs(facts, kb),
        diet_bar=diet_bar,
        supplement_bar=supplement_bar,
        groups=tuple(groups),
        status_finding=next((f for f in result.findings if f.category == "status"), None),
        sources=sources,
        cited=cited,
    )
