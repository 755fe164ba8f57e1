"""Spark on a standalone cluster (a master and two workers on loopback), over Spark Connect, and local.

The daemons are started from the installed PySpark (see ``spark_cluster``), once for this
module, and stopped at its end. Screening runs as ``magstat screen`` in a process of its own,
as a user would run it (one Spark driver per process), and must give DuckDB's outputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from magstat.batch import ScreenOptions, screen
from tests.batch.conftest import AS_OF

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.spark, pytest.mark.spark_cluster, pytest.mark.slow]

if shutil.which("java") is None:  # pragma: no cover - depends on the machine
    pytest.skip("Spark needs a Java runtime", allow_module_level=True)

from tests.batch.spark_cluster import Cluster, start_cluster, start_connect_server  # noqa: E402

SCREEN_SECONDS = 420
"""A bound on one screening run on the cluster (the machine may be shared)."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """A master and two workers (1 core, 1 GB each) on 127.0.0.1, stopped after the module."""
    with start_cluster(tmp_path_factory.mktemp("spark-cluster"), workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def duck(bulk, tmp_path_factory) -> Path:
    """DuckDB's screening of the test patients, the reference every Spark run must equal."""
    out = tmp_path_factory.mktemp("duck") / "out"
    screen(ScreenOptions(input=bulk, out=out, as_of=AS_OF))
    return out


def _screen_cli(bulk: Path, out: Path, *engine: str) -> subprocess.CompletedProcess[str]:
    """``magstat screen`` on the Spark engine in its own process (loopback only, this Python)."""
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    command = [sys.executable, "-m", "magstat", "screen", str(bulk), "--out", str(out)]
    command += ["--as-of", AS_OF.isoformat(), "--engine", "spark", "--no-progress", *engine]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=SCREEN_SECONDS, check=False
    )


def _assert_same_outputs(duck: Path, spark: Path) -> None:
    """Results row by row and byte for byte, the same issues, the same summary but for the engine's name."""
    expected_rows = pq.read_table(duck / "results.parquet").to_pylist()
    actual_rows = pq.read_table(spark / "results.parquet").to_pylist()
    assert len(expected_rows) >= 10
    assert len(expected_rows) == len(actual_rows)
    for expected_row, actual_row in zip(expected_rows, actual_rows, strict=True):
        assert expected_row == actual_row
    assert (duck / "results.parquet").read_bytes() == (spark / "results.parquet").read_bytes()
    assert (duck / "issues.csv").read_text(encoding="utf-8") == (spark / "issues.csv").read_text(
        encoding="utf-8"
    )
    # The summary byte for byte, per-file line counts included; only the engine's name differs.
    expected = (duck / "summary.json").read_bytes()
    actual = (spark / "summary.json").read_bytes()
    assert b'"engine": "spark"' in actual
    assert expected == actual.replace(b'"engine": "spark"', b'"engine": "duckdb"', 1)


def test_cluster_screen_matches_duckdb(cluster, bulk, duck, tmp_path):
    """`magstat screen --spark-master spark://...` on two workers gives DuckDB's outputs exactly."""
    out = tmp_path / "spark"
    conf = ["--spark-conf", "spark.executor.memory=512m", "--spark-conf", "spark.driver.memory=768m"]
    run = _screen_cli(bulk, out, "--spark-master", cluster.master_url, *conf)
    assert 0 == run.returncode, run.stderr[-4000:] + cluster.logs()
    _assert_same_outputs(duck, out)
    # Both workers ran an executor of the screening (one application folder each).
    for index in range(cluster.workers):
        apps = list((cluster.log_dir / f"work-{index}").glob("app-*"))
        assert 1 <= len(apps), cluster.logs()


def test_connect_screen_matches_duckdb(bulk, duck, tmp_path):
    """`magstat screen --spark-remote sc://...` on a Connect server from the PySpark wheel gives DuckDB's outputs."""
    pytest.importorskip("grpc")
    with start_connect_server(tmp_path / "connect") as server:
        out = tmp_path / "spark"
        run = _screen_cli(bulk, out, "--spark-remote", str(server.remote_url))
        assert 0 == run.returncode, run.stderr[-4000:] + server.logs()
    _assert_same_outputs(duck, out)


def test_local_screen_takes_a_memory_limit_written_as_for_duckdb(bulk, duck, tmp_path):
    """`--memory-limit 1GB` (DuckDB's way of writing it, as the help shows) starts the Spark driver.

    The JVM takes sizes as ``1024m``, not ``1GB``: the size is given to it in MiB. It once failed
    to start, an internal error.
    """
    out = tmp_path / "spark"
    run = _screen_cli(bulk, out, "--memory-limit", "1GB", "--threads", "1")
    assert 0 == run.returncode, run.stderr[-4000:]
    _assert_same_outputs(duck, out)
