"""Where the DuckDB engine's staging scan spends its time: the scan taken apart, step by step.

Usage (from the project root)::

    .venv/bin/python benchmarks/bench_stage.py --data /tmp/flatten-bench/pop-1000MB --repeat 7

``--data`` is a Bulk Data export (a folder of ``<Type>.ndjson``), for example one written by
``bench_batch.py --data``. Only the files the screening reads are scanned (those of the types
the adapter needs), by every variant alike, each on a fresh in-memory connection with the
engine's settings (``preserve_insertion_order``, ``--memory-limit``), the variants alternating
within each round. Each variant adds one step to the one before:

- ``lean``: ``read_ndjson_objects`` and each line's ``resourceType`` (the issue's lean scan,
  over the same files as the screen);
- ``parse``: each line's type and ``code`` (the two fields every line is judged by), stored;
- ``classify``: ``parse`` plus the kind of each Observation's code through
  :class:`magstat.batch.engines.duckdb.CodeKinds`;
- ``stage``: the engine's whole staging query (kinds, the kept lines projected on their views'
  keys, patient and Medication references, the staged table);
- ``stage-inline``: the same with the code's regular expressions evaluated on every line in SQL
  instead of once per distinct code;
- ``stage-whole``: the same with kept lines stored whole instead of projected.

Two more bound what the screen can reach against the issue's lean scan, which reads the whole
export: ``lean-export`` is that scan (every file of the export, as ``bench_batch.py`` runs it),
and ``stage-fetch`` is all the DuckDB work of a screen (the staging query, then the sorted rows
fetched as the workers get them, in Arrow batches), without the per-patient step in Python.
``lean-export`` over ``stage-fetch`` is the ratio a screen would reach if that step cost
nothing. ``step`` is that step alone: the units the engine hands its workers (``stage-fetch``'s
rows, cut as the engine cuts them) read and assessed one after another in this one process
(:func:`magstat.batch.rows.screen_packed_chunk`), timed without the query before it; its
``rows`` are the patients assessed.

Three more take one piece out of ``stage``, to see what it costs (their tables are not the
engine's): ``stage-no-file`` (each line's file number a constant), ``stage-no-refs`` (subject
references kept as they are, not parsed into patient ids), ``stage-no-table`` (the rows
counted instead of stored).

Prints one JSON line per run, then the medians and ranges of elapsed and CPU seconds.

With ``--instructions`` each variant instead runs once under ``valgrind --tool=callgrind`` with
one DuckDB thread (the classifier's own connection too) and a fixed hash seed, and the
instructions of a run that does everything but the query are subtracted: a count that the other
jobs on a shared machine do not change, for steps that differ by a few per cent. Counts of the
same variant agree within 1-2 %, but an odd run happens: repeat a count before trusting it. Use
a small export: valgrind runs some 100 times slower.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VARIANTS = (
    "lean-export",
    "lean",
    "parse",
    "classify",
    "stage",
    "stage-inline",
    "stage-whole",
    "stage-fetch",
    "step",
    "stage-no-file",
    "stage-no-refs",
    "stage-no-table",
)


def _files(data: Path) -> list[str]:
    from magstat.batch.readers.fhir_bulk import NEEDED_TYPES  # noqa: PLC0415 - after the path is set

    found = sorted(
        str(p)
        for p in data.iterdir()
        if p.name.endswith((".ndjson", ".ndjson.gz")) and p.name.split(".")[0] in NEEDED_TYPES
    )
    if not found:
        raise SystemExit(f"no NDJSON files of the types the screening reads in {data}")
    return found


def _export_files(data: Path) -> list[str]:
    return sorted(str(p) for p in data.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz")))


def _sql(variant: str, files: list[str]) -> str:
    from magstat.adapters.fhir.flatten import views_for_kb  # noqa: PLC0415
    from magstat.batch.engines import duckdb as engine  # noqa: PLC0415
    from magstat.batch.readers.fhir_bulk import code_keyword_patterns, plain_code_pattern  # noqa: PLC0415
    from magstat.kb import load  # noqa: PLC0415

    kb = load()
    keys = {t: k for t, k in views_for_kb(kb).keys.items() if k is not None}
    keywords, plain = code_keyword_patterns(kb, "(?i)"), plain_code_pattern()
    listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    source = (
        f"read_ndjson_objects({listed}, ignore_errors = true, filename = true, "
        f"maximum_object_size = {engine.MAX_LINE_BYTES})"
    )
    typed = (
        "SELECT json_extract_string(g[1], '$') AS rt, "
        "CASE WHEN json_extract_string(g[1], '$') = 'Observation' THEN CAST(g[2] AS VARCHAR) END AS code "
        f"FROM (SELECT json_extract(json, ['$.resourceType', '$.code']) AS g FROM {source})"
    )
    stage = engine.DuckDBEngine()
    if variant == "step":
        variant = "stage-fetch"
    if variant in ("lean", "lean-export"):
        return (
            "CREATE OR REPLACE TEMP TABLE staged AS SELECT json_extract_string(json, '$.resourceType') AS rt, "
            f"count(*) AS n FROM read_ndjson_objects({listed}) GROUP BY rt"
        )
    if variant == "parse":
        return f"CREATE OR REPLACE TEMP TABLE staged AS {typed}"
    if variant == "classify":
        return (
            f"CREATE OR REPLACE TEMP TABLE staged AS SELECT rt, "
            f"CASE WHEN code IS NOT NULL THEN {engine.CODE_KIND_FUNCTION}(code) END AS kind FROM ({typed})"
        )
    classify = None if variant == "stage-inline" else engine.CODE_KIND_FUNCTION
    sql = stage.stage_sql(
        files, keywords, plain, keys=None if variant == "stage-whole" else keys, classify=classify
    )
    pieces = {
        "stage-no-file": (f"coalesce(CAST(list_position({listed}, filename) AS VARCHAR), filename)", "'1'"),
        "stage-no-refs": ("ELSE CASE WHEN sref IS NULL", "ELSE CASE WHEN true THEN sref WHEN sref IS NULL"),
        "stage-no-table": (
            "CREATE OR REPLACE TEMP TABLE staged AS",
            "CREATE OR REPLACE TEMP TABLE staged AS SELECT count(*) AS n, count(line), count(pid), "
            "count(mref), count(label), count(file) FROM (",
        ),
    }
    if variant in pieces:
        old, new = pieces[variant]
        if old not in sql:
            raise SystemExit(f"{variant}: the staging query no longer has {old[:60]!r}; update this script")
        sql = sql.replace(old, new, 1) + (")" if variant == "stage-no-table" else "")
    return sql


def run(
    variant: str, files: list[str], memory_limit: str, *, threads: int | None = None, execute: bool = True
) -> dict:
    """One variant on a fresh connection: elapsed and CPU seconds of its query, and what it staged.

    ``execute=False`` does everything but the query (the baseline of ``--instructions``).
    """
    import duckdb  # noqa: PLC0415
    import duckdb.func  # noqa: PLC0415
    import duckdb.sqltypes  # noqa: PLC0415

    from magstat.batch.engines import duckdb as engine  # noqa: PLC0415
    from magstat.batch.readers.fhir_bulk import code_keyword_patterns, plain_code_pattern  # noqa: PLC0415
    from magstat.kb import load  # noqa: PLC0415

    sql = _sql(variant, _export_files(Path(files[0]).parent) if variant == "lean-export" else files)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET memory_limit = ?", [memory_limit])
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    kinds = engine.CodeKinds(code_keyword_patterns(load(), "(?i)"), plain_code_pattern())
    if threads:
        kinds.con.execute(f"SET threads = {int(threads)}")  # its own queries too, for steady counts
    con.create_function(
        engine.CODE_KIND_FUNCTION,
        kinds,
        [duckdb.sqltypes.VARCHAR],
        duckdb.sqltypes.INTEGER,
        type=duckdb.func.ARROW,
        side_effects=False,
    )
    if variant == "step":
        con.execute(sql)  # the staging query, not timed
        return _step(con, kinds)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    con.execute(sql if execute else "CREATE OR REPLACE TEMP TABLE staged AS SELECT 1 AS x")
    if execute and variant == "stage-fetch":
        # As the engine hands the rows on: sorted by patient, in Arrow batches of 8192.
        reader = con.sql(engine.DuckDBEngine.sorted_rows_sql()).to_arrow_reader(batch_size=8192)
        for _batch in reader:
            pass
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    ((rows,),) = con.execute("SELECT count(*) FROM staged").fetchall()
    con.close()
    kinds.close()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"variant": variant, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "rows": rows}


def _step(con: Any, kinds: Any) -> dict:
    """The ``step`` variant: the staged rows cut into the engine's units, then read and assessed here."""
    import datetime as dt  # noqa: PLC0415

    from magstat.batch.engines import duckdb as engine  # noqa: PLC0415
    from magstat.batch.rows import Job, screen_packed_chunk  # noqa: PLC0415
    from magstat.kb import load  # noqa: PLC0415

    reader = con.sql(engine.DuckDBEngine.sorted_rows_sql()).to_arrow_reader(batch_size=8192)
    units = list(engine._arrow_chunks(reader))  # the engine's own cutting into units
    con.close()
    kinds.close()
    kb = load()
    job = Job(as_of=dt.date(2025, 1, 1), strict=False, details=False, kb_sha256=kb.sha256)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    patients = sum(len(screen_packed_chunk(unit, job, projected=True)) for unit in units)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"variant": "step", "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "rows": patients}


def instructions(variant: str, data: Path, memory_limit: str) -> int:
    """Instructions of ``variant``'s query alone: a callgrind run of it less one that skips it."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind")
    counts = []
    for execute in ("run", "skip"):
        command = [
            "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, __file__, "--child", variant, execute, "--data", str(data),
            "--memory-limit", memory_limit,
        ]  # fmt: skip
        # A fixed hash seed: the knowledge base's sets are iterated in the same order in every run.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
        if found is None:
            raise SystemExit(f"no instruction count from valgrind for {variant}:\n{done.stderr[-2000:]}")
        counts.append(int(found.group(1).replace(",", "")))
    return counts[0] - counts[1]


def main() -> None:
    if len(sys.argv) > 3 and sys.argv[1] == "--child":  # one run under valgrind (see instructions)
        variant, execute = sys.argv[2], sys.argv[3] == "run"
        rest = argparse.ArgumentParser()
        rest.add_argument("--data", type=Path, required=True)
        rest.add_argument("--memory-limit", default="2GB")
        args = rest.parse_args(sys.argv[4:])
        run(variant, _files(args.data), args.memory_limit, threads=1, execute=execute)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a Bulk Data export folder")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (the variants alternate within each)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated, of: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--memory-limit", default="2GB", help="DuckDB memory_limit of every run")
    parser.add_argument(
        "--instructions", action="store_true", help="count each variant's instructions (valgrind), one thread"
    )
    args = parser.parse_args()
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)} (allowed: {', '.join(VARIANTS)})")
    files = _files(args.data)
    if args.instructions:
        print("| variant | instructions (millions), one DuckDB thread |\n|---|---|")
        for variant in chosen:
            print(
                f"| {variant} | {instructions(variant, args.data, args.memory_limit) / 1e6:,.0f} |",
                flush=True,
            )
        return
    runs: dict[str, list[dict]] = {v: [] for v in chosen}
    for round_no in range(1, args.repeat + 1):
        for variant in chosen:
            result = {"round": round_no, **run(variant, files, args.memory_limit)}
            runs[variant].append(result)
            print(json.dumps(result), flush=True)
    print(f"\n{len(files)} files read; {args.repeat} rounds; DuckDB memory_limit {args.memory_limit}\n")
    print("| variant | elapsed s, median | elapsed s, range | CPU s, median | CPU s, range |")
    print("|---|---|---|---|---|")
    for variant, found in runs.items():
        seconds = [r["seconds"] for r in found]
        cpu = [r["cpu_seconds"] for r in found]
        print(
            f"| {variant} | {statistics.median(seconds):.2f} | {min(seconds):.2f}-{max(seconds):.2f} "
            f"| {statistics.median(cpu):.2f} | {min(cpu):.2f}-{max(cpu):.2f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
