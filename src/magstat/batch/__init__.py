"""Population screening (``magstat screen``): FHIR Bulk Data, NHANES and tables, on DuckDB or Spark.

The engines read, group, parallelise and write; every patient's result comes from
``magstat.core.assess`` through the same adapters as ``magstat assess``. Needs the ``batch``
extra (``spark`` for the Spark engine).

The names below are imported on first use, so that a worker process, which needs only
:mod:`magstat.batch.rows`, does not import the engines, the output writers and the report.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from magstat.batch.pipeline import ScreenOptions, ScreenOutcome, screen

__all__ = ["ScreenOptions", "ScreenOutcome", "screen"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from magstat.batch import pipeline  # noqa: PLC0415 - imported on first use (see above)

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
