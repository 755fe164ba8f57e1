"""One chart module draws every chart from the model: axis named, single result said, labels apart."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from pathlib import Path

from magstat.render import chart
from magstat.render.model import BarChart, TrendChart

RENDERERS = Path(chart.__file__).parent


def _trend(points, band=(0.70, 1.05), limit=0.85):
    return TrendChart(
        points=tuple((dt.date.fromisoformat(d), v) for d, v in points),
        unit="mmol/L",
        band=band,
        band_label="lab reference interval",
        limit=limit,
        limit_label="evidence-based lower limit",
        note="",
    )


def test_trend_names_its_axis_and_says_when_there_is_one_result():
    """The value axis carries its name and unit; a single result is said to be no trend."""
    svg = chart.trend_svg(_trend([("2024-04-29", 0.45)]))
    assert "Serum magnesium (mmol/L)" in svg
    assert "One result only: no trend yet." in svg
    assert "<path" not in svg  # no line through one point
    several = chart.trend_svg(_trend([("2024-01-01", 0.62), ("2024-04-29", 0.45)]))
    assert "date of result" in several and "<path" in several


def test_trend_draws_only_the_thresholds_the_model_gives():
    """Without a limit in the model, no limit line; without a band, no band."""
    svg = chart.trend_svg(_trend([("2024-04-29", 1.36)], band=None, limit=None))
    assert "lower limit" not in svg and "lab upper" not in svg and "stroke-dasharray" not in svg


def test_labels_at_the_right_of_the_trend_never_overlap():
    """The lab upper limit (0.91) and the lower limit (0.85) are labelled at least 12 px apart."""
    shapes = chart.trend_shapes(_trend([("2024-04-29", 0.45)], band=(0.70, 0.91), limit=0.85))
    right = sorted(s.y for s in shapes if s.kind == "text" and ("lab" in s.text or "limit" in s.text))
    assert 3 == len(right)
    assert all(b - a >= 12 for a, b in itertools.pairwise(right))


def test_bar_chart_names_the_value_and_each_mark():
    """The bar states the value with its unit and each reference mark by name."""
    svg = chart.bar_svg(BarChart("Intake", 250, "mg/day", (("EAR", 265), ("RDA", 320)), "text"))
    assert "Intake: 250 mg/day" in svg and "EAR 265" in svg and "RDA 320" in svg
    assert 'aria-hidden="true"' in svg


def test_no_threshold_is_written_inside_a_renderer():
    """Renderers and templates hold no magnesium threshold: the model and the KB give them."""
    files = [*RENDERERS.glob("*.py"), *RENDERERS.glob("templates/*"), RENDERERS.parent / "web" / "pdf.py"]
    files += list((RENDERERS.parent / "web" / "templates").glob("*.html"))
    for path in files:
        if path.name == "model.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert re.search(r"\b(0\.85|0\.75|1\.05|0\.70)\b|\b0\.5 ?mmol", text) is None, path.name
