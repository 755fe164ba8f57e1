"""Every chart of an assessment, drawn from the presentation model.

Each chart is laid out once, as shapes in a plain coordinate space (:func:`trend_shapes`,
:func:`bar_shapes`), and then written either as inline SVG (HTML pages) or as a ReportLab
drawing (PDF). The numbers drawn (values, the lab interval, the evidence-based lower limit,
the EAR, RDA and UL) are those of :mod:`magstat.render.model`; nothing here knows a threshold.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Any, Literal

from magstat.render.model import BarChart, TrendChart, fmt, quantity

__all__ = ["Shape", "bar_drawing", "bar_shapes", "bar_svg", "trend_drawing", "trend_shapes", "trend_svg"]

INK = "#1b1f24"
BLUE = "#0969da"
BAND = "#dafbe1"
LIMIT = "#9a6700"
TRACK = "#eaeef2"


@dataclass(frozen=True, slots=True)
class Shape:
    """One mark of a chart, in a top-left origin coordinate space."""

    kind: Literal["rect", "line", "dashed", "path", "dot", "text"]
    x: float
    y: float
    x2: float = 0.0
    y2: float = 0.0
    colour: str = INK
    text: str = ""
    anchor: Literal["start", "middle", "end"] = "start"
    points: tuple[tuple[float, float], ...] = ()
    title: str = ""


def trend_shapes(chart: TrendChart, width: float = 640, height: float = 220) -> list[Shape]:
    """The trend chart as shapes: band, limit line, axis with ticks and label, results."""
    left, right, top, bottom = 58.0, 150.0, 24.0, 40.0
    y_min, y_max = chart.y_range
    first, last = chart.points[0][0], chart.points[-1][0]
    span = max((last - first).days, 1)
    single = len(chart.points) == 1

    def x(day: Any) -> float:
        share = 0.5 if single else (day - first).days / span
        return left + (width - left - right) * share

    def y(value: float) -> float:
        return top + (height - top - bottom) * (y_max - value) / (y_max - y_min)

    plot_right = width - right
    shapes: list[Shape] = []
    labels: list[tuple[float, str, str]] = []  # right-hand labels: (y, text, colour)
    if chart.band:
        low, high = chart.band
        shapes.append(Shape("rect", left, y(high), plot_right, y(low), BAND))
        labels += [(y(high), f"{fmt(high, 2)} lab upper", INK), (y(low), f"{fmt(low, 2)} lab lower", INK)]
    if chart.limit is not None:
        shapes.append(Shape("dashed", left, y(chart.limit), plot_right, y(chart.limit), LIMIT))
        labels.append((y(chart.limit), f"{fmt(chart.limit, 2)} lower limit", LIMIT))
    shapes += [Shape("text", plot_right + 6, at + 4, colour=c, text=t) for at, t, c in _spread(labels, 12)]
    # Value axis: a line, three ticks, and its name with the unit.
    shapes.append(Shape("line", left, top, left, height - bottom))
    for value in _ticks(y_min, y_max):
        shapes.append(Shape("line", left - 4, y(value), left, y(value)))
        shapes.append(Shape("text", left - 6, y(value) + 4, text=fmt(value, 2), anchor="end"))
    shapes.append(Shape("text", 4, top - 10, text=f"Serum magnesium ({chart.unit})"))
    shapes.append(Shape("line", left, height - bottom, plot_right, height - bottom))
    if not single:
        shapes.append(Shape("path", 0, 0, colour=BLUE, points=tuple((x(d), y(v)) for d, v in chart.points)))
    for day, value in chart.points:
        title = f"{day.isoformat()}: {quantity(value, chart.unit)}"
        shapes.append(Shape("dot", x(day), y(value), colour=BLUE, title=title))
    if single:
        day, value = chart.points[0]
        shapes.append(Shape("text", x(day) + 8, y(value) - 6, text=quantity(value, chart.unit)))
        shapes.append(Shape("text", x(day), height - bottom + 16, text=day.isoformat(), anchor="middle"))
        shapes.append(Shape("text", left, height - 6, text="One result only: no trend yet."))
    else:
        shapes.append(Shape("text", left, height - bottom + 16, text=first.isoformat()))
        shapes.append(Shape("text", plot_right, height - bottom + 16, text=last.isoformat(), anchor="end"))
        shapes.append(
            Shape("text", (left + plot_right) / 2, height - 6, text="date of result", anchor="middle")
        )
    return shapes


def _ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values for the axis ticks: the smallest common step giving at most ``most``."""
    for step in (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0):
        first = math.ceil(low / step - 1e-9)
        last = math.floor(high / step + 1e-9)
        if last - first + 1 <= most:
            return [round(i * step, 4) for i in range(first, last + 1)]
    return [low, high]


def _spread(labels: list[tuple[float, str, str]], gap: float) -> list[tuple[float, str, str]]:
    """Labels sorted top to bottom and pushed apart so that no two are closer than ``gap``."""
    out: list[tuple[float, str, str]] = []
    for wanted, text, colour in sorted(labels):
        at = max(wanted, out[-1][0] + gap) if out else wanted
        out.append((at, text, colour))
    return out


def bar_shapes(chart: BarChart, width: float = 520, height: float = 80) -> list[Shape]:
    """The bar chart as shapes: the value as a bar, each mark as a tick with its name."""
    pad = 10.0
    top = max([chart.value, *(m for _, m in chart.marks)]) * 1.15 or 1.0

    def x(value: float) -> float:
        return pad + (width - 2 * pad) * value / top

    shapes = [
        Shape("text", pad, 12, text=f"{chart.label}: {quantity(chart.value, chart.unit)}"),
        Shape("rect", pad, 18, width - pad, 36, TRACK),
        Shape("rect", pad, 18, x(chart.value), 36, BLUE),
    ]
    # Marks close together alternate between two rows of labels so that they never overlap.
    for i, (name, mark) in enumerate(sorted(chart.marks, key=lambda m: m[1])):
        anchor: Literal["start", "middle", "end"] = "end" if x(mark) > width - 90 else "middle"
        shapes.append(Shape("line", x(mark), 12, x(mark), 42))
        shapes.append(Shape("text", x(mark), 56 + (i % 2) * 14, text=f"{name} {fmt(mark, 0)}", anchor=anchor))
    return shapes


def _svg(shapes: list[Shape], width: float, height: float, label: str, hidden: bool) -> str:
    role = 'aria-hidden="true" focusable="false"' if hidden else f'role="img" aria-label="{escape(label)}"'
    parts = [
        f'<svg {role} viewBox="0 0 {width:.0f} {height:.0f}" width="100%" style="max-width:{width:.0f}px">'
    ]
    for s in shapes:
        if s.kind == "rect":
            parts.append(
                f'<rect x="{s.x:.1f}" y="{s.y:.1f}" width="{s.x2 - s.x:.1f}" height="{s.y2 - s.y:.1f}" fill="{s.colour}"/>'
            )
        elif s.kind in ("line", "dashed"):
            dash = ' stroke-dasharray="5 4"' if s.kind == "dashed" else ""
            parts.append(
                f'<line x1="{s.x:.1f}" y1="{s.y:.1f}" x2="{s.x2:.1f}" y2="{s.y2:.1f}" stroke="{s.colour}"{dash}/>'
            )
        elif s.kind == "path":
            d = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f},{py:.1f}" for i, (px, py) in enumerate(s.points))
            parts.append(f'<path d="{d}" fill="none" stroke="{s.colour}" stroke-width="2"/>')
        elif s.kind == "dot":
            parts.append(
                f'<circle cx="{s.x:.1f}" cy="{s.y:.1f}" r="4" fill="{s.colour}"><title>{escape(s.title)}</title></circle>'
            )
        else:
            parts.append(
                f'<text x="{s.x:.1f}" y="{s.y:.1f}" font-size="11" text-anchor="{s.anchor}" fill="{s.colour}">{escape(s.text)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def trend_svg(chart: TrendChart | None) -> str:
    """The serum magnesium trend as inline SVG (empty when there is no dated result)."""
    if chart is None:
        return ""
    return _svg(trend_shapes(chart), 640, 220, "Serum magnesium over time", hidden=False)


def bar_svg(chart: BarChart | None) -> str:
    """A bar chart as inline SVG; the text beside it says the same, so it is hidden from readers."""
    if chart is None:
        return ""
    return _svg(bar_shapes(chart), 520, 80, chart.text, hidden=True)


def _drawing(shapes: list[Shape], width: float, height: float, scale: float) -> Any:
    """Shapes as a ReportLab drawing (y flipped: ReportLab's origin is bottom-left)."""
    from reportlab.graphics.shapes import (  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415
        Circle,
        Drawing,
        Line,
        PolyLine,
        Rect,
        String,
    )
    from reportlab.lib import colors  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415

    drawing = Drawing(width * scale, height * scale)

    def px(v: float) -> float:
        return v * scale

    def py(v: float) -> float:
        return (height - v) * scale

    for s in shapes:
        colour = colors.HexColor(s.colour)
        if s.kind == "rect":
            drawing.add(
                Rect(px(s.x), py(s.y2), px(s.x2 - s.x), px(s.y2 - s.y), fillColor=colour, strokeColor=None)
            )
        elif s.kind in ("line", "dashed"):
            dash = [4, 3] if s.kind == "dashed" else None
            drawing.add(
                Line(
                    px(s.x),
                    py(s.y),
                    px(s.x2),
                    py(s.y2),
                    strokeColor=colour,
                    strokeWidth=0.8,
                    strokeDashArray=dash,
                )
            )
        elif s.kind == "path":
            coords = [c for x, y in s.points for c in (px(x), py(y))]
            drawing.add(PolyLine(coords, strokeColor=colour, strokeWidth=1.5))
        elif s.kind == "dot":
            drawing.add(Circle(px(s.x), py(s.y), 2.5, fillColor=colour, strokeColor=colour))
        else:
            drawing.add(
                String(
                    px(s.x),
                    py(s.y),
                    s.text,
                    fontName="Vera",
                    fontSize=7.5,
                    fillColor=colour,
                    textAnchor=s.anchor,
                )
            )
    return drawing


def trend_drawing(chart: TrendChart | None, width: float) -> Any:
    """The serum magnesium trend as a ReportLab drawing ``width`` points wide (None without data)."""
    if chart is None:
        return None
    return _drawing(trend_shapes(chart), 640, 220, width / 640)


def bar_drawing(chart: BarChart | None, width: float) -> Any:
    """A bar chart as a ReportLab drawing ``width`` points wide (None without data)."""
    if chart is None:
        return None
    return _drawing(bar_shapes(chart), 520, 80, width / 520)
