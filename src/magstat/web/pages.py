"""HTML pages: the Jinja2 templates of the web app, rendered with autoescaping.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader

from magstat import __version__
from magstat.kb.schema import KnowledgeBase
from magstat.render.html import template_environment

__all__ = ["render"]


@functools.cache
def _environment() -> Environment:
    # The app's own pages first, then the assessment templates it shares with the CLI report.
    env = template_environment(PackageLoader("magstat.web", "templates"))
    env.globals["version"] = __version__
    return env


def render(template: str, *, kb: KnowledgeBase, root: str = "", **context: Any) -> str:
    """Render one page template with the knowledge base and the app's root path."""
    context.setdefault("nav", "clinician")
    context.setdefault("values", {})
    context.setdefault("errors", {})
    return _environment().get_template(template).render(kb=kb, root=root, **context)
