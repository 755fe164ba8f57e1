"""The Apache Spark engine (``--engine spark``): local mode, a cluster, or Spark Connect.

Spark reads the needed NDJSON files as text and classifies each line with the same rules as the
DuckDB engine (the expressions of :mod:`magstat.batch.readers.fhir_bulk`, Observation codes
included: :func:`keyword_regex`), so that both count the same lines per file. The knowledge base's
SQL on FHIR views (:mod:`magstat.adapters.fhir.views`) then run in Spark SQL on the kept
resources (:func:`magstat.adapters.fhir.flatten.row_sql`): one compact row per resource, with no
Python per row. The rows are grouped by patient in input order (referenced Medications first)
and ``mapInArrow`` hands each partition's patients to :func:`magstat.batch.rows.screen_rows_chunk`,
the same reader (``facts_from_rows``) and core as every other path.

The executors write the results themselves, as Parquet: the patients are spread over a fixed
number of partitions by a hash of their id (:func:`result_partitions`, from the input's size
only), sorted by id within each, and each task writes ``part-NNNNN.parquet`` (its partition
number) into the run's work folder, through a temporary name and a rename, so a retried task
leaves the same file. Nothing in that layout depends on the cluster, the number of workers or
the timing. The driver then merges the sorted parts a row group at a time into the screening's
outputs (``results.parquet``, the summary, the issues): its memory depends on the number of
parts, which is capped (:data:`MAX_RESULT_PARTITIONS`), not on the number of patients.
With ``spark.magstat.stageTimes=FILE`` the engine writes there where the run's time went.

Executors must have the same magstat (and knowledge base) installed as the driver; a row made
with another knowledge base is refused. The input must be readable at the same path by the
driver (which lists it) and the executors (which read it), and so must the output folder
(executors write their parts in its staging folder; the driver reads them): a shared
filesystem on a cluster. A part the driver cannot find stops the run with that explanation.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import datetime as dt
import functools
import heapq
import json
import math
import os
import pickle
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from magstat.adapters.fhir.flatten import READ_TYPES, row_sql, views_for_kb
from magstat.batch.engines.base import FileStats, Record, RecordFunction, RunContext
from magstat.batch.issues import Issue
from magstat.batch.readers import table as table_reader
from magstat.batch.readers.fhir_bulk import (
    MEDICATION_LINKED,
    NEEDED_TYPES,
    PATIENT_LINKED,
    BulkSource,
    code_keyword_alternatives,
    plain_code_pattern,
)
from magstat.batch.rows import Job, PatientResult, screen_record_chunk, screen_rows_chunk
from magstat.kb import KnowledgeBase

__all__ = ["SparkEngine", "keyword_regex"]

USED, MALFORMED, NOT_NEEDED, NO_PATIENT = 0, 1, 3, 4
_DATE_COLUMNS = ("as_of", "serum_mg_date")
_COLLECT_BATCH = 512

STAGE_TIMES_CONF = "spark.magstat.stageTimes"
"""A Spark setting naming a JSON file where the engine writes where a run's time went."""

RESULT_PARTITIONS_CONF = "spark.magstat.resultPartitions"
"""A Spark setting that fixes the number of result parts (else :func:`result_partitions`)."""

MIN_RESULT_PARTITIONS = 4
MAX_RESULT_PARTITIONS = 64
"""The driver merges the parts holding one row group of each open: this caps its memory."""

BYTES_PER_RESULT_PARTITION = 256 << 20
PART_ROW_GROUP = 512
"""Rows per row group of a part (what the driver holds of each part while merging)."""


_VIEW_SQL_CONF = {
    # A view compiles to nested lambda expressions beyond the JVM's 64 KB method limit: Spark
    # would generate code, fail and fall back to interpreting them, so it is not asked to.
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}


FOLDS_TO_ASCII, FOLDED = "\u212a\u017f", "ks"
"""The only characters outside ASCII that RE2's ``(?i)`` matches to an ASCII letter (the Kelvin
sign to ``k``, the long s to ``s``, by Unicode simple case folding). java.util.regex's ``(?i)``
folds ASCII letters only, so Spark turns these two into their letters before matching."""

_ATOM = re.compile(
    r"""
    (?: \( (?: \\. | \[ (?: \\. | [^\]\\] )* \] | [^()\\\[] )* \)   # a group without groups inside
      | \\.                                                       # an escaped character
      | [^()\\]                                                   # a character
    )
    (?: [?*+] | \{ [0-9,]+ \} )?                                  # and its quantifier
    """,
    re.VERBOSE | re.DOTALL,
)


def _atoms(alternative: str) -> list[str]:
    """An alternative of :func:`code_keyword_alternatives` as its sequence of atoms."""
    atoms = []
    position = 0
    while position < len(alternative):
        found = _ATOM.match(alternative, position)
        if found is None:
            raise ValueError(f"not a keyword pattern this engine can merge: {alternative!r}")
        atom = found.group(0)
        # Under (?i) an ASCII letter and its capital match the same: one spelling merges more.
        atoms.append(atom.lower() if atom[:1].isascii() and atom[:1].isalpha() else atom)
        position = found.end()
    return atoms


def keyword_regex(kb: KnowledgeBase) -> str:
    """DuckDB's keyword test (:func:`code_keyword_patterns`) as one java.util.regex pattern.

    The alternatives are merged into a prefix tree of their atoms (``a(?:b|c)`` for ``ab|ac``),
    which matches the same language; an alternative that extends another is dropped, since a
    text holding it holds the shorter one too. Matched with ``(?i)`` after translating
    :data:`FOLDS_TO_ASCII`, it finds a match in exactly the texts where RE2's ``(?i)`` finds one
    of the alternatives.
    """
    end = ""
    root: dict[str, Any] = {}
    for alternative in code_keyword_alternatives(kb):
        node = root
        for atom in _atoms(alternative):
            if end in node:
                break
            node = node.setdefault(atom, {})
        else:
            node.clear()
            node[end] = {}

    if not root:
        return "(?!)"  # nothing to recognise: no code matches

    def emit(node: dict[str, Any]) -> str:
        if end in node:
            return ""
        branches = [atom + emit(child) for atom, child in sorted(node.items())]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return "(?i)" + emit(root)


def result_partitions(input_bytes: int) -> int:
    """The number of result parts for an input of this size (never the cluster's size).

    Args:
        input_bytes: the bytes of input read (files as stored, gzip or not).

    Returns:
        One part per 256 MB, at least 4 and at most 64.

    """
    wanted = math.ceil(max(input_bytes, 0) / BYTES_PER_RESULT_PARTITION)
    return max(MIN_RESULT_PARTITIONS, min(MAX_RESULT_PARTITIONS, wanted))


def _encode(result: PatientResult, key: str | None, seq: int) -> dict[str, Any]:
    row = result.row
    return {
        "key": key,
        "seq": seq,
        "patient_id": None if row is None else row["patient_id"],
        "row": None if row is None else json.dumps(row, default=str, sort_keys=True),
        "detail": result.detail,
        "issues": json.dumps([asdict(i) for i in result.issues]) if result.issues else None,
    }


def _decode(record: Any) -> PatientResult:
    row = None
    if record["row"] is not None:
        row = json.loads(record["row"])
        for name in _DATE_COLUMNS:
            if row.get(name):
                row[name] = dt.date.fromisoformat(row[name])
    issues = tuple(Issue(**i) for i in json.loads(record["issues"])) if record["issues"] else ()
    return PatientResult(row, record["detail"], issues)


def _fhir_partition(batches: Iterable[Any], job: Job) -> Iterator[Any]:
    """mapInArrow: (patient_id, items) per patient -> encoded results (runs on executors).

    The items are the patient's view rows (JSON text, from Spark SQL), referenced
    Medications first, then in input order; :func:`screen_rows_chunk` reads them with the
    same :func:`~magstat.adapters.fhir.facts_from_rows` as every other path.
    """
    import pyarrow as pa  # noqa: PLC0415 - executor side

    for batch in batches:
        groups = []
        for pid, items in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            groups.append((pid, [i["rt"] for i in items], [i["row"] for i in items]))
        results = screen_rows_chunk(groups, job, projected=False)
        encoded = [_encode(r, g[0], 0) for r, g in zip(results, groups, strict=True)]
        yield pa.RecordBatch.from_pylist(encoded, schema=part_schema(pa))


def part_schema(pa: Any) -> Any:
    """The Arrow schema of the encoded results (the columns of every part file).

    ``key`` and ``seq`` are what the partition is sorted by (the patient id of the input, and
    the input position among equal ids); the driver merges the parts by them.
    """
    return pa.schema(
        [
            ("key", pa.string()),
            ("seq", pa.int64()),
            ("patient_id", pa.string()),
            ("row", pa.string()),
            ("detail", pa.string()),
            ("issues", pa.string()),
        ]
    )


_PART_SCHEMA = "part int, rows long, started double, ended double, input double, python double, write double"


class _Timed:
    """An iterator that adds the time spent waiting for each item to ``seconds``."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = iter(items)
        self.seconds = 0.0

    def __iter__(self) -> _Timed:
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        try:
            return next(self.items)
        finally:
            self.seconds += time.perf_counter() - start


def _write_part(
    batches: Iterable[Any], inner: Callable[[Iterable[Any]], Iterator[Any]], folder: str
) -> Iterator[Any]:
    """mapInArrow: run ``inner`` on this partition and write its results as one Parquet part.

    Runs on an executor. The file is named after the partition number and written under a
    temporary name first, so a retried or speculative task replaces it whole with the same
    content. Yields one small record for the driver: the part number, its rows, and where the
    task's time went (seconds waiting for its input rows, in the Python step, writing).
    """
    import pyarrow as pa  # noqa: PLC0415 - executor side
    import pyarrow.parquet as pq  # noqa: PLC0415
    from pyspark import TaskContext  # noqa: PLC0415

    started = time.time()
    context = TaskContext.get()
    part = context.partitionId() if context is not None else 0
    attempt = context.taskAttemptId() if context is not None else 0
    final = Path(folder) / part_name(part)
    temp = Path(folder) / f".{part_name(part)}.{attempt}.tmp"
    rows = 0
    source = _Timed(batches)
    results = _Timed(inner(source))
    write = 0.0
    try:
        with pq.ParquetWriter(temp, part_schema(pa), compression="zstd") as writer:
            for batch in results:
                if batch.num_rows:
                    start = time.perf_counter()
                    writer.write_batch(batch, row_group_size=PART_ROW_GROUP)
                    write += time.perf_counter() - start
                    rows += batch.num_rows
            start = time.perf_counter()
        os.replace(temp, final)
        write += time.perf_counter() - start
    finally:
        temp.unlink(missing_ok=True)
    record = {
        "part": part,
        "rows": rows,
        "started": started,
        "ended": time.time(),
        "input": source.seconds,
        "python": results.seconds - source.seconds,
        "write": write,
    }
    yield pa.RecordBatch.from_pylist([record], schema=_part_record_schema(pa))


def _part_record_schema(pa: Any) -> Any:
    return pa.schema(
        [("part", pa.int32()), ("rows", pa.int64())]
        + [(name, pa.float64()) for name in ("started", "ended", "input", "python", "write")]
    )


def part_name(part: int) -> str:
    """The file name of a result part: ``part-00003.parquet``."""
    return f"part-{part:05d}.parquet"


def check_parts(folder: Path, written: Iterable[tuple[int, int]]) -> list[Path]:
    """The part files the executors reported, checked to be here whole, in part order.

    Args:
        folder: where the executors wrote (the run's work folder, seen from the driver).
        written: (part number, rows) as each task reported it.

    Raises:
        RuntimeError: a part is missing or holds another number of rows: the driver does not
            see what the executors wrote (the folder is not on storage they share).

    """
    import pyarrow.parquet as pq  # noqa: PLC0415

    paths = []
    for part, rows in sorted(written):
        path = folder / part_name(part)
        found = pq.ParquetFile(path).metadata.num_rows if path.is_file() else None
        if found != rows:
            raise RuntimeError(
                f"the Spark executors wrote {rows} result(s) to {path}, but the driver "
                f"{'cannot find that file' if found is None else f'reads {found} there'}: the output "
                "folder must be on storage that the driver and every executor share, at the same path"
            )
        paths.append(path)
    return paths


def _read_part(path: Path) -> Iterator[tuple[tuple[int, str, int], Any]]:
    """The records of one part, in its order, with their merge key (one row group at a time)."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    with pq.ParquetFile(path) as handle:
        for batch in handle.iter_batches(batch_size=PART_ROW_GROUP):
            for record in batch.to_pylist():
                key = record["key"]
                # Spark sorts a missing key first, as (0, "") does here.
                yield (0, "", record["seq"]) if key is None else (1, key, record["seq"]), record


def merge_parts(paths: Iterable[Path]) -> Iterator[PatientResult]:
    """The results of every part, merged into one stream sorted as the parts are."""
    for _, record in heapq.merge(*(_read_part(p) for p in paths), key=lambda item: item[0]):
        yield _decode(record)


def _record_partition(
    batches: Iterable[Any], function: RecordFunction, job: Job, pickled: bool
) -> Iterator[Any]:
    """mapInArrow: records -> encoded results (runs on executors)."""
    import pyarrow as pa  # noqa: PLC0415 - executor side

    for batch in batches:
        rows = batch.to_pylist()
        keys = [(r.pop(_KEY), r.pop(_SEQ)) for r in rows]
        if pickled:
            chunk = [(r["patient_id"], pickle.loads(r["payload"])) for r in rows]  # noqa: S301 - our own records
        else:
            chunk = [(str(r.get("patient_id")), r) for r in rows]
        results = screen_record_chunk(chunk, function, job)
        encoded = [_encode(r, k, q) for r, (k, q) in zip(results, keys, strict=True)]
        yield pa.RecordBatch.from_pylist(encoded, schema=part_schema(pa))


_OWN_CARRY = ("pid", "rt", "f", "pos", "tie")
_KEY, _SEQ = "__magstat_key", "__magstat_seq"
"""Columns added to a table's rows: the sort key and the input position (removed before use)."""


class SparkEngine:
    """Screening on Apache Spark."""

    name = "spark"

    def __init__(
        self,
        master: str | None = None,
        remote: str | None = None,
        conf: dict[str, str] | None = None,
        **_: Any,
    ) -> None:
        self.master = master
        self.remote = remote
        self.conf = dict(conf or {})
        self.spark: Any = None
        self._own_session = False
        self._temp_views: list[str] = []
        self.timings: dict[str, Any] = {}
        """Where the last run's time went (seconds), written to :data:`STAGE_TIMES_CONF`'s file."""

    def _session(self, ctx: RunContext) -> Any:
        if self.spark is not None:
            return self.spark
        # Executors in local mode must run this Python, with magstat and pyarrow importable.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        from pyspark.sql import SparkSession  # noqa: PLC0415 - the spark extra

        builder = SparkSession.builder.appName("magstat-screen")
        if self.remote:
            builder = builder.remote(self.remote)
        else:
            cores = ctx.threads or "*"
            builder = builder.master(self.master or f"local[{cores}]")
            defaults = {
                "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false",
                "spark.sql.session.timeZone": "UTC",
                "spark.sql.shuffle.partitions": str(max(4, 2 * (ctx.threads or os.cpu_count() or 2))),
                "spark.local.dir": str(ctx.work_dir / "spark"),
            }
            defaults.update(_VIEW_SQL_CONF)
            if ctx.memory_limit:
                # DuckDB's way of writing a size (2GB) is not the JVM's (2g): given in MiB.
                from magstat.batch.pipeline import memory_bytes  # noqa: PLC0415 - avoids an import cycle

                defaults["spark.driver.memory"] = f"{-(-memory_bytes(ctx.memory_limit) // 2**20)}m"
            for key, value in defaults.items():
                builder = builder.config(key, value)
        if self.remote:
            for key, value in _VIEW_SQL_CONF.items():
                builder = builder.config(key, value)
        for key, value in self.conf.items():
            builder = builder.config(key, value)
        # getOrCreate may hand back a session someone else in this process made (a views run);
        # only a session this engine created is stopped by close().
        existing = None if self.remote else SparkSession.getActiveSession()
        if existing is not None and self.master and existing.sparkContext.master != self.master:
            # One Spark driver per process: getOrCreate would silently hand back that session
            # and the screening would run there, not on the master asked for.
            raise RuntimeError(
                f"a Spark session on {existing.sparkContext.master} is already running in this process, "
                f"so the screening cannot run on {self.master}: run it in a process of its own"
            )
        self.spark = builder.getOrCreate()
        self._own_session = existing is None
        if not self.remote:
            self.spark.sparkContext.setLogLevel("ERROR")
        return self.spark

    def close(self) -> None:
        """Stop the session this engine started."""
        if self.spark is not None and self._own_session:
            self.spark.stop()
        self.spark = None

    # -- FHIR Bulk Data -----------------------------------------------------------------------

    def _classified(self, spark: Any, source: BulkSource, ctx: RunContext) -> Any:
        from pyspark.sql import functions as F  # noqa: N812, PLC0415

        frames = []
        for index, f in enumerate(source.read):
            frames.append(
                spark.read.text(str(f.path)).select(
                    F.lit(index).alias("f"),
                    F.monotonically_increasing_id().alias("pos"),
                    F.col("value").alias("doc"),
                )
            )
        lines = functools.reduce(lambda a, b: a.unionByName(b), frames)
        lines = self._spread(spark, lines).where(F.trim(F.col("doc")) != "")
        fields = lines.select(
            "f",
            "pos",
            "doc",
            F.json_tuple(
                "doc", "resourceType", "id", "subject", "medicationReference", "code", "patient"
            ).alias("rt", "rid", "subject", "medref", "code", "patient"),
        )
        # DuckDB's test, with the same regular expressions: a code that matches one of the
        # knowledge base's names or codes is used; else one of the plain shape is passed over.
        # java.util.regex tries every branch of an alternation at every position, so the
        # alternatives are merged into one prefix tree first (keyword_regex), which matches
        # the same texts about four times faster.
        rt, rid, code = F.col("rt"), F.col("rid"), F.col("code")
        known = F.translate(code, FOLDS_TO_ASCII, FOLDED).rlike(keyword_regex(ctx.kb))
        observation_skip = (rt == "Observation") & (
            code.isNull() | (code == "null") | (~known & code.rlike(plain_code_pattern()))
        )

        def ref_id(column: Any, rtype: str) -> Any:
            ref = F.get_json_object(column, "$.reference")
            path = F.regexp_replace(F.split(ref, r"\?").getItem(0), "/_history(/.*)?$", "")
            found = F.regexp_extract(path, rf"^(?:(?:.*/)?{rtype}/)?([^/]+)/*$", 1)
            return (
                F.when(ref.isNull() | (ref == "") | ref.startswith("#"), F.lit(None))
                .when(ref.startswith("urn:"), F.nullif(F.regexp_extract(ref, "([^:]*)$", 1), F.lit("")))
                .otherwise(F.nullif(found, F.lit("")))
            )

        pid = (
            F.when(rt == "Patient", rid)
            .when(rt == "AllergyIntolerance", ref_id(F.col("patient"), "Patient"))
            .otherwise(ref_id(F.col("subject"), "Patient"))
        )
        mref = ref_id(F.col("medref"), "Medication")
        kind = (
            F.when(rt.isNull() | (rt == ""), F.lit(MALFORMED))
            .when(~rt.isin(*NEEDED_TYPES), F.lit(NOT_NEEDED))
            .when(observation_skip, F.lit(NOT_NEEDED))
            .when((rt == "Medication") & (rid.isNull() | (rid == "")), F.lit(NOT_NEEDED))
            .when((rt == "Patient") & (rid.isNull() | (rid == "")), F.lit(NO_PATIENT))
            .when(rt.isin(*PATIENT_LINKED) & pid.isNull(), F.lit(NO_PATIENT))
            .otherwise(F.lit(USED))
        )
        staged = fields.select(
            "f", "pos", "rt", "rid", "doc", pid.alias("pid"), mref.alias("mref0"), kind.alias("kind")
        )
        used = F.col("kind") == USED
        return staged.select(
            "f",
            "pos",
            "kind",
            "rt",
            F.when(used & (F.col("rt") != "Medication"), F.col("pid")).alias("pid"),
            F.when(used & (F.col("rt") == "Medication"), F.concat(F.lit("Medication/"), F.col("rid"))).alias(
                "mkey"
            ),
            F.when(
                used & F.col("rt").isin(*MEDICATION_LINKED),
                F.concat(F.lit("Medication/"), F.col("mref0")),
            ).alias("mref"),
            F.when(
                F.col("kind") == NO_PATIENT,
                F.concat(
                    F.coalesce(F.col("rt"), F.lit("?")),
                    F.lit("/"),
                    F.coalesce(F.col("rid"), F.lit("(no id)")),
                ),
            ).alias("label"),
            F.when(used, F.col("doc")).alias("line"),
        )

    def _spread(self, spark: Any, lines: Any) -> Any:
        """``lines`` over at least as many partitions as the cluster has cores.

        Spark splits a plain NDJSON file between tasks, but not a gzip one (a gzip stream
        cannot be read from the middle): one large ``.ndjson.gz`` is one task, and every
        later step on its lines (classifying, the views) would run on one core. The lines
        are then dealt out round-robin after the read, each with its file and position, so
        nothing downstream depends on how they are spread. Over Spark Connect the client
        cannot see the partitions, and the lines are left as read.
        """
        if self.remote:
            return lines
        cores = int(spark.sparkContext.defaultParallelism)
        return lines.repartition(cores) if lines.rdd.getNumPartitions() < cores else lines

    def screen_fhir(self, source: BulkSource, job: Job, ctx: RunContext) -> Iterator[list[PatientResult]]:
        """Screen a Bulk Data export on Spark (see the module documentation)."""
        from pyspark import StorageLevel  # noqa: PLC0415
        from pyspark.sql import functions as F  # noqa: N812, PLC0415

        for f in source.files:
            ctx.file_stats[f.name] = FileStats()
        read = source.read
        if not read:
            return
        start = time.perf_counter()
        spark = self._session(ctx)
        self.timings = {"session": time.perf_counter() - start}
        classified = self._classified(spark, source, ctx).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            ctx.progress("scan", 0, 100)
            start = time.perf_counter()
            total = 0
            is_patient = (F.col("rt") == "Patient").alias("is_patient")
            for row in classified.groupBy("f", "kind", is_patient).count().collect():
                stats = ctx.file_stats[read[row["f"]].name]
                stats.lines += row["count"]
                if row["kind"] == USED:
                    stats.used += row["count"]
                    total += row["count"] if row["is_patient"] else 0
                elif row["kind"] == MALFORMED:
                    stats.malformed += row["count"]
                elif row["kind"] == NOT_NEEDED:
                    stats.not_needed += row["count"]
                else:
                    stats.no_patient += row["count"]
            self.timings["scan"] = time.perf_counter() - start
            for row in (
                classified.where(F.col("kind") == NO_PATIENT)
                .orderBy("f", "pos")
                .select("f", "label")
                .collect()
            ):
                ctx.no_patient.append((read[row["f"]].name, row["label"]))
            ctx.progress("scan", 100, 100)
            ctx.after_scan()
            med_lines = (
                classified.where(F.col("mkey").isNotNull())
                .groupBy("mkey")
                .agg(F.min_by("line", F.struct("f", "pos")).alias("line"))
            )
            meds = self._view_rows(spark, ctx, med_lines, "Medication", ("mkey",))
            links = classified.where(F.col("mref").isNotNull()).select("pid", "mref").distinct()
            med_rows = links.join(meds, links.mref == meds.mkey).select(
                "pid",
                F.lit("Medication").alias("rt"),
                F.lit(-1).alias("f"),
                F.lit(-1).cast("long").alias("pos"),
                F.col("mkey").alias("tie"),
                F.col("row"),
            )
            own = classified.where((F.col("kind") == USED) & (F.col("rt") != "Medication")).select(
                "pid", "rt", "f", "pos", F.lit(None).cast("string").alias("tie"), "line"
            )
            own_rows = functools.reduce(
                lambda a, b: a.unionByName(b),
                [
                    self._view_rows(spark, ctx, own.where(F.col("rt") == rtype), rtype, _OWN_CARRY)
                    for rtype in READ_TYPES
                    if rtype != "Medication"
                ],
            )
            parts = self._partitions(sum(f.size for f in read))
            grouped = (
                med_rows.unionByName(own_rows)
                .repartition(parts, "pid")
                .groupBy("pid")  # the hash partitioning above holds: no second shuffle
                .agg(F.sort_array(F.collect_list(F.struct("f", "pos", "tie", "rt", "row"))).alias("items"))
                .sortWithinPartitions("pid")
            )
            work = functools.partial(_fhir_partition, job=job)
            yield from self._write_and_merge(grouped, work, ctx, total)
        finally:
            classified.unpersist()
            self._drop_temp_views()

    def _view_rows(self, spark: Any, ctx: RunContext, lines: Any, rtype: str, carry: Sequence[str]) -> Any:
        """The knowledge base's view of ``rtype`` run in Spark SQL on ``lines``: ``carry`` and ``row``.

        ``row`` is the view's row as JSON text (:func:`magstat.adapters.fhir.flatten.row_sql`).
        A line Spark cannot parse as a ``VARIANT`` (which json_tuple could read) gets the row
        ``null``, which the per-patient step reports as a row it could not read, never drops.
        """
        from pyspark.sql import functions as F  # noqa: N812, PLC0415

        flat = views_for_kb(ctx.kb)
        staged = lines.select(*carry, F.expr("try_parse_json(line)").alias("resource_"))
        name = f"magstat_{rtype.lower()}_{uuid.uuid4().hex}"
        staged.where(F.col("resource_").isNotNull()).createOrReplaceTempView(name)
        self._temp_views.append(name)
        rows = spark.sql(row_sql(flat, rtype, "spark", name, "resource_", carry=tuple(carry)))
        unreadable = staged.where(F.col("resource_").isNull()).select(*carry, F.lit("null").alias("row"))
        return rows.unionByName(unreadable)

    def _drop_temp_views(self) -> None:
        if self.spark is not None:
            for name in self._temp_views:
                self.spark.catalog.dropTempView(name)
        self._temp_views.clear()

    def _partitions(self, input_bytes: int) -> int:
        setting = self.conf.get(RESULT_PARTITIONS_CONF)
        return int(setting) if setting else result_partitions(input_bytes)

    def _write_and_merge(
        self,
        frame: Any,
        work: Callable[[Iterable[Any]], Iterator[Any]],
        ctx: RunContext,
        total: int | None,
    ) -> Iterator[list[PatientResult]]:
        """Have the executors assess ``frame``'s partitions and write them; merge the parts.

        ``frame`` is already hash-partitioned and sorted within partitions by the merge key.
        """
        ctx.progress("assess", 0, total)
        folder = ctx.work_dir / "spark-results"
        folder.mkdir(parents=True, exist_ok=True)
        writer = functools.partial(_write_part, inner=work, folder=str(folder.resolve()))
        submitted = time.time()
        records = frame.mapInArrow(writer, _PART_SCHEMA).collect()
        self._time_tasks(submitted, time.time(), records)
        paths = check_parts(folder, [(r["part"], r["rows"]) for r in records])
        batch: list[PatientResult] = []
        done = 0
        merged = _Timed(merge_parts(paths))
        for result in merged:
            batch.append(result)
            if len(batch) >= _COLLECT_BATCH:
                done += len(batch)
                ctx.progress("assess", done, total)
                yield batch
                batch = []
        if batch:
            done += len(batch)
            ctx.progress("assess", done, total)
            yield batch
        self.timings["driver_merge"] = merged.seconds
        self._write_timings()

    def _time_tasks(self, submitted: float, finished: float, records: Sequence[Any]) -> None:
        """Add the write job's stages to :attr:`timings`, from the tasks' own records.

        The job's tasks start once the rows are flattened by the views and shuffled: from the
        job's start to the first task's is that stage (on the clocks of the driver and the
        executors, the same machine's in local mode). The rest is the tasks' stage: its wall
        time, and the seconds all tasks spent reading their grouped rows, in the Python step
        and writing their parts.
        """
        first = min((r["started"] for r in records), default=finished)
        self.timings.update(
            {
                "flatten_and_shuffle": max(0.0, first - submitted),
                "assess_stage": finished - first,
                "tasks": len(records),
                "task_seconds": {
                    name: round(sum(r[name] for r in records), 3) for name in ("input", "python", "write")
                },
            }
        )

    def _write_timings(self) -> None:
        path = self.conf.get(STAGE_TIMES_CONF)
        if path:
            data = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.timings.items()}
            Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    # -- tables and records -------------------------------------------------------------------

    def screen_table(self, path: Path, job: Job, ctx: RunContext) -> Iterator[list[PatientResult]]:
        """Screen a CSV or Parquet table on Spark."""
        from pyspark.sql import functions as F  # noqa: N812, PLC0415

        spark = self._session(ctx)
        if table_reader.is_parquet(path):
            frame = spark.read.parquet(str(path))
        else:
            frame = spark.read.option("header", "true").option("inferSchema", "false").csv(str(path))
        table_reader.check_columns(frame.columns)
        keyed = frame.select(
            "*",
            F.col("patient_id").cast("string").alias(_KEY),
            F.monotonically_increasing_id().alias(_SEQ),
        )
        work = functools.partial(_record_partition, function=table_reader.assess_row, job=job, pickled=False)
        ordered = keyed.repartition(self._partitions(path.stat().st_size), _KEY).sortWithinPartitions(
            _KEY, _SEQ
        )
        yield from self._write_and_merge(ordered, work, ctx, None)

    def screen_records(
        self, records: Iterable[Record], function: RecordFunction, job: Job, ctx: RunContext
    ) -> Iterator[list[PatientResult]]:
        """Screen records built on the driver (NHANES): shipped to executors pickled."""
        spark = self._session(ctx)
        rows = [(pid, pickle.dumps(record), pid, seq) for seq, (pid, record) in enumerate(records)]
        frame = spark.createDataFrame(rows, f"patient_id string, payload binary, {_KEY} string, {_SEQ} long")
        size = sum(len(r[1]) for r in rows)
        ordered = frame.repartition(self._partitions(size), _KEY).sortWithinPartitions(_KEY, _SEQ)
        work: Callable[[Iterable[Any]], Iterator[Any]] = functools.partial(
            _record_partition, function=function, job=job, pickled=True
        )
        yield from self._write_and_merge(ordered, work, ctx, len(rows))
