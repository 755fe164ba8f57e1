"""``magstat views run|test|list|show``: the command-line contract."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from magstat.cli import main
from tests.views.conftest import SUITE

VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Patient",
    "select": [
        {"column": [{"name": "id", "path": "id"}, {"name": "family", "path": "name.family.first()"}]},
        {"forEachOrNull": "telecom", "column": [{"name": "system", "path": "system"}]},
    ],
}
RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "Ames"}], "telecom": [{"system": "phone"}]},
    {"resourceType": "Patient", "id": "p2"},
    {"resourceType": "Observation", "id": "o1"},
]
EXPECTED = [
    {"id": "p1", "family": "Ames", "system": "phone"},
    {"id": "p2", "family": None, "system": None},
]


@pytest.fixture
def view_file(tmp_path: Path) -> Path:
    """The test view as a JSON file."""
    path = tmp_path / "view.json"
    path.write_text(json.dumps(VIEW), encoding="utf-8")
    return path


def _ndjson(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in RESOURCES), encoding="utf-8")
    return path


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_run_writes_ndjson_rows_in_column_order(
    engine: str, view_file: Path, tmp_path: Path, capsys: Any
) -> None:
    """By default one JSON object per row goes to stdout, keys in the view's column order."""
    source = _ndjson(tmp_path / "Patient.ndjson")
    assert 0 == main(["views", "run", str(view_file), "--input", str(source), "--engine", engine])
    lines = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in lines]
    assert EXPECTED == sorted(rows, key=lambda r: r["id"])
    assert [["id", "family", "system"]] * 2 == [list(r) for r in rows]


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_run_reads_gzip_folders_bundles_and_arrays(
    engine: str, view_file: Path, tmp_path: Path, capsys: Any
) -> None:
    """A folder of gzip NDJSON, a Bundle and a JSON array give the same rows."""
    folder = tmp_path / "export"
    folder.mkdir()
    with gzip.open(folder / "Patient.ndjson.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in RESOURCES)
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "entry": [{"resource": r} for r in RESOURCES]}))
    array = tmp_path / "array.json"
    array.write_text(json.dumps(RESOURCES))
    for source in (folder, bundle, array):
        assert 0 == main(["views", "run", str(view_file), "--input", str(source), "--engine", engine])
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert EXPECTED == sorted(rows, key=lambda r: r["id"])


def test_run_writes_csv_and_parquet(view_file: Path, tmp_path: Path) -> None:
    """CSV has a header row in column order; Parquet has the view's columns."""
    pq = pytest.importorskip("pyarrow.parquet")
    source = _ndjson(tmp_path / "Patient.ndjson")
    out_csv = tmp_path / "rows.csv"
    assert 0 == main(
        ["views", "run", str(view_file), "--input", str(source), "--format", "csv", "--out", str(out_csv)]
    )
    lines = out_csv.read_text(encoding="utf-8").splitlines()
    assert ["id,family,system", "p1,Ames,phone", "p2,,"] == [lines[0], *sorted(lines[1:])]
    out_pq = tmp_path / "rows.parquet"
    assert 0 == main(
        ["views", "run", str(view_file), "--input", str(source), "--format", "parquet", "--out", str(out_pq)]
    )
    table = pq.read_table(out_pq)
    assert ["id", "family", "system"] == table.column_names
    assert EXPECTED == sorted(table.to_pylist(), key=lambda r: r["id"])


@pytest.mark.parametrize(
    ("view", "needle"),
    [
        ({"select": [{"column": [{"name": "id", "path": "id"}]}]}, "resource"),
        ({"resource": "Patient", "select": [{"forEach": "@@"}]}, "forEach"),
        (
            {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "name.where(use = %x)"}]}]},
            "%x",
        ),
        (
            {
                "resource": "Patient",
                "select": [
                    {
                        "unionAll": [
                            {"column": [{"name": "a", "path": "id"}]},
                            {"column": [{"name": "b", "path": "id"}]},
                        ]
                    }
                ],
            },
            "unionAll[1]",
        ),
    ],
)
def test_run_refuses_an_invalid_view_with_exit_2(
    view: dict[str, Any], needle: str, tmp_path: Path, capsys: Any
) -> None:
    """A view the specification says must fail exits 2 with a message naming the problem."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(view), encoding="utf-8")
    source = _ndjson(tmp_path / "Patient.ndjson")
    assert 2 == main(["views", "run", str(path), "--input", str(source)])
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_run_refuses_several_values_in_a_plain_column(engine: str, tmp_path: Path, capsys: Any) -> None:
    """A path giving several values for a non-collection column exits 2 naming the column."""
    path = tmp_path / "view.json"
    path.write_text(
        json.dumps({"resource": "Patient", "select": [{"column": [{"name": "fam", "path": "name.family"}]}]})
    )
    source = tmp_path / "p.ndjson"
    source.write_text(
        json.dumps({"resourceType": "Patient", "name": [{"family": "A"}, {"family": "B"}]}) + "\n"
    )
    assert 2 == main(["views", "run", str(path), "--input", str(source), "--engine", engine])
    assert "column fam" in capsys.readouterr().err


def test_test_command_writes_the_specification_report(tmp_path: Path, capsys: Any) -> None:
    """views test writes {file: {tests: [{name, result: {passed}}]}} and prints the pass count."""
    report = tmp_path / "report.json"
    files = [str(SUITE / "basic.json"), str(SUITE / "fn_join.json")]
    assert 0 == main(["views", "test", *files, "--engine", "python", "--report", str(report)])
    assert "python: 14/14 passed" in capsys.readouterr().out
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert ["basic.json", "fn_join.json"] == sorted(doc)
    assert {"name": "basic attribute", "result": {"passed": True}} == doc["basic.json"]["tests"][0]


def test_show_unknown_view_exits_2(capsys: Any) -> None:
    """views show with a name that is not shipped exits 2 and says which names exist."""
    assert 2 == main(["views", "show", "no-such-view"])
    assert "no-such-view" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_run_refuses_a_malformed_ndjson_line(
    engine: str, view_file: Path, tmp_path: Path, capsys: Any
) -> None:
    """A line that is not JSON exits 2 with a message naming the file and the line, not a traceback.

    DuckDB's own message counts the lines one too far ("line 3" for the second); the line is
    named as the Python engine names it, in plain and gzip files alike.
    """
    lines = ['{"resourceType": "Patient", "id": "a"}', "{not json", '{"resourceType": "Patient", "id": "b"}']
    text = "".join(line + "\n" for line in lines)
    plain = tmp_path / "broken.ndjson"
    plain.write_text(text, encoding="utf-8")
    packed = tmp_path / "packed.ndjson.gz"
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    for source in (plain, packed):
        assert 2 == main(["views", "run", str(view_file), "--input", str(source), "--engine", engine])
        err = capsys.readouterr().err
        assert f"{source.name}:2: is not JSON" in err
        assert "Traceback" not in err


def test_list_and_show_print_shipped_views(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    """views list names each shipped view with its resource; views show prints the JSON."""
    from magstat.cli import views as views_cli  # noqa: PLC0415 - the module under test

    text = json.dumps({**VIEW, "title": "Patients"})
    monkeypatch.setattr(views_cli, "_shipped", lambda: {"patient": text})
    assert 0 == main(["views", "list"])
    assert "patient\tPatient\tPatients\n" == capsys.readouterr().out
    assert 0 == main(["views", "show", "patient"])
    assert "Patient" == json.loads(capsys.readouterr().out)["resource"]


def test_list_names_the_knowledge_base_views(capsys: Any) -> None:
    """views list prints the eight views shipped with the knowledge base, one per type magstat reads."""
    assert 0 == main(["views", "list"])
    lines = capsys.readouterr().out.splitlines()
    expected = {
        "magstat_patient": "Patient",
        "magstat_observation": "Observation",
        "magstat_condition": "Condition",
        "magstat_medication_request": "MedicationRequest",
        "magstat_medication_statement": "MedicationStatement",
        "magstat_medication_administration": "MedicationAdministration",
        "magstat_allergy_intolerance": "AllergyIntolerance",
        "magstat_medication": "Medication",
    }
    assert expected == {line.split("\t")[0]: line.split("\t")[1] for line in lines}


@pytest.mark.parametrize("engine", ["python", "duckdb"])
def test_run_a_shipped_view_by_name_into_a_folder(engine: str, tmp_path: Path) -> None:
    """views run NAME writes the shipped view's table (Parquet) into an --out folder as NAME.parquet."""
    pq = pytest.importorskip("pyarrow.parquet")
    source = tmp_path / "in"
    source.mkdir()
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2601-3"}]},
        "valueQuantity": {
            "value": 0.62,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }
    (source / "Observation.ndjson").write_text(json.dumps(observation) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    args = ["views", "run", "magstat_observation", "--input", str(source), "--engine", engine]
    assert 0 == main([*args, "--format", "parquet", "--out", str(out)])
    (row,) = pq.read_table(out / "magstat_observation.parquet").to_pylist()
    assert ("o1", "p1", 0.62, "mmol/L") == (row["id"], row["patient"], row["value"], row["unit"])
    assert ["2601-3"] == json.loads(row["kb_loinc"])


@pytest.mark.parametrize("flag", ["--spark-master", "--spark-remote"])
@pytest.mark.parametrize("action", ["run", "test"])
def test_spark_location_without_the_spark_engine_exits_2(
    flag: str, action: str, view_file: Path, tmp_path: Path, capsys: Any
) -> None:
    """A Spark master or Connect URL given with another engine is refused with exit 2, naming the flag."""
    first = (
        [str(view_file), "--input", str(_ndjson(tmp_path / "r.ndjson"))]
        if action == "run"
        else [str(SUITE / "basic.json")]
    )
    assert 2 == main(["views", action, *first, "--engine", "duckdb", flag, "spark://127.0.0.1:7077"])
    err = capsys.readouterr().err
    assert flag in err
    assert "--engine spark" in err


@pytest.mark.parametrize("engine", ["python", "duckdb", pytest.param("spark", marks=pytest.mark.slow)])
def test_run_writes_parquet_in_row_groups(
    engine: str, view_file: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """Rows go to Parquet a row group at a time, so memory does not grow with the input."""
    pq = pytest.importorskip("pyarrow.parquet")
    if engine == "spark":
        pytest.importorskip("pyspark")
    from magstat.cli import views as views_cli  # noqa: PLC0415 - the module under test

    monkeypatch.setattr(views_cli, "PARQUET_ROWS", 2)
    patients = [{"resourceType": "Patient", "id": f"p{i}", "name": [{"family": f"F{i}"}]} for i in range(5)]
    source = tmp_path / "Patient.ndjson"
    source.write_text("".join(json.dumps(r) + "\n" for r in patients), encoding="utf-8")
    out = tmp_path / "rows.parquet"
    args = ["views", "run", str(view_file), "--input", str(source), "--format", "parquet", "--out", str(out)]
    assert 0 == main([*args, "--engine", engine])
    parquet = pq.ParquetFile(out)
    assert [2, 2, 1] == [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    expected = [{"id": f"p{i}", "family": f"F{i}", "system": None} for i in range(5)]
    assert expected == parquet.read().to_pylist()


@pytest.mark.parametrize("engine", ["python", "duckdb", pytest.param("spark", marks=pytest.mark.slow)])
def test_run_writes_nothing_to_stdout_when_a_later_row_fails(
    engine: str, tmp_path: Path, capsys: Any
) -> None:
    """Rows stream through a temporary file: an error after some rows leaves stdout empty (exit 2)."""
    if engine == "spark":
        pytest.importorskip("pyspark")
    path = tmp_path / "view.json"
    path.write_text(
        json.dumps({"resource": "Patient", "select": [{"column": [{"name": "fam", "path": "name.family"}]}]})
    )
    good = [{"resourceType": "Patient", "name": [{"family": f"F{i}"}]} for i in range(20_000)]
    bad = {"resourceType": "Patient", "name": [{"family": "A"}, {"family": "B"}]}
    source = tmp_path / "p.ndjson"
    source.write_text("".join(json.dumps(r) + "\n" for r in [*good, bad]), encoding="utf-8")
    assert 2 == main(["views", "run", str(path), "--input", str(source), "--engine", engine])
    captured = capsys.readouterr()
    assert "" == captured.out
    assert "column fam" in captured.err
    out = tmp_path / "rows.ndjson"
    assert 2 == main(
        ["views", "run", str(path), "--input", str(source), "--engine", engine, "--out", str(out)]
    )
    assert not out.exists()
    assert [] == [p.name for p in tmp_path.iterdir() if p.name.startswith(".rows.ndjson")]


TYPED_VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "id", "type": "id"},
                {"name": "count", "path": "valueInteger", "type": "integer"},
                {"name": "amount", "path": "valueQuantity.value", "type": "decimal"},
                {"name": "flag", "path": "valueBoolean", "type": "boolean"},
                {"name": "plain", "path": "extension.value", "type": "string"},
            ]
        }
    ],
}


def _typed_case(engine: str, tmp_path: Path, resources: list[dict[str, Any]]) -> tuple[Path, Path]:
    """The typed view and an NDJSON file of ``resources``, for ``engine`` (Spark skipped if absent)."""
    if engine == "spark":
        pytest.importorskip("pyspark")
    view = tmp_path / "view.json"
    view.write_text(json.dumps(TYPED_VIEW), encoding="utf-8")
    source = tmp_path / "Observation.ndjson"
    source.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")
    return view, source


@pytest.mark.parametrize("engine", ["python", "duckdb", pytest.param("spark", marks=pytest.mark.slow)])
def test_run_writes_parquet_columns_of_the_view_types(engine: str, tmp_path: Path) -> None:
    """Integer, decimal and boolean columns are typed in Parquet; a whole number fits a decimal."""
    pq = pytest.importorskip("pyarrow.parquet")
    view, source = _typed_case(
        engine,
        tmp_path,
        [
            {"resourceType": "Observation", "id": "o1", "valueInteger": 7},
            {"resourceType": "Observation", "id": "o2", "valueQuantity": {"value": 2}},
            {"resourceType": "Observation", "id": "o3", "valueBoolean": False},
            {"resourceType": "Observation", "id": "o4", "extension": [{"url": "u", "value": True}]},
        ],
    )
    out = tmp_path / "rows.parquet"
    args = ["views", "run", str(view), "--input", str(source), "--format", "parquet", "--out", str(out)]
    assert 0 == main([*args, "--engine", engine])
    table = pq.read_table(out)
    assert ["string", "int64", "double", "bool", "string"] == [str(t) for t in table.schema.types]
    rows = {r["id"]: r for r in table.to_pylist()}
    assert 7 == rows["o1"]["count"]
    assert 2.0 == rows["o2"]["amount"]
    assert rows["o3"]["flag"] is False
    assert "true" == rows["o4"]["plain"]  # a boolean in a text column is written as JSON


@pytest.mark.parametrize("engine", ["python", "duckdb", pytest.param("spark", marks=pytest.mark.slow)])
@pytest.mark.parametrize(
    ("column", "resource", "value", "allowed"),
    [
        ("count", {"valueInteger": 1.5}, "1.5", "whole numbers"),
        ("count", {"valueInteger": 2**63}, str(2**63), "whole numbers"),
        ("amount", {"valueQuantity": {"value": "7"}}, '"7"', "numbers"),
        ("flag", {"valueBoolean": "yes"}, '"yes"', "true or false"),
        ("count", {"valueInteger": True}, "true", "whole numbers"),
    ],
)
def test_run_refuses_a_value_its_parquet_column_type_cannot_hold(
    engine: str, column: str, resource: dict[str, Any], value: str, allowed: str, tmp_path: Path, capsys: Any
) -> None:
    """A value the view's type does not allow is refused (exit 2), named, and no file is left."""
    pytest.importorskip("pyarrow.parquet")
    ok = {"resourceType": "Observation", "id": "ok", "valueInteger": 3}
    view, source = _typed_case(
        engine, tmp_path, [ok, {"resourceType": "Observation", "id": "bad", **resource}]
    )
    out = tmp_path / "rows.parquet"
    args = ["views", "run", str(view), "--input", str(source), "--format", "parquet", "--out", str(out)]
    assert 2 == main([*args, "--engine", engine])
    err = capsys.readouterr().err
    assert f"column {column}: row 2 holds {value}" in err
    assert allowed in err
    assert not out.exists()
    assert [] == [p.name for p in tmp_path.iterdir() if p.name.startswith(".rows.parquet")]
    # NDJSON keeps any JSON value: the same rows are written there.
    assert 0 == main(["views", "run", str(view), "--input", str(source), "--engine", engine])


ID_VIEW = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
ENGINES = ["python", "duckdb", pytest.param("spark", marks=pytest.mark.slow)]


def _id_view(tmp_path: Path) -> Path:
    path = tmp_path / "view.json"
    path.write_text(json.dumps(ID_VIEW), encoding="utf-8")
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_run_refuses_a_truncated_gzip_file_naming_it(engine: str, tmp_path: Path, capsys: Any) -> None:
    """A damaged gzip stream is an input problem (exit 2, the file named), not an internal error."""
    if engine == "spark":
        pytest.importorskip("pyspark")
    whole = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in RESOURCES))
    source = tmp_path / "Patient.ndjson.gz"
    source.write_bytes(whole[:-12])
    assert 2 == main(["views", "run", str(_id_view(tmp_path)), "--input", str(source), "--engine", engine])
    err = capsys.readouterr().err
    assert "Patient.ndjson.gz" in err
    assert "internal error" not in err


@pytest.mark.parametrize("engine", ENGINES)
def test_run_refuses_bytes_that_are_not_utf8(engine: str, tmp_path: Path, capsys: Any) -> None:
    """Bytes that are not UTF-8 are refused (exit 2) with the file named."""
    if engine == "spark":
        pytest.importorskip("pyspark")
    source = tmp_path / "Patient.ndjson"
    source.write_bytes(b'{"resourceType": "Patient", "id": "a\xff\xfe"}\n')
    assert 2 == main(["views", "run", str(_id_view(tmp_path)), "--input", str(source), "--engine", engine])
    err = capsys.readouterr().err
    assert "Patient.ndjson" in err
    assert "UTF-8" in err


@pytest.mark.parametrize("engine", ENGINES)
def test_run_refuses_half_a_surrogate_pair_on_the_line_that_holds_it(
    engine: str, tmp_path: Path, capsys: Any
) -> None:
    r"""``"\ud800"`` alone is not text: every engine refuses the line, named alike (exit 2)."""
    if engine == "spark":
        pytest.importorskip("pyspark")
    source = tmp_path / "Patient.ndjson"
    source.write_text(
        '{"resourceType": "Patient", "id": "ok"}\n{"resourceType": "Patient", "id": "\\ud800"}\n',
        encoding="utf-8",
    )
    assert 2 == main(["views", "run", str(_id_view(tmp_path)), "--input", str(source), "--engine", engine])
    out, err = capsys.readouterr()
    assert "" == out
    assert "Patient.ndjson:2: is not JSON: a string holds half of a surrogate pair" in err


@pytest.mark.parametrize("engine", ENGINES)
def test_run_skips_a_byte_order_mark_and_keeps_every_digit(engine: str, tmp_path: Path, capsys: Any) -> None:
    """A BOM before the first line is skipped; an integer beyond 64 bits is written digit for digit."""
    if engine == "spark":
        pytest.importorskip("pyspark")
    view = tmp_path / "view.json"
    view.write_text(
        json.dumps(
            {
                "resource": "Patient",
                "select": [
                    {"column": [{"name": "id", "path": "id"}, {"name": "n", "path": "multipleBirthInteger"}]}
                ],
            }
        ),
        encoding="utf-8",
    )
    source = tmp_path / "Patient.ndjson"
    big = 123456789012345678901234567890
    source.write_bytes(
        b"\xef\xbb\xbf"
        + f'{{"resourceType": "Patient", "id": "p1", "multipleBirthInteger": {big}}}\n'.encode()
        + b'{"resourceType": "Patient", "id": "p2", "multipleBirthInteger": 2}\n'
    )
    assert 0 == main(["views", "run", str(view), "--input", str(source), "--engine", engine])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [{"id": "p1", "n": big}, {"id": "p2", "n": 2}] == sorted(rows, key=lambda r: r["id"])


@pytest.mark.parametrize(
    ("test", "reason"),
    [
        ({"expectColumns": 5}, "expectColumns must be a list of column names"),
        ({"expectColumns": ["id", 2]}, "expectColumns must be a list of column names"),
        ({"expect": [1]}, "expect must be a list of row objects"),
        ({"expect": {"id": "a"}}, "expect must be a list of row objects"),
    ],
)
def test_views_test_reports_a_malformed_test_as_failed(
    test: dict[str, Any], reason: str, tmp_path: Path, capsys: Any
) -> None:
    """A test whose expectation is malformed fails with the reason in the report (exit 1), never exit 70."""
    suite = {
        "title": "odd",
        "resources": [{"resourceType": "Patient", "id": "a"}],
        "tests": [{"title": "t", "view": ID_VIEW, **test}],
    }
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(suite), encoding="utf-8")
    report = tmp_path / "report.json"
    assert 1 == main(["views", "test", str(path), "--engine", "python", "--report", str(report)])
    assert reason in capsys.readouterr().err
    (entry,) = json.loads(report.read_text(encoding="utf-8"))["odd.json"]["tests"]
    assert entry["result"]["passed"] is False
    assert reason in entry["result"]["reason"]


def test_views_test_refuses_resources_that_are_not_a_list(tmp_path: Path, capsys: Any) -> None:
    """A test file whose resources are not a list is refused (exit 2), naming it."""
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"resources": 5, "tests": []}), encoding="utf-8")
    assert 2 == main(["views", "test", str(path), "--engine", "python"])
    assert "resources: must be a list of FHIR resources" in capsys.readouterr().err
