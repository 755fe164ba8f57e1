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


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (("--spark-master", "local[1]"), "--spark-master"),
        (("--spark-remote", "sc://127.0.0.1:15002"), "--spark-remote"),
        (("--spark-conf", "spark.executor.memory=1g"), "--spark-conf"),
    ],
)
def test_spark_options_without_spark_are_named(tmp_path, flags, field):
    """The refusal names the Spark option that was given, not another one."""
    with pytest.raises(InvalidInputError) as caught:
        screen_cli.run(parse(str(tmp_path), "--out", str(tmp_path / "o"), *flags))
    assert field == caught.value.field


@pytest.mark.parametrize(
    ("flags", "field", "allowed"),
    [
        (("--workers", "-1"), "--workers", "0 (the per-patient step in the screening process) to 256"),
        (("--workers", "100000"), "--workers", "to 256"),
        (("--threads", "-3"), "--threads", "0 (all cores) to 1024"),
        (("--memory-limit", "5XB"), "--memory-limit", "512MB, 2GB or 4GiB"),
        (("--memory-limit", "10MB"), "--memory-limit", "at least 64MB"),
    ],
)
def test_settings_out_of_range_are_refused_before_anything_starts(tmp_path, flags, field, allowed):
    """Workers, threads and memory are checked first (exit 2 naming the flag), not by the engine."""
    write_bulk(synthea_py_files()[:1], tmp_path / "bulk")
    with pytest.raises(InvalidInputError) as caught:
        screen_cli.run(parse(str(tmp_path / "bulk"), "--out", str(tmp_path / "o"), *flags))
    assert field == caught.value.field
    assert allowed in (caught.value.allowed or "")
    assert not (tmp_path / "o").exists()


def test_memory_sizes_are_read_as_duckdb_writes_them():
    """512MB and 2GB are decimal, 4GiB binary; the Spark engine is given the same size in MiB."""
    from magstat.batch.pipeline import memory_bytes  # noqa: PLC0415 - the function under test

    assert 512 * 10**6 == memory_bytes("512MB")
    assert 2 * 10**9 == memory_bytes("2 gb")
    assert 4 * 2**30 == memory_bytes("4GiB")
    assert 5 * 10**8 == memory_bytes("0.5GB")


def test_a_folder_is_not_a_table(tmp_path):
    """--input-format table on a folder is invalid input, not an output error."""
    with pytest.raises(InvalidInputError, match="is not a file"):
        screen_cli.run(parse(str(tmp_path), "--out", str(tmp_path / "o"), "--input-format", "table"))


def test_missing_input_is_refused(tmp_path):
    """A path that does not exist is invalid input (exit 2 at the command's edge)."""
    with pytest.raises(InvalidInputError, match="no such file"):
        screen_cli.run(
            parse(str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--as-of", "2020-01-01")
        )
