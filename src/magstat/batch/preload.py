"""What every worker process needs, imported once by the process that forks the workers.

:class:`magstat.batch.parallel.WorkerPool` starts its workers from a fork server where the
platform has one: a clean interpreter that imports this module, then forks each worker from
itself, so that a worker starts with the adapters imported, the knowledge base loaded and its
views compiled, instead of doing all of that again. Nothing imported here starts a thread (a
process with threads must not fork): not pyarrow, not DuckDB.

.. versionadded:: 0.5.0
"""

from __future__ import annotations

import contextlib
import gc

import magstat.batch.rows  # noqa: F401 - imported for the workers
from magstat.adapters.fhir import views_for_kb
from magstat.errors import MagstatError
from magstat.kb import load

__all__: list[str] = []

# A broken install is reported by each worker itself.
with contextlib.suppress(MagstatError):
    views_for_kb(load())
# What is loaded now lives as long as the fork server: keep the collector off it, so that a
# worker's collections do not touch (and copy) the pages it shares with the server.
gc.freeze()
