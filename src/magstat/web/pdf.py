"""The assessment as a PDF document, drawn with ReportLab (pure Python, no browser).

The PDF holds what the result page holds, in print order, with every finding's basis open:
status, serum magnesium and its trend, the MDS, laboratory results, diet and supplements,
findings with their rule, inputs and sources, next steps, safety, relevance, limitations and
the cited sources. Fonts are the Bitstream Vera fonts that ship with ReportLab, embedded in the
file; a character they lack is spelled out (``α`` as ``alpha``) rather than dropped.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import reportlab  # type: ignore[import-untyped, unused-ignore]
from reportlab.graphics.shapes import (  # type: ignore[import-untyped, unused-ignore]
    Circle,
    Drawing,
    Line,
    PolyLine,
    Rect,
    String,
)
from reportlab.lib import colors  # type: ignore[import-untyped, unused-ignore]
from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped, unused-ignore]
from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped, unused-ignore]
from reportlab.lib.units import mm  # type: ignore[import-untyped, unused-ignore]
from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped, unused-ignore]
from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped, unused-ignore]
from reportlab.platypus import (  # type: ignore[import-untyped, unused-ignore]
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from magstat.core.result import Action, Assessment
from magstat.web.view import ResultView, fmt

__all__ = ["render_pdf"]

_SPELLED = {"α": "alpha", "κ": "kappa", "→": "->", "≈": "~", "µ": "u", "μ": "u", "≥": ">=", "≤": "<="}
_STATUS_COLOURS = {
    "excess": ("#f4eafd", "#6f42c1"),
    "deficient": ("#fdecea", "#b3261e"),
    "likely_deficient": ("#fdecea", "#b3261e"),
    "at_risk": ("#fff4d6", "#8a5a00"),
    "unlikely": ("#e3f4e8", "#1a7f37"),
    "indeterminate": ("#e7f1fd", "#0a58ca"),
}


@functools.cache
def _fonts() -> frozenset[int]:
    """Register the Vera family once; return the code points the regular face can draw."""
    folder = Path(reportlab.__file__).parent / "fonts"
    faces = {
        "Vera": "Vera.ttf",
        "Vera-Bold": "VeraBd.ttf",
        "Vera-Italic": "VeraIt.ttf",
        "Vera-BoldItalic": "VeraBI.ttf",
    }
    regular = None
    for name, file in faces.items():
        font = TTFont(name, str(folder / file))
        pdfmetrics.registerFont(font)
        regular = regular or font
    pdfmetrics.registerFontFamily(
        "Vera", normal="Vera", bold="Vera-Bold", italic="Vera-Italic", boldItalic="Vera-BoldItalic"
    )
    assert regular is not None
    return frozenset(int(c) for c in regular.face.charToGlyph)


def _text(value: object) -> str:
    """Plain text made safe for ReportLab's paragraph markup and the embedded font."""
    drawable = _fonts()
    out = []
    for char in str(value):
        if ord(char) in drawable or char in "\n\t":
            out.append(char)
        else:
            out.append(_SPELLED.get(char, "?"))
    return escape("".join(out))


def _styles() -> dict[str, Any]:
    _fonts()
    base = ParagraphStyle("body", fontName="Vera", fontSize=9.5, leading=12.5, spaceAfter=3)
    return {
        "body": base,
        "small": ParagraphStyle(
            "small", parent=base, fontSize=8, leading=10, textColor=colors.HexColor("#4d5661")
        ),
        "h1": ParagraphStyle("h1", parent=base, fontName="Vera-Bold", fontSize=16, leading=20, spaceAfter=4),
        "h2": ParagraphStyle(
            "h2",
            parent=base,
            fontName="Vera-Bold",
            fontSize=12,
            leading=15,
            spaceBefore=10,
            spaceAfter=4,
            textColor=colors.HexColor("#14324f"),
            keepWithNext=1,
        ),
        "h3": ParagraphStyle(
            "h3", parent=base, fontName="Vera-Bold", fontSize=10, leading=13, spaceBefore=6, keepWithNext=1
        ),
        "status": ParagraphStyle("status", parent=base, fontName="Vera-Bold", fontSize=12.5, leading=16),
        "item": ParagraphStyle("item", parent=base, leftIndent=10, bulletIndent=0),
        "basis": ParagraphStyle(
            "basis", parent=base, fontSize=8, leading=10, leftIndent=10, textColor=colors.HexColor("#33393f")
        ),
    }


def _trend(view: ResultView) -> Drawing | None:
    """The serum magnesium trend against the lab interval and the evidence-based lower limit."""
    s = view.result.serum_magnesium
    points = [(d, v) for d, v in s.history if d is not None]
    if not points:
        return None
    width, height, pad = 170 * mm, 48 * mm, 30
    low = s.lab_low if s.lab_low is not None else None
    high = s.lab_high if s.lab_high is not None else None
    limit = s.evidence_lower
    values = [v for _, v in points] + [x for x in (low, high, limit) if x is not None]
    y_min, y_max = min(values) - 0.1, max(values) + 0.1
    first, last = points[0][0], points[-1][0]
    span = max((last - first).days, 1)

    def x(day: Any) -> float:
        return float(pad + (width - 2 * pad) * ((day - first).days / span if len(points) > 1 else 0.5))

    def y(value: float) -> float:
        return float(16 + (height - 26) * (value - y_min) / (y_max - y_min))

    d = Drawing(width, height)
    grey = colors.HexColor("#1b1f24")
    if low is not None and high is not None:
        d.add(
            Rect(
                pad,
                y(low),
                width - 2 * pad,
                y(high) - y(low),
                fillColor=colors.HexColor("#dafbe1"),
                strokeColor=None,
            )
        )
        d.add(String(2, y(high) - 3, fmt(high, 2), fontName="Vera", fontSize=7, fillColor=grey))
        d.add(String(2, y(low) - 3, fmt(low, 2), fontName="Vera", fontSize=7, fillColor=grey))
    if limit is not None:
        d.add(
            Line(
                pad,
                y(limit),
                width - pad,
                y(limit),
                strokeColor=colors.HexColor("#9a6700"),
                strokeDashArray=[4, 3],
            )
        )
        d.add(
            String(
                width - pad + 2,
                y(limit) - 3,
                fmt(limit, 2),
                fontName="Vera",
                fontSize=7,
                fillColor=colors.HexColor("#9a6700"),
            )
        )
    blue = colors.HexColor("#0969da")
    if len(points) > 1:
        d.add(PolyLine([c for day, v in points for c in (x(day), y(v))], strokeColor=blue, strokeWidth=1.5))
    for day, v in points:
        d.add(Circle(x(day), y(v), 2.5, fillColor=blue, strokeColor=blue))
    d.add(String(pad, 2, first.isoformat(), fontName="Vera", fontSize=7, fillColor=grey))
    d.add(
        String(
            width - pad, 2, last.isoformat(), fontName="Vera", fontSize=7, fillColor=grey, textAnchor="end"
        )
    )
    return d


def _table(rows: list[list[Any]], widths: list[float] | None = None, header: bool = True) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    style = [
        ("FONTNAME", (0, 0), (-1, -1), "Vera"),
        ("FONTSIZE", (0, 0), (-1, -1), 8.5),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.4, colors.HexColor("#c3cbd4")),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        style += [
            ("FONTNAME", (0, 0), (-1, 0), "Vera-Bold"),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f3f5f7")),
        ]
    table.setStyle(TableStyle(style))
    return table


def _actions(items: tuple[Action, ...], st: dict[str, Any], empty: str) -> list[Any]:
    if not items:
        return [Paragraph(_text(empty), st["body"])]
    out: list[Any] = []
    for a in items:
        out.append(
            KeepTogether(
                [
                    Paragraph(f"<b>[{_text(a.priority)}]</b> {_text(a.text)}", st["item"], bulletText="•"),
                    Paragraph(
                        f"Why here: {_text(a.reason)} Sources: {_text(', '.join(a.sources))}", st["basis"]
                    ),
                ]
            )
        )
    return out


def render_pdf(view: ResultView) -> bytes:
    """Draw the assessment as a PDF (A4) and return its bytes."""
    st = _styles()
    r: Assessment = view.result
    story: list[Any] = [
        Paragraph("Magnesium status assessment", st["h1"]),
        Paragraph(_text(view.who), st["small"]),
        Spacer(1, 4),
    ]
    fill, edge = _STATUS_COLOURS.get(r.status, ("#ffffff", "#1b1f24"))
    banner = Table(
        [
            [Paragraph(f"Status: {_text(view.status_label)}", st["status"])],
            [Paragraph(_text(r.summary), st["body"])],
        ],
        colWidths=[170 * mm],
        hAlign="LEFT",
    )
    banner.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(fill)),
                ("LINEBEFORE", (0, 0), (0, -1), 6, colors.HexColor(edge)),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
            ]
        )
    )
    story.append(banner)

    s = r.serum_magnesium
    story.append(Paragraph("Serum magnesium", st["h2"]))
    if s.mmol_l is None:
        story.append(Paragraph("No serum magnesium result.", st["body"]))
    else:
        text = f"<b>{fmt(s.mmol_l, 2)} mmol/L</b> = {fmt(s.mg_dl, 2)} mg/dL = {fmt(s.meq_l, 2)} mEq/L"
        if s.date:
            text += f" · {s.date.isoformat()}"
        if not s.current:
            text += " · not recent: not used for the status"
        story.append(Paragraph(text, st["body"]))
        if s.current and view.serum_band:
            story.append(Paragraph(f"Band: {_text(view.serum_band)}", st["body"]))
        if s.interval_from:
            source = (
                "reported by the lab" if s.interval_from == "lab" else "default interval: the lab gave none"
            )
            story.append(
                Paragraph(
                    f"Lab interval {fmt(s.lab_low, 2)}–{fmt(s.lab_high, 2)} mmol/L ({source}); "
                    f"evidence-based lower limit {fmt(s.evidence_lower, 2)} mmol/L"
                    + (f"; CTCAE grade {s.ctcae_grade}" if s.ctcae_grade else ""),
                    st["body"],
                )
            )
    trend = _trend(view)
    if trend is not None:
        story.append(trend)
        story.append(
            Paragraph(
                "Green band: lab reference interval. Dashed line: evidence-based lower limit. Dots: results (mmol/L).",
                st["small"],
            )
        )

    d = r.mds
    story.append(Paragraph("Magnesium Depletion Score", st["h2"]))
    if d.score is None:
        story.append(Paragraph("No component is known.", st["body"]))
    else:
        more = (
            f" from the known components (could be {d.possible_range[0]}–{d.possible_range[1]})"
            if not d.complete and d.possible_range
            else ""
        )
        story.append(
            Paragraph(f"<b>Score {d.score}</b>{more} · band {_text(d.band or 'undecided')}", st["body"])
        )
    story.append(
        _table(
            [["Component", "Points"]]
            + [[k, "unknown" if v is None else str(v)] for k, v in d.components.items()],
            [60 * mm, 25 * mm],
        )
    )

    story.append(Paragraph("Laboratory results and calculators", st["h2"]))
    if view.labs:
        rows: list[list[Any]] = [["Test", "Value", "Unit", "As reported", "Interval", "Date"]]
        for lab in view.labs:
            x = lab.latest
            name = lab.name + (f" ({len(lab.earlier)} earlier)" if lab.earlier else "")
            rows.append(
                [
                    Paragraph(_text(name), st["small"]),
                    x.value + (" L" if x.flag == "low" else " H" if x.flag == "high" else ""),
                    Paragraph(_text(x.unit), st["small"]),
                    Paragraph(_text(x.reported), st["small"]),
                    Paragraph(
                        _text(x.interval + (f" ({x.interval_from})" if x.interval_from else "")), st["small"]
                    ),
                    x.date,
                ]
            )
        story.append(_table(rows, [46 * mm, 16 * mm, 30 * mm, 26 * mm, 30 * mm, 22 * mm]))
    e, f = r.egfr, r.femg
    calc = [
        [
            "eGFR",
            "unknown" if e.value is None else f"{fmt(e.value, 0)} mL/min/1.73 m² ({e.equation}, {e.origin})",
        ],
        ["FEMg", "not calculated" if f.percent is None else f"{fmt(f.percent, 1)}% — {f.interpretation}"],
    ]
    if r.loading_test.retention_percent is not None:
        calc.append(
            [
                "Loading test",
                f"{fmt(r.loading_test.retention_percent, 0)}% retained — {r.loading_test.interpretation}",
            ]
        )
    story.append(Spacer(1, 4))
    story.append(
        _table(
            [[Paragraph(_text(a), st["body"]), Paragraph(_text(b), st["body"])] for a, b in calc],
            [35 * mm, 135 * mm],
            header=False,
        )
    )

    story.append(Paragraph("Diet and supplements", st["h2"]))
    i = r.intake
    if i.mg_per_day is not None:
        text = f"Dietary magnesium about {fmt(i.mg_per_day, 0)} mg/day"
        if i.estimated_from == "food_frequency":
            text += " (estimated from food-frequency answers)"
        if i.rda_mg:
            text += f": {fmt(i.percent_of_rda, 0)}% of the {'AI' if i.rda_is_ai else 'RDA'} of {fmt(i.rda_mg, 0)} mg/day"
            if i.ear_mg:
                text += f"; EAR {fmt(i.ear_mg, 0)} mg/day"
            if i.below_ear:
                text += "; below the EAR"
        story.append(Paragraph(_text(text + "."), st["body"]))
    else:
        story.append(Paragraph("Dietary intake not known.", st["body"]))
    u = r.supplements
    if u.elemental_mg_per_day is None:
        story.append(Paragraph("Supplements not known.", st["body"]))
    else:
        text = f"Supplemental elemental magnesium about {fmt(u.elemental_mg_per_day, 0)} mg/day"
        if u.ul_mg:
            text += f"; upper level for supplements {fmt(u.ul_mg, 0)} mg/day" + (
                ": above the UL" if u.above_ul else ""
            )
        story.append(Paragraph(_text(text + "."), st["body"]))
    if u.not_counted:
        story.append(
            Paragraph(
                _text(f"Not counted toward intake: {', '.join(u.not_counted)} (transdermal products)."),
                st["body"],
            )
        )

    story.append(Paragraph("Findings and their basis", st["h2"]))
    for group in view.groups:
        story.append(Paragraph(_text(group.heading), st["h3"]))
        for finding in group.findings:
            inputs = "; ".join(
                f"{x.name}: {x.value}{' ' + x.unit if x.unit else ''}{' (' + x.date.isoformat() + ')' if x.date else ''}"
                f"{' from ' + x.source if x.source else ''}"
                for x in finding.inputs
            )
            parts = [
                Paragraph(
                    f"{_text(finding.text)} <i>[{_text(finding.weight.replace('_', ' '))}]</i>",
                    st["item"],
                    bulletText="•",
                ),
                Paragraph(f"<b>Rule:</b> {_text(finding.rule)}", st["basis"]),
            ]
            if finding.strength:
                parts.append(
                    Paragraph(f"<b>Strength of evidence:</b> {_text(finding.strength)}", st["basis"])
                )
            if inputs:
                parts.append(Paragraph(f"<b>Inputs:</b> {_text(inputs)}", st["basis"]))
            parts.append(Paragraph(f"<b>Sources:</b> {_text(', '.join(finding.sources))}", st["basis"]))
            story.append(KeepTogether(parts))
    if view.status_finding is not None:
        story.append(Paragraph("How the status was reached", st["h3"]))
        story.append(Paragraph(_text(view.status_finding.text), st["body"]))

    story.append(Paragraph("Next steps", st["h2"]))
    story.extend(_actions(r.next_steps, st, "No further test is suggested."))
    story.append(Paragraph("Safety", st["h2"]))
    story.extend(_actions(r.safety, st, "No specific safety consideration was triggered."))

    story.append(Paragraph("Why it matters for this patient", st["h2"]))
    if not r.relevance:
        story.append(
            Paragraph("No outcome domain was triggered by the recorded conditions and signs.", st["body"])
        )
    for rel in r.relevance:
        story.append(
            Paragraph(f"<b>{_text(rel.name)}</b> — because of {_text(rel.why)}", st["item"], bulletText="•")
        )
        for ev in rel.evidence:
            story.append(
                Paragraph(
                    _text(
                        f"{ev.get('text', '')} Effect: {ev.get('effect', '')}. {ev.get('strength', '')}. ({', '.join(ev.get('sources', ()))})"
                    ),
                    st["basis"],
                )
            )

    story.append(Paragraph("Limitations", st["h2"]))
    for a in r.limitations:
        story.append(
            Paragraph(_text(a.text + (f" {a.reason}" if a.reason else "")), st["item"], bulletText="•")
        )
    if r.missing_inputs:
        story.append(
            Paragraph(_text("Not known: " + ", ".join(r.missing_inputs).replace("_", " ") + "."), st["body"])
        )
    if r.unrecognised:
        story.append(
            Paragraph(_text("Not recognised (check by hand): " + "; ".join(r.unrecognised) + "."), st["body"])
        )
    if r.excluded:
        story.append(
            Paragraph(
                _text("Left out because they failed checks: " + "; ".join(r.excluded) + "."), st["body"]
            )
        )

    story.append(Paragraph("Sources", st["h2"]))
    for src in view.cited:
        ref = f"; {src.reference}" if src.reference else ""
        story.append(
            Paragraph(
                f"<b>{_text(src.id)}</b> {_text(src.citation)} ({_text(src.level)}{_text(ref)})", st["small"]
            )
        )
    story.append(Spacer(1, 6))
    story.append(
        Paragraph(
            _text(
                f"Knowledge base {r.kb_version}, SHA-256 {r.kb_sha256}. Developed by the magstat developers."
            ),
            st["small"],
        )
    )

    footer = f"magstat · knowledge base {r.kb_version} · decision support, not a diagnosis"

    def on_page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Vera", 7.5)
        canvas.setFillColor(colors.HexColor("#4d5661"))
        canvas.drawString(20 * mm, 10 * mm, footer)
        canvas.drawRightString(A4[0] - 20 * mm, 10 * mm, f"page {doc.page}")
        canvas.restoreState()

    buffer = io.BytesIO()
    title = "Magnesium status assessment" + (f" — {r.patient_id}" if r.patient_id else "")
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=title,
        author="magstat",
        subject="Decision support, not a diagnosis",
        creator=f"magstat, knowledge base {r.kb_version}",
    )
    document.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return buffer.getvalue()
