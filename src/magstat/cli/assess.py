"""``magstat assess FILE|-``: assess one patient from a FHIR R4 input or a patient document."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from magstat import __version__
from magstat.adapters.cds_hooks.fhir_out import risk_assessment_json
from magstat.adapters.read import facts_from_data, read_input
from magstat.cli.common import as_of_arg, today, use_colour
from magstat.core.assess import assess
from magstat.kb import load
from magstat.render import render_html, render_json, render_text

__all__ = ["define_parser", "run"]


def define_parser(sub: Any) -> None:
    """Add the ``assess`` subcommand."""
    parser = sub.add_parser(
        "assess",
        help="assess one patient",
        description=(
            "Assess one patient from a FHIR R4 Bundle or resource, or a magstat patient document "
            "(JSON or YAML; see `magstat schema`). The kind is detected from the content."
        ),
    )
    parser.add_argument("file", help="input file, or - for standard input (gzip accepted)")
    parser.add_argument(
        "--format",
        choices=("text", "json", "html", "fhir"),
        default="text",
        help=(
            "output format: text (default), json, html, or fhir "
            "(a FHIR R4 RiskAssessment, the same as POST /assess?format=fhir)"
        ),
    )
    parser.add_argument(
        "--as-of",
        type=as_of_arg,
        help="date the assessment is for (default: the document's as_of, else today)",
    )
    parser.add_argument("--patient", help="FHIR Patient.id to assess when the bundle holds several")
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="leave out FHIR resources that fail checks (each is listed) instead of refusing the input",
    )
    parser.add_argument("--no-cite", action="store_true", help="text output without source ids")
    parser.add_argument("-o", "--output", help="write to this file instead of standard output")


def run(args: argparse.Namespace) -> int:
    """Run ``magstat assess``."""
    kb = load()
    data = read_input(args.file, sys.stdin.buffer)
    as_of = args.as_of
    if as_of is None and not (isinstance(data, dict) and "resourceType" not in data and data.get("as_of")):
        as_of = today()
    facts = facts_from_data(data, kb, as_of=as_of, strict=not args.lenient, patient_id=args.patient)
    result = assess(facts, kb)
    if args.format == "json":
        text = render_json(result)
    elif args.format == "html":
        text = render_html(result, kb)
    elif args.format == "fhir":
        text = risk_assessment_json(result, kb, version=__version__)
    else:
        text = render_text(result, kb, colour=args.output is None and use_colour(), cite=not args.no_cite)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0
