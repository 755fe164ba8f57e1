"""The three back ends behind one small interface, and the readers of view input.

``python`` runs the closures of :mod:`magstat.views.pyeval`; ``duckdb`` and ``spark`` run the
one SQL query that :mod:`magstat.views.sql` compiles from the view. DuckDB and PySpark are
imported only when their engine is asked for (the ``batch`` and ``spark`` extras).

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from magstat.errors import InvalidInputError
from magstat.views.definition import View, parse_view
from magstat.views.pyeval import compile_view

__all__ = [
    "ENGINES",
    "HALF_SURROGATE",
    "Engine",
    "get_engine",
    "holds_half_a_surrogate_pair",
    "ndjson_files",
    "read_resources",
]

ENGINES = ("python", "duckdb", "spark")


class Engine(Protocol):
    """What every back end offers."""

    name: str

    def evaluate(
        self, raw_view: object, resources: Sequence[dict[str, Any]]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """Rows of a view over resources in memory: (column names, rows as dicts)."""
        ...

    def run(self, view: View, source: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
        """Rows of a view over an input path (NDJSON file or folder, JSON array or Bundle)."""
        ...

    def close(self) -> None:
        """Release the engine's resources."""
        ...


def ndjson_files(source: Path) -> list[Path]:
    """The NDJSON files (plain or gzip) at ``source``: the file itself or a folder's, sorted."""
    if source.is_dir():
        found = sorted(
            p
            for p in source.iterdir()
            if p.is_file() and p.name.endswith((".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz"))
        )
        if not found:
            raise InvalidInputError(str(source), "the folder holds no .ndjson or .ndjson.gz file")
        return found
    if not source.exists():
        raise InvalidInputError(str(source), "no such file or folder")
    return [source]


def _open(path: Path) -> Any:
    # A byte-order mark at the start is skipped (DuckDB skips it too); elsewhere it is text.
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return path.open(encoding="utf-8-sig")


def _is_json_document(path: Path) -> bool:
    """A ``.json`` file holding a Bundle, an array or one resource (not NDJSON)."""
    return path.is_file() and path.name.endswith((".json", ".json.gz"))


_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # the core install, without extras: the standard library alone
    _orjson = None


_LONG_INTEGER = re.compile(r"\d{20}")
"""Twenty digits in a row: perhaps an integer beyond 64 bits, which orjson would read as a float."""


def _loads(line: str) -> Any:
    r"""``json.loads``, through orjson first where it is installed: the same values, faster.

    As DuckDB reads it: a string holding half of a surrogate pair (``"\ud800"`` alone: not
    Unicode text, which no output could write) is refused; ``NaN`` is taken, as DuckDB takes
    it. An integer beyond 64 bits keeps every digit (orjson would make it a float): such a line
    goes to ``json.loads``, as does what orjson refuses, so that errors are worded alike.

    Raises:
        ValueError: the line is not JSON (``json.JSONDecodeError`` where the parser says where).

    """
    if _orjson is not None and not _LONG_INTEGER.search(line):
        try:
            return _orjson.loads(line)
        except _orjson.JSONDecodeError:
            pass
    value = json.loads(line)
    if "\\u" in line and holds_half_a_surrogate_pair(value):
        raise ValueError(HALF_SURROGATE)
    return value


HALF_SURROGATE = "a string holds half of a surrogate pair (\\ud800-\\udfff alone), not text"
"""Why a JSON text that parses is still refused: no output could write such a string."""


def holds_half_a_surrogate_pair(value: Any) -> bool:
    r"""Whether parsed JSON holds a string with half of a surrogate pair (``"\ud800"`` alone).

    ``json.loads`` takes such escapes; DuckDB and Spark refuse the line, and UTF-8 cannot write it.
    """
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_resources(source: Path) -> Iterator[dict[str, Any]]:
    """Resources from a JSON array, a Bundle, one resource, or NDJSON (plain or gzip).

    Raises:
        InvalidInputError: a line or document is not JSON (named by file and line), or a file
            cannot be read (a damaged gzip stream, bytes that are not UTF-8).

    """
    if _is_json_document(source):
        try:
            with _open(source) as handle:
                text = handle.read()
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise InvalidInputError(str(source), f"cannot be read: {_reason(exc)}") from None
        try:
            doc = _loads(text)
        except ValueError as exc:  # the parser's position kept: a document has no line to name
            raise InvalidInputError(str(source), f"is not JSON: {exc}") from None
        if isinstance(doc, list):
            items = doc
        elif isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            items = [e.get("resource") for e in doc.get("entry", []) if isinstance(e, dict)]
        else:
            items = [doc]
        yield from (r for r in items if isinstance(r, dict))
        return
    for path in ndjson_files(source):
        try:
            yield from _ndjson_resources(path)
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise InvalidInputError(path.name, f"cannot be read: {_reason(exc)}") from None


def _ndjson_resources(path: Path) -> Iterator[dict[str, Any]]:
    with _open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                resource = _loads(line)
            except ValueError as exc:
                raise InvalidInputError(f"{path.name}:{number}", f"is not JSON: {_reason(exc)}") from None
            if isinstance(resource, dict):
                yield resource


def _reason(exc: BaseException) -> str:
    """An exception's message without the parser's position (the caller names the file and line)."""
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, EOFError):
        return "the gzip stream ends early (a truncated file)"
    if isinstance(exc, UnicodeDecodeError):
        return "it holds bytes that are not UTF-8"
    return str(exc) or type(exc).__name__


class PythonEngine:
    """The in-process evaluator."""

    name = "python"

    def evaluate(
        self, raw_view: object, resources: Sequence[dict[str, Any]]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """Rows of a view over resources in memory."""
        compiled = compile_view(parse_view(raw_view))
        return list(compiled.names), list(compiled.run(resources))

    def run(self, view: View, source: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
        """Rows of a view over an input path, streamed."""
        compiled = compile_view(view)
        return list(compiled.names), compiled.run(read_resources(source))

    def close(self) -> None:
        """Nothing to release."""


def write_temp_ndjson(resources: Sequence[dict[str, Any]]) -> Path:
    """Write resources to a temporary NDJSON file (the caller deletes it)."""
    fd, name = tempfile.mkstemp(suffix=".ndjson", prefix="magstat-view-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for resource in resources:
            handle.write(json.dumps(resource) + "\n")
    return Path(name)


def get_engine(name: str, **options: Any) -> Engine:
    """The engine called ``name`` (python, duckdb or spark).

    Raises:
        InvalidInputError: the name is unknown, or its extra is not installed.

    """
    if name == "python":
        return PythonEngine()
    extra = {"duckdb": "magstat[batch]", "spark": "magstat[spark]"}.get(name)
    if extra is not None:
        try:
            from magstat.views import sql  # noqa: PLC0415 - optional extras

            return sql.DuckDBEngine() if name == "duckdb" else sql.SparkEngine(**options)
        except ImportError as exc:
            raise InvalidInputError(
                "engine",
                f"the {name} engine is not installed ({exc.name})",
                value=name,
                allowed=f"pip install '{extra}'",
            ) from None
    raise InvalidInputError("engine", "is not a view engine", value=name, allowed=", ".join(ENGINES))
