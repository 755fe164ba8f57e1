"""``magstat schema``: print the JSON Schema of the patient document."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from magstat.adapters.document import json_schema
from magstat.kb import load

__all__ = ["define_parser", "run"]


def define_parser(sub: Any) -> None:
    """Add the ``schema`` subcommand."""
    sub.add_parser("schema", help="print the JSON Schema of the patient document")


def run(args: argparse.Namespace) -> int:
    """Run ``magstat schema``."""
    sys.stdout.write(json.dumps(json_schema(load()), indent=2) + "\n")
    return 0
