"""SQL on FHIR v2 views: ViewDefinitions evaluated in process, on DuckDB or on Spark.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from magstat.views.definition import View, load_view, parse_view
from magstat.views.engines import ENGINES, get_engine, read_resources
from magstat.views.pyeval import CompiledView, compile_view

__all__ = [
    "ENGINES",
    "CompiledView",
    "View",
    "compile_view",
    "get_engine",
    "load_view",
    "parse_view",
    "read_resources",
]
