"""``GET /healthz``: is the service up, with which knowledge base, and is the database reachable.

The database check runs on the store's own bounded pool and waits at most one second, so a
database that does not answer makes the answer "degraded", never slow. The feedback table is
created by this check when it is missing (a database that was down at start-up).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from magstat import __version__
from magstat.service.deps import DatabaseDep, FeedbackDep, KBDep, SettingsDep
from magstat.service.feedback import StorageError

router = APIRouter(tags=["health"])

_PING_SECONDS = 1.0


@router.get("/healthz", summary="Liveness and versions")
async def healthz(
    settings: SettingsDep, kb: KBDep, store: FeedbackDep, runner: DatabaseDep
) -> dict[str, Any]:
    """Report the service as up, with its versions, authentication mode and database state."""
    try:
        database = "ok" if await runner.run(store.ping, _PING_SECONDS) else "unavailable"
    except StorageError:
        database = "not answering"
    return {
        "status": "ok" if database == "ok" else "degraded",
        "version": __version__,
        "knowledge_base": {"version": kb.version, "sha256": kb.sha256},
        "auth": "required" if settings.auth_enabled else "DISABLED (demo mode)",
        "database": {"kind": store.kind, "state": database, "feedback_table": store.ready},
    }
