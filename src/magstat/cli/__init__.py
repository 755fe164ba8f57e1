"""The ``magstat`` command: a thin layer that parses arguments, calls the core and renders.

Exit codes (stable): 0 success; 2 invalid input or usage; 3 knowledge base invalid;
4 output could not be written; 70 internal error (a bug: please report it).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from magstat import __version__
from magstat.cli import assess, demo, feedback, kb, schema, screen, serve, views
from magstat.errors import InvalidInputError, KnowledgeBaseError

__all__ = ["EXIT_INTERNAL", "EXIT_INVALID", "EXIT_KB", "EXIT_OK", "EXIT_OUTPUT", "main", "main_cli"]

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_KB = 3
EXIT_OUTPUT = 4
EXIT_INTERNAL = 70

_COMMANDS = {
    "assess": assess,
    "screen": screen,
    "serve": serve,
    "kb": kb,
    "schema": schema,
    "demo": demo,
    "feedback": feedback,
    "views": views,
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in magstat's one-line style, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"magstat: error: {message}\n")
        raise SystemExit(EXIT_INVALID)


class _Version(argparse.Action):
    """``--version``: the version and which build of the core runs (found only when asked)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=str(kwargs.get("help"))
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from magstat.build_info import core_is_compiled  # noqa: PLC0415 - imports the core, only when asked

        build = "compiled core (mypyc)" if core_is_compiled() else "pure-Python core"
        sys.stdout.write(f"magstat {__version__}, {build}\n")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="magstat",
        description="Assess magnesium status with explained, cited findings. Decision support, not diagnosis.",
    )
    parser.add_argument(
        "--version", action=_Version, help="show the version and which build of the core runs, and exit"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _COMMANDS.values():
        module.define_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``magstat`` with ``argv``; return the exit code (never raises for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_INVALID
    try:
        return int(_COMMANDS[args.command].run(args))
    except InvalidInputError as exc:
        sys.stderr.write(f"magstat: invalid input: {exc.message}\n")
        return EXIT_INVALID
    except KnowledgeBaseError as exc:
        sys.stderr.write(f"magstat: knowledge base error: {exc}\n")
        return EXIT_KB
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        sys.stderr.write(f"magstat: cannot write output{where}: {exc.strerror or exc}\n")
        return EXIT_OUTPUT


def main_cli() -> None:
    """Console entry point: exit with :func:`main`'s code; an unexpected error is reported in one line."""
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:
        sys.stderr.write(f"magstat: internal error ({type(exc).__name__}); please report this bug\n")
        code = EXIT_INTERNAL
    sys.exit(code)
