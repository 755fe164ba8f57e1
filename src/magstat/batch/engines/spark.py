"""The Apache Spark engine (``--engine spark``): local mode, a cluster, or Spark Connect.

Spark reads the needed NDJSON files as text, classifies each line with the same rules as the
DuckDB engine (the expressions of :mod:`magstat.batch.readers.fhir_bulk`), groups the kept
lines by patient in input order, and runs :func:`magstat.batch.rows.screen_fhir_chunk` on the
groups with ``mapInArrow``. The results come back to the driver sorted by patient id through
``toLocalIterator``, one partition at a time, so the driver's memory stays bounded.

Executors must have the same magstat (and knowledge base) installed as the driver; a row made
with another knowledge base is refused. The input must be readable at the same path by the
driver (which lists it) and the executors (which read it): a shared filesystem on a cluster.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from magstat.batch.engines.base import FileStats, Record, RecordFunction, RunContext
from magstat.batch.issues import Issue
from magstat.batch.readers import table as table_reader
from magstat.batch.readers.fhir_bulk import (
    JSON_ESCAPE,
    NEEDED_TYPES,
    PATIENT_LINKED,
    WORD_SEPARATOR,
    BulkSource,
    code_keyword_anchors,
    plain_code_pattern,
)
from magstat.batch.rows import Job, PatientResult, screen_fhir_chunk, screen_record_chunk

__all__ = ["SparkEngine"]

USED, MALFORMED, NOT_NEEDED, NO_PATIENT = 0, 1, 3, 4
_OUT_SCHEMA = "patient_id string, row string, detail string, issues string"
_DATE_COLUMNS = ("as_of", "serum_mg_date")
_COLLECT_BATCH = 512


def _encode(result: PatientResult) -> dict[str, Any]:
    row = result.row
    return {
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
    """mapInArrow: (patient_id, items) per patient -> encoded results (runs on executors)."""
    import pyarrow as pa  # noqa: PLC0415 - executor side

    for batch in batches:
        groups = []
        for pid, items in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            groups.append((pid, [i["rt"] for i in items], [i["line"] for i in items]))
        encoded = [_encode(r) for r in screen_fhir_chunk(groups, job)]
        yield pa.RecordBatch.from_pylist(
            encoded,
            schema=_result_schema(pa),
        )


def _result_schema(pa: Any) -> Any:
    """The Arrow schema of the encoded results both partition functions yield."""
    return pa.schema(
        [("patient_id", pa.string()), ("row", pa.string()), ("detail", pa.string()), ("issues", pa.string())]
    )


def _record_partition(
    batches: Iterable[Any], function: RecordFunction, job: Job, pickled: bool
) -> Iterator[Any]:
    """mapInArrow: records -> encoded results (runs on executors)."""
    import pyarrow as pa  # noqa: PLC0415 - executor side

    for batch in batches:
        rows = batch.to_pylist()
        if pickled:
            chunk = [(r["patient_id"], pickle.loads(r["payload"])) for r in rows]  # noqa: S301 - our own records
        else:
            chunk = [(str(r.get("patient_id")), r) for r in rows]
        encoded = [_encode(r) for r in screen_record_chunk(chunk, function, job)]
        yield pa.RecordBatch.from_pylist(
            encoded,
            schema=_result_schema(pa),
        )


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
            if ctx.memory_limit:
                defaults["spark.driver.memory"] = ctx.memory_limit
            for key, value in defaults.items():
                builder = builder.config(key, value)
        for key, value in self.conf.items():
            builder = builder.config(key, value)
        # getOrCreate may hand back a session someone else in this process made (a views run);
        # only a session this engine created is stopped by close().
        existing = None if self.remote else SparkSession.getActiveSession()
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
        lines = lines.where(F.trim(F.col("doc")) != "")
        fields = lines.select(
            "f",
            "pos",
            "doc",
            F.json_tuple("doc", "resourceType", "id", "subject", "medicationReference", "code").alias(
                "rt", "rid", "subject", "medref", "code"
            ),
        )
        # java.util.regex backtracks through a long alternation at every position, so the
        # knowledge base's names are tested as words here: a code holding none of the anchor
        # tokens cannot be recognised. Looser than DuckDB's test (more lines reach the
        # adapter, which passes over what it does not know); never stricter.
        anchors, prefixes = code_keyword_anchors(ctx.kb)
        plain = plain_code_pattern()
        rt, rid, code = F.col("rt"), F.col("rid"), F.col("code")
        tokens = F.split(F.regexp_replace(F.lower(code), JSON_ESCAPE, " "), WORD_SEPARATOR)
        known = F.arrays_overlap(tokens, F.array(*[F.lit(a) for a in anchors]))
        if prefixes:
            known = known | F.exists(
                tokens, lambda t: functools.reduce(lambda a, b: a | b, [t.startswith(p) for p in prefixes])
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

        pid = F.when(rt == "Patient", rid).otherwise(ref_id(F.col("subject"), "Patient"))
        mref = ref_id(F.col("medref"), "Medication")
        observation_skip = (rt == "Observation") & (
            code.isNull() | (code == "null") | (~known & code.rlike(plain))
        )
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
                used & F.col("rt").isin("MedicationRequest", "MedicationStatement"),
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

    def screen_fhir(self, source: BulkSource, job: Job, ctx: RunContext) -> Iterator[list[PatientResult]]:
        """Screen a Bulk Data export on Spark (see the module documentation)."""
        from pyspark import StorageLevel  # noqa: PLC0415
        from pyspark.sql import functions as F  # noqa: N812, PLC0415

        for f in source.files:
            ctx.file_stats[f.name] = FileStats()
        read = source.read
        if not read:
            return
        spark = self._session(ctx)
        classified = self._classified(spark, source, ctx).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            ctx.progress("scan", 0, 100)
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
            for row in (
                classified.where(F.col("kind") == NO_PATIENT)
                .orderBy("f", "pos")
                .select("f", "label")
                .collect()
            ):
                ctx.no_patient.append((read[row["f"]].name, row["label"]))
            ctx.progress("scan", 100, 100)
            ctx.after_scan()
            meds = (
                classified.where(F.col("mkey").isNotNull())
                .groupBy("mkey")
                .agg(F.min_by("line", F.struct("f", "pos")).alias("mline"))
            )
            links = classified.where(F.col("mref").isNotNull()).select("pid", "mref").distinct()
            med_rows = links.join(meds, links.mref == meds.mkey).select(
                "pid",
                F.lit("Medication").alias("rt"),
                F.lit(-1).alias("f"),
                F.lit(-1).cast("long").alias("pos"),
                F.col("mkey").alias("tie"),
                F.col("mline").alias("line"),
            )
            own_rows = classified.where((F.col("kind") == USED) & (F.col("rt") != "Medication")).select(
                "pid", "rt", "f", "pos", F.lit(None).cast("string").alias("tie"), "line"
            )
            grouped = (
                med_rows.unionByName(own_rows)
                .groupBy("pid")
                .agg(F.sort_array(F.collect_list(F.struct("f", "pos", "tie", "rt", "line"))).alias("items"))
                .orderBy("pid")  # sorted before the Python step, which keeps the order
            )
            work = functools.partial(_fhir_partition, job=job)
            yield from self._collect(grouped.mapInArrow(work, _OUT_SCHEMA), ctx, total)
        finally:
            classified.unpersist()

    def _collect(self, results: Any, ctx: RunContext, total: int | None) -> Iterator[list[PatientResult]]:
        """Bring results, already in patient-id order, to the driver a batch at a time.

        They are computed first on every executor at once (and kept, spilling to disk), then
        read a partition at a time: ``toLocalIterator`` alone would compute one partition after
        the other.
        """
        from pyspark import StorageLevel  # noqa: PLC0415

        ctx.progress("assess", 0, total)
        kept = results.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            kept.count()
            batch: list[PatientResult] = []
            done = 0
            for record in kept.toLocalIterator():
                batch.append(_decode(record))
                if len(batch) >= _COLLECT_BATCH:
                    done += len(batch)
                    ctx.progress("assess", done, total)
                    yield batch
                    batch = []
            if batch:
                done += len(batch)
                ctx.progress("assess", done, total)
                yield batch
        finally:
            kept.unpersist()

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
        work = functools.partial(_record_partition, function=table_reader.assess_row, job=job, pickled=False)
        ordered = frame.orderBy(F.col("patient_id").cast("string"))
        yield from self._collect(ordered.mapInArrow(work, _OUT_SCHEMA), ctx, None)

    def screen_records(
        self, records: Iterable[Record], function: RecordFunction, job: Job, ctx: RunContext
    ) -> Iterator[list[PatientResult]]:
        """Screen records built on the driver (NHANES): shipped to executors pickled."""
        spark = self._session(ctx)
        rows = [(pid, pickle.dumps(record)) for pid, record in records]
        frame = spark.createDataFrame(rows, "patient_id string, payload binary")
        work: Callable[[Iterable[Any]], Iterator[Any]] = functools.partial(
            _record_partition, function=function, job=job, pickled=True
        )
        yield from self._collect(frame.orderBy("patient_id").mapInArrow(work, _OUT_SCHEMA), ctx, len(rows))
