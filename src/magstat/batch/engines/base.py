"""The port every batch engine implements, and the lookup of an engine by name.

An engine reads an input, groups it by patient, runs :mod:`magstat.batch.rows` on each
patient (in parallel where it can) and hands the results back sorted by patient id. It holds
no clinical logic: the rows come from ``magstat.core.assess`` through the same adapters as
``magstat assess``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from magstat.batch.issues import IssueLog
from magstat.batch.readers.fhir_bulk import BulkSource
from magstat.batch.rows import Job, PatientResult
from magstat.kb import KnowledgeBase

__all__ = ["ENGINES", "Engine", "FileStats", "Record", "RunContext", "get_engine"]

Record = tuple[str, Any]
"""One patient of a records input: (patient id, whatever the record function takes)."""

RecordFunction = Callable[[Any, Job, KnowledgeBase], PatientResult]
"""Builds one patient's facts from a record and assesses them (NHANES, tables)."""


@dataclass
class FileStats:
    """What an engine found in one input file (FHIR Bulk Data).

    Attributes:
        lines: non-blank lines scanned.
        used: resources handed to the adapter.
        not_needed: lines passed over: a type the adapter does not read, or an Observation
            whose code names nothing the knowledge base knows.
        malformed: lines that are not JSON objects with a ``resourceType``.
        no_patient: resources that name no patient (no ``subject`` to a Patient, no ``id``).

    """

    lines: int = 0
    used: int = 0
    not_needed: int = 0
    malformed: int = 0
    no_patient: int = 0


@dataclass
class RunContext:
    """What a run shares with its engine: settings, the issue log and progress callbacks.

    Attributes:
        kb: the knowledge base of the driver.
        issues: where problems are counted.
        work_dir: a private folder for spill files, removed after the run.
        threads: threads an engine may use (0: its default).
        workers: Python processes for the per-patient step (0: in this process).
        memory_limit: the engine's memory cap, such as ``"2GB"`` (``None``: its default).
        progress: ``progress(stage, done, total)``; ``total`` may be ``None``.
        file_stats: filled by ``screen_fhir``, by file name.
        no_patient: (file, resource) of resources without a patient, filled by ``screen_fhir``.
        options: engine-specific settings (``spark_master``, ``spark_conf``).
        after_scan: called by ``screen_fhir`` once the scan has filled ``file_stats`` and
            ``no_patient``, before any patient is assessed (``--strict`` stops there).
        suspect_files: when not ``None``, ``screen_fhir`` adds the name of every file whose
            scan found a line of another resource type than its name gives, or a line that
            is not JSON, before ``after_scan``; only these files are then read again to put
            such lines in ``issues.csv`` by line (an engine that does not fill it has every
            file checked before its scan).

    """

    kb: KnowledgeBase
    issues: IssueLog
    work_dir: Path
    threads: int = 0
    workers: int = 0
    memory_limit: str | None = None
    progress: Callable[[str, int, int | None], None] = lambda stage, done, total: None
    file_stats: dict[str, FileStats] = field(default_factory=dict)
    no_patient: list[tuple[str, str]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    after_scan: Callable[[], None] = lambda: None
    suspect_files: set[str] | None = None


class Engine(Protocol):
    """A way to read, group and parallelise; every method yields results sorted by patient id."""

    name: str

    def screen_fhir(self, source: BulkSource, job: Job, ctx: RunContext) -> Iterator[list[PatientResult]]:
        """Screen a FHIR Bulk Data export: the needed files, grouped by patient."""
        ...

    def screen_table(self, path: Path, job: Job, ctx: RunContext) -> Iterator[list[PatientResult]]:
        """Screen a CSV or Parquet table with one row per patient (see ``readers.table``)."""
        ...

    def screen_records(
        self, records: Iterable[Record], function: RecordFunction, job: Job, ctx: RunContext
    ) -> Iterator[list[PatientResult]]:
        """Screen records already built in Python (NHANES), one per patient."""
        ...

    def close(self) -> None:
        """Release the engine (its connection or session)."""
        ...


ENGINES: dict[str, str] = {
    "duckdb": "magstat.batch.engines.duckdb:DuckDBEngine",
    "spark": "magstat.batch.engines.spark:SparkEngine",
}
"""Engine name -> ``module:class``; modules are imported on use, so an extra is needed only when used."""


def get_engine(name: str, **options: Any) -> Engine:
    """Make the engine called ``name`` (``duckdb`` or ``spark``).

    Raises:
        ValueError: no engine has that name.
        ImportError: the engine's extra (``magstat[batch]`` or ``magstat[spark]``) is not installed.

    """
    try:
        target = ENGINES[name]
    except KeyError:
        raise ValueError(f"no engine {name!r}; choose one of: {', '.join(ENGINES)}") from None
    module_name, class_name = target.split(":")
    module = importlib.import_module(module_name)
    engine: Engine = getattr(module, class_name)(**options)
    return engine
