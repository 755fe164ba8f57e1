"""``magstat screen INPUT --out DIR``: screen a population (FHIR Bulk Data, NHANES, a table).

Writes ``DIR/results.parquet`` (one row per patient), ``DIR/summary.json``, ``DIR/report.html``
and ``DIR/issues.csv``; prints a short summary. Exit codes as for every subcommand: 0 done
(input problems are counted in the summary unless ``--strict``), 2 invalid input or usage
(including an engine whose extra is not installed), 4 output not writable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from magstat.cli.common import as_of_arg, today
from magstat.errors import InvalidInputError

__all__ = ["define_parser", "run"]


def _conf(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--spark-conf: {text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def define_parser(sub: Any) -> None:
    """Add the ``screen`` subcommand."""
    parser = sub.add_parser(
        "screen",
        help="screen a population (FHIR Bulk Data, NHANES, CSV/Parquet)",
        description=(
            "Assess every patient of a FHIR Bulk Data export (a folder of <Type>.ndjson[.gz]), an "
            "NHANES folder or a CSV/Parquet table, with the same rules as `magstat assess`. "
            "Writes results.parquet, summary.json, report.html and issues.csv to the output folder, "
            "all at once when the run succeeds. See docs/screening.md."
        ),
    )
    parser.add_argument("input", type=Path, help="Bulk Data folder or .ndjson file, NHANES folder, or table")
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (new, empty, or an earlier screening's)"
    )
    parser.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb", help="default: duckdb")
    parser.add_argument(
        "--input-format", choices=("fhir", "nhanes", "table"), help="default: told from the input"
    )
    parser.add_argument("--as-of", type=as_of_arg, help="date of the assessments (default: today)")
    parser.add_argument("--csv", action="store_true", help="also write results.csv")
    parser.add_argument(
        "--details", action="store_true", help="also write every assessment's JSON (assessments.ndjson.gz)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first malformed line or resource (default: count it, leave it out, go on)",
    )
    parser.add_argument(
        "--nhanes-alcohol",
        choices=("recall", "alq"),
        default="recall",
        help="NHANES heavy drinking from the day-1 24-hour recall (default) or the questionnaire",
    )
    parser.add_argument(
        "--workers", type=int, help="Python processes for the per-patient step (default: by input size)"
    )
    parser.add_argument("--threads", type=int, default=0, help="engine threads (default: all cores)")
    parser.add_argument(
        "--memory-limit",
        default=None,
        help="engine memory cap, e.g. 2GB (DuckDB default 512MB, beyond which it spills to disk; Spark: driver memory)",
    )
    parser.add_argument("--spark-master", help="Spark master URL (default local[*]), e.g. spark://host:7077")
    parser.add_argument("--spark-remote", help="Spark Connect URL, e.g. sc://host:15002")
    parser.add_argument(
        "--spark-conf",
        type=_conf,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on standard error (bars on a terminal, lines with totals elsewhere)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``magstat screen``."""
    try:
        from magstat.batch import ScreenOptions, screen  # noqa: PLC0415 - the batch extra is optional
    except ImportError as exc:
        sys.stderr.write(
            f"magstat: screen needs the batch extra: pip install 'magstat[batch]' ({exc.name} missing)\n"
        )
        return 2
    if args.engine == "duckdb" and (args.spark_master or args.spark_remote or args.spark_conf):
        raise InvalidInputError("--spark-master", "given without --engine spark")
    options = ScreenOptions(
        input=args.input,
        out=args.out,
        as_of=args.as_of or today(),
        input_format=args.input_format,
        engine=args.engine,
        strict=args.strict,
        csv=args.csv,
        details=args.details,
        nhanes_alcohol=args.nhanes_alcohol,
        workers=args.workers,
        threads=args.threads,
        memory_limit=args.memory_limit,
        spark_master=args.spark_master,
        spark_remote=args.spark_remote,
        spark_conf=dict(args.spark_conf),
        progress=not args.no_progress,  # bars on a terminal, plain lines in logs and CI
    )
    try:
        outcome = screen(options)
    except ImportError as exc:
        extra = "spark" if args.engine == "spark" else "batch"
        sys.stderr.write(
            f"magstat: the {args.engine} engine needs: pip install 'magstat[{extra}]' ({exc.name} missing)\n"
        )
        return 2
    summary = outcome.summary
    counts = ", ".join(f"{k} {v}" for k, v in summary["status_counts"].items() if v)
    mds = " ".join(f"{k}:{v:g}%" for k, v in summary["mds_distribution"].items())
    lines = [
        f"magstat screen: {summary['patients']} patients ({summary['input']['format']}, {summary['engine']}), "
        f"as of {summary['as_of']}",
        f"  status: {counts or 'none'}",
        f"  MDS ({summary['mds_distribution_base']['description']}, n={summary['mds_distribution_base']['n']}): {mds}",
    ]
    if "mds_distribution_weighted" in summary:
        weighted = " ".join(f"{k}:{v:g}%" for k, v in summary["mds_distribution_weighted"].items())
        lines.append(f"  MDS survey-weighted: {weighted}")
    lines.append(f"  input problems: {outcome.issues}" + (" (see issues.csv)" if outcome.issues else ""))
    lines.append(f"  written to {outcome.out}: {', '.join(summary['outputs'])}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
