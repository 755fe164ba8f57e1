"""What a screening worker costs before its first unit: CPU seconds from its fork to its first task.

Usage (from the project root)::

    .venv/bin/python benchmarks/bench_worker_start.py [--workers 2] [--rounds 5] [--library]
    PYTHONPATH=/tmp/other/src .venv/bin/python benchmarks/bench_worker_start.py   # another tree

Each round writes a small main script that stands for the ``magstat`` command (it imports
``magstat.cli`` at the top, as the console script does, unless ``--library``) and runs it in a
fresh process (so a fresh fork server): it starts a :class:`magstat.batch.parallel.WorkerPool`
as ``magstat screen`` does, and each worker reports ``time.process_time()`` at the start of its
first task: the CPU time of everything a worker does after the fork server forks it (running
the caller's main script again as ``__mp_main__``, the pool's warm-up task). Prints one JSON
line per round, then the median per worker.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """import json, sys
sys.path.insert(0, {folder!r})
{cli}
from bench_worker_start import run_pool

if __name__ == "__main__":
    print(json.dumps(run_pool({workers})))
"""


def _probe(_: int) -> float:
    """CPU seconds this worker has used so far (run as a worker's first task)."""
    time.sleep(0.05)  # so that every worker takes one of the first tasks
    return time.process_time()


def run_pool(workers: int) -> list[float]:
    """Start a pool of ``workers`` and return each worker's CPU seconds at its first task."""
    from magstat.batch.parallel import WorkerPool  # noqa: PLC0415

    pool = WorkerPool(workers)
    try:
        return sorted(pool.map(_probe, range(workers)))
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--library", action="store_true", help="do not import the command line first")
    args = parser.parse_args()
    found: list[float] = []
    folder = str(Path(__file__).resolve().parent)
    cli = "" if args.library else "import magstat.cli  # as the console script does"
    with tempfile.TemporaryDirectory() as tmp:
        child = Path(tmp) / "main.py"
        child.write_text(CHILD.format(folder=folder, cli=cli, workers=args.workers), encoding="utf-8")
        for number in range(1, args.rounds + 1):
            found.extend(_one_round(number, child))
    import magstat  # noqa: PLC0415

    print(
        f"magstat from {magstat.__file__}: median {statistics.median(found):.3f} s of CPU per worker "
        f"before its first task ({len(found)} workers, {args.rounds} rounds, "
        f"{'library' if args.library else 'command line'})"
    )


def _one_round(number: int, child: Path) -> list[float]:
    done = subprocess.run(
        [sys.executable, str(child)], capture_output=True, text=True, check=True, timeout=300
    )
    cpu: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"round": number, "worker_cpu_seconds_before_first_task": cpu}), flush=True)
    return cpu


if __name__ == "__main__":
    sys.exit(main())
