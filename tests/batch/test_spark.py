"""The Spark engine (local mode) gives the same rows as DuckDB and as ``magstat assess``."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from magstat.batch import ScreenOptions, screen
from magstat.batch.engines.base import RunContext
from magstat.batch.engines.spark import SparkEngine
from magstat.batch.issues import IssueLog
from magstat.batch.popgen import write_bulk
from magstat.batch.readers import fhir_bulk
from magstat.batch.rows import Job
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
    stages = tmp_path / "stages.json"
    outcome = screen(
        ScreenOptions(
            input=tmp_path / "bulk",
            out=tmp_path / "spark",
            as_of=AS_OF,
            engine="spark",
            threads=2,
            spark_conf={"spark.magstat.stageTimes": str(stages)},
        )
    )
    duck = pq.read_table(tmp_path / "duck" / "results.parquet")
    spark = pq.read_table(tmp_path / "spark" / "results.parquet")
    assert duck.num_rows >= 10
    assert duck.equals(spark)
    for row in spark.to_pylist():
        assert sha(expected[row["patient_id"]]) == row["assessment_sha256"]
    assert "spark" == outcome.summary["engine"]
    assert 0 == outcome.issues
    # The summary byte for byte, per-file line counts included; only the engine's name differs.
    summary = (tmp_path / "spark" / "summary.json").read_bytes()
    assert (tmp_path / "duck" / "summary.json").read_bytes() == summary.replace(
        b'"engine": "spark"', b'"engine": "duckdb"', 1
    )
    # Where the time went, as asked for by spark.magstat.stageTimes: one record per result part.
    times = json.loads(stages.read_text(encoding="utf-8"))
    assert 4 == times["tasks"]
    for stage in ("session", "scan", "flatten_and_shuffle", "assess_stage", "driver_merge"):
        assert 0 <= times[stage] < 600
    assert 0 < times["task_seconds"]["python"]


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


def test_spark_result_parts_do_not_depend_on_the_input_split(tmp_path, kb):
    """Executors write the same part files, byte for byte, however Spark splits the input."""
    write_bulk(synthea_py_files()[:4], tmp_path / "bulk", compress=False, max_file_bytes=400_000)
    source = fhir_bulk.discover(tmp_path / "bulk")
    job = Job(as_of=AS_OF, strict=False, details=False, kb_sha256=kb.sha256)
    parts = {}
    for split in ("128MB", "64KB"):  # one task per file, or many per file
        work = tmp_path / f"work-{split}"
        work.mkdir()
        engine = SparkEngine(conf={"spark.sql.files.maxPartitionBytes": split})
        try:
            ctx = RunContext(kb=kb, issues=IssueLog(), work_dir=work, threads=2)
            results = [r for batch in engine.screen_fhir(source, job, ctx) for r in batch]
        finally:
            engine.close()
        folder = work / "spark-results"
        parts[split] = {p.name: p.read_bytes() for p in sorted(folder.glob("part-*.parquet"))}
        assert [p.name for p in folder.iterdir() if not p.name.startswith("part-")] == []
        ids = [r.row["patient_id"] for r in results if r.row is not None]
        assert sorted(ids) == ids
        assert len(ids) >= 4
    assert ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet", "part-00003.parquet"] == sorted(
        parts["128MB"]
    )
    assert parts["128MB"] == parts["64KB"]
