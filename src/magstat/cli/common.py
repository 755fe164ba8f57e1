"""Helpers shared by the subcommands: dates, the knowledge base, output."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

__all__ = ["as_of_arg", "today", "use_colour"]


def as_of_arg(text: str) -> dt.date:
    """Argparse type for ``--as-of YYYY-MM-DD``."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--as-of: {text!r} is not a date; allowed: YYYY-MM-DD") from None


def today() -> dt.date:
    """The default as-of date: today, in local time (the CLI's edge, never the core's)."""
    return dt.datetime.now().astimezone().date()


def use_colour(stream: object = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ
