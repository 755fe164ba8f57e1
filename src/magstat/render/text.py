"""Plain-text clinical summary of an assessment (colour and tables on a terminal).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import textwrap

from magstat.core.result import Action, Assessment, Finding
from magstat.kb.schema import KnowledgeBase

__all__ = ["render_text"]

_COLOURS = {
    "excess": "35",  # magenta
    "deficient": "31",  # red
    "likely_deficient": "31",
    "at_risk": "33",  # yellow
    "unlikely": "32",  # green
    "indeterminate": "36",  # cyan
}
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

    def table(self, rows: list[tuple[str, str]]) -> None:
        width = max((len(k) for k, _ in rows), default=0)
        for key, value in rows:
            self.para(value, indent="  " + " " * (width + 2), first=f"  {key.ljust(width)}  ")


def _grouped_inputs(finding: Finding) -> list[str]:
    """Inputs for display; repeats of the same value (a drug ordered five times) are folded."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for u in finding.inputs:
        key = (u.name, str(u.value), u.unit or "")
        groups.setdefault(key, []).append(u.source or "")
    out = []
    for (name, value, unit), sources in groups.items():
        text = f"{name} {value}{' ' + unit if unit else ''}"
        named = [s for s in sources if s]
        if len(named) == 1:
            text += f" ({named[0]})"
        elif named:
            text += f" ({named[0]} and {len(named) - 1} more)"
        out.append(text)
    return out


def _actions(out: _Out, actions: tuple[Action, ...], cite: bool) -> None:
    marks = {"urgent": out.style("URGENT", "1;31"), "high": out.style("high", "33"), "routine": "routine"}
    for action in actions:
        out.para(f"[{marks[action.priority]}] {action.text}", first="  - ", indent="    ")
        out.para(
            f"Why: {action.reason}" + (f"  [{', '.join(action.sources)}]" if cite else ""), indent="    "
        )


def render_text(result: Assessment, kb: KnowledgeBase, *, colour: bool = False, cite: bool = True) -> str:
    """Render an assessment as a clinical summary for a terminal or a text file."""
    out = _Out(colour)
    banner = f" {result.summary} "
    out.lines.append(out.style(banner, f"1;{_COLOURS[result.status]};7" if colour else "1"))
    who = [f"as of {result.as_of.isoformat()}"]
    if result.patient_id:
        who.insert(0, f"patient {result.patient_id}")
    if result.age_years is not None:
        who.append(f"age {result.age_years:.0f}")
    if result.sex:
        who.append(result.sex)
    out.para(", ".join(who), indent="")

    out.heading("Measurements and calculators")
    rows: list[tuple[str, str]] = []
    s = result.serum_magnesium
    if s.mmol_l is not None:
        value = f"{s.mmol_l:.2f} mmol/L = {s.mg_dl:.2f} mg/dL = {s.meq_l:.2f} mEq/L"
        if s.current:
            value += f"; {(s.band or '').replace('_', ' ')}; lab interval {s.lab_low:.2f}–{s.lab_high:.2f} mmol/L ({s.interval_from}); evidence-based lower limit {s.evidence_lower} mmol/L"
            if s.ctcae_grade:
                value += f"; CTCAE grade {s.ctcae_grade}"
        else:
            value += " (not recent: not used)"
        if s.date:
            value += f"; {s.date.isoformat()}"
        rows.append(("Serum Mg", value))
        if len(s.history) > 1:
            trend = ", ".join(f"{d.isoformat() if d else '?'}: {v:.2f}" for d, v in s.history[-6:])
            rows.append(("Mg trend", trend + " mmol/L"))
    else:
        rows.append(("Serum Mg", "no result"))
    e = result.egfr
    rows.append(
        ("eGFR", "unknown" if e.value is None else f"{e.value:.0f} mL/min/1.73 m² ({e.equation}, {e.origin})")
    )
    m = result.mds
    if m.score is None:
        rows.append(("MDS", "no component known"))
    else:
        parts = ", ".join(f"{k} {'?' if v is None else v}" for k, v in m.components.items())
        rows.append(
            (
                "MDS",
                f"{m.score}{'' if m.complete else ' (incomplete)'}; band {m.band or 'undecided'}; {parts}",
            )
        )
    if result.femg.percent is not None:
        rows.append(("FEMg", f"{result.femg.percent:.1f}% ({result.femg.interpretation})"))
    if result.loading_test.retention_percent is not None:
        lt = result.loading_test
        rows.append(
            (
                "Loading test",
                f"{lt.retention_percent:.0f}% retained ({lt.interpretation}{'' if lt.valid is not False else '; not valid here'})",
            )
        )
    i = result.intake
    if i.mg_per_day is not None:
        ref = f"RDA {i.rda_mg:.0f}" if i.rda_mg else "no DRI"
        rows.append(
            (
                "Diet",
                f"{i.mg_per_day:.0f} mg/day ({i.estimated_from}); {ref}; EAR {i.ear_mg if i.ear_mg is not None else '—'}; {'below EAR' if i.below_ear else 'not below EAR' if i.below_ear is False else ''}".rstrip(
                    "; "
                ),
            )
        )
    sup = result.supplements
    if sup.elemental_mg_per_day:
        rows.append(
            (
                "Supplements",
                f"{sup.elemental_mg_per_day:.0f} mg/day elemental; UL {f'{sup.ul_mg:.0f}' if sup.ul_mg else '—'} mg/day{'; ABOVE UL' if sup.above_ul else ''}",
            )
        )
    out.table(rows)

    out.heading("Findings")
    for finding in result.findings:
        if finding.category == "status":
            continue
        tag = out.style(f"[{finding.weight}]", "2")
        out.para(f"{finding.text} {tag}", first="  - ", indent="    ")
        basis = [f"Rule: {finding.rule}"]
        used = _grouped_inputs(finding)
        if used:
            basis.append("Inputs: " + "; ".join(used))
        if cite:
            basis.append("Sources: " + ", ".join(finding.sources))
        for line in basis:
            out.para(out.style(line, "2"), indent="    ")
    status = next((f for f in result.findings if f.category == "status"), None)
    if status is not None:
        out.para(status.text, first="  = ", indent="    ")

    if result.next_steps:
        out.heading("Next steps")
        _actions(out, result.next_steps, cite)
    if result.safety:
        out.heading("Safety")
        _actions(out, result.safety, cite)
    if result.relevance:
        out.heading("Why it matters for this patient")
        for rel in result.relevance:
            out.para(f"{rel.name} — because of: {rel.why}", first="  - ", indent="    ")
            for ev in rel.evidence[:3]:
                out.para(
                    f"{ev['text']} ({ev['effect']}; {ev['strength']})"
                    + (f" [{', '.join(ev['sources'])}]" if cite else ""),
                    indent="      ",
                    first="    · ",
                )
    out.heading("Limitations")
    for lim in result.limitations:
        out.para(lim.text + (f"  [{', '.join(lim.sources)}]" if cite else ""), first="  - ", indent="    ")
    if result.missing_inputs:
        out.para("Not known: " + ", ".join(result.missing_inputs), first="  - ", indent="    ")
    if result.unrecognised:
        out.para(
            "Not recognised (not used): "
            + "; ".join(result.unrecognised[:12])
            + (" …" if len(result.unrecognised) > 12 else ""),
            first="  - ",
            indent="    ",
        )
    if result.excluded:
        out.para(
            "Left out because they failed checks: " + "; ".join(result.excluded), first="  - ", indent="    "
        )
    out.lines.append("")
    out.para(
        f"Knowledge base {result.kb_version} (sha256 {result.kb_sha256[:12]}…). "
        "Decision support, not a diagnosis. `magstat kb cite ID` shows a source.",
        indent="",
    )
    return "\n".join(out.lines) + "\n"
