"""Storage of CDS Hooks card feedback: SQLite by default, PostgreSQL by URL.

One table, created when the store is first used and created again on the next call if that
failed (a database that is down at start-up is picked up when it comes back). Each feedback item is one row: the service, the
card uuid, the outcome, the accepted suggestion uuids (a JSON array), the override reason and the
clinician's comment, the EHR's timestamp, and the verified issuer and tenant of the caller. No
patient data is stored (the card uuid does not identify a patient); the comment is free text the
clinician typed and is stored as sent, never logged.

Plain DB-API (``sqlite3``, ``psycopg``): one connection per store, used under a lock; a broken
PostgreSQL connection is reopened on the next call. SQLite runs in WAL mode with
``synchronous=NORMAL`` (no fsync per commit: a power cut may lose the last commits, never the
file).

Every wait is bounded, so that a database that accepts connections and never answers cannot
stall the service: PostgreSQL connects with ``connect_timeout`` and runs with a
``statement_timeout``; the lock is taken with a timeout; and the service runs the store's calls
on its own small pool of daemon threads (:class:`DatabaseRunner`), waits for each at most the
configured time, and refuses new work at once while the pool is saturated. A call stuck in the
driver then holds one of those threads, never one that other routes need, and never keeps the
process from stopping.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["DatabaseRunner", "FeedbackRecord", "FeedbackStore", "StorageError"]

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


class HeldConnection:
    """One connection to the service's database, opened on first use and guarded by a lock.

    The feedback store and the shared key/value store (:mod:`magstat.service.store`) both hold
    their connection this way: the URL is read the same, the connection is opened by
    :func:`open_connection`, and closing never waits long on a call stuck in the driver.

    Args:
        url: ``sqlite:///file.db`` (``sqlite://`` alone or ``:memory:``: a private in-memory
            database) or ``postgresql://...``.
        timeout_seconds: the longest wait for a connection, a statement or the lock.

    """

    what = "database"
    """The store's name in error messages."""

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        self.timeout_seconds = timeout_seconds
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
        if self._conn is None:
            self._conn = open_connection(self.kind, self._dsn, self.timeout_seconds, self.what)
        return self._conn

    def close(self) -> None:
        """Close the connection (it is reopened if the store is used again).

        A connection held by a call stuck in the driver is left alone (the lock is not had in
        time), so that stopping the service never waits on the database.
        """
        if self._lock.acquire(timeout=1.0):
            try:
                self.close_unlocked()
            finally:
                self._lock.release()

    def close_unlocked(self) -> None:
        """Close the connection; the caller holds the lock."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def connection_broken(exc: Exception) -> bool:
    """Whether a PostgreSQL error means the connection is gone (worth one reconnect)."""
    name = type(exc).__name__
    return name in ("OperationalError", "InterfaceError") or getattr(exc, "sqlstate", "") in (
        "57P01",
        "08006",
    )


class FeedbackStore(HeldConnection):
    """Feedback rows in SQLite (``sqlite:///file.db``) or PostgreSQL (``postgresql://...``).

    Args:
        url: the database URL.
        timeout_seconds: the longest wait for a connection, a statement or the lock.

    """

    what = "feedback database"

    def __init__(self, url: str, timeout_seconds: float = 5.0) -> None:
        super().__init__(url, timeout_seconds)
        self.ready = False

    def _run(self, statements: Sequence[tuple[str, Sequence[Any]]], fetch: bool = False) -> list[Any]:
        if not self._lock.acquire(timeout=self.timeout_seconds):
            raise StorageError(f"the {self.kind} feedback database is busy (an earlier call has not ended)")
        try:
            return self._run_locked(statements, fetch)
        finally:
            self._lock.release()

    def _run_locked(self, statements: Sequence[tuple[str, Sequence[Any]]], fetch: bool) -> list[Any]:
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
                if self.kind == "postgresql" and attempt == 1 and connection_broken(exc):
                    self.close_unlocked()
                    continue
                raise StorageError(f"{self.kind} feedback database error ({type(exc).__name__})") from None
        raise StorageError("unreachable")  # pragma: no cover

    def execute(self, statements: Sequence[tuple[str, Sequence[Any]]], fetch: bool = False) -> list[Any]:
        """Run statements in one transaction on this store's connection (other tables of the service).

        Raises:
            StorageError: the database cannot be reached or written.

        """
        return self._run(statements, fetch)

    def initialise(self) -> None:
        """Create the tables if they are missing (every use does it until it has succeeded once).

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
        self.ready = True

    def _ensure_ready(self) -> None:
        if not self.ready:
            self.initialise()

    def add(self, records: Sequence[FeedbackRecord]) -> int:
        """Store feedback items in one transaction; return how many were stored.

        Raises:
            StorageError: the database cannot be reached or written.

        """
        self._ensure_ready()
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
        self._ensure_ready()
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
        """Whether the database answers and holds the feedback table (created if missing)."""
        try:
            self._ensure_ready()
            self._run([("SELECT 1 FROM magstat_schema", ())], fetch=True)
        except StorageError:
            return False
        return True


class DatabaseRunner:
    """A small pool of daemon threads for the store's blocking calls, with bounded waits.

    Args:
        threads: how many calls may run at once.
        queue_limit: how many more may wait; beyond that a call is refused at once.
        timeout_seconds: the longest a caller waits for its call to end.

    """

    def __init__(self, threads: int = 4, queue_limit: int = 16, timeout_seconds: float = 5.0) -> None:
        self.timeout_seconds = timeout_seconds
        self._slots = threading.BoundedSemaphore(threads + queue_limit)
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"magstat-db-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            call, future = job
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(call())
                    except BaseException as exc:  # handed to the waiting caller
                        future.set_exception(exc)
            finally:
                self._slots.release()

    async def run(self, call: Callable[[], Any], timeout_seconds: float | None = None) -> Any:
        """Run ``call`` on the pool and wait for it at most the timeout.

        Raises:
            StorageError: the pool is saturated, or the call did not end in time.

        """
        if not self._slots.acquire(blocking=False):
            raise StorageError("the feedback database is not keeping up (too many calls waiting)")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((call, future))
        wait = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=wait)
        except TimeoutError:
            raise StorageError(f"the feedback database did not answer within {wait:g} s") from None

    def stop(self) -> None:
        """Let idle threads end (a thread stuck in a call is a daemon: it does not hold the process)."""
        for _ in self._threads:
            self._jobs.put(None)


WAL_AUTOCHECKPOINT_PAGES = 10_000
"""Pages of write-ahead log after which a committing connection checkpoints it itself."""


def open_connection(kind: str, dsn: str, timeout_seconds: float, what: str) -> Any:
    """Open one connection to the service's database (PostgreSQL, or SQLite in WAL mode).

    Both the feedback store and the shared key/value store (:mod:`magstat.service.store`) open
    their connections here, so they agree on time limits and durability.

    Args:
        kind: ``"postgresql"`` or ``"sqlite"``.
        dsn: the PostgreSQL connection string, or the SQLite file path (``:memory:`` allowed).
        timeout_seconds: the connect, statement and busy-wait limit.
        what: the store's name, for the error message.

    Returns:
        A DB-API connection.

    Raises:
        StorageError: the database cannot be opened (the message names no credentials).

    """
    try:
        if kind == "postgresql":
            import psycopg  # noqa: PLC0415 - PostgreSQL is optional; loaded only when configured

            wait = max(2, round(timeout_seconds))  # libpq's least useful connect_timeout
            return psycopg.connect(
                dsn,
                connect_timeout=wait,
                options=f"-c statement_timeout={int(timeout_seconds * 1000)}",
            )
        if dsn != ":memory:":
            Path(dsn).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(dsn, check_same_thread=False, timeout=timeout_seconds)
        _wal(conn, time.monotonic() + timeout_seconds)
        # WAL with synchronous=NORMAL: a commit does not wait for fsync (about 5 ms each on a busy
        # disk, paid by every hook call that remembers its cards); the file cannot be corrupted,
        # a power cut may lose the last moments' rows.
        conn.execute("PRAGMA synchronous=NORMAL")
        # The log is copied into the database by a thread of the service (WalCheckpointer), not
        # by the commit that fills it; this is the bound should that thread not run (40 MiB).
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        return conn
    except Exception as exc:
        raise StorageError(f"cannot open the {kind} {what} ({type(exc).__name__})") from None


def sqlite_busy(exc: Exception) -> bool:
    """Whether a SQLite error is a busy or locked database (trying again may succeed)."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    )


def _wal(conn: sqlite3.Connection, until: float) -> None:
    """Switch a SQLite database to WAL; while another connection does the same, wait and retry."""
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not sqlite_busy(exc) or time.monotonic() > until:
                raise
            time.sleep(0.01)
