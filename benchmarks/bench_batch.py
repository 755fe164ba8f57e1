"""Batch screening against a bare DuckDB scan of the same NDJSON: throughput and peak memory.

Run from the project root (it takes a few minutes and about 3 GB of temporary disk; the
linearity point ``--sizes 1000,3000,10000`` needs about 15 GB of disk, and with ``--data`` the
populations are kept for the next run):

    .venv/bin/python benchmarks/bench_batch.py [--sizes 1000,3000] [--no-spark] [--data DIR] [--patients DIR]
        [--memory-limit 2GB] [--kinds scan-objects,screen-duckdb] [--src NAME=DIR ...]

To time another magstat beside this checkout's (another commit, or the compiled build), name
its source tree with ``--src NAME=DIR`` (repeatable; ``DIR`` holds the ``magstat`` package, or
is a checkout whose ``src`` does) and add the kind ``screen-duckdb@NAME``, run with
``PYTHONPATH=DIR``. ``--build-compiled DIR`` copies this checkout's ``src`` to ``DIR/src`` and
compiles it there as a wheel built with ``MAGSTAT_COMPILE_CORE=1`` is (the core and the FHIR
reading, see ``hatch_build.py``), prints ``DIR/src`` and stops:

    .venv/bin/python benchmarks/bench_batch.py --build-compiled /tmp/mc
    .venv/bin/python benchmarks/bench_batch.py --data /tmp/flatten-bench --sizes 1000,3000 \
        --kinds scan-objects,screen-duckdb,screen-duckdb@compiled --src compiled=/tmp/mc/src --repeat 3

``--patients`` names the source bundles: a folder holding ``synthea/`` and ``synthea-py/``
(``.json`` or ``.json.gz``); the default is the repository's small test set, ``tests/data``.

For each size (MB of NDJSON) it writes a population with the seeded generator (the
``--patients`` bundles replicated with fresh ids, as a Bulk Data export), warms the page cache, then
runs, each in its own process:

- ``scan-objects``: ``read_ndjson_objects`` over every file, reading each line's
  ``resourceType`` (every line is parsed and validated; one field is read);
- ``scan-read_json``: ``read_json`` over every file (every line parsed into typed columns);
- ``screen-duckdb``: ``magstat screen`` with the DuckDB engine (default settings);
  ``screen-duckdb:N`` with ``N`` worker processes (``:0``: the per-patient step in the
  screening process itself), to see what the workers cost and give;
- ``screen-spark``: ``magstat screen --engine spark`` in local mode (unless ``--no-spark``);
- any ``screen-...`` kind followed by ``@NAME``: the same, with the magstat of ``--src NAME=DIR``.

The kinds run one after the other, round by round (``--repeat`` rounds; Spark in the first
only), so that every kind is measured beside the others in each round. Every DuckDB measurement (the scans and ``magstat screen``) runs under the same
``--memory-limit`` (DuckDB's ``memory_limit``).

It prints one JSON object and Markdown tables: seconds (the fastest of ``--repeat`` runs; one
Spark run) and the CPU seconds of that run, then every round's CPU seconds per kind, CPU seconds (user + system of the process tree), MB/s and patients/s (over the
whole export's bytes), peak resident memory of the process tree (sampled every 20 ms), the load
average around each run, and each run's throughput as a ratio of the scans'; then,
side by side per size, each ``magstat screen`` (DuckDB) over the lean scan (``scan-objects``:
``read_json_objects`` + ``json_extract_string(json, '$.resourceType')``), the issue's bar
being 0.5x; and linearity: elapsed and CPU seconds per GB and peak memory of each run at each
size, with each rate's ratio to the smallest size's (1.00 is linear). Not a test: numbers depend on the machine (and on what else
runs on it, so the load average before and after is printed); compare ratios measured in one
run.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench_common import build_compiled, population, warm

if TYPE_CHECKING:
    import duckdb

# DuckDB and magstat are imported where they are used: ``magstat screen``'s worker processes
# import the main module again, and this script's imports would then be timed as part of it.

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATIENTS = ROOT / "tests" / "data"
AS_OF = dt.date(2020, 1, 1)


# -- children: each measurement runs alone in a fresh process -----------------------------------


def _connect(memory_limit: str | None) -> duckdb.DuckDBPyConnection:
    import duckdb  # noqa: PLC0415 - see the imports

    con = duckdb.connect()
    if memory_limit:
        con.execute("SET memory_limit = ?", [memory_limit])
    return con


def child(kind: str, data: Path, out: Path, memory_limit: str | None = None) -> dict:
    files = sorted(str(p) for p in data.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz")))
    listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    # Imported before the clock starts, for every kind alike (each run's CPU time counts them).
    import duckdb  # noqa: F401, PLC0415 - see the imports at the top

    from magstat.batch import ScreenOptions, screen  # noqa: PLC0415 - see the imports at the top

    start = time.perf_counter()
    if kind == "scan-objects":
        con = _connect(memory_limit)
        rows = con.execute(
            f"SELECT json_extract_string(json, '$.resourceType') AS rt, count(*) FROM read_ndjson_objects({listed}) GROUP BY rt"
        ).fetchall()
        result = {"lines": sum(n for _, n in rows)}
    elif kind == "scan-read_json":
        con = _connect(memory_limit)
        rows = con.execute(
            f"SELECT count(*) FROM read_json({listed}, format = 'newline_delimited', union_by_name = true)"
        ).fetchall()
        result = {"lines": rows[0][0]}
    else:
        # ``screen-duckdb:N`` runs N worker processes (default: by input size).
        engine, _, workers = kind.split("-", 1)[1].partition(":")
        outcome = screen(
            ScreenOptions(
                input=data,
                out=out,
                as_of=AS_OF,
                engine=engine,
                memory_limit=memory_limit if engine == "duckdb" else None,
                workers=int(workers) if workers else None,
            )
        )
        result = {"patients": outcome.summary["patients"], "issues": outcome.issues}
    result["seconds"] = time.perf_counter() - start
    import magstat  # noqa: PLC0415 - imported above through magstat.batch

    result["magstat"] = str(Path(magstat.__file__).parent)
    result["compiled_modules"] = len(_compiled_magstat_modules())
    return result


def _compiled_magstat_modules() -> list[str]:
    """The loaded modules of magstat that come from compiled extension files (any version of magstat)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.startswith("magstat.") and str(getattr(module, "__file__", None) or "").endswith(suffixes)
    )


# -- parent ---------------------------------------------------------------------------------------


def _tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    total, stack = 0, [root]
    page = os.sysconf("SC_PAGE_SIZE")
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm", encoding="utf-8") as handle:
                total += int(handle.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
        stack.extend(children.get(pid, []))
    return total


PR_SET_CHILD_SUBREAPER = 36


def _adopt_orphans() -> None:
    """Become the parent of the run's processes that outlive it (Linux), to count their CPU time.

    ``magstat screen`` starts its workers from a fork server, which leaves when the run's
    process does; without this it would be adopted by init, and its CPU time (and its
    workers') never reach this process's children's usage.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: such processes are not counted
        pass


def _reap_orphans() -> None:
    """Wait for every adopted process (see :func:`_adopt_orphans`), so that its CPU time is counted."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def measure(
    kind: str, data: Path, work: Path, memory_limit: str | None = None, sources: dict[str, Path] | None = None
) -> dict:
    """Run one kind in a fresh process; ``kind@NAME`` runs it with the magstat of ``sources[NAME]``."""
    out = work / f"out-{kind.replace('@', '-at-')}"
    shutil.rmtree(out, ignore_errors=True)
    child_kind, _, name = kind.partition("@")
    env = None
    if name:
        env = {**os.environ, "PYTHONPATH": str((sources or {})[name])}
    command = [sys.executable, __file__, "--child", child_kind, "--data", str(data), "--out", str(out)]
    if memory_limit:
        command += ["--memory-limit", memory_limit]
    load_before = os.getloadavg()[0]
    wall = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.02)
    stdout, _ = proc.communicate()
    _reap_orphans()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed ({proc.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU time of the process and every worker it waited for: less sensitive than elapsed
    # time to other work on a shared machine.
    result["cpu_seconds"] = round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2)
    result["peak_rss_mb"] = round(peak / 2**20)
    result["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    shutil.rmtree(out, ignore_errors=True)
    return result


def _sources(entries: list[str]) -> dict[str, Path]:
    """``NAME=DIR`` entries as name -> the folder holding the ``magstat`` package."""
    found: dict[str, Path] = {}
    for entry in entries:
        name, sep, folder = entry.partition("=")
        if not sep or not name or "@" in name or "," in name:
            raise SystemExit(f"--src {entry!r}: expected NAME=DIR (a name without '@' or ',')")
        path = Path(folder).resolve()
        if not (path / "magstat").is_dir() and (path / "src" / "magstat").is_dir():
            path = path / "src"
        if not (path / "magstat").is_dir():
            raise SystemExit(f"--src {entry!r}: no magstat package in {path}")
        found[name] = path
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,3000", help="MB of NDJSON, comma-separated")
    parser.add_argument("--memory-limit", default="2GB", help="DuckDB memory_limit of every DuckDB run")
    parser.add_argument(
        "--kinds",
        help="comma-separated runs (default: scan-objects, scan-read_json, screen-duckdb, screen-spark)",
    )
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each DuckDB measurement; the fastest is kept"
    )
    parser.add_argument("--data", type=Path, help="keep the generated populations here (default: a temp dir)")
    parser.add_argument(
        "--patients", type=Path, default=DEFAULT_PATIENTS, help="source bundles: synthea/ and synthea-py/"
    )
    parser.add_argument(
        "--src",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another magstat source tree, timed by the kinds ending in @NAME (repeatable)",
    )
    parser.add_argument(
        "--build-compiled",
        type=Path,
        metavar="DIR",
        help="copy src to DIR/src, compile it there with mypyc (MAGSTAT_COMPILE_CORE=1), print DIR/src and stop",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args.out, args.memory_limit)))
        return
    if args.build_compiled:
        print(build_compiled(args.build_compiled))
        return
    sources = _sources(args.src)
    kinds = ["scan-objects", "scan-read_json", "screen-duckdb"] + ([] if args.no_spark else ["screen-spark"])
    if args.kinds:
        kinds = args.kinds.split(",")
    for kind in kinds:
        name = kind.partition("@")[2]
        if name and name not in sources:
            raise SystemExit(f"kind {kind}: no --src {name}=DIR")
    _adopt_orphans()
    base = args.data or Path(tempfile.mkdtemp(prefix="magstat-bench-"))
    report: dict = {
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "duckdb": importlib.metadata.version("duckdb"),
            "load_average_before": os.getloadavg(),
        },
        "memory_limit": args.memory_limit,
        "sources": {name: str(path) for name, path in sources.items()},
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "runs": [],
    }
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            folder = base / f"pop-{size}MB"
            nbytes, patients = population(size, folder, args.patients)
            warm(folder)
            tries: dict[str, list[dict]] = {kind: [] for kind in kinds}
            for round_number in range(args.repeat):  # the kinds alternate, round by round
                for kind in kinds:
                    if kind.startswith("screen-spark") and round_number > 0:
                        continue
                    tries[kind].append(measure(kind, folder, base, args.memory_limit, sources))
                    print(
                        json.dumps({"round": round_number + 1, "kind": kind, **tries[kind][-1]}),
                        file=sys.stderr,
                    )
            for kind in kinds:
                result = dict(min(tries[kind], key=lambda r: r["seconds"]))
                result["all_seconds"] = [round(r["seconds"], 3) for r in tries[kind]]
                result["all_cpu_seconds"] = [r["cpu_seconds"] for r in tries[kind]]
                result.update(kind=kind, size_mb=round(nbytes / 1e6), patients=patients)
                result["mb_per_s"] = round(nbytes / 1e6 / result["seconds"], 1)
                result["patients_per_s"] = round(patients / result["seconds"], 1)
                result["s_per_gb"] = round(result["seconds"] / (nbytes / 1e9), 2)
                result["cpu_s_per_gb"] = round(result["cpu_seconds"] / (nbytes / 1e9), 2)
                report["runs"].append(result)
    finally:
        if args.data is None:
            shutil.rmtree(base, ignore_errors=True)
    report["machine"]["load_average_after"] = os.getloadavg()
    rows = []
    for run in report["runs"]:
        same = {r["kind"]: r for r in report["runs"] if r["size_mb"] == run["size_mb"]}
        for scan in ("scan-objects", "scan-read_json"):
            if scan in same:
                run[f"vs_{scan.replace('-', '_')}"] = round(run["mb_per_s"] / same[scan]["mb_per_s"], 2)
        rows.append(
            f"| {run['size_mb']} | {run['kind']} | {run['seconds']:.2f} | {run['cpu_seconds']:.1f} | "
            f"{run['mb_per_s']:.0f} | {run['patients_per_s']:.0f} | {run['peak_rss_mb']} | "
            f"{run.get('vs_scan_objects', '-')} | {run.get('vs_scan_read_json', '-')} | "
            f"{run['load_average'][0]}-{run['load_average'][1]} |"
        )
    print(json.dumps(report, indent=2))
    print(
        f"\nDuckDB memory_limit {args.memory_limit}; load average before {report['machine']['load_average_before']}, "
        f"after {report['machine']['load_average_after']}"
    )
    print(
        "\n| MB | run | s | CPU s | MB/s | patients/s | peak RSS MB | x scan-objects | x scan-read_json "
        "| load average (1 min) before-after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    sizes = sorted({r["size_mb"] for r in report["runs"]})
    by = {(r["size_mb"], r["kind"]): r for r in report["runs"]}
    print("\nCPU seconds of every round, the kinds alternating within each round:\n")
    print("| MB | run | " + " | ".join(f"round {i + 1}" for i in range(args.repeat)) + " |")
    print("|---|---|" + "---|" * args.repeat)
    for run in report["runs"]:
        cells = [f"{c:.2f}" for c in run["all_cpu_seconds"]] + ["-"] * (
            args.repeat - len(run["all_cpu_seconds"])
        )
        print(f"| {run['size_mb']} | {run['kind']} | " + " | ".join(cells) + " |")
    screens = [k for k in kinds if k.partition("@")[0].partition(":")[0] == "screen-duckdb"]
    if screens and all((size, "scan-objects") in by for size in sizes):
        print("\nScreen (DuckDB) against the lean scan, same run (bar 0.5x; the fastest run of each):\n")
        print(
            "| MB | run | lean scan s | screen s | screen / lean (elapsed) | lean CPU s | screen CPU s "
            "| screen / lean (CPU) | screen peak RSS MB |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for size in sizes:
            lean = by[(size, "scan-objects")]
            for kind in screens:
                run = by[(size, kind)]
                print(
                    f"| {size} | {kind} | {lean['seconds']:.2f} | {run['seconds']:.2f} | "
                    f"{lean['seconds'] / run['seconds']:.2f}x | {lean['cpu_seconds']:.1f} | "
                    f"{run['cpu_seconds']:.1f} | {lean['cpu_seconds'] / run['cpu_seconds']:.2f}x | "
                    f"{run['peak_rss_mb']} |"
                )
    if len(sizes) > 1:
        print(
            "\nLinearity: elapsed and CPU seconds per GB, each with its ratio to the smallest size's "
            "(1.00: linear), and peak RSS:\n"
        )
        kinds_run = list(dict.fromkeys(r["kind"] for r in report["runs"]))
        print("| run | measure | " + " | ".join(f"{s} MB" for s in sizes) + " |")
        print("|---|---|" + "---|" * len(sizes))
        for kind in kinds_run:
            for label, key in (
                ("s/GB", "s_per_gb"),
                ("CPU s/GB", "cpu_s_per_gb"),
                ("peak RSS MB", "peak_rss_mb"),
            ):
                cells = []
                base_rate = None
                for size in sizes:
                    run = by.get((size, kind))
                    if run is None:
                        cells.append("-")
                        continue
                    rate = run[key]
                    if key == "peak_rss_mb":
                        cells.append(str(rate))
                        continue
                    base_rate = base_rate or rate
                    cells.append(f"{rate:.2f} ({rate / base_rate:.2f})")
                print(f"| {kind} | {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
