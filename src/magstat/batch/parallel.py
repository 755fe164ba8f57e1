"""Run the per-patient step in worker processes, in order, with a bounded amount in flight.

The per-patient step is Python (JSON parsing, the adapter, ``assess``), so one process uses one
core. The driver never forks itself: pyarrow, DuckDB and a JVM all run native threads, and forking
a process that has threads is unsafe. Where the platform has one, workers come from a fork server,
a clean interpreter without threads that imports what they need once
(:mod:`magstat.batch.preload`: the adapters, the knowledge base and its compiled views) and
forks each worker from itself; elsewhere they are spawned (each imports all of that again).
They are started as soon as the pool is made, so that their start-up overlaps the engine's
scan. Results come back in the order the items were given, so the output stays sorted and a
rerun gives the same bytes.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import sys
import threading
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


PRELOAD = "magstat.batch.preload"
"""The module the fork server imports before it forks workers."""

CLI = "magstat.cli"
"""Also imported by the fork server when the caller runs the command line: each worker runs the
caller's main script again (as ``__mp_main__``), and the ``magstat`` script imports this module,
which would otherwise cost every worker its own import of the command line (about 60 ms of CPU:
argparse, the renderers, jinja2, yaml) while the engine's scan wants the CPUs."""


def preload_modules() -> list[str]:
    """What the fork server imports before it forks workers: :data:`PRELOAD`, and :data:`CLI` for a command-line run."""
    return [PRELOAD, CLI] if CLI in sys.modules else [PRELOAD]


def _context() -> multiprocessing.context.BaseContext:
    """The fork server where the platform has one (loaded with :func:`preload_modules`), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(preload_modules())
        return context
    return multiprocessing.get_context("spawn")  # pragma: no cover - not POSIX


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
        self._failed: BaseException | None = None
        self._starter: threading.Thread | None = None
        if self.workers:
            # Started in a thread: the first worker waits for the fork server to import what
            # workers need, which the caller's next step (the engine's scan) need not wait for.
            self._starter = threading.Thread(target=self._start, name="magstat-workers", daemon=True)
            self._starter.start()

    def _start(self) -> None:
        try:
            executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=_context())
            self.executor = executor
            for _ in range(self.workers):
                executor.submit(_warm)  # start them now; nobody waits for this
        except BaseException as exc:  # handed to the caller by _started
            self._failed = exc

    def _started(self) -> ProcessPoolExecutor | None:
        """The executor once it is made (``None`` without workers); re-raises a failure to start."""
        if self._starter is not None:
            self._starter.join()
            self._starter = None
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed
        return self.executor

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Apply ``function`` to each item, yielding results in order (at most 2 per worker in flight)."""
        executor = self._started() if self.workers else None
        if executor is None:
            for item in items:
                yield function(item)
            return
        pending: collections.deque[Future[R]] = collections.deque()
        try:
            for item in items:
                pending.append(executor.submit(function, item))
                if len(pending) >= 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        """Stop the workers."""
        if self._starter is not None:
            self._starter.join()
            self._starter = None
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
