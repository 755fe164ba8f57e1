"""The report is offline and complete; the command runs and says what it wrote."""

from __future__ import annotations

import argparse
import re

import pytest

from magstat.batch import ScreenOptions, screen
from magstat.batch.popgen import write_bulk
from magstat.cli import screen as screen_cli
from magstat.errors import InvalidInputError
from tests.batch.conftest import AS_OF, synthea_py_files
from tests.conftest import NHANES


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    screen_cli.define_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["screen", *argv])


def test_report_is_offline_with_every_plot(tmp_path):
    """report.html has the five plots as inline SVG and loads nothing from the network."""
    screen(ScreenOptions(input=NHANES, out=tmp_path / "out", as_of=AS_OF))
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert 5 == page.count("<svg")
    assert "<script" not in page and "<link" not in page
    assert [] == [u for u in re.findall(r"https?://[^\"' )]+", page) if u != "http://www.w3.org/2000/svg"]
    for title in (
        "Magnesium Depletion Score",
        "Status by age band and sex",
        "Drug classes",
        "Serum magnesium",
        "Data completeness",
    ):
        assert title in page
    assert "survey-weighted" in page


def test_command_screens_and_prints_a_summary(tmp_path, capsys):
    """`magstat screen DIR --out OUT --csv` exits 0, writes the files and prints where."""
    write_bulk(synthea_py_files()[:2], tmp_path / "bulk")
    code = screen_cli.run(
        parse(str(tmp_path / "bulk"), "--out", str(tmp_path / "out"), "--as-of", "2020-01-01", "--csv")
    )
    assert 0 == code
    text = capsys.readouterr().out
    assert "magstat screen: 2 patients (fhir, duckdb)" in text
    assert (tmp_path / "out" / "results.csv").exists()


def test_command_refuses_spark_options_without_spark(tmp_path):
    """Spark options with the DuckDB engine are a usage error."""
    with pytest.raises(InvalidInputError, match="spark"):
        screen_cli.run(parse(str(tmp_path), "--out", str(tmp_path / "o"), "--spark-master", "local[1]"))


def test_missing_input_is_refused(tmp_path):
    """A path that does not exist is invalid input (exit 2 at the command's edge)."""
    with pytest.raises(InvalidInputError, match="no such file"):
        screen_cli.run(
            parse(str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--as-of", "2020-01-01")
        )
