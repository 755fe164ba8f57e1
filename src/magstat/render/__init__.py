"""Renderers: an assessment as JSON, plain text or a printable HTML report.

Every renderer except JSON lays out one presentation model (:mod:`magstat.render.model`),
and every chart comes from one module (:mod:`magstat.render.chart`).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json

from magstat.core.result import Assessment
from magstat.render.html import render_html
from magstat.render.model import AssessmentView, assessment_view
from magstat.render.text import render_text

__all__ = ["AssessmentView", "assessment_view", "render_html", "render_json", "render_text"]


def render_json(result: Assessment, *, indent: int | None = 2) -> str:
    """The assessment as the JSON contract of design.md section 3 (stable key order)."""
    return json.dumps(result.to_dict(), indent=indent, ensure_ascii=False) + "\n"
