"""The application factory of the service tests' worker processes (``MAGSTAT_TEST_WORKERS=2``).

uvicorn imports this module in each worker and calls :func:`create`: the settings come from the
environment the test wrote; the clock reads the time the test published in the file named by
``MAGSTAT_TEST_CLOCK_FILE`` (the tests' frozen clock, or one a test moves).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from fastapi import FastAPI

from magstat.service import create_app, load_settings


def create() -> FastAPI:
    """The service as ``magstat serve`` builds it in a worker, with the tests' clock."""
    source = Path(os.environ["MAGSTAT_TEST_CLOCK_FILE"])

    def clock() -> dt.datetime:
        return dt.datetime.fromisoformat(source.read_text(encoding="utf-8"))

    return create_app(load_settings(), clock=clock)
