"""Population screening (``magstat screen``): FHIR Bulk Data, NHANES and tables, on DuckDB or Spark.

The engines read, group, parallelise and write; every patient's result comes from
``magstat.core.assess`` through the same adapters as ``magstat assess``. Needs the ``batch``
extra (``spark`` for the Spark engine).

.. versionadded:: 0.1.0
"""

from magstat.batch.pipeline import ScreenOptions, ScreenOutcome, screen

__all__ = ["ScreenOptions", "ScreenOutcome", "screen"]
