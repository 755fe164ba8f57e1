"""Fixtures of the service tests: a live server on a free port, the mock EHR, a frozen clock.

Every test talks to a real uvicorn server over HTTP on 127.0.0.1 (no in-process shortcuts), so
that the middleware, the limits and the headers are exercised as an EHR meets them.
"""

from __future__ import annotations

import datetime as dt
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

from magstat.service import Settings, create_app, load_settings
from tests.conftest import SYNTHEA_PY, every_patient, synthea
from tests.service.ehr import Record, Signer, load_bundle

AS_OF = dt.datetime(2021, 6, 1, 12, 0, tzinfo=dt.UTC)
"""The frozen clock of the service tests: just after the Synthea records end (dates shifted to 2021)."""

SYNTHEA = every_patient("synthea")
SYNTHEA_PY_FILES = every_patient("synthea-py")


def frozen_clock() -> dt.datetime:
    """The service clock in tests."""
    return AS_OF


class Live:
    """A running service: its base URL and the application object."""

    def __init__(self, base: str, app: Any, server: uvicorn.Server) -> None:
        self.base = base
        self.app = app
        self.server = server

    def url(self, path: str) -> str:
        """The absolute URL of a path."""
        return self.base + path


@contextmanager
def live(settings: Settings, clock: Callable[[], dt.datetime] = frozen_clock) -> Iterator[Live]:
    """Run the service with ``settings`` on a free port in a thread, for the duration of a block."""
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
