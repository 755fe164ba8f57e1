"""The DuckDB engine (default): embedded, multi-threaded, spills to disk under a memory cap.

FHIR Bulk Data is read in two steps. A parallel scan of the needed files (``read_ndjson_objects``,
which validates every line) classifies each line in SQL and keeps the lines the adapter needs
in a staging table, whose row order is the input order; the knowledge base's keyword test of
an Observation's code runs once per distinct code (:class:`CodeKinds`). Every line is parsed
for its ``resourceType`` and ``code`` alone; a kept line is parsed again for the elements its
view reads (``FlatViews.keys``: ``id``, ``status``, ``code``, ``valueQuantity`` ...) and stored
as their compact JSON array, its patient and Medication references read from those same
values; or it is stored whole when a view is not a plain projection
(a second query then flattens it with the view's own columns,
:func:`magstat.adapters.fhir.flatten.row_sql`). The scan also names the files that hold lines
of another resource type, so that only those are read again to report them by line. A second
query joins referenced Medications and sorts the rows by patient (then input order); the
driver cuts the sorted Arrow batches into units of whole patients, and worker processes turn
each unit into rows and read them (:func:`magstat.batch.rows.screen_packed_chunk`): the view's
compiled columns and the same ``facts_from_rows`` as ``magstat assess`` on a Bundle of those
resources. DuckDB sorts larger-than-memory data on disk, so memory stays bounded by
``memory_limit`` and the unit size, not by the input.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import array
import functools
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import duckdb.func
import duckdb.sqltypes
import pyarrow as pa
import pyarrow.compute as pc

from magstat.adapters.fhir.flatten import READ_TYPES, row_sql, views_for_kb
from magstat.batch.engines.base import FileStats, Record, RecordFunction, RunContext
from magstat.batch.parallel import WorkerPool
from magstat.batch.readers import table as table_reader
from magstat.batch.readers.fhir_bulk import (
    MEDICATION_LINKED,
    NEEDED_TYPES,
    PATIENT_LINKED,
    BulkFile,
    BulkSource,
    code_keyword_patterns,
    plain_code_pattern,
)
from magstat.batch.rows import Job, PackedUnit, PatientResult, screen_packed_chunk, screen_record_chunk
from magstat.errors import InvalidInputError
from magstat.kb import KnowledgeBase

__all__ = ["DuckDBEngine"]

CHUNK_ROWS = 8192
"""Rows (resources) per unit of work sent to a worker, about 60 Synthea lifetime records ..."""
CHUNK_BYTES = 8 << 20
"""... or fewer, when their rows pass this many bytes (a unit always holds whole patients)."""
MAX_LINE_BYTES = 16 << 20
"""Longest NDJSON line accepted (a resource with large attachments); longer lines are malformed."""

CODE_KIND_FUNCTION = "magstat_code_kind"
"""The name :class:`CodeKinds` is registered under on the engine's connection for its scan."""


# Kinds of line, as the scan classifies them.
USED, MALFORMED, NOT_RESOURCE, NOT_NEEDED, NO_PATIENT = 0, 1, 2, 3, 4


def _sql_list(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _ref_id(ref: str, rtype: str) -> str:
    """SQL: the id of a ``<rtype>`` reference, the way the FHIR adapter reads references.

    ``urn:uuid:<id>``, ``<rtype>/<id>``, an absolute URL ending in ``<rtype>/<id>``, with any
    ``/_history/..`` and query dropped; a bare id is taken as it is. Anything else is NULL.
    """
    path = f"regexp_replace(split_part({ref}, '?', 1), '/_history(/.*)?$', '')"
    # The usual ``<rtype>/<id>`` is taken apart without regular expressions (most lines have one).
    prefix = f"{rtype}/"
    rest = f"substr({ref}, {len(prefix) + 1})"
    return (
        f"CASE WHEN {ref} IS NULL OR {ref} = '' OR starts_with({ref}, '#') THEN NULL "
        f"WHEN starts_with({ref}, '{prefix}') AND strpos({rest}, '/') = 0 AND strpos({rest}, '?') = 0 "
        f"THEN nullif({rest}, '') "
        f"WHEN starts_with({ref}, 'urn:') THEN nullif(regexp_extract({ref}, '[^:]*$'), '') "
        f"ELSE nullif(regexp_extract({path}, '^(?:(?:.*/)?{rtype}/)?([^/]+)/*$', 1), '') END"
    )


def code_kind_sql(code: str, keywords: list[str], plain: str) -> str:
    """SQL: the kind of an Observation line from its ``code`` (compact JSON, not null).

    ``USED`` when a keyword of the knowledge base matches (:func:`code_keyword_patterns`),
    ``NOT_NEEDED`` when the code is a plain one that matches none (:func:`plain_code_pattern`),
    and ``USED`` otherwise (the adapter judges the rest). Patterns go in as escaped literals,
    because DuckDB compiles a constant pattern once.
    """
    kw = " OR ".join(f"regexp_matches({code}, '{k.replace(chr(39), chr(39) * 2)}')" for k in keywords)
    plain_sql = plain.replace("'", "''")
    return f"CASE WHEN {kw} THEN {USED} WHEN regexp_matches({code}, '{plain_sql}') THEN {NOT_NEEDED} ELSE {USED} END"


class CodeKinds:
    """:func:`code_kind_sql`, evaluated once per distinct code, as a DuckDB function over Arrow.

    An export repeats few distinct Observation codes (a code per kind of test), so the scan
    calls this on each vector of codes instead of running the knowledge base's regular
    expressions on every line: the codes it has not met yet go through :func:`code_kind_sql`
    in a private in-memory DuckDB connection (the same RE2 matching as the scan's own SQL,
    so the kinds are the same), and the answers are remembered (at most ``MEMO_LIMIT``
    codes, each shorter than ``MEMO_LONGEST`` characters).
    """

    MEMO_LIMIT = 20_000
    MEMO_LONGEST = 1024

    def __init__(self, keywords: list[str], plain: str) -> None:
        array = "$1::VARCHAR[]"
        self.sql = (
            f"SELECT {code_kind_sql('c', keywords, plain)} FROM "  # noqa: S608 - patterns are escaped literals
            f"(SELECT unnest({array}) AS c, generate_subscripts({array}, 1) AS i) ORDER BY i"
        )
        self.con = duckdb.connect()
        self.lock = threading.Lock()
        self.memo: dict[str, int] = {}

    def __call__(self, codes: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The kind of each code (null for null), as DuckDB's Arrow function interface calls it."""
        encoded = pc.dictionary_encode(codes)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        distinct: list[str] = encoded.dictionary.to_pylist()
        with self.lock:  # DuckDB calls from several threads; one connection answers one query at a time
            unknown = [c for c in distinct if c not in self.memo]
            found: dict[str, int] = {}
            if unknown:
                kinds = [k for (k,) in self.con.execute(self.sql, [unknown]).fetchall()]
                found = dict(zip(unknown, kinds, strict=True))
            answers = [found[c] if c in found else self.memo[c] for c in distinct]
            if len(self.memo) + len(found) > self.MEMO_LIMIT:
                self.memo.clear()
            self.memo.update((c, k) for c, k in found.items() if len(c) < self.MEMO_LONGEST)
        # Built from a buffer: pyarrow's conversion of a Python list would first import pandas,
        # holding the interpreter lock that DuckDB's scan threads wait on to call this.
        kinds = pa.Array.from_buffers(
            pa.int32(), len(answers), [None, pa.py_buffer(array.array("i", answers))]
        )
        return pc.take(kinds, encoded.indices)

    def close(self) -> None:
        """Close the private connection."""
        self.con.close()


class DuckDBEngine:
    """Screening on DuckDB (``--engine duckdb``)."""

    name = "duckdb"
    finds_suspect_files = True
    """The scan tells which files hold lines of another type (``RunContext.suspect_files``)."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.con: duckdb.DuckDBPyConnection | None = None

    # -- connection ---------------------------------------------------------------------------

    def _connect(self, ctx: RunContext) -> duckdb.DuckDBPyConnection:
        if self.con is None:
            spill = ctx.work_dir / "duckdb-spill"
            spill.mkdir(parents=True, exist_ok=True)
            # A database file, not memory: the staging table then lives in DuckDB's buffer
            # manager and is written out when it outgrows ``memory_limit``.
            con = duckdb.connect(str(ctx.work_dir / "staging.duckdb"))
            con.execute("SET preserve_insertion_order = true")
            con.execute("SET temp_directory = ?", [str(spill)])
            con.execute("SET enable_progress_bar = false")
            if ctx.threads:
                con.execute(f"SET threads = {int(ctx.threads)}")
            if ctx.memory_limit:
                con.execute("SET memory_limit = ?", [ctx.memory_limit])
            self.con = con
        return self.con

    def close(self) -> None:
        """Close the connection."""
        if self.con is not None:
            self.con.close()
            self.con = None

    def _run_with_progress(
        self, con: duckdb.DuckDBPyConnection, sql: str, stage: str, ctx: RunContext
    ) -> None:
        """Execute ``sql``, reporting DuckDB's own progress estimate while it runs."""
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.25):
                try:
                    percent = con.query_progress()
                except duckdb.Error:  # pragma: no cover - depends on timing
                    continue
                if percent >= 0:
                    ctx.progress(stage, int(percent), 100)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            con.execute(sql)
        finally:
            done.set()
            watcher.join()
        ctx.progress(stage, 100, 100)

    # -- FHIR Bulk Data -----------------------------------------------------------------------

    def stage_sql(
        self,
        files: list[str],
        keywords: list[str],
        plain: str,
        keys: Mapping[str, tuple[str, ...]] | None = None,
        classify: str | None = None,
    ) -> str:
        """The scan that classifies every line and keeps what the adapter needs.

        ``keys`` (resource type -> the JSON keys its view reads, :attr:`FlatViews.keys`) has
        each kept line stored projected on them, as :meth:`projection_sql` gives it, made in
        the pass that parses it; ``None`` stores the line whole. ``classify`` names a function
        registered on the connection that gives an Observation's kind from its ``code`` as
        :func:`code_kind_sql` does (:class:`CodeKinds`, which evaluates it once per distinct
        code); ``None`` evaluates the regular expressions on every line.
        """
        if classify is not None and not classify.isidentifier():
            raise ValueError(f"not a function name: {classify}")
        kind = code_kind_sql("code", keywords, plain) if classify is None else f"{classify}(code)"
        source = (
            f"read_ndjson_objects([{_sql_list(files)}], ignore_errors = true, filename = true, "
            f"maximum_object_size = {MAX_LINE_BYTES})"
        )
        # A line's file is stored as its position in ``files`` ("1", "2" ...: a short string is
        # stored inline, a path on every line is not); a path not in ``files`` stays as it is.
        file = f"coalesce(CAST(list_position([{_sql_list(files)}], filename) AS VARCHAR), filename)"
        inner = (
            self._scan_sql(source, file, kind)
            if keys is None
            else self._projected_scan_sql(source, file, kind, keys)
        )
        linked = _sql_list(PATIENT_LINKED)
        # Built as text: file lists and regular expressions go in as escaped literals, because
        # DuckDB compiles a constant pattern once; nothing here comes from a user but paths.
        return f"""
CREATE OR REPLACE TEMP TABLE staged AS
SELECT file, kind, rt,
       CASE WHEN kind = {USED} AND rt <> 'Medication' THEN pid END AS pid,
       CASE WHEN kind = {USED} AND rt = 'Medication' THEN 'Medication/' || rid END AS mkey,
       CASE WHEN kind = {USED} THEN 'Medication/' || mref END AS mref,
       CASE WHEN kind = {NO_PATIENT} THEN coalesce(rt, '?') || '/' || coalesce(rid, '(no id)') END AS label,
       CASE WHEN kind = {USED} THEN line END AS line
FROM (
  SELECT file, rt, rid, pid, mref, line,
    CASE WHEN kind0 = {USED} AND (
      (rt = 'Patient' AND (rid IS NULL OR rid = '')) OR (rt IN ({linked}) AND pid IS NULL)
    ) THEN {NO_PATIENT} ELSE kind0 END AS kind
  FROM (
    SELECT file, rt, rid, kind0, line,
      CASE WHEN kind0 <> {USED} THEN NULL WHEN rt = 'Patient' THEN rid ELSE {_ref_id("sref", "Patient")} END AS pid,
      CASE WHEN kind0 = {USED} AND rt IN ({_sql_list(MEDICATION_LINKED)})
           THEN {_ref_id("mref0", "Medication")} END AS mref
    FROM ({inner})
  )
)
"""  # noqa: S608

    @staticmethod
    def _kind_sql(medication_id: str, kind: str) -> str:
        """SQL: a line's kind before its patient is known, from ``doc``, ``rt`` and ``code``."""
        return f"""CASE
            WHEN doc IS NULL THEN {MALFORMED}
            WHEN rt IS NULL OR rt = '' THEN {NOT_RESOURCE}
            WHEN rt NOT IN ({_sql_list(NEEDED_TYPES)}) THEN {NOT_NEEDED}
            WHEN rt = 'Medication' AND coalesce({medication_id}, '') = '' THEN {NOT_NEEDED}
            WHEN rt <> 'Observation' THEN {USED}
            WHEN code IS NULL OR code = 'null' THEN {NOT_NEEDED}
            ELSE {kind}
          END"""

    @classmethod
    def _scan_sql(cls, source: str, file: str, kind: str) -> str:
        """The lines of ``source`` with their kind, id and references, kept lines whole (``line``)."""
        return f"""
      -- The other fields are unquoted only where they are used: the lines kept.
      SELECT file, rt, kind0, CASE WHEN kind0 = {USED} THEN doc END AS line,
        CASE WHEN kind0 = {USED} THEN json_extract_string(g[2], '$') END AS rid,
        CASE WHEN kind0 = {USED} AND rt = 'AllergyIntolerance' THEN json_extract_string(g[6], '$')
             WHEN kind0 = {USED} THEN json_extract_string(g[3], '$') END AS sref,
        CASE WHEN kind0 = {USED} THEN json_extract_string(g[4], '$') END AS mref0
      FROM (
        SELECT file, doc, g, rt, {cls._kind_sql("json_extract_string(g[2], '$')", kind)} AS kind0
        FROM (
          -- One parse per line: every field the scan needs, as JSON; the type unquoted.
          SELECT file, doc, g, json_extract_string(g[1], '$') AS rt,
            CASE WHEN json_extract_string(g[1], '$') = 'Observation' THEN CAST(g[5] AS VARCHAR) END AS code
          FROM (
            SELECT {file} AS file, json AS doc,
              json_extract(json, ['$.resourceType', '$.id', '$.subject.reference',
                                  '$.medicationReference.reference', '$.code', '$.patient.reference']) AS g
            FROM {source}
          )
        )
      )"""  # noqa: S608

    @classmethod
    def _projected_scan_sql(
        cls, source: str, file: str, kind: str, keys: Mapping[str, tuple[str, ...]]
    ) -> str:
        """As :meth:`_scan_sql`, each kept line projected on its type's ``keys``.

        Every line is parsed for its type and ``code`` only; a kept line is parsed again for
        the keys its view reads plus those the scan needs (``id``, ``subject`` or ``patient``,
        ``medicationReference``), and its id and references are read from those values. Most
        lines of an export are Observations that are not kept, so they pay for two fields.
        """
        values, lines, rid, sref, mref = [], [], [], [], []
        for rtype, rtype_keys in keys.items():
            if not rtype.isidentifier() or not all(k.isidentifier() for k in rtype_keys):
                raise ValueError(f"not a resource type and JSON keys a view can read: {rtype} {rtype_keys}")
            owner = "patient" if rtype == "AllergyIntolerance" else "subject"
            wanted = ["id", owner] + (["medicationReference"] if rtype in MEDICATION_LINKED else [])
            read = list(rtype_keys) + [k for k in wanted if k not in rtype_keys]
            at = {k: read.index(k) + 1 for k in wanted}
            paths = ", ".join(f"'$.{k}'" for k in read)
            values.append(f"WHEN '{rtype}' THEN json_extract(doc, [{paths}])")
            # The cast of a list of JSON values is a JSON array once absent values are null.
            projected = "p" if len(read) == len(rtype_keys) else f"p[1:{len(rtype_keys)}]"
            lines.append(
                f"WHEN '{rtype}' THEN CAST(list_transform({projected}, "
                "lambda x: coalesce(x, 'null'::JSON)) AS VARCHAR)"
            )
            rid.append(f"WHEN '{rtype}' THEN json_extract_string(p[{at['id']}], '$')")
            sref.append(f"WHEN '{rtype}' THEN json_extract_string(p[{at[owner]}], '$.reference')")
            if rtype in MEDICATION_LINKED:
                mref.append(
                    f"WHEN '{rtype}' THEN json_extract_string(p[{at['medicationReference']}], '$.reference')"
                )
        mref_sql = f"CASE rt {' '.join(mref)} END" if mref else "NULL::VARCHAR"
        return f"""
      SELECT file, rt, kind0, CASE rt {" ".join(lines)} END AS line,
        CASE rt {" ".join(rid)} END AS rid, CASE rt {" ".join(sref)} END AS sref, {mref_sql} AS mref0
      FROM (
        -- A kept line's values at the keys of its type, as JSON (NULL for the other lines).
        SELECT file, rt, kind0, CASE WHEN kind0 = {USED} THEN CASE rt {" ".join(values)} END END AS p
        FROM (
          SELECT file, doc, rt, {cls._kind_sql("json_extract_string(doc, '$.id')", kind)} AS kind0
          FROM (
            -- One parse per line for the two fields every line is judged by; the type unquoted.
            SELECT file, doc, json_extract_string(g[1], '$') AS rt,
              CASE WHEN json_extract_string(g[1], '$') = 'Observation' THEN CAST(g[2] AS VARCHAR) END AS code
            FROM (
              SELECT {file} AS file, json AS doc, json_extract(json, ['$.resourceType', '$.code']) AS g
              FROM {source}
            )
          )
        )
      )"""  # noqa: S608

    @staticmethod
    def projection_sql(keys: Mapping[str, tuple[str, ...]], column: str = "line") -> str:
        """SQL: the JSON text ``column`` of a resource of type ``rt``, projected on the keys its view reads.

        A line becomes the JSON array of its values at those keys (``null`` where absent),
        which ``FlatViews.row_from_projection`` reads.
        """
        whens = []
        for rtype, rtype_keys in keys.items():
            if not rtype.isidentifier() or not all(k.isidentifier() for k in rtype_keys):
                raise ValueError(f"not a resource type and JSON keys a view can read: {rtype} {rtype_keys}")
            paths = ", ".join(f"'$.{k}'" for k in rtype_keys)
            # The cast of a list of JSON values is a JSON array once absent values are null.
            whens.append(
                f"WHEN '{rtype}' THEN CAST(list_transform(json_extract({column}, [{paths}]), "
                "lambda x: coalesce(x, 'null'::JSON)) AS VARCHAR)"
            )
        return f"CASE rt {' '.join(whens)} END"

    @staticmethod
    def sorted_rows_sql(line: str = "line") -> str:
        """The kept lines (as ``line``, an expression of the staged ``line``), sorted by patient.

        Each patient's referenced Medications come first (by reference), then their resources
        in input order.
        """
        return f"""
WITH meds AS (
  SELECT mkey, arg_min(line, rowid) AS line FROM staged WHERE mkey IS NOT NULL GROUP BY mkey
),
links AS (
  SELECT DISTINCT pid, mref FROM staged WHERE mref IS NOT NULL
)
SELECT pid, rt, {line} AS line FROM (
  SELECT l.pid AS pid, 'Medication' AS rt, -1 AS ord, m.mkey AS tie, m.line AS line
  FROM links l JOIN meds m ON l.mref = m.mkey
  UNION ALL
  SELECT pid, rt, rowid AS ord, NULL AS tie, line FROM staged WHERE kind = {USED} AND rt <> 'Medication'
)
ORDER BY pid, ord, tie
"""  # noqa: S608

    @classmethod
    def projection_fetch_sql(cls, keys: Mapping[str, tuple[str, ...]]) -> str:
        """Project staged lines on the keys their views read, add Medications, sort by patient.

        The engine projects in its scan instead (:meth:`stage_sql` with :meth:`projection_sql`);
        this is the same projection over lines staged whole.
        """
        return cls.sorted_rows_sql(cls.projection_sql(keys, "line"))

    @staticmethod
    def fetch_sql(kb: KnowledgeBase) -> str:
        """Flatten the kept lines with the views' SQL, add referenced Medications, sort by patient."""
        flat = views_for_kb(kb)
        per_type = " UNION ALL ".join(
            row_sql(
                flat,
                rtype,
                "duckdb",
                # Only integer constants and checked type names are interpolated.
                f"(SELECT CAST(line AS JSON) AS json, pid, mkey, rt, rowid AS ord FROM staged "  # noqa: S608
                f"WHERE kind = {USED} AND rt = '{rtype}')",
                "json",
                carry=("pid", "mkey", "rt", "ord"),
            )
            for rtype in READ_TYPES
        )
        return f"""
WITH flat AS ({per_type}),
meds AS (
  SELECT mkey, arg_min(row, ord) AS row FROM flat WHERE mkey IS NOT NULL GROUP BY mkey
),
links AS (
  SELECT DISTINCT pid, mref FROM staged WHERE mref IS NOT NULL
)
SELECT pid, rt, row FROM (
  SELECT l.pid AS pid, 'Medication' AS rt, -1 AS ord, m.mkey AS tie, m.row AS row
  FROM links l JOIN meds m ON l.mref = m.mkey
  UNION ALL
  SELECT pid, rt, ord, NULL AS tie, row FROM flat WHERE rt <> 'Medication'
)
ORDER BY pid, ord, tie
"""  # noqa: S608

    def screen_fhir(self, source: BulkSource, job: Job, ctx: RunContext) -> Iterator[list[PatientResult]]:
        """Screen a Bulk Data export (see the module documentation)."""
        read = source.read
        by_path = {str(f.path): f.name for f in read}
        for f in source.files:
            ctx.file_stats[f.name] = FileStats()
        if not read:
            return
        pool = WorkerPool(ctx.workers)  # before DuckDB starts its threads, so that it can fork
        try:
            yield from self._screen_fhir(read, by_path, job, ctx, pool)
        finally:
            pool.close()

    def _screen_fhir(
        self, read: tuple[BulkFile, ...], by_path: dict[str, str], job: Job, ctx: RunContext, pool: WorkerPool
    ) -> Iterator[list[PatientResult]]:
        con = self._connect(ctx)
        flat = views_for_kb(ctx.kb)
        keys = {t: k for t, k in flat.keys.items() if k is not None}
        # Every view a plain projection (the shipped ones are): the scan stores each kept line
        # projected on the elements its view reads; otherwise whole, for the views' SQL.
        projected = len(keys) == len(flat.keys)
        keywords, plain = code_keyword_patterns(ctx.kb, "(?i)"), plain_code_pattern()
        paths = [str(f.path) for f in read]
        kinds = CodeKinds(keywords, plain)
        con.create_function(
            CODE_KIND_FUNCTION,
            kinds,
            [duckdb.sqltypes.VARCHAR],
            duckdb.sqltypes.INTEGER,
            type=duckdb.func.ARROW,
            side_effects=False,
        )
        sql = self.stage_sql(
            paths,
            keywords,
            plain,
            keys=keys if projected else None,
            classify=CODE_KIND_FUNCTION,
        )
        try:
            self._run_with_progress(con, sql, "scan", ctx)
        except duckdb.IOException as exc:
            # A damaged file (a truncated gzip stream) stops the scan; DuckDB names the file.
            raise InvalidInputError("input", f"a file could not be read: {exc}") from None
        finally:
            con.remove_function(CODE_KIND_FUNCTION)
            kinds.close()
        types = {str(f.path): f.rtype for f in read}

        def path_of(file: str) -> str:
            return paths[int(file) - 1] if file.isdigit() and 0 < int(file) <= len(paths) else file

        for file, kind, rtype, count in con.execute(
            "SELECT file, kind, rt, count(*) FROM staged GROUP BY ALL"
        ).fetchall():
            path = path_of(file)
            name = by_path.get(path, path)
            stats = ctx.file_stats[name]
            if ctx.suspect_files is not None and (
                kind == MALFORMED or (rtype and types.get(path) and rtype != types.get(path))
            ):
                ctx.suspect_files.add(name)
            stats.lines += count
            if kind == USED:
                stats.used += count
            elif kind in (MALFORMED, NOT_RESOURCE):
                stats.malformed += count
            elif kind == NOT_NEEDED:
                stats.not_needed += count
            else:
                stats.no_patient += count
        for file, label in con.execute(
            f"SELECT file, label FROM staged WHERE kind = {NO_PATIENT} ORDER BY rowid"  # noqa: S608
        ).fetchall():
            path = path_of(file)
            ctx.no_patient.append((by_path.get(path, path), label))
        ctx.after_scan()
        ((total,),) = con.execute(
            f"SELECT count(DISTINCT pid) FROM staged WHERE kind = {USED} AND rt <> 'Medication'"  # noqa: S608
        ).fetchall()
        fetch = self.sorted_rows_sql() if projected else self.fetch_sql(ctx.kb)
        reader = con.sql(fetch).to_arrow_reader(batch_size=8192)
        work = functools.partial(screen_packed_chunk, job=job, projected=projected)
        done = 0
        for results in pool.map(work, _arrow_chunks(reader)):
            done += len(results)
            ctx.progress("assess", done, total)
            yield results

    # -- tables and records -------------------------------------------------------------------

    def screen_table(self, path: Path, job: Job, ctx: RunContext) -> Iterator[list[PatientResult]]:
        """Screen a CSV or Parquet table, one row per patient, sorted by ``patient_id``."""
        pool = WorkerPool(ctx.workers)  # before DuckDB starts its threads, so that it can fork
        try:
            yield from self._screen_table(path, job, ctx, pool)
        finally:
            pool.close()

    def _screen_table(
        self, path: Path, job: Job, ctx: RunContext, pool: WorkerPool
    ) -> Iterator[list[PatientResult]]:
        con = self._connect(ctx)
        if table_reader.is_parquet(path):
            relation = con.read_parquet(str(path))
        else:
            relation = con.read_csv(str(path), header=True, all_varchar=True)
        table_reader.check_columns(relation.columns)
        total = len(relation)
        reader = relation.order("CAST(patient_id AS VARCHAR)").to_arrow_reader(batch_size=4096)

        def records() -> Iterator[Record]:
            for batch in reader:
                for row in batch.to_pylist():
                    yield str(row.get("patient_id")), row

        yield from self._records(records(), table_reader.assess_row, job, ctx, pool=pool, total=total)

    def screen_records(
        self,
        records: Iterable[Record],
        function: RecordFunction,
        job: Job,
        ctx: RunContext,
        total: int | None = None,
    ) -> Iterator[list[PatientResult]]:
        """Screen records built in Python, in the order given (sorted by the caller)."""
        pool = WorkerPool(ctx.workers)
        try:
            yield from self._records(records, function, job, ctx, pool=pool, total=total)
        finally:
            pool.close()

    @staticmethod
    def _records(
        records: Iterable[Record],
        function: RecordFunction,
        job: Job,
        ctx: RunContext,
        *,
        pool: WorkerPool,
        total: int | None,
    ) -> Iterator[list[PatientResult]]:
        work = functools.partial(screen_record_chunk, function=function, job=job)
        done = 0
        for results in pool.map(work, _batched(records, 256)):
            done += len(results)
            ctx.progress("assess", done, total)
            yield results


def _arrow_chunks(reader: Any) -> Iterator[PackedUnit]:
    """Cut the sorted (pid, rt, row) batches into units of whole patients (:func:`_pack`).

    The driver only cuts and copies the row texts; the workers group the rows and read them
    (:func:`magstat.batch.rows.screen_packed_chunk`). A unit holds about
    ``CHUNK_ROWS`` rows or ``CHUNK_BYTES`` bytes, more when one patient has more.
    """
    held: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in reader:
        if not batch.num_rows:
            continue
        held.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
        if rows < CHUNK_ROWS and size < CHUNK_BYTES:
            continue
        table = pa.Table.from_batches(held)
        pids = table.column(0)
        # The first row of the last patient (rows are sorted by patient): the unit ends before it.
        cut = pc.index(pids, pids[-1]).as_py()
        if cut <= 0:
            continue  # one patient so far: read on
        yield _pack(table.slice(0, cut))
        rest = table.slice(cut)
        held, rows, size = rest.to_batches(), rest.num_rows, rest.nbytes
    if held:
        yield _pack(pa.Table.from_batches(held))


def _pack(table: pa.Table) -> PackedUnit:
    """The rows of a unit as :func:`magstat.batch.rows.screen_packed_chunk` takes them.

    Only the unit's own bytes are copied (a pickled slice would carry its whole buffers); the
    row texts stay one block of UTF-8 with their end offsets, each patient id is sent once with
    the end of its rows, and each row's type as one byte, so no Python object is made per row
    here or when the unit is sent.
    """
    pid_column, rtype_column = table.column(0).combine_chunks(), table.column(1).combine_chunks()
    lines = table.column(2).combine_chunks()
    if lines.null_count or pid_column.null_count or rtype_column.null_count:
        raise ValueError("a unit holds an empty patient id, type or row")  # the fetch query never makes one
    patients = pc.run_end_encode(pid_column, run_end_type=pa.int64())
    types = pc.dictionary_encode(rtype_column)
    if len(types.dictionary) > 255:
        raise ValueError("a unit holds more resource types than a byte tells apart")  # the scan keeps eight
    _, offsets, data = lines.buffers()
    if pa.types.is_large_string(lines.type):
        starts = memoryview(offsets).cast("q")
    elif pa.types.is_string(lines.type):
        starts = memoryview(offsets).cast("i")
    else:
        raise ValueError(f"the rows must be text, not {lines.type}")  # the fetch query makes text
    bounds = starts[lines.offset : lines.offset + len(lines) + 1]
    first, last = bounds[0], bounds[-1]
    ends = array.array("q", [b - first for b in bounds[1:]])
    block = memoryview(data)[first:last].tobytes() if data is not None else b""
    return (
        patients.values.to_pylist(),
        array.array("q", patients.run_ends.to_pylist()).tobytes(),
        tuple(types.dictionary.to_pylist()),
        _bytes_of(pc.cast(types.indices, pa.uint8())),
        ends.tobytes(),
        block,
    )


def _bytes_of(values: pa.Array) -> bytes:
    """The values of an Arrow array of one-byte integers without nulls, as bytes."""
    return memoryview(values.buffers()[1])[values.offset : values.offset + len(values)].tobytes()


def _batched(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
