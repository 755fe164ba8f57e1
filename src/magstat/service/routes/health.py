"""``GET /healthz``: is the service up, with which knowledge base, and is the database reachable."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from magstat import __version__
from magstat.service.deps import FeedbackDep, KBDep, SettingsDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness and versions")
async def healthz(settings: SettingsDep, kb: KBDep, store: FeedbackDep) -> dict[str, Any]:
    """Report the service as up, with its versions, authentication mode and database state."""
    database = "ok" if await run_in_threadpool(store.ping) else "unavailable"
    return {
        "status": "ok" if database == "ok" else "degraded",
        "version": __version__,
        "knowledge_base": {"version": kb.version, "sha256": kb.sha256},
        "auth": "required" if settings.auth_enabled else "DISABLED (demo mode)",
        "database": {"kind": store.kind, "state": database},
    }
