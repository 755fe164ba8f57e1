"""The web app: a clinician's page, a plain-language self-check, printable and PDF reports.

:data:`router` holds every page, the downloads and the static files, so a service mounts the
whole app with ``app.include_router(router)``. :func:`create_web_app` wraps it in a FastAPI
app of its own, for running and testing without the service.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from fastapi import FastAPI

from magstat import __version__
from magstat.web.routes import get_kb, router

__all__ = ["create_web_app", "get_kb", "router"]


def create_web_app() -> FastAPI:
    """A FastAPI app serving the web app at ``/`` (no OpenAPI pages: the pages are HTML)."""
    app = FastAPI(
        title="magstat web app",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(router)
    return app
