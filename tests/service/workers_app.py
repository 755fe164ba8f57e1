"""The application factory of the service tests' worker processes (``MAGSTAT_TEST_WORKERS=2``).

uvicorn imports this module in each worker and calls :func:`create`: the settings come from the
environment the test wrote, the clock is the tests' frozen clock (``MAGSTAT_TEST_CLOCK``).
"""

from __future__ import annotations

import datetime as dt
import os

from fastapi import FastAPI

from magstat.service import create_app, load_settings


def create() -> FastAPI:
    """The service as ``magstat serve`` builds it in a worker, with the tests' frozen clock."""
    frozen = dt.datetime.fromisoformat(os.environ["MAGSTAT_TEST_CLOCK"])
    return create_app(load_settings(), clock=lambda: frozen)
