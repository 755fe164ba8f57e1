"""A self-contained, printable HTML report of an assessment (no external assets).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from html import escape

from magstat.core.result import Action, Assessment, Finding
from magstat.kb.schema import KnowledgeBase

__all__ = ["render_html", "trend_svg"]

_STYLE = """
:root { color-scheme: light; --ink:#1b1f24; --muted:#57606a; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       max-width: 980px; margin: 1.5rem auto; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; } h2 { font-size: 1.1rem; margin: 1.6rem 0 .5rem;
  border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
.banner { padding: .8rem 1rem; border-radius: 6px; font-weight: 600; margin: .8rem 0; border-left: 8px solid; }
.excess { background:#f6e8ff; border-color:#8250df; } .deficient, .likely_deficient { background:#ffebe9; border-color:#cf222e; }
.at_risk { background:#fff8c5; border-color:#9a6700; } .unlikely { background:#dafbe1; border-color:#1a7f37; }
.indeterminate { background:#ddf4ff; border-color:#0969da; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; vertical-align: top;
  padding: .35rem .5rem; border-bottom: 1px solid var(--line); } th { width: 11rem; color: var(--muted); font-weight: 600; }
.muted { color: var(--muted); font-size: .9em; } .tag { font-size: .8em; padding: 0 .35rem; border-radius: 3px;
  background: #eaeef2; margin-left: .3rem; } .urgent { background:#ffebe9; color:#82071e; font-weight:700; }
.high { background:#fff8c5; } details { margin: .3rem 0 .6rem; } summary { cursor: pointer; }
li { margin-bottom: .45rem; } .disclaimer { border: 1px solid var(--line); padding: .6rem .8rem; border-radius: 6px; }
@media print { body { margin: 0; max-width: none; font-size: 12px; } details { display: block; }
  details > summary { list-style: none; } details[open] > summary, details > summary { font-weight: 600; } }
"""


def trend_svg(result: Assessment, width: int = 640, height: int = 200) -> str:
    """An inline SVG of the serum magnesium trend against the lab band and 0.85 mmol/L."""
    s = result.serum_magnesium
    points = [(d, v) for d, v in s.history if d is not None]
    if len(points) < 1:
        return ""
    low = s.lab_low if s.lab_low is not None else 0.75
    high = s.lab_high if s.lab_high is not None else 1.05
    values = [v for _, v in points]
    y_min = min([*values, low, 0.85]) - 0.1
    y_max = max([*values, high]) + 0.1
    first, last = points[0][0], points[-1][0]
    span = max((last - first).days, 1)
    pad = 44

    def x(d: object) -> float:
        days = (d - first).days if hasattr(d, "year") else 0  # type: ignore[operator]
        return pad + (width - 2 * pad) * (days / span if len(points) > 1 else 0.5)

    def y(v: float) -> float:
        return height - 24 - (height - 40) * (v - y_min) / (y_max - y_min)

    path = " ".join(f"{'M' if i == 0 else 'L'}{x(d):.1f},{y(v):.1f}" for i, (d, v) in enumerate(points))
    dots = "".join(
        f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3.5" fill="#0969da"><title>{d.isoformat()}: {v:.2f} mmol/L</title></circle>'
        for d, v in points
    )
    return (
        f'<svg role="img" aria-label="Serum magnesium over time" viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px">'
        f'<rect x="{pad}" y="{y(high):.1f}" width="{width - 2 * pad}" height="{y(low) - y(high):.1f}" fill="#dafbe1"/>'
        f'<line x1="{pad}" x2="{width - pad}" y1="{y(0.85):.1f}" y2="{y(0.85):.1f}" stroke="#9a6700" stroke-dasharray="5 4"/>'
        f'<text x="{width - pad + 2}" y="{y(0.85) + 4:.1f}" font-size="10" fill="#9a6700">0.85</text>'
        f'<text x="4" y="{y(high) + 4:.1f}" font-size="10">{high:.2f}</text><text x="4" y="{y(low) + 4:.1f}" font-size="10">{low:.2f}</text>'
        f'<path d="{path}" fill="none" stroke="#0969da" stroke-width="2"/>{dots}'
        f'<text x="{pad}" y="{height - 6}" font-size="10">{first.isoformat()}</text>'
        f'<text x="{width - pad}" y="{height - 6}" font-size="10" text-anchor="end">{last.isoformat()}</text>'
        "</svg>"
    )


def _sources(ids: tuple[str, ...], kb: KnowledgeBase) -> str:
    parts = []
    for source_id in ids:
        source = kb.sources.get(source_id)
        title = escape(source.citation if source else source_id)
        parts.append(f'<abbr title="{title}">{escape(source_id)}</abbr>')
    return ", ".join(parts)


def _finding(f: Finding, kb: KnowledgeBase) -> str:
    inputs = "".join(
        f"<li>{escape(u.name)}: {escape(str(u.value))}{' ' + escape(u.unit) if u.unit else ''}"
        f"{' · ' + escape(u.date.isoformat()) if u.date else ''}"
        f"{' · <span class=muted>' + escape(u.source) + '</span>' if u.source else ''}"
        f"{' · <span class=muted>matched by ' + escape(u.matched_by) + '</span>' if u.matched_by else ''}</li>"
        for u in f.inputs
    )
    return (
        f"<li>{escape(f.text)}<span class=tag>{escape(f.weight)}</span>"
        f"<details><summary>Basis</summary><p><b>Rule:</b> {escape(f.rule)}</p>"
        + (f"<p><b>Evidence:</b> {escape(f.strength)}</p>" if f.strength else "")
        + (f"<p><b>Inputs:</b></p><ul>{inputs}</ul>" if inputs else "")
        + f"<p><b>Sources:</b> {_sources(f.sources, kb)}</p></details></li>"
    )


def _actions(actions: tuple[Action, ...], kb: KnowledgeBase) -> str:
    return (
        "<ul>"
        + "".join(
            f"<li><span class='tag {a.priority}'>{a.priority}</span> {escape(a.text)}"
            f"<div class=muted>Why: {escape(a.reason)} · {_sources(a.sources, kb)}</div></li>"
            for a in actions
        )
        + "</ul>"
    )


def render_html(result: Assessment, kb: KnowledgeBase) -> str:
    """Render an assessment as a standalone printable HTML page."""
    s = result.serum_magnesium
    rows = []
    if s.mmol_l is not None:
        detail = f"{s.mmol_l:.2f} mmol/L · {s.mg_dl:.2f} mg/dL · {s.meq_l:.2f} mEq/L"
        if s.current:
            detail += f" — {escape((s.band or '').replace('_', ' '))}; lab interval {s.lab_low:.2f}–{s.lab_high:.2f} mmol/L ({s.interval_from}); evidence-based lower limit {s.evidence_lower}"
        else:
            detail += " — not recent, not used"
        rows.append(("Serum magnesium", detail + (f" · {s.date.isoformat()}" if s.date else "")))
    else:
        rows.append(("Serum magnesium", "no result"))
    e = result.egfr
    rows.append(
        (
            "eGFR",
            "unknown"
            if e.value is None
            else f"{e.value:.0f} mL/min/1.73 m² ({escape(e.equation or '')}, {e.origin})",
        )
    )
    m = result.mds
    comp = ", ".join(f"{k}: {'unknown' if v is None else v}" for k, v in m.components.items())
    rows.append(
        (
            "Magnesium Depletion Score",
            "no component known"
            if m.score is None
            else f"{m.score}{'' if m.complete else ' (incomplete)'} — band {m.band or 'undecided'} ({comp})",
        )
    )
    if result.femg.percent is not None:
        rows.append(("FEMg", f"{result.femg.percent:.1f}% — {result.femg.interpretation}"))
    if result.loading_test.retention_percent is not None:
        rows.append(
            (
                "Loading test",
                f"{result.loading_test.retention_percent:.0f}% retained — {result.loading_test.interpretation}",
            )
        )
    i = result.intake
    if i.mg_per_day is not None:
        rows.append(
            (
                "Diet",
                f"{i.mg_per_day:.0f} mg/day; RDA {i.rda_mg or '—'}; EAR {i.ear_mg or '—'}{'; below EAR' if i.below_ear else ''}",
            )
        )
    if result.supplements.elemental_mg_per_day:
        sup = result.supplements
        rows.append(
            (
                "Supplements",
                f"{sup.elemental_mg_per_day:.0f} mg/day elemental; UL {sup.ul_mg or '—'} mg/day{'; above UL' if sup.above_ul else ''}",
            )
        )
    table = "".join(f"<tr><th scope=row>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    findings = "".join(_finding(f, kb) for f in result.findings if f.category != "status")
    status = next((f for f in result.findings if f.category == "status"), None)
    relevance = "".join(
        f"<li><b>{escape(r.name)}</b> — because of {escape(r.why)}<ul>"
        + "".join(
            f"<li>{escape(ev['text'])} <span class=muted>({escape(ev['effect'])}; {escape(ev['strength'])})</span></li>"
            for ev in r.evidence
        )
        + "</ul></li>"
        for r in result.relevance
    )
    limits = "".join(
        f"<li>{escape(a.text)} <span class=muted>{_sources(a.sources, kb)}</span></li>"
        for a in result.limitations
    )
    who = " · ".join(
        x
        for x in (
            f"Patient {escape(result.patient_id)}" if result.patient_id else "",
            f"age {result.age_years:.0f}" if result.age_years is not None else "",
            escape(result.sex or ""),
            f"as of {result.as_of.isoformat()}",
        )
        if x
    )
    cited = "".join(
        f"<li><b>{escape(sid)}</b> {escape(kb.sources[sid].citation)}"
        f"{' — ' + escape(kb.sources[sid].evidence_level) if sid in kb.sources else ''}</li>"
        for sid in result.sources
        if sid in kb.sources
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>magstat report{" — " + escape(result.patient_id) if result.patient_id else ""}</title><style>{_STYLE}</style></head>
<body><main>
<h1>Magnesium status assessment</h1><p class=muted>{who}</p>
<div class="banner {result.status}" role="status">{escape(result.summary)}</div>
<section><h2>Measurements and calculators</h2><table>{table}</table>{trend_svg(result)}</section>
<section><h2>Findings and their basis</h2><ul>{findings}</ul>{"<p><b>" + escape(status.text) + "</b></p>" if status else ""}</section>
<section><h2>Next steps</h2>{_actions(result.next_steps, kb) if result.next_steps else "<p>None.</p>"}</section>
<section><h2>Safety</h2>{_actions(result.safety, kb) if result.safety else "<p>No specific safety consideration was triggered.</p>"}</section>
<section><h2>Why it matters for this patient</h2>{"<ul>" + relevance + "</ul>" if relevance else "<p>No outcome domain was triggered by the recorded conditions and signs.</p>"}</section>
<section><h2>Limitations</h2><ul>{limits}</ul>
{"<p>Not known: " + escape(", ".join(result.missing_inputs)) + "</p>" if result.missing_inputs else ""}
{"<p>Not recognised: " + escape("; ".join(result.unrecognised)) + "</p>" if result.unrecognised else ""}
{"<p>Left out (failed checks): " + escape("; ".join(result.excluded)) + "</p>" if result.excluded else ""}</section>
<section><h2>Sources</h2><ol class=muted>{cited}</ol></section>
<p class="disclaimer muted">Decision support, not a diagnosis: review the basis of each finding before acting on it.
Knowledge base {escape(result.kb_version)}, sha256 {escape(result.kb_sha256)}. Developed by the magstat developers.</p>
</main></body></html>
"""
