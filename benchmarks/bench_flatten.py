"""CPU time of magstat's Python reading of FHIR, this checkout against another, side by side.

Run from the project root:

    .venv/bin/python benchmarks/bench_flatten.py [--data DIR ...] [--old SRC] [--repeat 5]

``--new`` is this version's ``src`` (default: this checkout's). ``--data`` names folders holding ``synthea/`` and/or ``synthea-py/`` FHIR bundles (``.json`` or
``.json.gz``; default: the repository's ``tests/data``). ``--old`` is the ``src`` folder of
another version (an export of an older commit: ``git archive COMMIT src | tar -x -C /tmp/old``);
both versions run in child processes, one after the other and then again in the other order,
on the same bundles.

Three stages are timed, in CPU seconds of the child (``time.process_time``), the fastest of
``--repeat`` passes over every bundle:

- **rows**: making the view rows from the projections an SQL engine hands over (what
  ``magstat screen`` on DuckDB does per patient: ``FlatViews.row_from_projection`` on the
  JSON array of each resource's values at ``FlatViews.keys``, referenced Medications first);
- **facts_from_rows**: the clinical reading of those rows;
- **facts_from_fhir**: a parsed Bundle to facts (the CLI and the CDS Hooks service), with the
  median and largest bundle.

It also checks that both versions give the same facts: a SHA-256 of the facts of every bundle on
both paths (the rows path and ``facts_from_fhir``), compared between the versions; the run fails
(exit 1) on any difference. Not a test: the numbers depend on the machine; compare ratios
measured in one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import bundle_files, last_date

ROOT = Path(__file__).resolve().parents[1]


def kept_codes(kb: Any, codes: set[str]) -> set[str]:
    """The Observation codes (compact JSON) that ``magstat screen``'s DuckDB scan keeps.

    The same test as its staging query: a code matching one of the knowledge base's keyword
    expressions is kept, so is one that is not plain (the reader judges it); the rest are not.
    """
    import duckdb  # noqa: PLC0415

    from magstat.batch.readers.fhir_bulk import code_keyword_patterns, plain_code_pattern  # noqa: PLC0415

    patterns = code_keyword_patterns(kb, "(?i)")
    test = " OR ".join(["regexp_matches(c, ?)" for _ in patterns] + ["NOT regexp_matches(c, ?)"])
    found = duckdb.execute(
        f"SELECT c FROM unnest(?::VARCHAR[]) AS t(c) WHERE {test}",
        [sorted(codes), *patterns, plain_code_pattern()],
    ).fetchall()
    return {c for (c,) in found}


def code_text(res: dict[str, Any]) -> str:
    """An Observation's code as the scan sees it (compact JSON)."""
    return json.dumps(res.get("code"), separators=(",", ":"), ensure_ascii=False)


def projections(
    bundle: dict[str, Any], keys: dict[str, tuple[str, ...]], kept: set[str]
) -> list[tuple[str, str]]:
    """The (type, projection) texts the scan gives for a bundle's resources, Medications first."""
    meds, others = [], []
    for entry in bundle.get("entry", []):
        res = entry.get("resource", {})
        rtype = res.get("resourceType")
        if rtype not in keys or (rtype == "Observation" and code_text(res) not in kept):
            continue
        text = json.dumps([res.get(k) for k in keys[rtype]], separators=(",", ":"))
        (meds if rtype == "Medication" else others).append((rtype, text))
    return meds + others


def digest(facts: object) -> str:
    """A short hash of the facts' repr (dataclasses: every field, in order)."""
    return hashlib.sha256(repr(facts).encode()).hexdigest()[:16]


def worker(roots: list[Path], repeat: int) -> dict[str, Any]:
    """Time the three stages in this process (the version on ``sys.path``) and hash the facts."""
    from magstat.adapters.fhir import facts_from_fhir, facts_from_rows  # noqa: PLC0415
    from magstat.adapters.fhir.flatten import views_for_kb  # noqa: PLC0415
    from magstat.kb import load  # noqa: PLC0415

    kb = load()
    flat = views_for_kb(kb)
    keys = {t: k for t, k in flat.keys.items() if k is not None}
    raws = [(str(path), data) for path, data in bundle_files(roots)]
    codes = set()
    for _name, raw in raws:
        for entry in json.loads(raw).get("entry", []):
            if entry.get("resource", {}).get("resourceType") == "Observation":
                codes.add(code_text(entry["resource"]))
    kept = kept_codes(kb, codes)
    # Bundles are kept as bytes and parsed when used (untimed): a heap of tens of thousands
    # of parsed resources would make the collector's full passes, not the reading, the cost.
    cases = []
    for name, raw in raws:
        bundle = json.loads(raw)
        cases.append(
            (name, raw, last_date(bundle), projections(bundle, keys, kept), len(bundle.get("entry", [])))
        )

    def make_rows(proj: list[tuple[str, str]]) -> list[Any]:
        return [flat.row_from_projection(t, text, index=i) for i, (t, text) in enumerate(proj)]

    hashes = {}
    for name, raw, as_of, proj, _size in cases:  # warm up, and the facts of both paths
        from_rows = facts_from_rows(make_rows(proj), kb, as_of=as_of, strict=False)
        from_fhir = facts_from_fhir(json.loads(raw), kb, as_of=as_of, strict=False)
        hashes[name] = (digest(from_rows), digest(from_fhir))

    best = {"rows": float("inf"), "facts_from_rows": float("inf"), "facts_from_fhir": float("inf")}
    per_bundle = [float("inf")] * len(cases)
    for _ in range(repeat):
        rows_cpu = reading_cpu = 0.0
        for _name, _raw, as_of, proj, _size in cases:
            start = time.process_time()
            rows = make_rows(proj)
            middle = time.process_time()
            facts_from_rows(rows, kb, as_of=as_of, strict=False)
            rows_cpu += middle - start
            reading_cpu += time.process_time() - middle
        best["rows"] = min(best["rows"], rows_cpu)
        best["facts_from_rows"] = min(best["facts_from_rows"], reading_cpu)
        fhir_cpu = 0.0
        for i, (_name, raw, as_of, _proj, _size) in enumerate(cases):
            bundle = json.loads(raw)
            start = time.process_time()
            facts_from_fhir(bundle, kb, as_of=as_of, strict=False)
            spent = time.process_time() - start
            per_bundle[i] = min(per_bundle[i], spent)
            fhir_cpu += spent
        best["facts_from_fhir"] = min(best["facts_from_fhir"], fhir_cpu)
    sizes = [c[4] for c in cases]
    largest = max(range(len(cases)), key=lambda i: sizes[i])
    return {
        "patients": len(cases),
        "rows": sum(len(c[3]) for c in cases),
        "resources": sum(sizes),
        "best_cpu_s": best,
        "fhir_median_ms": statistics.median(per_bundle) * 1000,
        "fhir_largest_ms": per_bundle[largest] * 1000,
        "largest_resources": sizes[largest],
        "hashes": hashes,
    }


def run_child(src: Path, roots: list[Path], repeat: int) -> dict[str, Any]:
    """Run :func:`worker` in a child process with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    args = [sys.executable, __file__, "--worker", "--repeat", str(repeat)]
    for root in roots:
        args += ["--data", str(root)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> int:
    """Compare the versions and print a table; exit 1 if their facts differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", help="folder with synthea/ and synthea-py/")
    parser.add_argument("--old", type=Path, help="the src folder of the version to compare with")
    parser.add_argument("--new", type=Path, default=ROOT / "src", help="the src folder of this version")
    parser.add_argument("--repeat", type=int, default=5, help="passes per stage (the fastest counts)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    roots = args.data or [ROOT / "tests" / "data"]
    if args.worker:
        print(json.dumps(worker(roots, args.repeat)))
        return 0

    versions = {"new": args.new.resolve()}
    if args.old is not None:
        versions = {"old": args.old.resolve(), "new": args.new.resolve()}
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in versions}
    order = list(versions)
    for round_ in (order, order[::-1]):  # both orders: the machine's load drifts
        for version in round_:
            results[version].append(run_child(versions[version], roots, args.repeat))
    load_after = os.getloadavg()

    first = results["new"][0]
    n = first["patients"]
    print(
        f"# {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; load {load_before[0]:.1f} -> {load_after[0]:.1f}"
    )
    print(
        f"# {n} bundles, {first['resources']} resources, {first['rows']} rows; "
        f"CPU, fastest of {args.repeat} passes, two rounds"
    )
    print(
        "| version | rows us/patient | facts_from_rows us/patient | rows+reading us/row "
        "| facts_from_fhir us/bundle | median bundle ms | largest bundle ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for version, runs in results.items():
        for run in runs:
            cpu = run["best_cpu_s"]
            print(
                f"| {version} | {cpu['rows'] / n * 1e6:.0f} | {cpu['facts_from_rows'] / n * 1e6:.0f} "
                f"| {(cpu['rows'] + cpu['facts_from_rows']) / run['rows'] * 1e6:.1f} "
                f"| {cpu['facts_from_fhir'] / n * 1e6:.0f} | {run['fhir_median_ms']:.2f} "
                f"| {run['fhir_largest_ms']:.2f} ({run['largest_resources']} resources) |"
            )
    status = 0
    if "old" in results:
        old, new = results["old"], results["new"]

        def total(runs: list[dict[str, Any]], stage: str) -> float:
            return min(r["best_cpu_s"][stage] for r in runs)

        for stage in ("rows", "facts_from_rows", "facts_from_fhir"):
            print(f"speed-up {stage}: {total(old, stage) / total(new, stage):.2f}x")
        both = total(old, "rows") + total(old, "facts_from_rows")
        print(
            f"speed-up rows + facts_from_rows: {both / (total(new, 'rows') + total(new, 'facts_from_rows')):.2f}x"
        )
        differ = [k for k in old[0]["hashes"] if old[0]["hashes"][k] != new[0]["hashes"].get(k)]
        same_paths = [k for k in new[0]["hashes"] if new[0]["hashes"][k][0] != new[0]["hashes"][k][1]]
        print(
            f"facts identical old vs new: {len(old[0]['hashes']) - len(differ)}/{len(old[0]['hashes'])} bundles"
        )
        print(f"rows path = facts_from_fhir (new): {n - len(same_paths)}/{n} bundles")
        for name in differ:
            print(f"  DIFFERENT: {name}")
        status = 1 if differ else 0
    return status


if __name__ == "__main__":
    sys.exit(main())
