"""Run SQL on FHIR v2 conformance test files and write the specification's test report.

A test file holds ``resources`` and ``tests``; each test has a ``view`` and either ``expect``
(the rows, compared without regard to order), ``expectColumns`` (the column names, in order)
or ``expectError`` (the view must be refused, or fail when run). The report is
``{"<file name>": {"tests": [{"name": ..., "result": {"passed": true|false, "reason": ...}}]}}``.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magstat.errors import InvalidInputError
from magstat.views.engines import Engine, get_engine

__all__ = ["Outcome", "report", "run_file", "run_test"]


@dataclass(frozen=True)
class Outcome:
    """The result of one conformance test."""

    file: str
    name: str
    passed: bool
    reason: str | None


def _canonical(value: Any) -> Any:
    """Numbers compare by value (5 equals 5.0); everything else as JSON."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def _key(row: dict[str, Any]) -> str:
    return json.dumps(_canonical(row), sort_keys=True)


def run_test(
    engine: Engine, resources: Sequence[dict[str, Any]], test: dict[str, Any], file: str = ""
) -> Outcome:
    """Run one test of a conformance file.

    Args:
        engine: the back end.
        resources: the file's resources.
        test: one entry of the file's ``tests``.
        file: the file name, for the report.

    Returns:
        Whether it passed, and why not.

    """
    name = str(test.get("title", "?"))
    malformed = _malformed_expectation(test)
    if malformed is not None:
        return Outcome(file, name, False, f"the test is malformed: {malformed}")
    try:
        columns, rows = engine.evaluate(test.get("view"), resources)
    except InvalidInputError as exc:
        if test.get("expectError"):
            return Outcome(file, name, True, None)
        return Outcome(file, name, False, f"refused: {exc.message}")
    except Exception as exc:
        return Outcome(file, name, False, f"engine error: {type(exc).__name__}: {str(exc)[:300]}")
    if test.get("expectError"):
        return Outcome(file, name, False, "the view was accepted but the specification says it must fail")
    if "expectColumns" in test:
        expected_columns = list(test["expectColumns"])
        if expected_columns != list(columns):
            return Outcome(file, name, False, f"columns {list(columns)} != expected {expected_columns}")
        return Outcome(file, name, True, None)
    expected = sorted(_key(r) for r in test.get("expect", []))
    actual = sorted(_key(r) for r in rows)
    if expected != actual:
        missing = sorted(set(expected) - set(actual))[:3]
        extra = sorted(set(actual) - set(expected))[:3]
        return Outcome(file, name, False, f"rows differ: missing {missing}, unexpected {extra}")
    for row in rows:
        if list(row) != list(columns):
            return Outcome(file, name, False, f"keys {list(row)} are not in column order {list(columns)}")
    return Outcome(file, name, True, None)


def _malformed_expectation(test: dict[str, Any]) -> str | None:
    """What is wrong with a test's ``expect`` or ``expectColumns``, if anything."""
    if "expectColumns" in test:
        found = test["expectColumns"]
        if not isinstance(found, list) or not all(isinstance(c, str) for c in found):
            return f"expectColumns must be a list of column names (got {json.dumps(found)[:60]})"
    if "expect" in test:
        found = test["expect"]
        if not isinstance(found, list) or not all(isinstance(r, dict) for r in found):
            return f"expect must be a list of row objects (got {json.dumps(found)[:60]})"
    return None


def run_file(engine: Engine, path: str | Path) -> list[Outcome]:
    """Run every test of one conformance file.

    Raises:
        InvalidInputError: the file cannot be read or is not a test file.

    """
    path = Path(path)
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(str(path), f"cannot read the test file: {exc}") from exc
    if not isinstance(suite, dict) or not isinstance(suite.get("tests"), list):
        raise InvalidInputError(str(path), "is not a SQL on FHIR test file", allowed='an object with "tests"')
    found = suite.get("resources", [])
    if not isinstance(found, list):
        raise InvalidInputError(
            f"{path}: resources", "must be a list of FHIR resources", value=str(found)[:60]
        )
    resources = [r for r in found if isinstance(r, dict)]
    return [run_test(engine, resources, t, path.name) for t in suite["tests"] if isinstance(t, dict)]


def report(outcomes: Iterable[Outcome]) -> dict[str, Any]:
    """The specification's test-report document for a set of outcomes."""
    out: dict[str, Any] = {}
    for outcome in outcomes:
        result: dict[str, Any] = {"passed": outcome.passed}
        if outcome.reason:
            result["reason"] = outcome.reason
        out.setdefault(outcome.file, {"tests": []})["tests"].append({"name": outcome.name, "result": result})
    return out


def run_files(paths: Iterable[str | Path], engine_name: str = "python", **options: Any) -> list[Outcome]:
    """Run several test files on one engine (started once, with ``options``: see ``get_engine``)."""
    engine = get_engine(engine_name, **options)
    try:
        return [o for p in paths for o in run_file(engine, p)]
    finally:
        engine.close()
