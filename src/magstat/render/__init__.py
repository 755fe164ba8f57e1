"""Renderers: an assessment as JSON, plain text or a printable HTML report.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json

from magstat.core.result import Assessment
from magstat.render.html import render_html
from magstat.render.text import render_text

__all__ = ["render_html", "render_json", "render_text"]


def render_json(result: Assessment, *, indent: int | None = 2) -> str:
    """The assessment as the JSON contract of design.md section 3 (stable key order)."""
    return json.dumps(result.to_dict(), indent=indent, ensure_ascii=False) + "\n"
