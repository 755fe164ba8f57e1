"""Fixtures of the SMART tests: the test EHR with shared Synthea patients, and magstat as its app.

The EHR and the service each run on their own free port of 127.0.0.1 (two origins, as an EHR and
an app have); the service is configured for SMART only (``[cds] require_auth = false``, no
trusted issuers, one ``[[smart.ehrs]]``) with its clock set to the end of the patient's record.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("authlib", reason="the service extra is not installed")
pytest.importorskip("uvicorn", reason="the service extra is not installed")

import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from magstat.service import Settings, create_app, load_settings
from tests.cli.test_shared_patients import end_of_record
from tests.conftest import SYNTHEA_PY, synthea
from tests.ehr.server import TestEhr, running
from tests.service.ehr import Record, load_bundle

PATIENT_FILES: dict[str, Path] = {
    "py06": SYNTHEA_PY / "patient-06.json.gz",
    "py07": SYNTHEA_PY / "patient-07.json.gz",
    "coleman": synthea("Coleman_Ortiz"),
    "barrett": synthea("Barrett_Douglas"),
    "antonio": synthea("Antonio_Castellanos"),
}
"""Shared synthetic patients of tests/data the test EHR serves, by short name."""


class App:
    """The running magstat service: its base URL, the application and the clock it reads."""

    def __init__(self, base: str, app: Any) -> None:
        self.base = base
        self.app = app
        self.today = dt.date(2021, 6, 1)
        app.state.clock = lambda: dt.datetime.combine(self.today, dt.time(12), tzinfo=dt.UTC)

    def url(self, path: str) -> str:
        """An absolute URL of the service."""
        return self.base + path

    def assess_as_of(self, name: str) -> str:
        """Set the service's date to the end of a patient's record; return it (for ``magstat assess``)."""
        as_of = end_of_record(PATIENT_FILES[name])
        self.today = dt.date.fromisoformat(as_of)
        return as_of


@contextmanager
def serve(settings: Settings) -> Iterator[App]:
    """Run the service with ``settings`` on a free loopback port in a thread."""
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield App(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def ehr_records() -> dict[str, Record]:
    """The shared patients as the test EHR holds them, by short name."""
    return {name: Record(load_bundle(path)) for name, path in PATIENT_FILES.items()}


@pytest.fixture
def ehr(ehr_records: dict[str, Record]) -> Iterator[TestEhr]:
    """A running test EHR serving the shared patients."""
    with running(TestEhr({r.patient_id: r for r in ehr_records.values()})) as server:
        yield server


def write_key(path: Path, kind: str) -> Path:
    """A new private key in PEM: ``ec`` (P-384, ES384) or ``rsa`` (2048 bits, RS384)."""
    key = ec.generate_private_key(ec.SECP384R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    return path


def smart_settings(ehr: TestEhr, *, private_key_file: Path | None = None, **smart: Any) -> Settings:
    """Service settings for SMART only, with the test EHR registered."""
    entry: dict[str, Any] = {"iss": ehr.fhir_base, "client_id": "magstat", "name": "Test EHR"}
    if private_key_file is not None:
        entry["private_key_file"] = str(private_key_file)
    return load_settings(
        None,
        cds={"require_auth": False},
        smart={"ehrs": [entry], "allow_http": True, "fhir_deadline_seconds": 20, **smart},
        database={"url": "sqlite:///:memory:"},
    )


@pytest.fixture
def make_app(ehr: TestEhr, tmp_path: Path) -> Iterator[Callable[..., App]]:
    """Start magstat registered with the test EHR: public, or confidential (``key="ec"``/``"rsa"``)."""
    stack: list[Any] = []

    def make(*, key: str | None = None, register: bool = True, **smart: Any) -> App:
        key_file = write_key(tmp_path / f"magstat-{key}.pem", key) if key else None
        cm = serve(smart_settings(ehr, private_key_file=key_file, **smart))
        app = cm.__enter__()
        stack.append(cm)
        if register:
            jwks = None
            if key_file is not None:
                import httpx  # noqa: PLC0415

                jwks = httpx.get(app.url("/smart/jwks.json")).json()
            ehr.register("magstat", app.url("/smart/callback"), jwks)
        return app

    yield make
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def _in_browser(work: Callable[[Any], Any]) -> Any:
    """Run ``work(tab)`` with a fresh headless Chromium tab, all of it on a thread of its own.

    Playwright's sync API runs an event loop in the thread that starts it, and refuses to start
    where one is running: the web tests keep their browser (and its loop) open in the main
    thread for the whole session. A thread per test keeps the two apart, in any test order.
    """
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only the browser tests need it

    from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: PLC0415

    profile = tempfile.mkdtemp(prefix="magstat-smart-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
                locale="en-GB",
            )
            try:
                tab = context.new_page()
                tab.set_default_timeout(20_000)
                tab.console_errors = []
                tab.on("console", lambda m: m.type == "error" and tab.console_errors.append(m.text))
                tab.on("pageerror", lambda e: tab.console_errors.append(str(e)))
                return work(tab)
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browse() -> Callable[[Callable[[Any], Any]], Any]:
    """``browse(work)``: run ``work(tab)`` in headless Chromium on its own thread; return its result.

    Skipped when Debian's Chromium is not installed (as the web tests are).
    """
    import concurrent.futures  # noqa: PLC0415

    from tests.web.conftest import CHROMIUM, SCREENSHOTS  # noqa: PLC0415

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def run(work: Callable[[Any], Any]) -> Any:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(_in_browser, work).result(timeout=180)

    return run
