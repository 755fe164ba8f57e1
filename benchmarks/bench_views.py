"""``magstat views run`` over a Bulk Data export: time, CPU and peak memory, side by side.

Run from the project root:

    .venv/bin/python benchmarks/bench_views.py --data /tmp/flatten-bench/pop-1000MB \
        [--views magstat_observation,magstat_condition] [--formats ndjson,parquet] \
        [--engine duckdb] [--src old=/tmp/old/src] [--repeat 3]

Each run is ``magstat views run VIEW --input DATA --format F --out FILE`` in a fresh process
(the analyst's command: a view shipped with the knowledge base over every file of the export).
``--src NAME=DIR`` adds another magstat (a ``src`` folder, for example ``git archive COMMIT src |
tar -x -C /tmp/old``), run with ``PYTHONPATH=DIR``; the trees alternate within each round, so
that each is measured beside the others. Each run's elapsed and CPU seconds (user + system of
the process) and its peak resident memory (its ``VmHWM``, sampled) are recorded; the
table gives the median of ``--repeat`` rounds, the other trees' over this checkout's, and
whether every tree wrote the same rows (NDJSON compared row by row as parsed JSON, keys in
order; Parquet as tables). Not a test: numbers depend on the machine; compare ratios measured
in one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mb(pid: int) -> int | None:
    """The process's peak resident memory so far (``VmHWM``), or ``None`` once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def run_once(src: Path, view: str, data: Path, fmt: str, engine: str, out: Path) -> dict:
    """One ``magstat views run`` in a fresh process: seconds, CPU seconds, peak RSS.

    The peak is the process's own ``VmHWM``, sampled every 10 ms: ``ru_maxrss`` would count
    the memory of this process, which the child is forked from before it runs magstat.
    """
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "magstat", "views", "run", view, "--input", str(data)]
    command += ["--format", fmt, "--engine", engine, "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, _peak_rss_mb(proc.pid) or 0)
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{src} {view} {fmt}: exit {proc.returncode}\n{err[-2000:]}")
    return {
        "seconds": round(seconds, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mb": peak,
    }


def _json_cell(value: object) -> object:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def digest(path: Path, fmt: str) -> str:
    """A SHA-256 of what a run wrote, as parsed rows, read a batch at a time (this process stays small)."""
    sha = hashlib.sha256()
    if fmt == "parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415 - only for Parquet runs

        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
            for row in batch.to_pylist():
                # An object or list cell is JSON text: compared as JSON, whatever its spacing
                # or escaping of letters beyond ASCII.
                cells = [(k, _json_cell(v)) for k, v in row.items()]
                sha.update(json.dumps(cells, default=str).encode())
        return sha.hexdigest()
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = line if fmt == "csv" else json.dumps(list(json.loads(line).items()))
            sha.update(row.encode())
    return sha.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a Bulk Data export (folder of NDJSON)")
    parser.add_argument("--views", default="magstat_observation", help="comma-separated shipped view names")
    parser.add_argument("--formats", default="ndjson,parquet", help="comma-separated: ndjson, csv, parquet")
    parser.add_argument("--engine", default="duckdb", choices=("duckdb", "python", "spark"))
    parser.add_argument("--src", action="append", default=[], help="NAME=DIR: another magstat's src folder")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    trees = {"this": ROOT / "src"}
    for item in args.src:
        name, _, folder = item.partition("=")
        if not name or not folder or not (Path(folder) / "magstat").is_dir():
            raise SystemExit(f"--src {item}: expected NAME=DIR, DIR holding the magstat package")
        trees[name] = Path(folder)
    views = [v for v in args.views.split(",") if v]
    formats = [f for f in args.formats.split(",") if f]
    results: dict[tuple[str, str, str], list[dict]] = {}
    same: dict[tuple[str, str], bool] = {}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-views-") as tmp:
        for round_no in range(1, args.repeat + 1):
            for view in views:
                for fmt in formats:
                    outputs = {}
                    for name, src in trees.items():
                        out = Path(tmp) / f"{name}-{view}.{fmt}"
                        out.unlink(missing_ok=True)
                        result = run_once(src, view, args.data, fmt, args.engine, out)
                        results.setdefault((view, fmt, name), []).append(result)
                        print(
                            json.dumps(
                                {"round": round_no, "view": view, "format": fmt, "tree": name, **result}
                            )
                        )
                        if round_no == 1:
                            outputs[name] = digest(out, fmt)
                    if round_no == 1:
                        first = next(iter(outputs.values()))
                        same[(view, fmt)] = all(o == first for o in outputs.values())
                        outputs.clear()
        load.append(os.getloadavg()[0])
    print(
        f"\n{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"engine {args.engine}; {args.repeat} rounds; load average {load[0]:.1f} before, {load[1]:.1f} after\n"
    )
    print("| view | format | tree | s (median) | CPU s | peak RSS MB | s over this | same rows |")
    print("|---|---|---|---|---|---|---|---|")
    for view in views:
        for fmt in formats:
            base = statistics.median(r["seconds"] for r in results[(view, fmt, "this")])
            for name in trees:
                found = results[(view, fmt, name)]
                seconds = statistics.median(r["seconds"] for r in found)
                cpu = statistics.median(r["cpu_seconds"] for r in found)
                rss = max(r["peak_rss_mb"] for r in found)
                print(
                    f"| {view} | {fmt} | {name} | {seconds:.2f} | {cpu:.2f} | {rss} | "
                    f"{seconds / base:.2f} | {'yes' if same[(view, fmt)] else 'NO'} |"
                )


if __name__ == "__main__":
    sys.exit(main())
