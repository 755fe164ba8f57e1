"""Throughput of the core and of FHIR-bundle-to-assessment, on synthetic Synthea patients.

Run from the project root:

    .venv/bin/python benchmarks/bench_core.py [--seconds 5] [--patients DIR]
    .venv/bin/python benchmarks/bench_core.py --compare OLD/src [--compare OTHER/src] [--rounds 3]

``--patients`` names a folder holding ``synthea/`` and ``synthea-py/`` FHIR bundles (``.json``
or ``.json.gz``); the default is the repository's small test set, ``tests/data``.

It prints one JSON object: patients per second of ``assess`` on facts already built (one core,
one process) with the bar (20,000/s on full lifetime records) and whether it was met, and the
per-patient time of parse + FHIR adapter + assess for each data set. Rates are given per second
of elapsed time and per second of this process's CPU time (steadier on a shared machine), with
the load average at the start. Not a test: the numbers depend on the machine; compare ratios
measured in one run.

``--compare SRC`` (repeatable) names the ``src`` folder of another checkout of magstat (for
instance ``git worktree add /tmp/core-old b3a5971`` gives ``/tmp/core-old/src``). Each round then
runs this benchmark once per checkout, each in its own process (``PYTHONPATH=SRC``), the
compared checkouts first and this one last, for ``--rounds`` rounds; it prints each run's rates
and, per checkout, the median CPU-time rate and its ratio to the first compared checkout. Runs
that alternate in one sitting share the machine's state, so their ratio is what to quote on a
shared machine.

A compiled core is compared the same way: ``--build-compiled DIR`` copies this checkout's
``src`` to ``DIR/src`` and compiles the core and the FHIR reading there with mypyc, as
``MAGSTAT_COMPILE_CORE=1`` does for a wheel (``hatch_build.py``: mypy from this environment and a C compiler are needed);
``--compare DIR/src`` then times it beside the others. Each run reports which modules of the
core and the knowledge base it loaded compiled (``compiled_modules``), so that a tree that did
not load as compiled is seen.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.machinery
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import build_compiled, bundle_files, last_date

from magstat.adapters.fhir import facts_from_fhir
from magstat.adapters.read import facts_from_data
from magstat.core import assess
from magstat.demo import demo_patients
from magstat.kb import load

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATIENTS = ROOT / "tests" / "data"


BAR_PER_SECOND = 20_000
"""The bar for ``assess`` on full lifetime records, one core (issue: bedside speed)."""


def compiled_modules() -> list[str]:
    """The loaded modules of the core and the knowledge base that come from compiled extension files."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.startswith(("magstat.core", "magstat.kb"))
        and str(getattr(module, "__file__", "")).endswith(suffixes)
    )


def loop(facts: list, kb: object, seconds: float) -> tuple[int, float, float]:
    """Assess every facts object repeatedly for about ``seconds``; return (count, elapsed, cpu)."""
    for f in facts:  # warm up: the knowledge base's prepared tables, caches
        assess(f, kb)
    count = 0
    start = time.perf_counter()
    cpu = time.process_time()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for f in facts:
            assess(f, kb)
        count += len(facts)
    return count, time.perf_counter() - start, time.process_time() - cpu


def compare(sources: list[Path], rounds: int, seconds: float, patients: Path) -> None:
    """Run this benchmark for each checkout in turn, ``rounds`` times; print rates and ratios."""
    sides = [*(str(s.resolve()) for s in sources), str(ROOT / "src")]
    names = [*(str(s) for s in sources), "this checkout"]
    load_average = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_no in range(1, rounds + 1):
        for name, src in zip(names, sides, strict=True):
            env = {**os.environ, "PYTHONPATH": src}
            command = [sys.executable, str(Path(__file__).resolve()), "--seconds", str(seconds)]
            command += ["--patients", str(patients)]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
            result = json.loads(out)
            runs[name].append(result)
            print(
                f"round {round_no} {name}: assess/CPU s {result['assess_per_cpu_second']}, "
                f"/s {result['assess_per_second']}, compact/CPU s {result['assess_per_cpu_second_compact']}, "
                f"load {result['load_average_1_5_15_min'][0]}, compiled modules {len(result['compiled_modules'])}",
                file=sys.stderr,
            )
    base = statistics.median(r["assess_per_cpu_second"] for r in runs[names[0]])
    base_compact = statistics.median(r["assess_per_cpu_second_compact"] for r in runs[names[0]])
    summary = {}
    for name in names:
        cpu = statistics.median(r["assess_per_cpu_second"] for r in runs[name])
        compact = statistics.median(r["assess_per_cpu_second_compact"] for r in runs[name])
        summary[name] = {
            "assess_per_cpu_second": [r["assess_per_cpu_second"] for r in runs[name]],
            "assess_per_second": [r["assess_per_second"] for r in runs[name]],
            "assess_per_cpu_second_compact": [r["assess_per_cpu_second_compact"] for r in runs[name]],
            "compiled_modules": runs[name][0]["compiled_modules"],
            "median_per_cpu_second": round(cpu),
            "ratio_cpu_to_first": round(cpu / base, 3),
            "median_per_cpu_second_compact": round(compact),
            "ratio_cpu_compact_to_first": round(compact / base_compact, 3),
        }
    print(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                "patients_folder": str(patients),
                "rounds": rounds,
                "seconds_per_loop": seconds,
                "load_average_1_5_15_min_at_start": load_average,
                "load_average_1_5_15_min_at_end": [round(x, 2) for x in os.getloadavg()],
                "checkouts": summary,
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="time budget of the assess loop")
    parser.add_argument(
        "--patients", type=Path, default=DEFAULT_PATIENTS, help="folder with synthea/ and synthea-py/"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="SRC",
        help="the src folder of another checkout to run beside this one (repeatable)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the comparison")
    parser.add_argument(
        "--build-compiled",
        type=Path,
        metavar="DIR",
        help="copy src to DIR/src, compile the core and the FHIR reading there with mypyc, print DIR/src and stop",
    )
    args = parser.parse_args()
    if args.build_compiled:
        print(build_compiled(args.build_compiled))
        return
    if args.compare:
        compare(args.compare, args.rounds, args.seconds, args.patients)
        return
    load_average = [round(x, 2) for x in os.getloadavg()]
    kb = load()
    raw = [(path.parent.name, data) for path, data in bundle_files([args.patients])]
    facts = []
    per_patient_ms = {"synthea": [], "synthea-py": []}
    for name, data in raw:
        start = time.perf_counter()
        bundle = json.loads(data)
        as_of = last_date(bundle)
        f = facts_from_fhir(bundle, kb, as_of=as_of, strict=False)
        assess(f, kb)
        elapsed = (time.perf_counter() - start) * 1000
        per_patient_ms[name].append(elapsed)
        facts.append(f)
    # The assess loop: facts already built, one core. Full lifetime records (hundreds of labs,
    # conditions and orders each) and compact documents (what a clinician enters) are timed
    # separately.
    count, elapsed, cpu = loop(facts, kb, args.seconds)
    compact = [
        facts_from_data(data, kb, as_of=as_of)
        for _, _, data, as_of in demo_patients()
        if "resourceType" not in data
    ]
    compact_count, compact_elapsed, compact_cpu = loop(compact, kb, args.seconds)
    print(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).date().isoformat(),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                "patients": len(facts),
                "patients_folder": str(args.patients),
                "load_average_1_5_15_min": load_average,
                "assess_per_second": round(count / elapsed),
                "assess_per_cpu_second": round(count / cpu),
                "assess_us_per_patient": round(elapsed / count * 1e6, 1),
                "bar_per_second": BAR_PER_SECOND,
                "bar_met": count / elapsed >= BAR_PER_SECOND,
                "compact_documents": len(compact),
                "assess_per_second_compact": round(compact_count / compact_elapsed),
                "assess_per_cpu_second_compact": round(compact_count / compact_cpu),
                "bundle_to_assessment_ms": {
                    k: {"median": round(statistics.median(v), 1), "max": round(max(v), 1), "n": len(v)}
                    for k, v in per_patient_ms.items()
                },
                "bundle_mb": round(sum(len(d) for _, d in raw) / 1e6, 1),
                "compiled_modules": compiled_modules(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
