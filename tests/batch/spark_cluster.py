"""A Spark standalone cluster on loopback, started from the installed PySpark (no download).

:func:`start_cluster` starts a master and workers (and, on request, a Spark Connect server)
as separate JVMs, each bound to 127.0.0.1 (``--host`` and ``SPARK_LOCAL_IP``) on free
ephemeral ports, with small memory and one core per worker, logging into a folder of their
own. Every wait is bounded; :meth:`Cluster.stop` kills each daemon's process group, so
nothing is left running even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

START_SECONDS = 90.0
"""How long a daemon may take to start (the machine may be busy)."""

WORKER_MEMORY = "1g"
EXECUTOR_MEMORY = "512m"
DAEMON_MEMORY = "256m"


def spark_home() -> Path:
    """The Spark installation inside the PySpark package (its ``bin`` and ``jars``)."""
    import pyspark  # noqa: PLC0415 - the spark extra

    return Path(pyspark.__file__).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_env(log_dir: Path) -> dict[str, str]:
    """The environment of every daemon: loopback only, this Python, small daemon heaps."""
    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOCAL_HOSTNAME="127.0.0.1",
        SPARK_DAEMON_MEMORY=DAEMON_MEMORY,
        SPARK_LOG_DIR=str(log_dir),
        SPARK_WORKER_DIR=str(log_dir / "work"),
        SPARK_LOCAL_DIRS=str(log_dir / "local"),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        # The master's REST submission server would take the fixed port 6066.
        SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false",
    )
    return env


@dataclass
class Cluster:
    """A running standalone cluster: its URLs, its processes and their logs.

    A context manager: leaving the ``with`` block stops every daemon.
    """

    master_url: str
    log_dir: Path
    workers: int
    remote_url: str | None = None
    processes: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def stop(self) -> None:
        """Stop every daemon (SIGTERM to its process group, SIGKILL after 15 s)."""
        for process, _ in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process, _ in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        """The tail of every daemon's log, to explain a failure."""
        parts = []
        for _, log in self.processes:
            text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            parts.append(f"--- {log.name}\n{text[-3000:]}")
        return "\n".join(parts)


def _launch(cluster: Cluster, name: str, args: list[str], env: dict[str, str]) -> Path:
    log = cluster.log_dir / f"{name}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group, killed as one
        )
    cluster.processes.append((process, log))
    return log


def _wait_for(cluster: Cluster, log: Path, text: str, what: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(encoding="utf-8", errors="replace"):
            return
        for process, _ in cluster.processes:
            if process.poll() is not None:
                raise RuntimeError(f"a Spark daemon ended while starting {what}\n{cluster.logs()}")
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not start in {START_SECONDS:.0f} s\n{cluster.logs()}")


def start_cluster(log_dir: Path, workers: int = 2) -> Cluster:
    """Start a master and ``workers`` workers (1 core, 1 GB each).

    Raises:
        RuntimeError: a daemon did not start in time (its log is in the message); whatever
            had started is stopped first.

    """
    log_dir.mkdir(parents=True, exist_ok=True)
    env = daemon_env(log_dir)
    spark_class = str(spark_home() / "bin" / "spark-class")
    port = free_port()
    cluster = Cluster(master_url=f"spark://127.0.0.1:{port}", log_dir=log_dir, workers=workers)
    try:
        master = _launch(
            cluster,
            "master",
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(free_port())],
            env,
        )  # fmt: skip
        _wait_for(cluster, master, "I have been elected leader", "the master")
        for index in range(workers):
            worker_env = dict(env, SPARK_WORKER_DIR=str(log_dir / f"work-{index}"))
            log = _launch(
                cluster,
                f"worker-{index}",
                [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                 "--port", str(free_port()), "--webui-port", str(free_port()),
                 "--cores", "1", "--memory", WORKER_MEMORY, cluster.master_url],
                worker_env,
            )  # fmt: skip
            _wait_for(cluster, log, "Successfully registered with master", f"worker {index}")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_connect_server(log_dir: Path, master: str = "local[1]") -> Cluster:
    """Start a Spark Connect server (the jar shipped in the PySpark wheel) on a free port.

    Its driver runs ``master`` (one local core by default, so that it takes no worker away
    from a cluster test); :attr:`Cluster.remote_url` is its ``sc://`` address.

    Raises:
        RuntimeError: the server did not start in time, or the PySpark wheel has no
            ``spark-connect`` jar.

    """
    log_dir.mkdir(parents=True, exist_ok=True)
    env = daemon_env(log_dir)
    del env["SPARK_DAEMON_MEMORY"]  # the launcher would give the server's driver this small heap
    jars = sorted((spark_home() / "jars").glob("spark-connect_*.jar"))
    if not jars:
        raise RuntimeError(f"no spark-connect jar in {spark_home() / 'jars'}")
    port = free_port()
    cluster = Cluster(master_url=master, log_dir=log_dir, workers=0, remote_url=f"sc://127.0.0.1:{port}")
    try:
        log = _launch(
            cluster,
            "connect",
            [str(spark_home() / "bin" / "spark-submit"),
             "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
             "--master", master, "--name", "magstat-connect", "--driver-memory", "768m",
             "--conf", "spark.ui.enabled=false",
             "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
             "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
             "--conf", f"spark.connect.grpc.binding.port={port}",
             "--conf", "spark.sql.session.timeZone=UTC",
             str(jars[0])],
            env,
        )  # fmt: skip
        _wait_for(cluster, log, "Spark Connect server started", "the Spark Connect server")
    except BaseException:
        cluster.stop()
        raise
    return cluster
