"""Plain-text clinical summary of an assessment (colour on a terminal).

It lays out :class:`magstat.render.model.AssessmentView` in the order every surface uses: the
status, then the urgent and important actions by priority, then the basis.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import textwrap

from magstat.core.result import Assessment
from magstat.kb.schema import KnowledgeBase
from magstat.render.model import ActionView, AssessmentView, Row, assessment_view

__all__ = ["render_text"]

_COLOURS = {
    "excess": "35",  # magenta
    "deficient": "31",  # red
    "likely_deficient": "31",
    "at_risk": "33",  # yellow
    "unlikely": "32",  # green
    "indeterminate": "36",  # cyan
}
_PRIORITY_STYLE = {"urgent": "1;31", "high": "33", "routine": "0"}
_WIDTH = 96


class _Out:
    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self.lines: list[str] = []

    def style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def heading(self, text: str) -> None:
        self.lines.append("")
        self.lines.append(self.style(text.upper(), "1"))

    def para(self, text: str, indent: str = "  ", first: str | None = None) -> None:
        wrapped = textwrap.wrap(text, _WIDTH - len(indent), break_on_hyphens=False) or [""]
        lead = first if first is not None else indent
        self.lines.append(lead + wrapped[0])
        self.lines.extend(indent + line for line in wrapped[1:])

    def table(self, rows: list[Row]) -> None:
        width = max((len(r.label) for r in rows), default=0)
        for r in rows:
            value = r.value + (f"; {r.detail}" if r.detail else "")
            self.para(value, indent="  " + " " * (width + 2), first=f"  {r.label.ljust(width)}  ")


def _actions(out: _Out, actions: tuple[ActionView, ...], cite: bool) -> None:
    for a in actions:
        mark = out.style(a.priority_label.upper(), _PRIORITY_STYLE[a.priority])
        out.para(f"[{mark}] {a.text}", first="  - ", indent="    ")
        out.para(f"Why: {a.reason}" + (f"  [{', '.join(a.sources)}]" if cite else ""), indent="    ")


def _lay_out(view: AssessmentView, out: _Out, cite: bool) -> None:
    r = view.result
    out.lines.append(out.style(f" {view.banner} ", f"1;{_COLOURS[r.status]};7" if out.colour else "1"))
    out.para(f"{view.summary} {view.severity_reason}".strip(), indent="")
    out.para(view.who.replace(" · ", ", "), indent="")

    if view.first_actions:
        out.heading("Act first")
        _actions(out, view.first_actions, cite)

    out.heading("Measurements and calculators")
    out.table([row for row in view.measurements if not row.secondary])
    if view.trend is not None and len(view.trend_points) > 1:
        points = ", ".join(f"{d}: {v}" for d, v in view.trend_points[-6:])
        out.para(f"Trend (mmol/L): {points}. {view.trend.note}")
    elif view.trend is not None:
        out.para(view.trend.note)
    secondary = [row for row in view.measurements if row.secondary]
    if secondary:
        out.para("Not bearing on this status: " + "; ".join(f"{x.label} {x.value}" for x in secondary))

    out.heading("Findings and their basis")
    for group in view.groups:
        for f in group.findings:
            tag = out.style(f"[{f.weight_label}]", "2")
            out.para(f"{f.text} {tag}", first="  - ", indent="    ")
            basis = [f"Rule: {f.rule}"]
            if f.inputs:
                basis.append("Inputs: " + "; ".join(_folded(f.inputs)))
            if cite:
                basis.append("Sources: " + ", ".join(f.sources))
            for line in basis:
                out.para(out.style(line, "2"), indent="    ")
    if view.status_basis is not None:
        out.para(view.status_basis.text, first="  = ", indent="    ")

    if view.other_actions:
        out.heading("Other next steps and safety notes")
        _actions(out, view.other_actions, cite)
    if view.relevance:
        out.heading("Why it matters for this patient")
        for name, why, evidence, sources in view.relevance:
            out.para(f"{name}, because of: {why}", first="  - ", indent="    ")
            for ev in evidence[:3]:
                out.para(ev, indent="      ", first="    · ")
            if cite and sources:
                out.para(f"[{', '.join(sources)}]", indent="      ")
    out.heading("Limitations")
    for lim in view.limitations:
        out.para(lim, first="  - ", indent="    ")
    if view.not_known:
        out.para("Not known: " + view.not_known, first="  - ", indent="    ")
    if view.unrecognised:
        out.para("Not recognised (not used): " + view.unrecognised, first="  - ", indent="    ")
    if view.excluded:
        out.para(
            "Also left out because they failed checks: " + "; ".join(view.excluded),
            first="  - ",
            indent="    ",
        )
    out.lines.append("")
    out.para(
        f"Knowledge base {r.kb_version} (sha256 {r.kb_sha256[:12]}…). "
        "Decision support, not a diagnosis. `magstat kb cite ID` shows a source.",
        indent="",
    )


def _folded(inputs: tuple[object, ...]) -> list[str]:
    """Inputs for display; repeats of the same value (a drug ordered five times) are folded."""
    groups: dict[tuple[str, str], list[str]] = {}
    for item in inputs:
        name, value, source = (getattr(item, k) for k in ("name", "value", "source"))
        groups.setdefault((name, value), []).append(source)
    out = []
    for (name, value), sources in groups.items():
        text = f"{name}: {value}"
        named = [s for s in sources if s]
        if len(named) == 1:
            text += f" ({named[0]})"
        elif named:
            text += f" ({named[0]} and {len(named) - 1} more)"
        out.append(text)
    return out


def render_text(result: Assessment, kb: KnowledgeBase, *, colour: bool = False, cite: bool = True) -> str:
    """Render an assessment as a clinical summary for a terminal or a text file.

    Args:
        result: the assessment.
        kb: the knowledge base it was made with.
        colour: add ANSI colours (for a terminal).
        cite: show source ids after each finding and action.

    Returns:
        The summary, status and actions first, ending with a newline.

    """
    out = _Out(colour)
    _lay_out(assessment_view(result, kb), out, cite)
    return "\n".join(out.lines) + "\n"
