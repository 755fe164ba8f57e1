"""Batch engines: DuckDB (embedded, the default) and Apache Spark.

.. versionadded:: 0.1.0
"""

from magstat.batch.engines.base import ENGINES, Engine, get_engine

__all__ = ["ENGINES", "Engine", "get_engine"]
