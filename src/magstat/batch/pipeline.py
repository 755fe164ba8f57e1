"""Population screening: read → facts → ``core.assess`` → results, summary and report.

:func:`screen` is the library entry point behind ``magstat screen``. It picks the input reader
and the engine, streams the per-patient results (from the one implementation in
:mod:`magstat.batch.rows`) to the output files, counts every input problem, and puts the
outputs in place atomically.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gzip
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from magstat import __version__
from magstat.batch import issues as issue_mod
from magstat.batch.engines.base import RunContext, get_engine
from magstat.batch.issues import Issue, IssueLog, StrictError
from magstat.batch.output import (
    MARKER,
    ResultWriter,
    StagedOutput,
    Summary,
    arrow_schema,
    write_issues,
    write_json,
)
from magstat.batch.parallel import default_workers
from magstat.batch.readers import fhir_bulk, nhanes
from magstat.batch.report import render_report
from magstat.batch.rows import Job, PatientResult
from magstat.errors import InvalidInputError
from magstat.kb import KnowledgeBase, load

__all__ = ["ScreenOptions", "ScreenOutcome", "StrictError", "detect_format", "screen"]

InputFormat = Literal["fhir", "nhanes", "table"]

DUCKDB_MEMORY = "512MB"
"""DuckDB's memory cap when none is given: it spills to disk beyond it, so memory stays bounded."""

PARALLEL_ABOVE_BYTES = 256 << 20
"""Inputs smaller than this are assessed in one process (starting workers costs more)."""


@dataclass
class ScreenOptions:
    """What to screen and how (the options of ``magstat screen``).

    Attributes:
        input: a Bulk Data folder or NDJSON file, an NHANES folder, or a CSV/Parquet table.
        out: the output folder (new, empty, or an earlier screening's output).
        as_of: the date of the assessments.
        input_format: ``fhir``, ``nhanes`` or ``table``; ``None`` to tell from the input.
        engine: ``duckdb`` or ``spark``.
        strict: stop at the first problem in the input instead of counting it.
        csv: also write ``results.csv``.
        details: also write every assessment's full JSON (``assessments.ndjson.gz``).
        nhanes_alcohol: ``recall`` (day-1 24-hour recall) or ``alq`` (questionnaire).
        workers: Python processes for the per-patient step; ``None`` decides by input size.
        threads: engine threads (0: the engine's default, all cores).
        memory_limit: engine memory cap (``"4GB"``); ``None``: the engine's default.
        spark_master: Spark master URL (``local[2]``, ``spark://host:7077``).
        spark_remote: Spark Connect URL (``sc://host:15002``).
        spark_conf: extra Spark settings.
        progress: show progress bars on standard error.

    """

    input: Path
    out: Path
    as_of: dt.date
    input_format: InputFormat | None = None
    engine: str = "duckdb"
    strict: bool = False
    csv: bool = False
    details: bool = False
    nhanes_alcohol: nhanes.AlcoholSource = "recall"
    workers: int | None = None
    threads: int = 0
    memory_limit: str | None = None
    spark_master: str | None = None
    spark_remote: str | None = None
    spark_conf: dict[str, str] = field(default_factory=dict)
    progress: bool = False


MAX_WORKERS = 256
"""The most worker processes a screening starts when told to (``--workers``)."""
MAX_THREADS = 1024
"""The most engine threads a screening accepts (``--threads``)."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
MIN_MEMORY = 64 * 10**6
"""The smallest ``--memory-limit`` accepted: below it DuckDB cannot hold a batch of lines."""


def memory_bytes(text: str) -> int:
    """The bytes of a memory size as DuckDB writes it (``512MB``, ``2GB``, ``4GiB``; KB = 1000 bytes).

    Raises:
        InvalidInputError: not such a size, or below :data:`MIN_MEMORY`.

    """
    found = _SIZE.match(text)
    allowed = "a size such as 512MB, 2GB or 4GiB (at least 64MB)"
    if found is None:
        raise InvalidInputError("--memory-limit", "is not a memory size", value=text, allowed=allowed)
    size = int(float(found.group(1)) * _SIZE_UNITS[found.group(2).lower()])
    if size < MIN_MEMORY:
        raise InvalidInputError("--memory-limit", "is too small", value=text, allowed=allowed)
    return size


def check_options(options: ScreenOptions) -> None:
    """Refuse settings no engine can run with, before anything starts.

    Raises:
        InvalidInputError: ``workers``, ``threads`` or ``memory_limit`` is out of range.

    """
    if options.workers is not None and not 0 <= options.workers <= MAX_WORKERS:
        raise InvalidInputError(
            "--workers",
            "is out of range",
            value=str(options.workers),
            allowed=f"0 (the per-patient step in the screening process) to {MAX_WORKERS}",
        )
    if not 0 <= options.threads <= MAX_THREADS:
        raise InvalidInputError(
            "--threads",
            "is out of range",
            value=str(options.threads),
            allowed=f"0 (all cores) to {MAX_THREADS}",
        )
    if options.memory_limit is not None:
        memory_bytes(options.memory_limit)


@dataclass(frozen=True)
class ScreenOutcome:
    """What a screening wrote."""

    out: Path
    summary: dict[str, Any]
    issues: int


def detect_format(path: Path) -> InputFormat:
    """Tell the input format from the path: NHANES folder, Bulk Data folder/file, or a table.

    Raises:
        InvalidInputError: the path does not exist or matches no format.

    """
    if not path.exists():
        raise InvalidInputError(str(path), "no such file or folder")
    if path.is_dir():
        names = [p.name for p in path.iterdir()]
        if any(re.match(r"^DEMO_[A-Z]\.csv(\.gz)?$", n, re.IGNORECASE) for n in names):
            return "nhanes"
        if any(p.name.endswith((".ndjson", ".ndjson.gz")) for p in path.rglob("*")):
            return "fhir"
        raise InvalidInputError(
            str(path),
            "no NDJSON files and no NHANES DEMO file",
            allowed="a Bulk Data export or an NHANES folder",
        )
    if path.name.endswith((".ndjson", ".ndjson.gz")):
        return "fhir"
    if path.suffix.lower() in (".csv", ".parquet", ".pq") or path.name.endswith(".csv.gz"):
        return "table"
    raise InvalidInputError(
        str(path), "cannot tell the input format", allowed="--input-format fhir, nhanes or table"
    )


class _Progress:
    """Progress on standard error: tqdm bars on a terminal, plain lines with totals elsewhere.

    In a log or a CI job (standard error not a terminal) a bar is unreadable, so each stage
    writes a line ("screen: assess 1200 of 5000 patients (24%)") at most every
    ``LINE_SECONDS`` and when it ends. Silent when not asked for (``--no-progress``).
    """

    LINE_SECONDS = 10.0

    def __init__(self, enabled: bool, *, terminal: bool | None = None) -> None:
        self.enabled = enabled
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.bars: dict[str, Any] = {}
        self.lines: dict[str, tuple[float, int, int | None]] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if not self.terminal:
            self._line(stage, done, total)
            return
        bar = self.bars.get(stage)
        if bar is None:
            from tqdm import tqdm  # noqa: PLC0415 - only on a terminal

            unit = "%" if stage == "scan" else " patients"
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit=unit, file=sys.stderr, leave=False)
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def _line(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        last = self.lines.get(stage)
        finished = total is not None and done >= total
        self.lines[stage] = (last[0] if last else now, done, total)
        if last is not None and not finished and now - last[0] < self.LINE_SECONDS:
            return
        self.lines[stage] = (now, done, total)
        sys.stderr.write(_progress_text(stage, done, total) + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
        for stage, (_, done, total) in self.lines.items():
            if total is None or done < total:  # the last count, so that the log ends on the total
                sys.stderr.write(_progress_text(stage, done, total) + "\n")
        self.lines.clear()


def _progress_text(stage: str, done: int, total: int | None) -> str:
    """One progress line: the stage, the count, the total and the share when known."""
    if stage == "scan":
        return f"screen: scan {done}%"
    if total:
        return f"screen: {stage} {done} of {total} patients ({100 * done / total:.0f}%)"
    return f"screen: {stage} {done} patients"


def _excluded_issue(patient_id: str, note: str) -> Issue:
    resource, _, problem = note.partition(": ")
    if not problem:
        resource, problem = f"Patient/{patient_id}", note
    return Issue("resource_excluded", None, None, resource, f"{problem} (patient {patient_id})")


def _fhir_scan_issues(ctx: RunContext, source: fhir_bulk.BulkSource, log: IssueLog) -> None:
    """Turn the engine's per-file counts into located issues (runs once, after the scan)."""
    paths = {f.name: f.path for f in source.files}
    for name in sorted(ctx.file_stats):
        stats = ctx.file_stats[name]
        if not stats.malformed:
            continue
        located = 0
        path = paths.get(name)
        if path is not None and path.exists():
            for line, problem in issue_mod.locate_malformed(path):
                kind = (
                    "malformed_line"
                    if problem.startswith(("malformed", "not UTF-8", "JSON"))
                    else "not_a_resource"
                )
                log.add(Issue(kind, name, line, None, problem))
                located += 1
        if located != stats.malformed:
            log.add(
                Issue(
                    "malformed_line",
                    name,
                    None,
                    None,
                    f"{stats.malformed} line(s) could not be read; {located} located by line number",
                ),
                count=max(stats.malformed - located, 0) or 1,
            )
    for name, label in ctx.no_patient:
        log.add(
            Issue(
                "no_patient_reference", name, None, label, "names no Patient (no subject, or no id); left out"
            )
        )


def screen(options: ScreenOptions, kb: KnowledgeBase | None = None) -> ScreenOutcome:
    """Screen a population and write ``results.parquet``, ``summary.json``, ``report.html``.

    Also ``issues.csv`` (every input problem), and on request ``results.csv`` and
    ``assessments.ndjson.gz``. The outputs appear together or not at all.

    Raises:
        InvalidInputError: the input or output folder is unusable, or (``strict``) the input
            has a problem.
        ImportError: the engine's extra is not installed.

    .. versionadded:: 0.1.0

    """
    check_options(options)
    kb = kb or load()
    input_format = options.input_format or detect_format(options.input)
    if not options.input.exists():
        raise InvalidInputError(str(options.input), "no such file or folder")
    if input_format == "table" and not options.input.is_file():
        raise InvalidInputError(
            str(options.input), "is not a file", allowed="a CSV or Parquet table for --input-format table"
        )
    job = Job(as_of=options.as_of, strict=options.strict, details=options.details, kb_sha256=kb.sha256)
    log = IssueLog(strict=options.strict)
    extra: tuple[tuple[str, str], ...] = nhanes.EXTRA_COLUMNS if input_format == "nhanes" else ()
    summary = Summary(kb, cohort=input_format == "nhanes")
    progress = _Progress(options.progress)
    staged = StagedOutput(options.out)
    engine_options: dict[str, Any] = {
        "master": options.spark_master,
        "remote": options.spark_remote,
        "conf": dict(options.spark_conf),
    }
    engine = get_engine(options.engine, **engine_options)
    input_info: dict[str, Any] = {"format": input_format, "path": str(options.input)}
    try:
        ctx = RunContext(
            kb=kb,
            issues=log,
            work_dir=staged.work,
            threads=options.threads,
            workers=0,
            memory_limit=options.memory_limit or (DUCKDB_MEMORY if options.engine == "duckdb" else None),
            progress=progress,
        )
        metadata = {
            "magstat_version": __version__,
            "kb_version": kb.version,
            "kb_sha256": kb.sha256,
            "as_of": options.as_of.isoformat(),
        }
        writer = ResultWriter(
            staged.path, arrow_schema(extra), csv_out=options.csv, details=options.details, metadata=metadata
        )
        stream: Any
        unreadable: set[str] = set()
        if input_format == "fhir":
            source = fhir_bulk.discover(options.input, exclude=options.out)
            # Each file is checked first: a damaged gzip file is an input problem of that file
            # (counted, the rest read; --strict stops), never an engine failure of the whole run.
            # An engine whose scan finds the files with lines of another type has only those
            # read again after its scan; the others are checked through before it.
            finds = bool(getattr(engine, "finds_suspect_files", False))
            unreadable = _check_bulk_files(source, log, options.threads, types=not finds)
            ctx.suspect_files = set() if finds else None
            readable = dataclasses.replace(
                source, files=tuple(f for f in source.files if f.name not in unreadable)
            )
            ctx.workers = _workers(options, sum(f.size for f in readable.read))
            fhir_source = readable
            ctx.after_scan = lambda: _after_fhir_scan(ctx, fhir_source, log, options.threads)
            stream = engine.screen_fhir(readable, job, ctx)
            input_info.update(
                bytes=source.total_bytes,
                bytes_read=sum(f.size for f in source.read),
                ignored_files=list(source.ignored),
            )
        elif input_format == "nhanes":
            found = nhanes.discover(options.input)
            records = list(nhanes.participants(found, options.nhanes_alcohol))
            ctx.workers = _workers(options, 0)
            stream = engine.screen_records(records, nhanes.assess_participant, job, ctx)
            input_info.update(
                cycles=[nhanes.CYCLES[c] for c in found.cycles],
                files=[{"name": p.name, "bytes": p.stat().st_size} for p in found.files],
                alcohol=options.nhanes_alcohol,
            )
        else:
            ctx.workers = _workers(options, options.input.stat().st_size)
            stream = engine.screen_table(options.input, job, ctx)
            input_info.update(bytes=options.input.stat().st_size)
        last_id: str | None = None
        for results in stream:
            for result in results:
                last_id = _consume(result, writer=writer, summary=summary, log=log, kb=kb, last_id=last_id)
        writer.close()
        progress.close()
        if input_format == "fhir":
            _locate_missing_patients(readable, log)
            input_info["files"] = [
                {
                    "name": f.name,
                    "type": f.rtype,
                    "bytes": f.size,
                    "read": f.needed and f.name not in unreadable,
                    **({"unreadable": True} if f.name in unreadable else {}),
                    **(vars(ctx.file_stats[f.name]) if f.needed and f.name in ctx.file_stats else {}),
                }
                for f in source.files
            ]
        data = _summary(options, input_format, input_info, summary=summary, log=log, kb=kb)
        write_json(staged.path / "summary.json", data)
        write_issues(staged.path / "issues.csv", log.sorted())
        (staged.path / "report.html").write_text(render_report(data, kb), encoding="utf-8")
        staged.commit()
    except BaseException:
        progress.close()
        staged.abort()
        raise
    finally:
        engine.close()
    return ScreenOutcome(options.out, data, log.total)


def _after_fhir_scan(ctx: RunContext, source: fhir_bulk.BulkSource, log: IssueLog, threads: int) -> None:
    """Log the scan's problems: lines of another type (files the engine named), then the rest."""
    if ctx.suspect_files:
        suspects = [f for f in source.read if f.name in ctx.suspect_files]
        for found in fhir_bulk.check_files(suspects, threads or os.cpu_count() or 1):
            log.add(Issue(found.kind, found.file.name, found.line, None, found.problem))
    _fhir_scan_issues(ctx, source, log)


def _check_bulk_files(
    source: fhir_bulk.BulkSource, log: IssueLog, threads: int | None, *, types: bool = True
) -> set[str]:
    """Check every file to read (gzip whole; one type per file unless not ``types``); log problems.

    Returns the names of the files that cannot be read.
    """
    unreadable: set[str] = set()
    for found in fhir_bulk.check_files(source.read, threads or os.cpu_count() or 1, types=types):
        log.add(Issue(found.kind, found.file.name, found.line, None, found.problem))
        if found.kind == "unreadable_file":
            unreadable.add(found.file.name)
    return unreadable


def _locate_missing_patients(source: fhir_bulk.BulkSource, log: IssueLog, limit: int = 1000) -> None:
    """Give ``patient_not_in_export`` issues the file and line of the first resource naming the patient.

    The engines group resources by patient and lose where each came from; this pass reads the
    files again only when such issues exist, for at most ``limit`` patients.
    """
    wanted: dict[bytes, int] = {}
    for index, issue in enumerate(log.issues):
        if issue.kind == "patient_not_in_export" and issue.file is None and issue.resource:
            if len(wanted) >= limit:
                break
            wanted[issue.resource.encode("utf-8")] = index
    if not wanted:
        return
    pattern = re.compile(b"|".join(re.escape(b'"' + ref + b'"') for ref in wanted))
    for f in source.read:
        if not wanted:
            break
        try:
            with f.path.open("rb") as raw, _maybe_gunzip(raw) as handle:
                for number, line in enumerate(handle, start=1):
                    for found in pattern.finditer(line):
                        index = wanted.pop(found.group(0).strip(b'"'), -1)
                        if index >= 0:
                            old = log.issues[index]
                            log.issues[index] = dataclasses.replace(old, file=f.name, line=number)
                            log.by_file.setdefault(f.name, Counter())[old.kind] += 1
                    if not wanted:
                        break
        except (OSError, EOFError):
            continue  # a file that cannot be read again keeps its issues unlocated


def _maybe_gunzip(raw: IO[bytes]) -> IO[bytes]:
    """The bytes of an open file, decompressed when it is gzip (the caller closes ``raw``)."""
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return contextlib.nullcontext(raw)  # type: ignore[return-value]


def _workers(options: ScreenOptions, size: int) -> int:
    if options.workers is not None:
        return max(0, options.workers)
    return default_workers() if size >= PARALLEL_ABOVE_BYTES else 0


def _consume(
    result: PatientResult,
    *,
    writer: ResultWriter,
    summary: Summary,
    log: IssueLog,
    kb: KnowledgeBase,
    last_id: str | None,
) -> str | None:
    for issue in result.issues:
        log.add(issue)
    row = result.row
    if row is None:
        return last_id
    patient_id = row["patient_id"]
    if row["kb_sha256"] != kb.sha256:
        raise RuntimeError(
            f"patient {patient_id} was assessed with another knowledge base ({row['kb_version']})"
        )
    if last_id is not None and patient_id is not None and patient_id <= last_id:
        if patient_id == last_id:
            log.add(
                Issue(
                    "table_value",
                    None,
                    None,
                    f"patient {patient_id}",
                    "the same patient id appears more than once",
                )
            )
        else:
            raise RuntimeError("the engine returned patients out of order")  # a bug, never bad input
    for note in row["excluded"]:
        log.add(_excluded_issue(patient_id, note))
    if row["error"]:
        log.add(Issue("patient_not_assessed", None, None, f"patient {patient_id}", row["error"]))
    writer.write(row, result.detail)
    summary.add(row)
    return patient_id if patient_id is not None else last_id


def _summary(
    options: ScreenOptions,
    input_format: str,
    input_info: dict[str, Any],
    *,
    summary: Summary,
    log: IssueLog,
    kb: KnowledgeBase,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "tool": MARKER,
        "magstat_version": __version__,
        "knowledge_base": {"version": kb.version, "sha256": kb.sha256},
        "as_of": options.as_of.isoformat(),
        "engine": options.engine,
        "strict": options.strict,
        "input": input_info,
        "outputs": sorted(
            ["results.parquet", "summary.json", "report.html", "issues.csv"]
            + (["results.csv"] if options.csv else [])
            + (["assessments.ndjson.gz"] if options.details else [])
        ),
        "issues": {
            "total": log.total,
            "counts": dict(sorted(log.counts.items())),
            "by_file": {name: dict(sorted(c.items())) for name, c in sorted(log.by_file.items())},
            "listed": min(log.total, log.limit),
        },
        "disclaimer": "Decision support, not a diagnosis.",
    }
    data.update(summary.to_dict())
    if input_format == "nhanes":
        weight = (
            "WTDRD1 (day-1 dietary recall weight)"
            if options.nhanes_alcohol == "recall"
            else "WTMEC2YR (examination weight)"
        )
        data["cohort"] = {
            "definition": (
                f"Adults aged {nhanes.COHORT_MIN_AGE} and over, not pregnant (RIDEXPRG), with every MDS component "
                "known (serum creatinine, the prescription-drug answer, alcohol) and a non-zero survey weight."
            ),
            "weight": weight + ", divided by the number of cycles combined",
            "n": summary.cohort_n,
            "alcohol": options.nhanes_alcohol,
        }
    return data
