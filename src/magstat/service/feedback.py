"""Storage of CDS Hooks card feedback: SQLite by default, PostgreSQL by URL.

One table, created on startup if it is missing. Each feedback item is one row: the service, the
card uuid, the outcome, the accepted suggestion uuids (a JSON array), the override reason and the
clinician's comment, the EHR's timestamp, and the verified issuer and tenant of the caller. No
patient data is stored (the card uuid does not identify a patient); the comment is free text the
clinician typed and is stored as sent, never logged.

Plain DB-API (``sqlite3``, ``psycopg``): one connection per store, used under a lock; a broken
PostgreSQL connection is reopened on the next call.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["FeedbackRecord", "FeedbackStore", "StorageError"]

SCHEMA_VERSION = 1

_COLUMNS = (
    "received_at",
    "service_id",
    "card_uuid",
    "outcome",
    "accepted_suggestions",
    "override_system",
    "override_code",
    "override_display",
    "user_comment",
    "outcome_timestamp",
    "issuer",
    "tenant",
)

_TABLE = """
CREATE TABLE IF NOT EXISTS magstat_cds_feedback (
    id {id_type},
    received_at TEXT NOT NULL,
    service_id TEXT NOT NULL,
    card_uuid TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
    accepted_suggestions TEXT NOT NULL,
    override_system TEXT,
    override_code TEXT,
    override_display TEXT,
    user_comment TEXT,
    outcome_timestamp TEXT NOT NULL,
    issuer TEXT,
    tenant TEXT
)
"""
_INDEX = "CREATE INDEX IF NOT EXISTS magstat_cds_feedback_card ON magstat_cds_feedback (card_uuid)"
_META = "CREATE TABLE IF NOT EXISTS magstat_schema (name TEXT PRIMARY KEY, version INTEGER NOT NULL)"


class StorageError(Exception):
    """The feedback database cannot be reached or written."""


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One feedback item, ready to store."""

    service_id: str
    card_uuid: str
    outcome: str
    accepted_suggestions: tuple[str, ...]
    outcome_timestamp: datetime
    override_system: str | None = None
    override_code: str | None = None
    override_display: str | None = None
    user_comment: str | None = None
    issuer: str | None = None
    tenant: str | None = None


class FeedbackStore:
    """Feedback rows in SQLite (``sqlite:///file.db``) or PostgreSQL (``postgresql://...``)."""

    def __init__(self, url: str) -> None:
        scheme, _, rest = url.partition(":")
        self.kind = (
            "postgresql" if scheme.split("+", 1)[0].lower() in ("postgresql", "postgres") else "sqlite"
        )
        if self.kind == "postgresql":
            self._dsn = "postgresql:" + rest
        else:
            path = rest[3:] if rest.startswith("///") else rest.lstrip("/")
            self._dsn = path or ":memory:"
        self._conn: Any = None
        self._lock = threading.Lock()

    @property
    def mark(self) -> str:
        """The DB-API parameter marker of the driver."""
        return "%s" if self.kind == "postgresql" else "?"

    def _connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        try:
            if self.kind == "postgresql":
                import psycopg  # noqa: PLC0415 - PostgreSQL is optional; loaded only when configured

                self._conn = psycopg.connect(self._dsn, connect_timeout=5)
            else:
                if self._dsn != ":memory:":
                    Path(self._dsn).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self._dsn, check_same_thread=False, timeout=5.0)
                conn.execute("PRAGMA journal_mode=WAL")
                self._conn = conn
        except Exception as exc:
            raise StorageError(
                f"cannot open the {self.kind} feedback database ({type(exc).__name__})"
            ) from None
        return self._conn

    def _run(self, statements: Sequence[tuple[str, Sequence[Any]]], fetch: bool = False) -> list[Any]:
        with self._lock:
            for attempt in (1, 2):
                conn = self._connect()
                try:
                    cur = conn.cursor()
                    rows: list[Any] = []
                    for sql, params in statements:
                        cur.execute(sql, params)
                    if fetch:
                        rows = list(cur.fetchall())
                    conn.commit()
                    return rows
                except Exception as exc:
                    with contextlib.suppress(Exception):  # the connection may be gone already
                        conn.rollback()
                    if self.kind == "postgresql" and attempt == 1 and _broken(exc):
                        self.close_unlocked()
                        continue
                    raise StorageError(
                        f"{self.kind} feedback database error ({type(exc).__name__})"
                    ) from None
        raise StorageError("unreachable")  # pragma: no cover

    def execute(self, statements: Sequence[tuple[str, Sequence[Any]]], fetch: bool = False) -> list[Any]:
        """Run statements in one transaction on this store's connection (other tables of the service).

        Raises:
            StorageError: the database cannot be reached or written.

        """
        return self._run(statements, fetch)

    def initialise(self) -> None:
        """Create the tables if they are missing.

        Raises:
            StorageError: the database cannot be reached or written.

        """
        id_type = (
            "BIGSERIAL PRIMARY KEY" if self.kind == "postgresql" else "INTEGER PRIMARY KEY AUTOINCREMENT"
        )
        m = self.mark
        upsert = (
            f"INSERT INTO magstat_schema (name, version) VALUES ({m}, {m}) "  # noqa: S608 - markers only
            "ON CONFLICT (name) DO UPDATE SET version = excluded.version"
        )
        self._run(
            [
                (_TABLE.format(id_type=id_type), ()),
                (_INDEX, ()),
                (_META, ()),
                (upsert, ("cds_feedback", SCHEMA_VERSION)),
            ]
        )

    def add(self, records: Sequence[FeedbackRecord]) -> int:
        """Store feedback items in one transaction; return how many were stored.

        Raises:
            StorageError: the database cannot be reached or written.

        """
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        marks = ", ".join([self.mark] * len(_COLUMNS))
        sql = f"INSERT INTO magstat_cds_feedback ({', '.join(_COLUMNS)}) VALUES ({marks})"  # noqa: S608 - constant names and markers only
        statements = []
        for r in records:
            stamp = r.outcome_timestamp
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            statements.append(
                (
                    sql,
                    (
                        now,
                        r.service_id,
                        r.card_uuid,
                        r.outcome,
                        json.dumps(list(r.accepted_suggestions)),
                        r.override_system,
                        r.override_code,
                        r.override_display,
                        r.user_comment,
                        stamp.astimezone(UTC).isoformat(timespec="milliseconds"),
                        r.issuer,
                        r.tenant,
                    ),
                )
            )
        self._run(statements)
        return len(statements)

    def rows(self, service_id: str | None = None) -> list[dict[str, Any]]:
        """The stored rows (oldest first), optionally of one service: for reports and tests."""
        sql = f"SELECT id, {', '.join(_COLUMNS)} FROM magstat_cds_feedback"  # noqa: S608 - constant names
        params: tuple[Any, ...] = ()
        if service_id is not None:
            sql += f" WHERE service_id = {self.mark}"
            params = (service_id,)
        sql += " ORDER BY id"
        out = []
        for row in self._run([(sql, params)], fetch=True):
            item = dict(zip(("id", *_COLUMNS), row, strict=True))
            item["accepted_suggestions"] = json.loads(item["accepted_suggestions"])
            out.append(item)
        return out

    def ping(self) -> bool:
        """Whether the database answers."""
        try:
            self._run([("SELECT 1", ())], fetch=True)
        except StorageError:
            return False
        return True

    def close(self) -> None:
        """Close the connection (it is reopened if the store is used again)."""
        with self._lock:
            self.close_unlocked()

    def close_unlocked(self) -> None:
        """Close the connection; the caller holds the lock."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _broken(exc: Exception) -> bool:
    """Whether a PostgreSQL error means the connection is gone (worth one reconnect)."""
    name = type(exc).__name__
    return name in ("OperationalError", "InterfaceError") or getattr(exc, "sqlstate", "") in (
        "57P01",
        "08006",
    )
