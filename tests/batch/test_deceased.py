"""Screening keeps deceased patients apart: counted, not assessed, out of every figure."""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest

from magstat.adapters.fhir import facts_from_fhir
from magstat.batch import ScreenOptions, screen
from magstat.batch.popgen import read_bundle, write_bulk
from magstat.cli import main
from magstat.core import assess
from tests import context_cases as cases
from tests.batch.conftest import sha
from tests.conftest import DATA

AS_OF = dt.date(2021, 6, 1)
SYNTHEA = sorted((DATA / "fhir" / "synthea-context").glob("*.json.gz"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The six context patients (three died before 2021) screened on DuckDB."""
    root = tmp_path_factory.mktemp("ctx")
    write_bulk(SYNTHEA, root / "bulk")
    outcome = screen(ScreenOptions(input=root / "bulk", out=root / "out", as_of=AS_OF, workers=0))
    return outcome, root / "out"


def test_deceased_are_counted_apart(run):
    """Three deceased: in 'deceased', in no status count, no MDS figure and no drug prevalence."""
    outcome, _ = run
    summary = outcome.summary
    assert 6 == summary["patients"]
    assert 3 == summary["deceased"]
    assert 3 == sum(summary["status_counts"].values())
    assert 3 == summary["mds_complete"] + summary["mds_incomplete"]


def test_rows_are_what_assess_gives(run):
    """Each row, deceased or not, is the assessment `magstat assess` gives for the bundle."""
    _, out = run
    kb_rows = pq.read_table(out / "results.parquet").to_pylist()
    from magstat.kb import load  # noqa: PLC0415

    kb = load()
    by_id = {}
    for path in SYNTHEA:
        bundle = read_bundle(path)
        pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        by_id[pid] = assess(facts_from_fhir(bundle, kb, as_of=AS_OF, strict=False), kb).to_dict()
    assert sorted(by_id) == sorted(row["patient_id"] for row in kb_rows)
    for row in kb_rows:
        expected = by_id[row["patient_id"]]
        assert sha(expected) == row["assessment_sha256"]
        assert expected["deceased"] == row["deceased"]
        if row["deceased"]:
            assert ("indeterminate", ["patient.deceased"]) == (row["status"], row["findings"])


def test_report_says_so(run):
    """The HTML report states how many deceased patients were left out of the figures."""
    _, out = run
    html = (out / "report.html").read_text()
    assert "<tr><th>deceased</th><td>3 (died on or before the as-of date" in html


def test_screen_command_prints_the_count(tmp_path, capsys):
    """`magstat screen` prints the deceased count on its summary lines."""
    write_bulk([cases.deceased(deceasedDateTime="2020-01-01"), cases.denial()], tmp_path / "bulk")
    code = main(
        [
            "screen",
            str(tmp_path / "bulk"),
            "--out",
            str(tmp_path / "out"),
            "--as-of",
            "2024-05-01",
            "--no-progress",
        ]
    )
    assert 0 == code
    assert "deceased: 1 (not assessed; left out of the figures)" in capsys.readouterr().out
