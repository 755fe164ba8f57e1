"""The back ends agree, and the SQL back ends fail loudly where they have a limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from magstat.errors import InvalidInputError
from magstat.views import get_engine, parse_view
from magstat.views.sql import REPEAT_DEPTH

REPEAT_VIEW = {
    "resource": "QuestionnaireResponse",
    "select": [{"repeat": ["item"], "column": [{"name": "linkId", "path": "linkId"}]}],
}


def _nested(depth: int) -> dict[str, Any]:
    item: dict[str, Any] = {"linkId": str(depth)}
    for level in range(depth - 1, 0, -1):
        item = {"linkId": str(level), "item": [item]}
    return {"resourceType": "QuestionnaireResponse", "id": "q", "item": [item]}


def test_python_repeat_has_no_depth_limit() -> None:
    """The in-process evaluator follows repeat to any depth."""
    depth = REPEAT_DEPTH + 4
    _, rows = get_engine("python").evaluate(REPEAT_VIEW, [_nested(depth)])
    assert [str(n) for n in range(1, depth + 1)] == [r["linkId"] for r in rows]


def test_duckdb_repeat_deeper_than_its_limit_fails_loudly() -> None:
    """DuckDB refuses a resource nested deeper than REPEAT_DEPTH rather than dropping levels."""
    pytest.importorskip("duckdb")
    engine = get_engine("duckdb")
    try:
        _, rows = engine.evaluate(REPEAT_VIEW, [_nested(REPEAT_DEPTH)])
        assert REPEAT_DEPTH == len(rows)
        with pytest.raises(InvalidInputError, match="deeper than"):
            engine.evaluate(REPEAT_VIEW, [_nested(REPEAT_DEPTH + 1)])
    finally:
        engine.close()


def test_duckdb_reads_a_parquet_resource_column(tmp_path: Path) -> None:
    """A Parquet file with the resource JSON in a 'resource' column gives the NDJSON rows."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    resources = [
        {"resourceType": "Patient", "id": "a", "active": True},
        {"resourceType": "Patient", "id": "b"},
    ]
    path = tmp_path / "patients.parquet"
    pq.write_table(pa.table({"resource": [json.dumps(r) for r in resources]}), path)
    view = parse_view(
        {
            "resource": "Patient",
            "select": [{"column": [{"name": "id", "path": "id"}, {"name": "a", "path": "active"}]}],
        }
    )
    engine = get_engine("duckdb")
    try:
        _, rows = engine.run(view, path)
        assert [{"id": "a", "a": True}, {"id": "b", "a": None}] == sorted(rows, key=lambda r: r["id"])
    finally:
        engine.close()


def test_python_refuses_where_that_is_not_boolean() -> None:
    """A where path giving a string is an error naming the where clause, not a silent filter."""
    view = {
        "resource": "Patient",
        "select": [{"column": [{"name": "id", "path": "id"}]}],
        "where": [{"path": "gender"}],
    }
    with pytest.raises(InvalidInputError, match=r"where\[0\]"):
        get_engine("python").evaluate(view, [{"resourceType": "Patient", "id": "p", "gender": "female"}])


OBSERVATION_VIEW = {
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "loinc", "path": "code.coding.where(system = 'http://loinc.org').code.first()"},
                {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                {"name": "unit", "path": "value.ofType(Quantity).code"},
                {"name": "effective", "path": "effective.ofType(dateTime)"},
                {"name": "codes", "path": "code.coding.code", "collection": True},
            ]
        },
        {"forEachOrNull": "referenceRange", "column": [{"name": "low", "path": "low.value"}]},
    ],
    "where": [{"path": "status != 'entered-in-error'"}],
}


def test_python_and_duckdb_give_the_same_rows_for_the_fhir_fixtures(tmp_path: Path) -> None:
    """Every FHIR bundle in tests/data/fhir flattens to the same rows on both back ends."""
    pytest.importorskip("duckdb")
    fixtures = sorted((Path(__file__).resolve().parents[1] / "data" / "fhir").glob("*.json"))
    resources: list[dict[str, Any]] = []
    for path in fixtures:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("resourceType") == "Bundle":
            resources.extend(e["resource"] for e in doc.get("entry", []) if "resource" in e)
    assert resources
    _, expected = get_engine("python").evaluate(OBSERVATION_VIEW, resources)
    engine = get_engine("duckdb")
    try:
        _, actual = engine.evaluate(OBSERVATION_VIEW, resources)
    finally:
        engine.close()
    assert expected
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731 - a sort key
    assert sorted(expected, key=key) == sorted(actual, key=key)


UNICODE_VIEW = {
    "resource": "Patient",
    "constant": [{"name": "n", "valueString": "Müller"}],
    "select": [
        {
            "column": [
                {"name": "id", "path": "id"},
                {"name": "in_union", "path": "name.family.first() in ('Müller' | 'Ames')", "type": "boolean"},
                {"name": "equals", "path": "name.family.first() = 'Müller'", "type": "boolean"},
                {"name": "differs", "path": "name.family.first() != 'Müller'", "type": "boolean"},
                {"name": "in_const", "path": "name.family.first() in %n", "type": "boolean"},
                {"name": "contains", "path": "name.family contains %n", "type": "boolean"},
                {"name": "quoted", "path": "name.given.first() = 'O\\'Neil'", "type": "boolean"},
            ]
        }
    ],
}
UNICODE_PATIENTS = [
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "Müller", "given": ["O'Neil"]}]},
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "Ames"}]},
    {"resourceType": "Patient", "id": "p3", "name": [{"family": "Muller"}]},
    {"resourceType": "Patient", "id": "p4", "name": [{"family": "Ames"}, {"family": "Müller"}]},
    {"resourceType": "Patient", "id": "p5"},
]


def test_duckdb_compares_strings_beyond_ascii_as_python_does() -> None:
    """String literals and constants with letters beyond ASCII (or quotes) match as text does.

    DuckDB once compared their JSON texts, escaped on one side (``"M\\u00fcller"``) and not on
    the other, so ``'Müller' in ('Müller' | ...)`` was false there and true in Python.
    """
    pytest.importorskip("duckdb")
    columns = ("id", "in_union", "equals", "differs", "in_const", "contains", "quoted")
    expected = [
        dict(zip(columns, values, strict=True))
        for values in [
            ("p1", True, True, False, True, True, True),
            ("p2", True, False, True, False, False, None),
            ("p3", False, False, True, False, False, None),  # "Muller" is not "Müller"
            ("p4", True, False, True, False, True, None),  # first() is Ames; the list holds Müller
            ("p5", None, None, None, None, False, None),  # no name: empty, but contains is false
        ]
    ]
    for name in ("python", "duckdb"):
        engine = get_engine(name)
        try:
            assert (list(columns), expected) == engine.evaluate(UNICODE_VIEW, UNICODE_PATIENTS), name
        finally:
            engine.close()


def test_duckdb_reads_each_member_of_the_resource_from_one_parse() -> None:
    """A view's paths start from the resource's members, extracted once per resource.

    DuckDB parses a JSON text again in every function that reads it; a view of thirty
    columns each reading the whole resource parsed it thirty times.
    """
    pytest.importorskip("duckdb")
    from magstat.views.sql import DuckDBDialect, compile_sql  # noqa: PLC0415 - the duckdb extra

    view = parse_view(
        {
            "resource": "Observation",
            "where": [{"path": "status = 'final'"}],
            "select": [
                {
                    "column": [
                        {"name": "id", "path": "id"},
                        {"name": "code", "path": "code.coding.code.first()"},
                        {"name": "value", "path": "value.ofType(Quantity).value"},
                        {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                    ]
                }
            ],
        }
    )
    sql = compile_sql(view, DuckDBDialect(), "src", "json")
    assert 1 == sql.count("json_extract(r,")
    # Lines of other types are dropped before it, by their type alone.
    assert "AS typed_ WHERE json_extract_string(r, '$.\"resourceType\"') = 'Observation'" in sql
    assert "json_extract(r, ['$.\"id\"', '$.\"code\"', '$.\"valueQuantity\"', '$.\"value\"', " in sql


@pytest.mark.slow
def test_spark_compares_strings_beyond_ascii_as_python_does() -> None:
    """Spark gives the rows of the Python evaluator for the strings above."""
    pytest.importorskip("pyspark")
    _, expected = get_engine("python").evaluate(UNICODE_VIEW, UNICODE_PATIENTS)
    engine = get_engine("spark", master="local[2]")
    try:
        _, actual = engine.evaluate(UNICODE_VIEW, UNICODE_PATIENTS)
    finally:
        engine.close()
    assert expected == actual


@pytest.mark.parametrize("name", ["python", "duckdb", pytest.param("spark", marks=pytest.mark.slow)])
def test_a_resource_type_that_is_not_a_string_gives_no_row(name: str) -> None:
    """Only a resource whose resourceType is the view's, as a string, gives rows, on each engine.

    DuckDB once also took a list holding the type (``["Patient"]``), as its first item.
    """
    pytest.importorskip("pyspark" if name == "spark" else "duckdb")
    view = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
    resources: list[Any] = [
        {"resourceType": "Patient", "id": "kept"},
        {"resourceType": ["Patient"], "id": "a list"},
        {"resourceType": {"value": "Patient"}, "id": "an object"},
        {"resourceType": "patient", "id": "another case"},
        {"id": "no type"},
    ]
    engine = get_engine(name, master="local[2]") if name == "spark" else get_engine(name)
    try:
        assert (["id"], [{"id": "kept"}]) == engine.evaluate(view, resources)
    finally:
        engine.close()


@pytest.mark.parametrize("name", ["python", "duckdb", pytest.param("spark", marks=pytest.mark.slow)])
def test_a_where_path_runs_only_on_the_view_type(name: str) -> None:
    """A where path that would fail on another type's resource is never run on it."""
    pytest.importorskip("pyspark" if name == "spark" else "duckdb")
    view = {
        "resource": "Patient",
        "where": [{"path": "active"}],
        "select": [{"column": [{"name": "id", "path": "id"}]}],
    }
    resources: list[Any] = [
        {"resourceType": "Patient", "id": "a", "active": True},
        {"resourceType": "Observation", "id": "o", "active": "not a boolean"},
        {"resourceType": "Patient", "id": "b", "active": False},
    ]
    engine = get_engine(name, master="local[2]") if name == "spark" else get_engine(name)
    try:
        assert (["id"], [{"id": "a"}]) == engine.evaluate(view, resources)
        with pytest.raises(InvalidInputError, match="where"):
            engine.evaluate(view, [*resources, {"resourceType": "Patient", "id": "c", "active": "yes"}])
    finally:
        engine.close()
