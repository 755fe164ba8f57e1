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
