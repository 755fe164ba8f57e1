"""Fixtures of the service tests: a live server on a free port, the mock EHR, a frozen clock.

Every test talks to a real uvicorn server over HTTP on 127.0.0.1 (no in-process shortcuts), so
that the middleware, the limits and the headers are exercised as an EHR meets them.

With ``MAGSTAT_TEST_WORKERS=N`` (N > 1) every :func:`live` server is instead uvicorn with N
worker processes, as ``magstat serve --workers N`` runs (the settings reach the workers through
the environment, the state they share through the database, the test's clock through a file):
the same tests then check the service across workers. A test that reads the application's
state in process is skipped in that mode with the reason.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("fastapi", reason="the service extra is not installed")
pytest.importorskip("jwt", reason="the service extra is not installed")
pytest.importorskip("pydantic_settings", reason="the service extra is not installed")
pytest.importorskip("uvicorn", reason="the service extra is not installed")

import uvicorn
from pydantic import BaseModel, SecretStr

from magstat.service import Settings, create_app, load_settings
from tests.conftest import ROOT, SYNTHEA_PY, every_patient, synthea
from tests.service.ehr import Record, Signer, load_bundle

AS_OF = dt.datetime(2021, 6, 1, 12, 0, tzinfo=dt.UTC)
"""The frozen clock of the service tests: just after the Synthea records end (dates shifted to 2021)."""

SYNTHEA = every_patient("synthea")
SYNTHEA_PY_FILES = every_patient("synthea-py")


def frozen_clock() -> dt.datetime:
    """The service clock in tests."""
    return AS_OF


WORKERS = int(os.environ.get("MAGSTAT_TEST_WORKERS", "1") or "1")
"""Worker processes of every live server (1: the application in a thread of the test process)."""


in_process_only = pytest.mark.skipif(
    WORKERS > 1,
    reason="reads the service's log records in process (MAGSTAT_TEST_WORKERS runs worker processes)",
)
"""Marks a test that reads what the service logs through the test process's logging."""


class Live:
    """A running service: its base URL and the application object (in process only)."""

    def __init__(self, base: str, app: Any, server: uvicorn.Server | None) -> None:
        self.base = base
        self._app = app
        self.server = server

    @property
    def app(self) -> Any:
        """The application object; a test that reads it is skipped when the service runs in workers."""
        if self._app is None:
            pytest.skip(
                "reads the application's state in process (MAGSTAT_TEST_WORKERS runs worker processes)"
            )
        return self._app

    def url(self, path: str) -> str:
        """The absolute URL of a path."""
        return self.base + path


@contextmanager
def live(
    settings: Settings, clock: Callable[[], dt.datetime] = frozen_clock, *, workers: int = 1
) -> Iterator[Live]:
    """Run the service with ``settings`` on a free port, for the duration of a block.

    One worker: the application in a thread of the test process. ``workers`` above 1 (or
    ``MAGSTAT_TEST_WORKERS``): that many worker processes (:func:`live_workers`).
    """
    count = workers if workers > 1 else WORKERS
    if count > 1:
        with live_workers(settings, count, clock) as running:
            yield running
        return
    app = create_app(settings, clock=clock)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Live(f"http://127.0.0.1:{port}", app, server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _plain(value: Any) -> Any:
    """Settings as JSON values, secrets revealed (they go to the workers' environment only)."""
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@contextmanager
def live_workers(
    settings: Settings, workers: int, clock: Callable[[], dt.datetime] = frozen_clock
) -> Iterator[Live]:
    """Run the service as uvicorn with ``workers`` processes on a free port, for the duration of a block.

    The workers read the service clock from a file: the time of ``clock`` at the start, and,
    for a clock with a ``file`` attribute (one that tests move), each time it is moved.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plain = _plain(settings)
    cds = plain["cds"]
    for name in ("suppression_secret", "report_secret"):  # one key for all workers, as serve does
        cds[name] = cds[name] or secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAGSTAT_", "PROMETHEUS_"))}
    env.update(
        {f"MAGSTAT_{section.upper()}": json.dumps(plain[section]) for section in plain if section != "demo"}
    )
    env["MAGSTAT_DEMO"] = "true" if settings.demo else "false"

    runner = (
        "import uvicorn\n"
        f"uvicorn.run('tests.service.workers_app:create', factory=True, workers={workers}, host='127.0.0.1', "
        f"port={port}, access_log=False, timeout_worker_healthcheck=60, timeout_graceful_shutdown=5)\n"
    )
    with tempfile.TemporaryDirectory(prefix="magstat-workers-") as tmp:
        env["PROMETHEUS_MULTIPROC_DIR"] = tmp
        clock_file = Path(tmp) / "clock"
        clock_file.write_text(clock().isoformat(), encoding="utf-8")
        if hasattr(clock, "file"):
            clock.file = clock_file
        env["MAGSTAT_TEST_CLOCK_FILE"] = str(clock_file)
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-c", runner], cwd=ROOT, env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 120
            while log.read_text(errors="replace").count("Application startup complete") < workers:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "the test workers did not start: " + log.read_text(errors="replace")[-3000:]
                    )
                time.sleep(0.1)
            yield Live(f"http://127.0.0.1:{port}", None, None)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def signer() -> Signer:
    """The test EHR's keys."""
    return Signer()


@pytest.fixture
def jwks_file(tmp_path: Path, signer: Signer) -> Path:
    """The test EHR's public keys, in a file."""
    return signer.write_jwks(tmp_path / "ehr.jwks.json")


@pytest.fixture
def make_settings(tmp_path: Path, jwks_file: Path) -> Callable[..., Settings]:
    """Settings with the test EHR trusted (or demo mode), a SQLite file and local FHIR allowed."""

    def make(*, demo: bool = False, database: str | None = None, **cds: Any) -> Settings:
        cds_settings: dict[str, Any] = {
            "trusted_issuers": [{"iss": "https://ehr.example.org", "jwks_file": str(jwks_file)}],
            "allow_http_fhir_server": True,
            **cds,
        }
        return load_settings(
            None,
            demo=demo,
            cds=cds_settings,
            database={"url": database or f"sqlite:///{tmp_path / 'feedback.sqlite3'}"},
        )

    return make


@pytest.fixture
def demo_server(make_settings: Callable[..., Settings]) -> Iterator[Live]:
    """A live service in demo mode (no authentication)."""
    with live(make_settings(demo=True)) as server:
        yield server


@pytest.fixture
def auth_server(make_settings: Callable[..., Settings]) -> Iterator[Live]:
    """A live service that requires the test EHR's JWT."""
    with live(make_settings()) as server:
        yield server


@pytest.fixture(scope="session")
def records() -> dict[str, Record]:
    """A few synthetic patients of tests/data, by short name."""
    chosen = {
        "py06": SYNTHEA_PY / "patient-06.json.gz",
        "py07": SYNTHEA_PY / "patient-07.json.gz",
        "coleman": synthea("Coleman_Ortiz"),
        "barrett": synthea("Barrett_Douglas"),
        "antonio": synthea("Antonio_Castellanos"),
    }
    return {name: Record(load_bundle(path)) for name, path in chosen.items()}


def hook_request(hook: str, patient_id: str, **extra: Any) -> dict[str, Any]:
    """A CDS Hooks request body."""
    import uuid  # noqa: PLC0415

    context = {"userId": "Practitioner/example", "patientId": patient_id}
    context.update(extra.pop("context", {}))
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context, **extra}


def post(live_server: Live, path: str, body: Any, token: str | None = None, **kwargs: Any) -> httpx.Response:
    """POST JSON to the live service."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.post(live_server.url(path), json=body, headers=headers, timeout=30, **kwargs)
