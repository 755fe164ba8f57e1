"""Run the per-patient step in worker processes, in order, with a bounded amount in flight.

The per-patient step is Python (JSON parsing, the adapter, ``assess``), so one process uses one
core. Workers are spawned, never forked: pyarrow, DuckDB and a JVM all run native threads, and
forking a process that has threads is unsafe. They are started as soon as the pool is made, so
that their start-up overlaps the engine's scan. Results come back in the order the items were
given, so the output stays sorted and a rerun gives the same bytes.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import collections
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

__all__ = ["WorkerPool", "default_workers"]

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker processes to use when not told: the CPUs this process may run on, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _warm() -> bool:
    """Import what a worker needs and load the knowledge base (run once in each worker)."""
    import magstat.adapters.fhir  # noqa: F401, PLC0415 - imported for its side effect
    from magstat.kb import load  # noqa: PLC0415

    load()
    return True


class WorkerPool:
    """A process pool for the per-patient step; no processes at all for ``workers=0``."""

    def __init__(self, workers: int) -> None:
        self.workers = max(0, workers)
        self.executor: ProcessPoolExecutor | None = None
        if self.workers:
            context = multiprocessing.get_context("spawn")
            self.executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            for _ in range(self.workers):
                self.executor.submit(_warm)  # start them now; nobody waits for this

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Apply ``function`` to each item, yielding results in order (at most 2 per worker in flight)."""
        if self.executor is None:
            for item in items:
                yield function(item)
            return
        pending: collections.deque[Future[R]] = collections.deque()
        try:
            for item in items:
                pending.append(self.executor.submit(function, item))
                if len(pending) >= 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        """Stop the workers."""
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
