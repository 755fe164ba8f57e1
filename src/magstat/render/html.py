"""The assessment as a self-contained, printable HTML page (no external assets, no script).

The page is the same Jinja template as the web app's result page (``assessment_top.html`` and
``assessment_basis.html`` in this package), wrapped in a standalone document with the shared
stylesheet inlined. Jinja2 is therefore a dependency of the base install: ``magstat assess
--format html`` works without the service extra.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from magstat.core.facts import PatientFacts
from magstat.core.result import Assessment
from magstat.kb.schema import KnowledgeBase
from magstat.render.chart import bar_svg, trend_svg
from magstat.render.model import assessment_view, fmt

__all__ = ["REPORT_CSS", "render_html", "report_css", "template_environment"]

REPORT_CSS = "report.css"
"""The stylesheet of an assessment page, in this package's ``templates`` folder."""


def template_environment(*loaders: Any) -> Environment:
    """A Jinja environment that finds the assessment templates (after ``loaders``, if given)."""
    from jinja2 import ChoiceLoader  # noqa: PLC0415 - only needed when loaders are combined

    own = PackageLoader("magstat.render", "templates")
    env = Environment(
        loader=ChoiceLoader([*loaders, own]) if loaders else own,
        autoescape=True,  # nothing is marked safe but the charts this package draws
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["fmt"] = fmt
    env.globals["trend_svg"] = trend_svg
    env.globals["bar_svg"] = bar_svg
    return env


@functools.cache
def _environment() -> Environment:
    return template_environment()


@functools.cache
def report_css() -> str:
    """The shared stylesheet of an assessment page."""
    return (resources.files("magstat.render") / "templates" / REPORT_CSS).read_text(encoding="utf-8")


def render_html(result: Assessment, kb: KnowledgeBase, facts: PatientFacts | None = None) -> str:
    """Render an assessment as a standalone printable HTML page.

    Args:
        result: the assessment.
        kb: the knowledge base it was made with.
        facts: the facts it was made from, to list the laboratory results read (optional).

    Returns:
        The page: status, then the urgent and important actions, then the basis.

    """
    view = assessment_view(result, kb, facts)
    return _environment().get_template("report.html").render(css=report_css(), view=view)
