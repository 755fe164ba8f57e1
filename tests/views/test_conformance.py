"""The SQL on FHIR v2 conformance suite (22 files, 134 tests) on every back end."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from magstat.views.conformance import run_test
from magstat.views.engines import Engine, get_engine
from tests.views.conftest import load_case, suite_cases


@pytest.fixture(scope="module")
def python_engine() -> Engine:
    """The in-process evaluator."""
    return get_engine("python")


@pytest.fixture(scope="module")
def duckdb_engine() -> Iterator[Engine]:
    """One DuckDB connection for the whole suite."""
    pytest.importorskip("duckdb")
    engine = get_engine("duckdb")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def spark_engine() -> Engine:
    """One local Spark session for the whole suite."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:  # pragma: no cover - depends on the machine
        pytest.skip("Spark needs a Java runtime")
    return get_engine("spark", master="local[2]")


def _check(engine: Any, file: str, title: str) -> None:
    resources, test = load_case(file, title)
    outcome = run_test(engine, resources, test, file)
    assert (True, None) == (outcome.passed, outcome.reason)


@pytest.mark.parametrize(("file", "title"), suite_cases("python"))
def test_python(python_engine: Engine, file: str, title: str) -> None:
    """The in-process evaluator gives the rows (or the error) the specification expects."""
    _check(python_engine, file, title)


@pytest.mark.parametrize(("file", "title"), suite_cases("duckdb"))
def test_duckdb(duckdb_engine: Engine, file: str, title: str) -> None:
    """The DuckDB query gives the rows (or the error) the specification expects."""
    _check(duckdb_engine, file, title)


@pytest.mark.slow
@pytest.mark.parametrize(("file", "title"), suite_cases("spark"))
def test_spark(spark_engine: Engine, file: str, title: str) -> None:
    """The Spark SQL query gives the rows (or the error) the specification expects."""
    _check(spark_engine, file, title)
