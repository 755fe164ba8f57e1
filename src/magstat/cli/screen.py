"""``magstat screen INPUT --out DIR``: screen a population (FHIR Bulk Data, NHANES, a table).

Writes ``DIR/results.parquet`` (one row per patient), ``DIR/summary.json``, ``DIR/report.html``
and ``DIR/issues.csv``; prints a short summary. Exit codes as for every subcommand: 0 done
(input problems are counted in the summary unless ``--strict``), 2 invalid input or usage
(including an engine whose extra is not installed), 4 output not writable.

``magstat screen --fhir-server BASE_URL --out DIR`` exports from a FHIR server first (Bulk
Data ``$export``, SMART Backend Services with ``--client-id`` and ``--private-key``) into
``DIR/export/`` and screens that folder. Further exit codes: 5 the export could not be
completed (an export error, a file missing or not matching the manifest, the server
unreachable after the retries, the export timed out; nothing is screened), 6 the server
refused the client's authorisation, 130 interrupted (an export still being built is cancelled).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, Literal

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
    parser.add_argument(
        "input",
        type=Path,
        nargs="?",
        help="Bulk Data folder or .ndjson file, NHANES folder, or table (or --fhir-server)",
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (new, empty, or an earlier screening's); required"
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
    _define_server_options(parser)


def _since_arg(text: str) -> str:
    """``--since``: a date (midnight UTC) or a date-time with its time zone, as a FHIR instant."""
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text).isoformat() + "T00:00:00Z"
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since: {text!r} is not a date; allowed: YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone"
        ) from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"--since: {text!r} has no time zone; allowed: YYYY-MM-DD, or a date-time ending in Z or +hh:mm"
        )
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _define_server_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "FHIR server (Bulk Data $export)",
        "Instead of INPUT: export from a FHIR server into OUT/export/ (kept, with its manifest), then "
        "screen it. A rerun with the same request reuses a complete export and resumes an incomplete one.",
    )
    group.add_argument("--fhir-server", metavar="BASE_URL", help="FHIR base URL of a Bulk Data server")
    group.add_argument("--group", metavar="ID", help="group-level export: Group/ID/$export")
    group.add_argument(
        "--patient-level",
        action="store_true",
        help="patient-level export: Patient/$export (default: system level)",
    )
    group.add_argument(
        "--since",
        type=_since_arg,
        metavar="DATE",
        help="_since: only resources changed since DATE (each patient's result then uses those alone)",
    )
    group.add_argument("--client-id", help="SMART Backend Services client id (with --private-key)")
    group.add_argument(
        "--private-key", type=Path, metavar="FILE", help="PEM private key: RSA (RS384) or EC P-384 (ES384)"
    )
    group.add_argument("--key-id", help="kid of the key (default: its RFC 7638 JWK thumbprint)")
    group.add_argument(
        "--jku",
        metavar="URL",
        help="https URL of the client's JWK Set as registered at the server, sent in the assertion header",
    )
    group.add_argument("--scope", help="scopes to ask for (default: system/<Type>.rs for each exported type)")
    group.add_argument(
        "--type-filter",
        action="store_true",
        help="send _typeFilter: Observations by the knowledge base's LOINC codes only (see docs/screening.md)",
    )
    group.add_argument("--new-export", action="store_true", help="ignore a kept export and start a new one")
    group.add_argument(
        "--print-jwks",
        action="store_true",
        help="print the public JWK Set of --private-key (to register the client at the server) and stop",
    )
    group.add_argument(
        "--export-timeout",
        type=float,
        default=6 * 3600.0,
        metavar="SECONDS",
        help="give up (and cancel) when the export is not ready after this long (default: 6 hours)",
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
    if args.engine == "duckdb":
        spark_flags = (("--spark-master", args.spark_master), ("--spark-remote", args.spark_remote))
        given = [flag for flag, value in spark_flags if value] + (["--spark-conf"] if args.spark_conf else [])
        if given:
            raise InvalidInputError(given[0], "given without --engine spark")
    if args.print_jwks:
        return _print_jwks(args)
    if args.out is None:
        raise InvalidInputError("--out", "missing", allowed="--out DIR, the output folder")
    if args.fhir_server and args.input:
        raise InvalidInputError("INPUT", "given with --fhir-server", allowed="one of INPUT or --fhir-server")
    if not args.fhir_server and not args.input:
        raise InvalidInputError("INPUT", "missing", allowed="an input path, or --fhir-server BASE_URL")
    if not args.fhir_server:
        server_only = (
            "group",
            "patient_level",
            "since",
            "client_id",
            "private_key",
            "key_id",
            "scope",
            "jku",
        )
        given = [f"--{n.replace('_', '-')}" for n in server_only if getattr(args, n)]
        if given or args.type_filter or args.new_export:
            flag = given[0] if given else ("--type-filter" if args.type_filter else "--new-export")
            raise InvalidInputError(flag, "given without --fhir-server")
    options = ScreenOptions(
        input=args.input or args.out,
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
        if args.fhir_server:
            code, outcome = _screen_server(args, options)
            if outcome is None:
                return code
        else:
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
        f"  deceased: {summary.get('deceased', 0)} (not assessed; left out of the figures)",
        f"  MDS ({summary['mds_distribution_base']['description']}, n={summary['mds_distribution_base']['n']}): {mds}",
    ]
    if "mds_distribution_weighted" in summary:
        weighted = " ".join(f"{k}:{v:g}%" for k, v in summary["mds_distribution_weighted"].items())
        lines.append(f"  MDS survey-weighted: {weighted}")
    lines.append(f"  input problems: {outcome.issues}" + (" (see issues.csv)" if outcome.issues else ""))
    lines.append(f"  written to {outcome.out}: {', '.join(summary['outputs'])}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _print_jwks(args: argparse.Namespace) -> int:
    """Print the public JWK Set of ``--private-key`` (never the private key)."""
    if not args.private_key:
        raise InvalidInputError("--print-jwks", "needs --private-key FILE")
    try:
        from magstat.batch.bulk.auth import load_client_key  # noqa: PLC0415 - the bulk extra is optional
    except ImportError as exc:
        sys.stderr.write(
            f"magstat: --print-jwks needs the bulk extra: pip install 'magstat[bulk]' ({exc.name} missing)\n"
        )
        return 2
    key = load_client_key(args.private_key, args.key_id)
    sys.stdout.write(json.dumps({"keys": [key.public_jwk()]}, indent=2) + "\n")
    return 0


def _screen_server(args: argparse.Namespace, options: Any) -> tuple[int, Any]:
    """Export from ``--fhir-server`` and screen; return (exit code, outcome or ``None``)."""
    try:
        from magstat.batch import bulk  # noqa: PLC0415 - the bulk extra is optional
        from magstat.batch.bulk.errors import BulkExportError  # noqa: PLC0415
        from magstat.batch.readers.fhir_bulk import NEEDED_TYPES  # noqa: PLC0415
    except ImportError as exc:
        sys.stderr.write(
            f"magstat: --fhir-server needs the bulk extra: pip install 'magstat[bulk]' ({exc.name} missing)\n"
        )
        return 2, None
    url = args.fhir_server
    if not url.startswith(("https://", "http://")):
        raise InvalidInputError("--fhir-server", "is not an http(s) URL", value=url)
    if bool(args.client_id) != bool(args.private_key):
        raise InvalidInputError(
            "--client-id" if args.private_key else "--private-key",
            "missing",
            allowed="--client-id and --private-key together (SMART Backend Services), or neither (an open server)",
        )
    if args.jku and not (args.client_id and args.jku.startswith("https://")):
        raise InvalidInputError(
            "--jku",
            "needs --client-id and --private-key" if not args.client_id else "is not an https URL",
            value=args.jku,
            allowed="the TLS-protected URL of the client's JWK Set, with --client-id and --private-key",
        )
    if args.group and args.patient_level:
        raise InvalidInputError("--group", "given with --patient-level", allowed="one export level")
    if args.export_timeout <= 0:
        raise InvalidInputError("--export-timeout", "must be positive", value=args.export_timeout)
    if url.startswith("http://") and args.client_id:
        sys.stderr.write("magstat screen: warning: sending a client assertion and tokens over plain http\n")
    types = tuple(NEEDED_TYPES)
    type_filter: tuple[str, ...] = ()
    if args.type_filter:
        from magstat.kb import load  # noqa: PLC0415

        codes = sorted({c.code for test in load().tests.values() for c in test.loinc})
        # One query per code: the queries are OR-ed, and none holds a comma of its own.
        type_filter = tuple(f"Observation?code=http://loinc.org|{c}" for c in codes)
    level: Literal["system", "patient", "group"] = (
        "group" if args.group else ("patient" if args.patient_level else "system")
    )
    request = bulk.ExportRequest(
        base_url=url.rstrip("/"),
        level=level,
        group=args.group,
        since=args.since,
        types=types,
        type_filter=type_filter,
    )
    key = bulk.load_client_key(args.private_key, args.key_id) if args.private_key else None
    config = bulk.ServerScreening(
        request=request,
        client_id=args.client_id,
        key=key,
        scope=args.scope or bulk.default_scope(types),
        policy=bulk.RetryPolicy(timeout=args.export_timeout),
        new_export=args.new_export,
        jku=args.jku,
    )
    if args.since:
        sys.stderr.write(
            f"magstat screen: note: --since exports only what changed since {args.since}; each patient's "
            "result uses those resources alone, not the whole record\n"
        )
    try:
        outcome, export = bulk.screen_from_server(config, options)
    except BulkExportError as exc:
        sys.stderr.write(f"magstat: export failed: {exc}\n")
        return exc.exit_code, None
    sys.stdout.write(
        f"magstat screen: export from {url} ({'kept export reused' if export.reused else 'new export'}, "
        f"transactionTime {export.transaction_time}): "
        + ", ".join(f"{k} {v}" for k, v in export.resources.items())
        + (
            f"; server errors: {export.error_resources} OperationOutcome(s) in {bulk.EXPORT_FOLDER}/errors/"
            if export.error_resources
            else ""
        )
        + "\n"
    )
    return 0, outcome
