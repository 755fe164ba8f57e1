"""Fixtures of the views tests: the specification's conformance suite, one case per test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SUITE = Path(__file__).resolve().parents[1] / "data" / "sql-on-fhir-v2"

# Tests an engine is known to fail, with the reason; run as xfail(strict=True) so a fix shows.
_SPARK_DECIMAL = (
    "Spark's JSON-to-VARIANT parser stores 1.0 as DECIMAL(1,0), so the precision the JSON was "
    "written with (its trailing zeros) is gone before the view runs, and the boundary of 1.0 "
    "comes out as that of 1 (0.5 / 1.5 instead of 0.95 / 1.05)"
)
KNOWN_FAILURES: dict[str, dict[tuple[str, str], str]] = {
    "python": {},
    "duckdb": {},
    "spark": {
        ("fn_boundary.json", "decimal lowBoundary"): _SPARK_DECIMAL,
        ("fn_boundary.json", "decimal highBoundary"): _SPARK_DECIMAL,
    },
}


def suite_cases(engine: str) -> list[Any]:
    """Every (file, test) of the suite as a pytest parameter, marked xfail where known to fail."""
    cases = []
    for path in sorted(SUITE.glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        for test in suite["tests"]:
            key = (path.name, test["title"])
            marks = []
            if key in KNOWN_FAILURES[engine]:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[engine][key]))
            cases.append(
                pytest.param(path.name, test["title"], id=f"{path.stem}:{test['title']}", marks=marks)
            )
    return cases


def load_case(file: str, title: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The resources of a suite file and one of its tests."""
    suite = json.loads((SUITE / file).read_text(encoding="utf-8"))
    test = next(t for t in suite["tests"] if t["title"] == title)
    return suite["resources"], test


# Pass counts of the conformance suite per engine, printed at the end of the test run.
_COUNTS: dict[str, list[int]] = {}
_ENGINE_OF_TEST = {
    "test_python": "python",
    "test_duckdb": "duckdb",
    "test_spark": "spark (local)",
}


def record_conformance(engine: str, passed: int, total: int) -> None:
    """Add a whole run's pass count (e.g. one made by ``magstat views test``) to the summary."""
    counts = _COUNTS.setdefault(engine, [0, 0])
    counts[0] += passed
    counts[1] += total


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count the conformance tests per engine as they finish."""
    path, _, name = report.nodeid.partition("::")
    if report.when != "call" or not path.endswith("test_conformance.py"):
        return
    engine = _ENGINE_OF_TEST.get(name.partition("[")[0])
    if engine is not None:
        record_conformance(engine, int(report.passed), 1)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the pass count per engine (known failures count as not passed)."""
    if _COUNTS:
        counts = ", ".join(f"{engine} {p}/{t}" for engine, (p, t) in _COUNTS.items())
        terminalreporter.write_line(f"SQL on FHIR v2 conformance: {counts}")
