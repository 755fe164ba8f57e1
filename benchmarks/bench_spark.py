"""Spark screening on a standalone cluster with one worker and with two, side by side in one run.

Run from the project root (needs Java and ``magstat[spark]``; a few minutes per size):

    SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python benchmarks/bench_spark.py [--sizes 30,100] [--data DIR]
        [--worker-memory 1g] [--executor-memory 512m] [--driver-memory 1g] [--gzip]

For each size (MB of NDJSON) it writes a population with the seeded generator
(:mod:`magstat.batch.popgen`, the test bundles of ``tests/data`` replicated with fresh ids) into
``--data`` (default: a folder under the system's temporary directory), warms the page cache,
then, for 1 and 2 workers, starts a master and that many workers on 127.0.0.1 (the helper the
tests use: one core and 1 GB per worker by default), runs ``magstat screen --engine spark
--spark-master spark://...`` in a process of its own and stops the cluster. A DuckDB screening
of the same export is the reference: every Spark run's ``results.parquet`` and ``summary.json``
(but for the engine's name) must have its bytes.

It prints one JSON object and two Markdown tables. The first: seconds (wall time of ``magstat
screen``, Spark session start included), MB/s and patients/s over the export's bytes, the
driver's peak resident memory (sampled every 50 ms: the ``magstat screen`` Python process
alone, and with its Spark driver JVM; executors run in the workers' JVMs and Python workers,
outside it), the speed-up of 2 workers over 1, and the machine's load average before each
run. The second: where each run's time went, as the engine records it
(``spark.magstat.stageTimes``): session start, the scan (read, classify, count per file), the
views' flattening with the shuffle by patient, the tasks' stage (their wall time, and the
seconds all tasks spent reading grouped rows, in the Python step and writing their parts), and
the driver's merge of the parts. The driver's memory at two sizes shows whether it stays flat
as patients grow (its JVM heap is capped at ``--driver-memory``). Not a test: the numbers
depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the cluster helper lives with the tests

from bench_common import population, warm  # noqa: E402
from tests.batch import spark_cluster  # noqa: E402

from magstat.batch import ScreenOptions, screen  # noqa: E402

AS_OF = dt.date(2020, 1, 1)
PATIENTS = ROOT / "tests" / "data"


def _rss(pid: int) -> int:
    """Resident bytes of one process (Linux /proc), 0 once it has ended."""
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (Linux /proc)."""
    total = 0
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    stack = [pid]
    while stack:
        current = stack.pop()
        total += _rss(current)
        stack.extend(children.get(current, []))
    return total


def run_cluster(data: Path, work: Path, workers: int, args: argparse.Namespace) -> dict:
    """Start a master and ``workers`` workers, screen ``data`` on them, stop them."""
    spark_cluster.WORKER_MEMORY = args.worker_memory
    cluster = spark_cluster.start_cluster(work / f"cluster-{workers}", workers=workers)
    out = work / f"out-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    command = [sys.executable, "-m", "magstat", "screen", str(data), "--out", str(out)]
    command += ["--as-of", AS_OF.isoformat(), "--engine", "spark", "--no-progress"]
    command += [
        "--spark-master",
        cluster.master_url,
        "--spark-conf",
        f"spark.executor.memory={args.executor_memory}",
        "--spark-conf",
        f"spark.driver.memory={args.driver_memory}",
        "--spark-conf",
        f"spark.magstat.stageTimes={work / f'stages-{workers}.json'}",
    ]
    load = os.getloadavg()
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = python_peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            python_peak = max(python_peak, _rss(proc.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(
                f"screen on {workers} worker(s) failed:\n{stderr.decode()[-3000:]}\n{cluster.logs()}"
            )
    finally:
        cluster.stop()
    return {
        "workers": workers,
        "seconds": round(seconds, 2),
        "driver_python_peak_rss_mb": round(python_peak / 2**20),
        "driver_peak_rss_mb": round(peak / 2**20),
        "stages": json.loads((work / f"stages-{workers}.json").read_text(encoding="utf-8")),
        "load_before": [round(x, 2) for x in load],
        "out": out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="30,100", help="MB of NDJSON per population, comma-separated")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "magstat-bench-spark")
    parser.add_argument("--worker-memory", default="1g")
    parser.add_argument("--executor-memory", default="512m")
    parser.add_argument(
        "--gzip", action="store_true", help="write .ndjson.gz files (one per type: Spark cannot split them)"
    )
    parser.add_argument("--driver-memory", default="1g", help="the Spark driver JVM's heap")
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        data = args.data / f"bulk-{size}MB{'-gz' if args.gzip else ''}"
        total_bytes, patients = population(size, data, PATIENTS, compress=args.gzip)
        warm(data)
        work = args.data / f"work-{size}MB{'-gz' if args.gzip else ''}"
        work.mkdir(parents=True, exist_ok=True)
        reference = work / "out-duckdb"
        shutil.rmtree(reference, ignore_errors=True)
        start = time.perf_counter()
        screen(ScreenOptions(input=data, out=reference, as_of=AS_OF))
        duck_seconds = time.perf_counter() - start
        runs = [run_cluster(data, work, n, args) for n in (1, 2)]
        expected = [(reference / name).read_bytes() for name in ("results.parquet", "summary.json")]
        for run in runs:
            out = run.pop("out")
            summary = (
                (out / "summary.json").read_bytes().replace(b'"engine": "spark"', b'"engine": "duckdb"', 1)
            )
            # results.parquet and summary.json (but for the engine's name), byte for byte
            run["same_bytes_as_duckdb"] = expected == [(out / "results.parquet").read_bytes(), summary]
            run["mb_per_s"] = round(total_bytes / 1e6 / run["seconds"], 2)
            run["patients_per_s"] = round(patients / run["seconds"], 1)
        rows.append(
            {
                "size_mb": round(total_bytes / 1e6, 1),
                "patients": patients,
                "duckdb_seconds": round(duck_seconds, 2),
                "runs": runs,
                "speedup_2_over_1": round(runs[0]["seconds"] / runs[1]["seconds"], 2),
            }
        )
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "results": rows,
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n\n")
    sys.stdout.write(
        "| MB | patients | workers | s | MB/s | patients/s | driver peak RSS MB (Python / with JVM) "
        "| load before | = DuckDB |\n"
    )
    sys.stdout.write("|---|---|---|---|---|---|---|---|---|\n")
    for row in rows:
        for run in row["runs"]:
            sys.stdout.write(
                f"| {row['size_mb']} | {row['patients']} | {run['workers']} | {run['seconds']} | "
                f"{run['mb_per_s']} | {run['patients_per_s']} | "
                f"{run['driver_python_peak_rss_mb']} / {run['driver_peak_rss_mb']} | "
                f"{' '.join(str(x) for x in run['load_before'])} | {run['same_bytes_as_duckdb']} |\n"
            )
    sys.stdout.write(
        "\n| MB | workers | session | scan | flatten + shuffle | tasks' stage (tasks) "
        "| task-s: input / Python / write | driver merge |\n"
    )
    sys.stdout.write("|---|---|---|---|---|---|---|---|\n")
    for row in rows:
        for run in row["runs"]:
            st = run["stages"]
            task = st["task_seconds"]
            sys.stdout.write(
                f"| {row['size_mb']} | {run['workers']} | {st['session']} | {st['scan']} | "
                f"{st['flatten_and_shuffle']} | {st['assess_stage']} ({st['tasks']}) | "
                f"{task['input']} / {task['python']} / {task['write']} | {st['driver_merge']} |\n"
            )


if __name__ == "__main__":
    main()
