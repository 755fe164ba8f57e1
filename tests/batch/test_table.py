"""Tables (CSV, Parquet): each row is read as the patient document it flattens."""

from __future__ import annotations

import csv

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from magstat.adapters.document import facts_from_document
from magstat.batch import ScreenOptions, screen
from magstat.core import assess
from magstat.errors import InvalidInputError
from tests.batch.conftest import AS_OF, sha

ROWS = [
    {
        "patient_id": "t1",
        "age": "71",
        "sex": "female",
        "medications": "omeprazole 20 mg; furosemide [rxnorm:4603]",
        "serum_mg": "1.6",
        "serum_mg_unit": "mg/dL",
        "serum_mg_date": "2019-11-02",
        "serum_creatinine": "1.3",
        "serum_creatinine_unit": "mg/dL",
        "alcohol_drinks_per_day": "0",
    },
    {
        "patient_id": "t2",
        "birth_date": "1980-05-05",
        "sex": "male",
        "medications": "none",
        "egfr": "95",
        "egfr_unit": "mL/min/{1.73_m2}",
    },
    {
        "patient_id": "t3",
        "age": "45",
        "conditions": "type 2 diabetes [icd10:E11.9]",
        "diet_mg_per_day": "180",
    },
]
DOCUMENTS = {
    "t1": {
        "id": "t1",
        "age": 71,
        "sex": "female",
        "medications": [
            "omeprazole 20 mg",
            {"name": "furosemide", "code": {"system": "rxnorm", "code": "4603"}},
        ],
        "labs": [
            {"test": "serum_creatinine", "value": 1.3, "unit": "mg/dL"},
            {"test": "serum_mg", "value": 1.6, "unit": "mg/dL", "date": "2019-11-02"},
        ],
        "alcohol_drinks_per_day": 0,
    },
    "t2": {
        "id": "t2",
        "birth_date": "1980-05-05",
        "sex": "male",
        "medications": [],
        "labs": [{"test": "egfr", "value": 95, "unit": "mL/min/{1.73_m2}"}],
    },
    "t3": {
        "id": "t3",
        "age": 45,
        "conditions": [{"name": "type 2 diabetes", "code": {"system": "icd10", "code": "E11.9"}}],
        "diet": {"mg_per_day": 180},
    },
}


def write_csv(path, rows):
    columns = sorted({k for row in rows for k in row}, key=lambda c: (c != "patient_id", c))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_rows_match_assess_of_the_document(tmp_path, kb, kind):
    """Each row gives the assessment of its patient document, for CSV and for Parquet."""
    if kind == "csv":
        path = tmp_path / "patients.csv"
        write_csv(path, ROWS)
    else:
        path = tmp_path / "patients.parquet"
        columns = sorted({k for row in ROWS for k in row})
        data = {c: [row.get(c) for row in ROWS] for c in columns}
        data["medications"] = [["omeprazole 20 mg", "furosemide [rxnorm:4603]"], [], None]
        pq.write_table(pa.table(data), path)
    outcome = screen(ScreenOptions(input=path, out=tmp_path / "out", as_of=AS_OF))
    assert "table" == outcome.summary["input"]["format"]
    rows = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    assert ["t1", "t2", "t3"] == [r["patient_id"] for r in rows]
    for row in rows:
        expected = assess(facts_from_document(DOCUMENTS[row["patient_id"]], kb, as_of=AS_OF), kb).to_dict()
        assert sha(expected) == row["assessment_sha256"], row["patient_id"]
    assert 0 == outcome.issues
    assert 1 == rows[0]["mds_ppi"] and 1 == rows[0]["mds_diuretic"]


def test_unknown_column_is_refused(tmp_path):
    """A misspelt column is refused, naming it."""
    write_csv(tmp_path / "t.csv", [{"patient_id": "x", "serum_mg_unt": "mmol/L"}])
    with pytest.raises(InvalidInputError, match="serum_mg_unt"):
        screen(ScreenOptions(input=tmp_path / "t.csv", out=tmp_path / "out", as_of=AS_OF))
    assert not (tmp_path / "out").exists()


def test_lab_needs_its_unit(tmp_path):
    """A lab value column without its unit column is refused: no unit is ever assumed."""
    write_csv(tmp_path / "t.csv", [{"patient_id": "x", "serum_mg": "0.7"}])
    with pytest.raises(InvalidInputError, match="serum_mg_unit"):
        screen(ScreenOptions(input=tmp_path / "t.csv", out=tmp_path / "out", as_of=AS_OF))


def test_bad_cell_is_counted_and_strict_stops(tmp_path):
    """A bad value leaves that patient unassessed and counted; --strict stops instead."""
    rows = [*ROWS, {"patient_id": "t4", "serum_mg": "0.7", "serum_mg_unit": "furlongs"}]
    write_csv(tmp_path / "t.csv", rows)
    outcome = screen(ScreenOptions(input=tmp_path / "t.csv", out=tmp_path / "out", as_of=AS_OF))
    assert 1 == outcome.summary["issues"]["counts"]["patient_not_assessed"]
    assert 1 == outcome.summary["not_assessed"]
    row = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()[-1]
    assert row["status"] is None and "furlongs" in row["error"]
    with pytest.raises(InvalidInputError, match="t4"):
        screen(ScreenOptions(input=tmp_path / "t.csv", out=tmp_path / "strict", as_of=AS_OF, strict=True))
