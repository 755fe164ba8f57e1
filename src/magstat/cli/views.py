"""``magstat views run|test|list|show``: SQL on FHIR v2 views from the command line.

``run`` evaluates one ViewDefinition (a JSON file, or a view shipped with the knowledge base
by name) over FHIR data and writes its rows; ``test`` runs the specification's conformance
files and writes its test report; ``list`` and ``show`` look at the views shipped with the
knowledge base (``magstat/kb/data/views``: magstat's own flattening of FHIR, versioned and
hashed with the knowledge base).

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from magstat.errors import InvalidInputError

_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # the core install, without extras: the standard library alone
    _orjson = None

__all__ = ["define_parser", "run"]

SPOOL_BYTES = 16 << 20
"""Rows for standard output are kept in memory up to this size, then in a temporary file."""


def define_parser(sub: Any) -> None:
    """Add the ``views`` subcommand and its actions."""
    parser = sub.add_parser("views", help="SQL on FHIR v2 views: run, test, list, show")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run_p = actions.add_parser("run", help="evaluate one ViewDefinition and write its rows")
    run_p.add_argument("view", help="a ViewDefinition JSON file, or the name of a shipped view (views list)")
    run_p.add_argument(
        "--input", required=True, help="NDJSON file or folder (plain or gzip), JSON array or Bundle"
    )
    run_p.add_argument("--engine", choices=("duckdb", "spark", "python"), default="duckdb")
    _spark_arguments(run_p)
    run_p.add_argument("--format", choices=("ndjson", "csv", "parquet"), default="ndjson")
    run_p.add_argument(
        "--out", default="-", help="output file, an existing folder (<view name>.<format>), or - for stdout"
    )
    test_p = actions.add_parser("test", help="run SQL on FHIR conformance test files")
    test_p.add_argument("files", nargs="+", help="test files (JSON)")
    test_p.add_argument("--engine", choices=("duckdb", "spark", "python"), default="duckdb")
    _spark_arguments(test_p)
    test_p.add_argument("--report", help="write the test report (JSON) here")
    actions.add_parser("list", help="list the views shipped with the knowledge base")
    show_p = actions.add_parser("show", help="print one shipped view")
    show_p.add_argument("name", help="the view's name (see views list)")


def _spark_arguments(parser: Any) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--spark-master", help="with --engine spark: a master URL (default local[2]), e.g. spark://host:7077"
    )
    group.add_argument(
        "--spark-remote", help="with --engine spark: a Spark Connect URL, e.g. sc://host:15002"
    )


def _engine_options(args: Any) -> dict[str, str]:
    """The engine's options from ``--spark-master``/``--spark-remote`` (refused without Spark)."""
    given = {
        key: value
        for key, value in (("master", args.spark_master), ("remote", args.spark_remote))
        if value is not None
    }
    if given and args.engine != "spark":
        flag = "--spark-master" if "master" in given else "--spark-remote"
        raise InvalidInputError(flag, "is given without --engine spark", value=next(iter(given.values())))
    return given


def _shipped() -> dict[str, str]:
    """The views shipped with the knowledge base: name (file stem) -> JSON text."""
    from magstat.kb import load  # noqa: PLC0415 - keeps the CLI start fast

    return dict(sorted(load().views.items()))


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return _compact(value)
    return value


def _compact(value: Any) -> str:
    """An object or list as compact JSON text, UTF-8 unescaped (a CSV or Parquet cell)."""
    return _json_bytes(value).decode("utf-8")


def _json_bytes(value: Any) -> bytes:
    """Compact JSON, UTF-8 unescaped: orjson where installed, else the standard library alike."""
    if _orjson is not None:
        try:
            return bytes(_orjson.dumps(value))
        except TypeError:  # an integer beyond 64 bits, which orjson does not write
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _write_atomic(out: str, write: Any) -> None:
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=f".{target.name}.")
    os.close(fd)
    try:
        write(temp)
        Path(temp).replace(target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


PARQUET_ROWS = 65_536
"""Rows per Parquet row group: the writer holds one group in memory, whatever the input's size."""


def _parquet_kind(column: Any) -> str:
    """``text``, ``boolean``, ``integer`` or ``decimal``: how a view column is stored in Parquet."""
    from magstat.views.definition import INTEGER_TYPES  # noqa: PLC0415 - keeps the CLI start fast

    if column.collection:
        return "text"  # the values as a JSON array
    if column.type in INTEGER_TYPES:
        return "integer"
    return column.type if column.type in ("boolean", "decimal") else "text"


_INT64 = (-(2**63), 2**63 - 1)


def _parquet_value(value: Any, kind: str, name: str, number: int, view_type: str | None) -> Any:
    """One cell as its Parquet column holds it; a value of another type is refused, never guessed.

    Raises:
        InvalidInputError: the value does not fit the type the view gives the column.

    """
    if value is None:
        return None
    if kind == "text":
        return value if isinstance(value, str) else _compact(value)
    if kind == "boolean" and type(value) is bool:
        return value
    if kind == "integer" and type(value) is int and _INT64[0] <= value <= _INT64[1]:
        return value
    if kind == "decimal" and type(value) in (int, float):
        try:
            return float(value)
        except OverflowError:  # an integer too large for a double
            pass
    shown = _compact(value)
    raise InvalidInputError(
        f"column {name}",
        f"row {number} holds {shown if len(shown) <= 60 else shown[:57] + '...'}, which the view's type "
        f"{view_type} does not allow in a Parquet column",
        allowed={
            "boolean": "true or false",
            "integer": "whole numbers from -2^63 to 2^63-1",
            "decimal": "numbers",
        }[kind]
        + " (or change the column's type, or write NDJSON or CSV, which keep any JSON value)",
    )


def _parquet(path: str, names: list[str], columns: list[Any], rows: Iterator[dict[str, Any]]) -> None:
    """Write the rows as Parquet in row groups, each column typed by the view (see :func:`_parquet_kind`).

    Raises:
        InvalidInputError: a value does not fit its column's type (the file is not written).

    """
    import pyarrow as pa  # noqa: PLC0415 - optional extra
    import pyarrow.parquet as pq  # noqa: PLC0415

    kinds = [_parquet_kind(column) for column in columns]
    arrow_types = {"text": pa.string(), "boolean": pa.bool_(), "integer": pa.int64(), "decimal": pa.float64()}
    schema = pa.schema([pa.field(n, arrow_types[k]) for n, k in zip(names, kinds, strict=True)])
    plan = [(name, kind, column.type) for name, kind, column in zip(names, kinds, columns, strict=True)]

    with pq.ParquetWriter(path, schema) as writer:
        data: dict[str, list[Any]] = {n: [] for n in names}
        count = written = 0
        for row in rows:
            number = written + count + 1
            for name, kind, view_type in plan:
                value = row[name]
                if value is not None and not (kind == "text" and type(value) is str):
                    value = _parquet_value(value, kind, name, number, view_type)
                data[name].append(value)
            count += 1
            if count == PARQUET_ROWS:
                writer.write_table(pa.table(data, schema=schema))
                data, count, written = {n: [] for n in names}, 0, written + count
        if count or not written:  # no rows at all: one empty group, as a table of none
            writer.write_table(pa.table(data, schema=schema))


def _write_rows(handle: Any, fmt: str, names: list[str], rows: Iterator[dict[str, Any]]) -> None:
    """Write NDJSON or CSV rows to a binary file, as they come."""
    if fmt == "csv":
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="", write_through=False)
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow(["" if row[n] is None else _cell(row[n]) for n in names])
        text.flush()
        text.detach()
        return
    for row in rows:
        handle.write(_json_bytes(row) + b"\n")


def _run(args: Any) -> int:
    from magstat.views import (  # noqa: PLC0415 - keeps the CLI start fast
        get_engine,
        load_view,
        parse_view,
    )

    shipped = _shipped()
    if not Path(args.view).exists() and args.view in shipped:
        view = parse_view(json.loads(shipped[args.view]))
    else:
        view = load_view(args.view)
    if args.out != "-" and Path(args.out).is_dir():
        suffix = {"ndjson": "ndjson", "csv": "csv", "parquet": "parquet"}[args.format]
        args.out = str(Path(args.out) / f"{view.name or Path(args.view).stem}.{suffix}")
    source = Path(args.input)
    if not source.exists():
        raise InvalidInputError("--input", "no such file or folder", value=args.input)
    if args.format == "parquet" and args.out == "-":
        raise InvalidInputError("--out", "Parquet needs an output file", value="-", allowed="a file name")
    engine = get_engine(args.engine, **_engine_options(args))
    try:
        names, rows = engine.run(view, source)
        if args.format == "parquet":
            _write_atomic(args.out, lambda p: _parquet(p, names, list(view.columns), rows))
        elif args.out == "-":
            # Held in a temporary file until the last row, so that an error part-way (exit 2)
            # leaves nothing half-written on standard output; memory stays small.
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
                _write_rows(spool, args.format, names, rows)
                spool.seek(0)
                sys.stdout.flush()
                shutil.copyfileobj(spool, sys.stdout.buffer)
                sys.stdout.buffer.flush()
        else:

            def write(path: str) -> None:
                with open(path, "wb") as handle:
                    _write_rows(handle, args.format, names, rows)

            _write_atomic(args.out, write)
    finally:
        engine.close()
    return 0


def _test(args: Any) -> int:
    from magstat.views.conformance import report, run_files  # noqa: PLC0415

    outcomes = run_files(args.files, args.engine, **_engine_options(args))
    passed = sum(o.passed for o in outcomes)
    for outcome in outcomes:
        if not outcome.passed:
            sys.stderr.write(f"FAIL {outcome.file}: {outcome.name}: {outcome.reason}\n")
    sys.stdout.write(f"{args.engine}: {passed}/{len(outcomes)} passed\n")
    if args.report:
        text = json.dumps(report(outcomes), indent=2) + "\n"
        _write_atomic(args.report, lambda p: Path(p).write_text(text, encoding="utf-8"))
    return 0 if passed == len(outcomes) else 1


def run(args: Any) -> int:
    """Run the chosen action; exit 0 on success (``test``: 1 when a test failed)."""
    if args.action == "run":
        return _run(args)
    if args.action == "test":
        return _test(args)
    shipped = _shipped()
    if args.action == "list":
        for name, text in shipped.items():
            raw = json.loads(text)
            sys.stdout.write(
                f"{name}\t{raw.get('resource', '?')}\t{raw.get('title', raw.get('description', ''))}\n"
            )
        return 0
    if args.name not in shipped:
        raise InvalidInputError(
            "name", "is not a shipped view", value=args.name, allowed=", ".join(shipped) or "none"
        )
    sys.stdout.write(shipped[args.name])
    return 0
