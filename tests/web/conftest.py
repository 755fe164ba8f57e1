"""Fixtures of the web tests: an in-process client, a real server, and headless Chromium.

The browser tests drive Debian's Chromium (``/usr/bin/chromium``, or ``MAGSTAT_CHROMIUM``)
through Playwright; Playwright's own browser download is never used. They are skipped only
when that executable is missing; CI installs it (``apt-get install -y chromium``).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, ROOT

with warnings.catch_warnings():
    # Starlette asks for httpx2 in its test client; plain httpx works and only warns.
    warnings.filterwarnings("ignore", message=r".*starlette\.testclient.*")
    from fastapi.testclient import TestClient

from magstat.web import create_web_app, routes

CHROMIUM = Path(os.environ.get("MAGSTAT_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
ARTIFACTS = ROOT / "artifacts"
FROZEN_TODAY = dt.date(2024, 5, 1)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """A test client of the standalone web app, with "today" frozen at 2024-05-01."""
    monkeypatch.setattr(routes, "_today", lambda: FROZEN_TODAY)
    with TestClient(create_web_app()) as test_client:
        yield test_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    """The web app served by uvicorn in a child process on a free local port; yields its URL."""
    port = _free_port()
    code = (
        "import uvicorn; from magstat.web import create_web_app; "
        f"uvicorn.run(create_web_app(), host='127.0.0.1', port={port}, log_level='warning')"
    )
    # The app lists the synthetic patients of tests/data besides its built-in ones.
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MAGSTAT_SHARED_DATA": str(DATA)}
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/static/magstat.css", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the web app did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Browser:
    """A headless Chromium context that records every request it is asked to make."""

    def __init__(self, context: Any, base: str) -> None:
        self.context = context
        self.base = base
        self.external: list[str] = []
        context.route("**/*", self._route)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith((self.base, "data:", "blob:")):
            route.continue_()
        else:
            # Works offline: anything not served by the app is refused, and remembered.
            self.external.append(url)
            route.abort()

    def page(self) -> Any:
        """A new tab that fails the test on any console error (CSP refusals, 404s, script errors)."""
        page = self.context.new_page()
        page.set_default_timeout(20_000)
        page.console_errors = []
        # A refused form comes back as 422 with the form and its messages: expected, not an error.
        page.on(
            "console",
            lambda m: (
                m.type == "error" and "status of 422" not in m.text and page.console_errors.append(m.text)
            ),
        )
        page.on("pageerror", lambda e: page.console_errors.append(str(e)))
        return page


@pytest.fixture(scope="session")
def browser(server: str) -> Iterator[Browser]:
    """Headless Debian Chromium, driven by Playwright, with a fresh profile."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only the browser tests need it

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="magstat-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900},
            accept_downloads=True,
            locale="en-GB",
            timezone_id="Europe/London",
        )
        try:
            yield Browser(context, server)
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Browser) -> Iterator[Any]:
    """A fresh tab; closed after the test, which must leave no console error behind."""
    tab = browser.page()
    yield tab
    errors = list(tab.console_errors)
    tab.close()
    assert [] == errors
