"""The Spark engine (local mode) gives the same rows as DuckDB and as ``magstat assess``."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from magstat.batch import ScreenOptions, screen
from magstat.batch.popgen import write_bulk
from tests.batch.conftest import AS_OF, sha, synthea_py_files, synthea_set_files
from tests.conftest import NHANES

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.spark, pytest.mark.slow]

if shutil.which("java") is None:  # pragma: no cover - depends on the machine
    pytest.skip("Spark needs a Java runtime", allow_module_level=True)


def test_spark_fhir_matches_duckdb_and_assess(tmp_path, expected):
    """A subset of both sets: Spark's results table equals DuckDB's, and assess's hashes."""
    sources = synthea_py_files()[:5] + [p for p in synthea_set_files() if p.name.startswith(("A", "B"))]
    write_bulk(sources, tmp_path / "bulk", compress=True, max_file_bytes=1_500_000)
    screen(ScreenOptions(input=tmp_path / "bulk", out=tmp_path / "duck", as_of=AS_OF))
    outcome = screen(
        ScreenOptions(input=tmp_path / "bulk", out=tmp_path / "spark", as_of=AS_OF, engine="spark", threads=2)
    )
    duck = pq.read_table(tmp_path / "duck" / "results.parquet")
    spark = pq.read_table(tmp_path / "spark" / "results.parquet")
    assert duck.num_rows >= 10
    assert duck.equals(spark)
    for row in spark.to_pylist():
        assert sha(expected[row["patient_id"]]) == row["assessment_sha256"]
    assert "spark" == outcome.summary["engine"]
    assert 0 == outcome.issues


def test_spark_nhanes_matches_duckdb(tmp_path):
    """NHANES records screened on Spark give DuckDB's table and weighted distribution."""
    duck = screen(ScreenOptions(input=NHANES, out=tmp_path / "duck", as_of=AS_OF))
    spark = screen(
        ScreenOptions(input=NHANES, out=tmp_path / "spark", as_of=AS_OF, engine="spark", threads=2)
    )
    assert pq.read_table(tmp_path / "duck" / "results.parquet").equals(
        pq.read_table(tmp_path / "spark" / "results.parquet")
    )
    assert duck.summary["mds_distribution_weighted"] == spark.summary["mds_distribution_weighted"]
