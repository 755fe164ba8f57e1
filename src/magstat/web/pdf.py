"""The assessment as a PDF document, drawn with ReportLab (pure Python, no browser).

The PDF lays out the same presentation model as the result page, in the same order, with
every finding's basis open: the status (naming the first urgent action), the urgent and
important actions on page 1, then measurements and the trend, laboratory results, the MDS,
diet and supplements, findings with their rule, inputs and sources, the other actions,
relevance, limitations and the cited sources. Fonts are the Bitstream Vera fonts that ship with ReportLab, embedded in the
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

from magstat.render.chart import bar_drawing, trend_drawing
from magstat.render.model import ActionView, AssessmentView

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


_WIDTH = 170 * mm


def _actions(items: tuple[ActionView, ...], st: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for a in items:
        out.append(
            KeepTogether(
                [
                    Paragraph(
                        f"<b>{_text(a.priority_label)}</b> ({_text(a.kind)}): {_text(a.text)}",
                        st["item"],
                        bulletText="•",
                    ),
                    Paragraph(f"Why here: {_text(a.reason)} [{_text(', '.join(a.sources))}]", st["basis"]),
                ]
            )
        )
    return out


def _head(view: AssessmentView, st: dict[str, Any]) -> list[Any]:
    """Title, who, the status banner (naming the first urgent action) and the first actions."""
    fill, edge = _STATUS_COLOURS.get(view.status, ("#ffffff", "#1b1f24"))
    lines = [[Paragraph(f"Status: {_text(view.status_label)}", st["status"])]]
    if view.urgent:
        more = len(view.urgent) - 1
        extra = f" ({more} more urgent action{'s' if more > 1 else ''} below)" if more else ""
        lines.append(
            [Paragraph(f"<b>Urgent:</b> {_text(view.urgent[0].first_sentence + extra)}", st["body"])]
        )
    lines.append([Paragraph(_text(f"{view.summary} {view.severity_reason}".strip()), st["body"])])
    banner = Table(lines, colWidths=[_WIDTH], hAlign="LEFT")
    banner.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(fill)),
                ("LINEBEFORE", (0, 0), (0, -1), 6, colors.HexColor(edge)),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
            ]
        )
    )
    story: list[Any] = [
        Paragraph("Magnesium status assessment", st["h1"]),
        Paragraph(_text(view.who), st["small"]),
        Spacer(1, 4),
        banner,
    ]
    if view.first_actions:
        story.append(Paragraph("Act first", st["h2"]))
        story.extend(_actions(view.first_actions, st))
    return story


def _measurements(view: AssessmentView, st: dict[str, Any]) -> list[Any]:
    """The measurements table, the trend chart and the laboratory results read."""
    story: list[Any] = [Paragraph("Measurements and calculators", st["h2"])]
    rows = [
        [
            Paragraph(_text(r.label), st["body"]),
            Paragraph(_text(r.value + (f" · {r.detail}" if r.detail else "")), st["body"]),
        ]
        for r in view.measurements
        if not r.secondary
    ]
    story.append(_table(rows, [45 * mm, 125 * mm], header=False))
    if view.trend is not None:
        story.append(Spacer(1, 4))
        story.append(trend_drawing(view.trend, 150 * mm))
        legend = [x for x in (view.trend.band_label, view.trend.limit_label) if x]
        story.append(
            Paragraph(
                _text(
                    f"Serum magnesium (mmol/L) by date of result. {view.trend.note} Shaded: {', '.join(legend) or 'no interval'}."
                ),
                st["small"],
            )
        )
    if view.labs:
        story.append(Paragraph("Laboratory results read", st["h3"]))
        rows = [["Test", "Value", "Unit", "As reported", "Interval", "Date"]]
        for lab in view.labs:
            x = lab.latest
            name = lab.name + (f" ({len(lab.earlier)} earlier)" if lab.earlier else "")
            rows.append(
                [
                    Paragraph(_text(name), st["small"]),
                    x.value + (f" ({x.flag})" if x.flag else ""),
                    Paragraph(_text(x.unit), st["small"]),
                    Paragraph(_text(x.reported), st["small"]),
                    Paragraph(
                        _text(x.interval + (f" ({x.interval_from})" if x.interval_from else "")), st["small"]
                    ),
                    x.date,
                ]
            )
        story.append(_table(rows, [42 * mm, 20 * mm, 30 * mm, 26 * mm, 30 * mm, 22 * mm]))
    return story


def _mds_and_diet(view: AssessmentView, st: dict[str, Any]) -> list[Any]:
    """The Magnesium Depletion Score, then diet and supplements with their bars."""
    story: list[Any] = [Paragraph("Magnesium Depletion Score", st["h2"])]
    if view.mds_secondary:
        story.append(
            Paragraph(
                "The score estimates the risk of depletion; it does not bear on an excess.", st["small"]
            )
        )
    story.append(Paragraph(_text(view.mds_text), st["body"]))
    story.append(
        _table([["Component", "Points"]] + [[r.label, r.value] for r in view.mds_rows], [60 * mm, 25 * mm])
    )
    story.append(Paragraph("Diet and supplements", st["h2"]))
    story.append(Paragraph(_text(view.diet), st["body"]))
    if view.diet_bar is not None:
        story.append(bar_drawing(view.diet_bar, 110 * mm))
    for line in view.supplements:
        story.append(Paragraph(_text(line), st["body"]))
    if view.supplement_bar is not None:
        story.append(bar_drawing(view.supplement_bar, 110 * mm))
    return story


def _findings(view: AssessmentView, st: dict[str, Any]) -> list[Any]:
    """Every finding with its basis (rule, strength, inputs, sources), then the status rule."""
    story: list[Any] = [Paragraph("Findings and their basis", st["h2"])]
    for group in view.groups:
        story.append(Paragraph(_text(group.heading), st["h3"]))
        for finding in group.findings:
            parts = [
                Paragraph(
                    f"{_text(finding.text)} <i>[{_text(finding.weight_label)}]</i>",
                    st["item"],
                    bulletText="•",
                ),
                Paragraph(f"<b>Rule:</b> {_text(finding.rule)}", st["basis"]),
            ]
            if finding.strength:
                parts.append(
                    Paragraph(f"<b>Strength of evidence:</b> {_text(finding.strength)}", st["basis"])
                )
            if finding.inputs:
                inputs = "; ".join(x.text for x in finding.inputs)
                parts.append(Paragraph(f"<b>Inputs:</b> {_text(inputs)}", st["basis"]))
            parts.append(Paragraph(f"<b>Sources:</b> {_text(', '.join(finding.sources))}", st["basis"]))
            story.append(KeepTogether(parts))
    if view.status_basis is not None:
        story.append(Paragraph("How the status was reached", st["h3"]))
        story.append(Paragraph(_text(view.status_basis.text), st["body"]))
    return story


def _rest(view: AssessmentView, st: dict[str, Any]) -> list[Any]:
    """The other actions, relevance, limitations and the cited sources."""
    story: list[Any] = [Paragraph("Other next steps and safety notes", st["h2"])]
    story.extend(
        _actions(view.other_actions, st) or [Paragraph("None beyond the actions above.", st["body"])]
    )
    story.append(Paragraph("Why it matters for this patient", st["h2"]))
    if not view.relevance:
        story.append(
            Paragraph("No outcome domain was triggered by the recorded conditions and signs.", st["body"])
        )
    for name, why, evidence, sources in view.relevance:
        story.append(
            Paragraph(
                f"<b>{_text(name)}</b>, because of {_text(why)} [{_text(', '.join(sources))}]",
                st["item"],
                bulletText="•",
            )
        )
        story.extend(Paragraph(_text(ev), st["basis"]) for ev in evidence)
    story.append(Paragraph("Limitations", st["h2"]))
    story.extend(Paragraph(_text(text), st["item"], bulletText="•") for text in view.limitations)
    for title, value in (
        ("Not known", view.not_known),
        ("Not recognised (check by hand)", view.unrecognised),
    ):
        if value:
            story.append(Paragraph(_text(f"{title}: {value}."), st["body"]))
    if view.excluded:
        story.append(
            Paragraph(
                _text("Also left out because they failed checks: " + "; ".join(view.excluded) + "."),
                st["body"],
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
    story.append(Paragraph(_text(view.kb_line), st["small"]))
    return story


def _build(story: list[Any], view: AssessmentView) -> bytes:
    """Lay the story out on A4 pages with a footer and return the PDF bytes."""
    r = view.result
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


def render_pdf(view: AssessmentView) -> bytes:
    """Draw the assessment as a PDF (A4) and return its bytes.

    Args:
        view: the presentation model of the assessment.

    Returns:
        The PDF: the status and the urgent and important actions on page 1, then the basis.

    """
    st = _styles()
    story = [
        *_head(view, st),
        *_measurements(view, st),
        *_mds_and_diet(view, st),
        *_findings(view, st),
        *_rest(view, st),
    ]
    return _build(story, view)
