"""Throughput of the core and of FHIR-bundle-to-assessment, on synthetic Synthea patients.

Run from the project root:

    .venv/bin/python benchmarks/bench_core.py [--seconds 5] [--patients DIR]

``--patients`` names a folder holding ``synthea/`` and ``synthea-py/`` FHIR bundles (``.json``
or ``.json.gz``); the default is the repository's small test set, ``tests/data``.

It prints one JSON object: patients per second of ``assess`` on facts already built (one core,
one process) with the bar (20,000/s on full lifetime records) and whether it was met, and the
per-patient time of parse + FHIR adapter + assess for each data set. Rates are given per second
of elapsed time and per second of this process's CPU time (steadier on a shared machine), with
the load average at the start. Not a test: the numbers depend on the machine; compare ratios
measured in one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import statistics
import time
from pathlib import Path

from magstat.adapters.fhir import facts_from_fhir
from magstat.adapters.read import facts_from_data
from magstat.core import assess
from magstat.demo import demo_patients
from magstat.kb import load

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATIENTS = ROOT / "tests" / "data"


def bundles(root: Path) -> list[tuple[str, bytes]]:
    """Every patient bundle of both sets under ``root``, as (set name, raw JSON bytes)."""
    out = []
    for name in ("synthea", "synthea-py"):
        for path in sorted((root / name).glob("*.json*")):
            if path.name.startswith(("hospital", "practitioner")) or not path.name.endswith((".json", ".gz")):
                continue
            raw = path.read_bytes()
            out.append((name, gzip.decompress(raw) if path.name.endswith(".gz") else raw))
    if not out:
        raise SystemExit(f"no FHIR bundles in {root}/synthea or {root}/synthea-py")
    return out


def last_date(bundle: dict) -> dt.date:
    """The latest clinical date in a bundle: a meaningful as-of date for a record that ended."""
    latest = "1900-01-01"
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        for key in ("effectiveDateTime", "authoredOn", "recordedDate", "issued"):
            value = resource.get(key)
            if isinstance(value, str) and value > latest:
                latest = value
    return dt.date.fromisoformat(latest[:10])


BAR_PER_SECOND = 20_000
"""The bar for ``assess`` on full lifetime records, one core (issue: bedside speed)."""


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="time budget of the assess loop")
    parser.add_argument(
        "--patients", type=Path, default=DEFAULT_PATIENTS, help="folder with synthea/ and synthea-py/"
    )
    args = parser.parse_args()
    load_average = [round(x, 2) for x in os.getloadavg()]
    kb = load()
    raw = bundles(args.patients)
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
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
