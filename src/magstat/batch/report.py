"""The screening report: one offline HTML file with inline SVG plots (no script, no CDN).

Made from ``summary.json`` only, so it shows nothing the summary does not hold and is as
reproducible as the summary.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from magstat.batch.output import AGE_BANDS, COMPLETENESS, SERUM_BINS, STATUS_ORDER
from magstat.kb import KnowledgeBase
from magstat.render.model import STATUS_LABELS

__all__ = ["render_report"]

_COLOURS = {
    "deficient": "#b2182b",
    "likely_deficient": "#ef8a62",
    "at_risk": "#fddbc7",
    "indeterminate": "#d9d9d9",
    "unlikely": "#67a9cf",
    "excess": "#542788",
    "not assessed": "#000000",
}
_BAR = "#4a6fa5"
_BAR2 = "#c28d3c"


# Approximate width of a character of the 12 px sans-serif text, to size margins to labels.
_CHAR_PX = 6.6


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _status(status: str) -> str:
    """A status for people ("At risk", not "at_risk")."""
    return STATUS_LABELS.get(status, status)


def _no_data(width: int, label: str, why: str = "No data") -> str:
    """A small panel that says there is nothing to draw, instead of empty axes."""
    return _svg(width, 40, [f'<text x="10" y="24" font-style="italic">{_e(why)}</text>'], label)


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(label)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
        + "".join(body)
        + "</svg>"
    )


def _columns(
    labels: Sequence[str], series: Sequence[tuple[str, Sequence[float], str]], label: str, unit: str = "%"
) -> str:
    """Vertical bars, one group per label, one bar per series."""
    # The legend sits above ``top``; value labels sit above their bars, inside the plot.
    width, height, left, bottom, top = 560, 276, 48, 36, 40
    if not any(v for _, values, _ in series for v in values):
        return _no_data(width, label)
    peak = max([v for _, values, _ in series for v in values] + [1e-9])
    plot_h = height - bottom - top
    group_w = (width - left - 10) / max(len(labels), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    body = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 5}" y2="{height - bottom}" stroke="#333"/>'
    ]
    for i, name in enumerate(labels):
        x0 = left + i * group_w + group_w * 0.1
        for j, (_, values, colour) in enumerate(series):
            value = values[i]
            h = plot_h * value / peak
            x = x0 + j * bar_w
            y = height - bottom - h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{_e(name)}: {value:g}{unit}</title></rect>"
            )
            body.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="10">{value:g}</text>'
            )
        body.append(
            f'<text x="{left + i * group_w + group_w / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle">{_e(name)}</text>'
        )
    for j, (name, _, colour) in enumerate(series):
        body.append(f'<rect x="{left + 10 + j * 200}" y="4" width="10" height="10" fill="{colour}"/>')
        body.append(f'<text x="{left + 24 + j * 200}" y="13">{_e(name)}</text>')
    body.append(f'<text x="4" y="{top + 10}" font-size="11">{_e(unit)}</text>')
    return _svg(width, height, body, label)


def _rows(items: Sequence[tuple[str, float, str]], label: str, unit: str = "%") -> str:
    """Horizontal bars: (label, value, text shown)."""
    if not items:
        return _no_data(560, label)
    height = 24 * len(items) + 20
    # Margins fit the longest label and the longest value text, so nothing is clipped.
    left = int(min(max(len(name) for name, _, _ in items) * _CHAR_PX + 12, 320))
    right = int(max(len(shown) for _, _, shown in items) * _CHAR_PX + 12)
    width = max(560, left + right + 160)
    peak = max([v for _, v, _ in items] + [1e-9])
    body = []
    for i, (name, value, shown) in enumerate(items):
        y = 10 + i * 24
        w = (width - left - right) * value / peak
        body.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{_e(name)}</text>')
        body.append(
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="18" fill="{_BAR}"><title>{_e(shown)}</title></rect>'
        )
        body.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}">{_e(shown)}</text>')
    return _svg(width, max(height, 40), body, label)


def _stacked(summary: dict[str, Any], label: str) -> str:
    """Status shares by age band, one panel per sex (percent of the band's patients)."""
    cells: dict[tuple[str, str], dict[str, int]] = {}
    for item in summary["status_by_age_band_and_sex"]:
        cells.setdefault((item["sex"], item["age_band"]), {})[item["status"]] = item["patients"]
    sexes = [s for s in ("female", "male", "unknown") if any(k[0] == s for k in cells)]
    bands = [b for _, _, b in AGE_BANDS] + ["unknown"]
    bands = [b for b in bands if any(k[1] == b for k in cells)]
    width, row_h = 560, 20
    if not cells:
        return _no_data(width, label)
    left = int(max(len(f"{b} (n=00000)") for b in bands) * _CHAR_PX + 10)
    statuses = [*STATUS_ORDER, "not assessed"]
    # The legend wraps onto as many rows as it needs: labels never overlap or leave the chart.
    body = []
    x, legend_y = 10.0, 4
    for status in statuses:
        name = _status(status)
        step = 24 + len(name) * _CHAR_PX
        if x + step > width:
            x, legend_y = 10.0, legend_y + 16
        body.append(f'<rect x="{x:.0f}" y="{legend_y}" width="10" height="10" fill="{_COLOURS[status]}"/>')
        body.append(f'<text x="{x + 13:.0f}" y="{legend_y + 9}" font-size="10">{_e(name)}</text>')
        x += step
    y = legend_y + 26
    height = y + len(sexes) * (len(bands) * row_h + 26)
    for sex in sexes:
        body.append(f'<text x="4" y="{y + 12}" font-weight="bold">{_e(sex)}</text>')
        y += 18
        for band in bands:
            counts = cells.get((sex, band), {})
            total = sum(counts.values())
            x = float(left)
            body.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{_e(band)} (n={total})</text>')
            for status in statuses:
                n = counts.get(status, 0)
                if not n:
                    continue
                w = (width - left - 10) * n / total
                body.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 4}" fill="{_COLOURS[status]}" stroke="#fff">'
                    f"<title>{_e(sex)} {_e(band)}: {_e(_status(status))} {n} ({100 * n / total:.1f}%)</title></rect>"
                )
                x += w
            y += row_h
        y += 8
    return _svg(width, height, body, label)


def _histogram(summary: dict[str, Any], kb: KnowledgeBase, label: str) -> str:
    """Serum magnesium results by 0.05 mmol/L bins, with the thresholds drawn as lines."""
    counts = list(summary["serum_mg"]["histogram_mmol_l"].values())
    width, height, left, bottom, top = 560, 240, 40, 40, 50
    if not any(counts):
        return _no_data(width, label, "No data: no patient has a serum magnesium result.")
    lo, hi = SERUM_BINS[0], SERUM_BINS[-1]
    peak = max([*counts, 1])
    plot_w, plot_h = width - left - 10, height - bottom - top

    def x_of(value: float) -> float:
        return left + plot_w * (value - lo) / (hi - lo)

    body = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#333"/>'
    ]
    for i, n in enumerate(counts):
        x0, x1 = x_of(SERUM_BINS[i]), x_of(SERUM_BINS[i + 1])
        h = plot_h * n / peak
        body.append(
            f'<rect x="{x0:.1f}" y="{height - bottom - h:.1f}" width="{x1 - x0 - 1:.1f}" height="{h:.1f}" fill="{_BAR}">'
            f"<title>{SERUM_BINS[i]:.2f}-{SERUM_BINS[i + 1]:.2f} mmol/L: {n}</title></rect>"
        )
    for value in SERUM_BINS[::4]:
        body.append(
            f'<text x="{x_of(value):.1f}" y="{height - bottom + 14}" text-anchor="middle" font-size="10">{value:.2f}</text>'
        )
    body.append(f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">serum magnesium, mmol/L</text>')
    test = kb.tests["serum_mg"]
    lines: list[tuple[float | None, str, str]] = [
        (test.default_low, "lab lower limit (default)", "#b2182b"),
        (kb.param("serum_mg.evidence_lower"), "evidence-based lower limit", "#ef8a62"),
        (test.default_high, "lab upper limit (default)", "#542788"),
    ]
    for k, (limit, name, colour) in enumerate(lines):
        if limit is None:
            continue
        x = x_of(limit)
        body.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="{colour}" stroke-dasharray="4 3"/>'
        )
        body.append(  # one line per threshold above the plot: the labels cannot overlap
            f'<text x="{left}" y="{12 + k * 13}" fill="{colour}" font-size="10">{_e(name)} {limit:g} mmol/L</text>'
        )
    return _svg(width, height, body, label)


def render_report(summary: dict[str, Any], kb: KnowledgeBase) -> str:
    """The HTML report of a screening, from its summary."""
    mds_labels = [str(s) for s in range(6)]
    series = [("unweighted", [summary["mds_distribution"][s] for s in mds_labels], _BAR)]
    if "mds_distribution_weighted" in summary:
        series.append(
            ("survey-weighted", [summary["mds_distribution_weighted"][s] for s in mds_labels], _BAR2)
        )
    base = summary["mds_distribution_base"]
    drugs = [
        (
            kb.drug_classes[name].name if name in kb.drug_classes else name.replace("_", " "),
            item["percent"],
            f"{item['percent']:g}% ({item['patients']})",
        )
        for name, item in sorted(
            summary["drug_class_prevalence"].items(), key=lambda kv: (-kv[1]["patients"], kv[0])
        )
    ]
    completeness = [
        (text, summary["completeness_percent"][key], f"{summary['completeness_percent'][key]:g}%")
        for key, text in COMPLETENESS
    ]
    status_rows = "".join(
        f"<tr><td>{_e(_status(s))}</td><td>{n}</td></tr>" for s, n in summary["status_counts"].items() if n
    )
    issue_rows = (
        "".join(
            f"<tr><td>{_e(k)}</td><td>{n}</td></tr>" for k, n in sorted(summary["issues"]["counts"].items())
        )
        or "<tr><td>none</td><td>0</td></tr>"
    )
    cohort = ""
    if "cohort" in summary:
        c = summary["cohort"]
        cohort = (
            f"<h2>Study cohort</h2><p>{_e(c['definition'])}</p><p>Weight: {_e(c['weight'])}. "
            f"In the cohort: {c['n']} of {summary['patients']} participants.</p>"
        )
    kbinfo = summary["knowledge_base"]
    sections = [
        (
            "Magnesium Depletion Score",
            f"Percent of {_e(base['description'])} (n = {base['n']}).",
            _columns(mds_labels, series, "MDS distribution"),
        ),
        (
            "Status by age band and sex",
            "Share of each status within each age band.",
            _stacked(summary, "status by age band and sex"),
        ),
        (
            "Drug classes that affect magnesium",
            "Percent of assessed patients currently taking a drug of the class.",
            _rows(drugs, "drug class prevalence"),
        ),
        (
            "Serum magnesium against the thresholds",
            f"Most recent result of {summary['serum_mg']['patients_with_result']} patients.",
            _histogram(summary, kb, "serum magnesium histogram"),
        ),
        (
            "Data completeness",
            "Percent of assessed patients for whom each input was known.",
            _rows(completeness, "data completeness"),
        ),
    ]
    body = "".join(f"<section><h2>{_e(t)}</h2><p>{d}</p>{svg}</section>" for t, d, svg in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>magstat screening report</title>
<style>
body {{ font-family: sans-serif; max-width: 980px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
section {{ margin: 1.5em 0; }} .note {{ background: #f4f4f4; padding: 0.6em; }}
</style></head><body>
<h1>magstat population screening</h1>
<p class="note">Decision support, not a diagnosis: a screening result says who may need a closer look;
each patient's findings and their basis are in <code>magstat assess</code> (or <code>assessments.ndjson.gz</code>).</p>
<table>
<tr><th>input</th><td>{_e(summary["input"]["format"])}: {_e(summary["input"]["path"])}</td></tr>
<tr><th>as of</th><td>{_e(summary["as_of"])}</td></tr>
<tr><th>patients</th><td>{summary["patients"]}</td></tr>
<tr><th>deceased</th><td>{summary.get("deceased", 0)} (died on or before the as-of date: not assessed, left out of every figure below)</td></tr>
<tr><th>knowledge base</th><td>{_e(kbinfo["version"])} (sha256 {_e(kbinfo["sha256"][:16])}…)</td></tr>
<tr><th>engine</th><td>{_e(summary["engine"])}</td></tr>
</table>
<h2>Status</h2><table><tr><th>status</th><th>patients</th></tr>{status_rows}</table>
{cohort}
{body}
<h2>Input problems</h2><p>Every problem is listed in <code>issues.csv</code>.</p>
<table><tr><th>kind</th><th>count</th></tr>{issue_rows}</table>
</body></html>
"""
