"""A small key/value store with expiry that every worker process of the service shares.

``magstat serve --workers N`` runs N processes; what one of them learns that another must know
lives here, in the feedback database (SQLite in WAL mode by default, PostgreSQL by URL; see
:mod:`magstat.service.feedback`), not in a process's memory:

- ``jti``: the JWT ids already seen, per issuer, until their token expires (a replayed token
  is refused whichever worker sees it);
- ``report``: the assessments behind card links (a link issued by one worker opens on another);
- ``session``: SMART app launch sessions.

Other namespaces may be added: a namespace is a short lower-case name
(``[a-z][a-z0-9_]{0,31}``), a key any text up to 512 characters, a value bytes (encode
JSON or a pickle yourself). Every item has a time to live; an expired item is never returned,
and expired rows are deleted in the background of later writes (at most once every
``purge_every_seconds`` per process) or by :meth:`SharedStore.purge`.

Operations (all blocking; see below for the service's event loop):

- :meth:`SharedStore.put` writes or replaces an item;
- :meth:`SharedStore.add` writes it only if no live item has the key, atomically across
  processes (``True`` when written): the replay check of ``jti`` rests on it;
- :meth:`SharedStore.get` reads a live item, :meth:`SharedStore.delete` removes one.

:meth:`SharedStore.trim` keeps only the newest items of a namespace (a bound on its size).

One table, ``magstat_kv (namespace, key, value, expires_at)``, with the primary key
``(namespace, key)`` and indexes on ``expires_at`` and ``(namespace, expires_at)``; it is created on first use, idempotently
(several workers starting at once may all try). Times are Unix seconds from the store's clock
(``time.time`` by default): the workers of one machine, or of one PostgreSQL database, share it.

Like the feedback store, each :class:`SharedStore` holds one connection used under a lock, with
every wait bounded (``timeout_seconds``); a broken PostgreSQL connection is reopened once. A
SQLite connection runs with ``synchronous=NORMAL``, which WAL makes safe from corruption: a power
cut may lose the last moments' writes (a few remembered token ids or reports), never the file.
In the service, calls go through the bounded thread pool
(:class:`magstat.service.feedback.DatabaseRunner`), so that a slow database never stalls the
event loop::

    store = request.app.state.store
    raw = await request.app.state.database.run(lambda: store.get("session", session_id))

Errors are :class:`magstat.service.feedback.StorageError` (the service answers 503).

.. versionadded:: 0.3.0
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from magstat.service.feedback import HeldConnection, StorageError, connection_broken, sqlite_busy

__all__ = ["MAX_KEY_CHARS", "NAMESPACE_PATTERN", "SharedStore", "WalCheckpointer", "sqlite_path"]

log = logging.getLogger("magstat.service.store")

NAMESPACE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
"""What a namespace may be: a short lower-case name."""

MAX_KEY_CHARS = 512
"""The longest key."""

_T = TypeVar("_T")

_TABLE = """
CREATE TABLE IF NOT EXISTS magstat_kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value {blob} NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (namespace, key)
)
"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS magstat_kv_expires ON magstat_kv (expires_at)",
    "CREATE INDEX IF NOT EXISTS magstat_kv_namespace_expires ON magstat_kv (namespace, expires_at)",
)


class SharedStore(HeldConnection):
    """Items by namespace and key, each until it expires, in SQLite or PostgreSQL.

    Args:
        url: the database URL (``sqlite:///file.db``, ``postgresql://...``), as the feedback
            store takes it. ``sqlite://`` alone (or ``:memory:``) is a private in-memory
            database: one process only, for tests.
        timeout_seconds: the longest wait for a connection, a statement or the lock.
        purge_every_seconds: the least time between two purges of expired rows by writes.
        clock: returns the time in Unix seconds (tests replace it).

    .. versionadded:: 0.3.0

    """

    what = "shared store"

    def __init__(
        self,
        url: str,
        timeout_seconds: float = 5.0,
        *,
        purge_every_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(url, timeout_seconds)
        self.purge_every = purge_every_seconds
        self.clock = clock
        self._mark = self.mark
        self._ready = False
        self._next_purge = 0.0

    # -- connection ------------------------------------------------------------------------

    def _transact(self, work: Callable[[Any], _T]) -> _T:
        """Run ``work(cursor)`` in one transaction, under the lock, creating the table first.

        A broken PostgreSQL connection is reopened, and a transaction that PostgreSQL ended as
        a deadlock or serialisation failure (concurrent workers) is run again, each once or twice.
        """
        if not self._lock.acquire(timeout=self.timeout_seconds):
            raise StorageError(f"the {self.kind} shared store is busy (an earlier call has not ended)")
        try:
            for attempt in (1, 2, 3):
                conn = self._connect()
                try:
                    cur = conn.cursor()
                    if not self._ready:
                        # In a transaction of its own: DDL locks the table, and held with the
                        # work's row locks it would deadlock with a worker starting alongside.
                        blob = "BYTEA" if self.kind == "postgresql" else "BLOB"
                        cur.execute(_TABLE.format(blob=blob))
                        for index in _INDEXES:
                            cur.execute(index)
                        conn.commit()
                        self._ready = True
                    out = work(cur)
                    conn.commit()
                    return out
                except Exception as exc:
                    with contextlib.suppress(Exception):  # the connection may be gone already
                        conn.rollback()
                    if attempt < 3 and self.kind == "postgresql" and connection_broken(exc):
                        self.close_unlocked()
                        continue
                    if attempt < 3 and _retryable(exc):
                        continue
                    raise StorageError(f"{self.kind} shared store error ({type(exc).__name__})") from None
            raise StorageError("unreachable")  # pragma: no cover
        finally:
            self._lock.release()

    # -- operations ------------------------------------------------------------------------

    def initialise(self) -> None:
        """Create the table if it is missing (every call does it until it has succeeded once).

        Raises:
            StorageError: the database cannot be reached or written.

        """
        self._transact(lambda cur: None)

    def put(self, namespace: str, key: str, value: bytes, ttl_seconds: float) -> None:
        """Write an item, replacing any item with the same key, for ``ttl_seconds``.

        Raises:
            ValueError: a namespace or key that is not allowed, or a TTL that is not positive.
            StorageError: the database cannot be reached or written.

        """
        _check(namespace, key, ttl_seconds)
        now = self.clock()
        m = self._mark
        sql = (
            f"INSERT INTO magstat_kv (namespace, key, value, expires_at) VALUES ({m}, {m}, {m}, {m}) "  # noqa: S608 - markers only
            "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
        )

        self._transact(lambda cur: cur.execute(sql, (namespace, key, bytes(value), now + ttl_seconds)))
        self._purge_if_due(now)

    def add(self, namespace: str, key: str, value: bytes, ttl_seconds: float) -> bool:
        """Write an item only if no live item has that key; ``True`` when it was written.

        Atomic across connections and processes: of several callers adding the same key at
        once, exactly one gets ``True``. An expired item with the key counts as absent.

        Raises:
            ValueError: a namespace or key that is not allowed, or a TTL that is not positive.
            StorageError: the database cannot be reached or written.

        """
        _check(namespace, key, ttl_seconds)
        now = self.clock()
        m = self._mark
        # One statement: insert, or take over an expired row; a live row is left alone (no row
        # changed). Both databases take the row lock for the conflict check, so it is atomic.
        sql = (
            f"INSERT INTO magstat_kv (namespace, key, value, expires_at) VALUES ({m}, {m}, {m}, {m}) "  # noqa: S608 - markers only
            "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at "
            f"WHERE magstat_kv.expires_at <= {m}"
        )

        def work(cur: Any) -> bool:
            cur.execute(sql, (namespace, key, bytes(value), now + ttl_seconds, now))
            return bool(cur.rowcount == 1)

        added = self._transact(work)
        self._purge_if_due(now)
        return added

    def get(self, namespace: str, key: str) -> bytes | None:
        """The value of a live item, or ``None`` when there is none (never written, expired, deleted).

        Raises:
            ValueError: a namespace or key that is not allowed.
            StorageError: the database cannot be reached.

        """
        _check(namespace, key, 1.0)
        now = self.clock()
        m = self._mark
        sql = f"SELECT value FROM magstat_kv WHERE namespace = {m} AND key = {m} AND expires_at > {m}"  # noqa: S608 - markers only

        def work(cur: Any) -> bytes | None:
            cur.execute(sql, (namespace, key, now))
            row = cur.fetchone()
            return None if row is None else bytes(row[0])

        return self._transact(work)

    def delete(self, namespace: str, key: str) -> bool:
        """Remove an item; ``True`` when a live one was there.

        Raises:
            ValueError: a namespace or key that is not allowed.
            StorageError: the database cannot be reached or written.

        """
        _check(namespace, key, 1.0)
        now = self.clock()
        m = self._mark
        sql = f"DELETE FROM magstat_kv WHERE namespace = {m} AND key = {m} AND expires_at > {m}"  # noqa: S608 - markers only
        cleanup = f"DELETE FROM magstat_kv WHERE namespace = {m} AND key = {m}"  # noqa: S608 - markers only

        def work(cur: Any) -> bool:
            cur.execute(sql, (namespace, key, now))
            found = bool(cur.rowcount == 1)
            cur.execute(cleanup, (namespace, key))  # an expired row with the key goes too
            return found

        return self._transact(work)

    def purge(self) -> int:
        """Delete every expired row now; return how many went.

        Raises:
            StorageError: the database cannot be reached or written.

        """
        now = self.clock()
        self._next_purge = now + self.purge_every

        def work(cur: Any) -> int:
            cur.execute(f"DELETE FROM magstat_kv WHERE expires_at <= {self._mark}", (now,))  # noqa: S608 - marker only
            return int(cur.rowcount)

        return self._transact(work)

    def trim(self, namespace: str, max_items: int) -> int:
        """Keep at most the ``max_items`` items of a namespace that expire last; delete the others.

        Returns:
            how many rows were deleted (expired rows of every namespace go too).

        Raises:
            ValueError: a namespace that is not allowed or a negative ``max_items``.
            StorageError: the database cannot be reached or written.

        """
        if not NAMESPACE_PATTERN.match(namespace):
            raise ValueError(f"namespace {namespace[:40]!r}: allowed: {NAMESPACE_PATTERN.pattern}")
        if max_items < 0:
            raise ValueError(f"max_items {max_items}: allowed: 0 or more")
        now = self.clock()
        m = self._mark
        # The expiry of the newest item to drop; it and every older one of the namespace go (items
        # that expire at the very same time as it go with it).
        cutoff = (
            f"SELECT expires_at FROM magstat_kv WHERE namespace = {m} "  # noqa: S608 - markers only
            f"ORDER BY expires_at DESC LIMIT 1 OFFSET {m}"
        )
        drop = f"DELETE FROM magstat_kv WHERE namespace = {m} AND expires_at <= {m}"  # noqa: S608 - markers only

        def work(cur: Any) -> int:
            cur.execute(f"DELETE FROM magstat_kv WHERE expires_at <= {m}", (now,))  # noqa: S608 - marker only
            deleted = int(cur.rowcount)
            cur.execute(cutoff, (namespace, max_items))
            row = cur.fetchone()
            if row is not None:
                cur.execute(drop, (namespace, row[0]))
                deleted += int(cur.rowcount)
            return deleted

        return self._transact(work)

    def count(self, namespace: str) -> int:
        """How many live items a namespace holds (for tests and operators)."""
        if not NAMESPACE_PATTERN.match(namespace):
            raise ValueError(f"namespace {namespace[:40]!r}: allowed: {NAMESPACE_PATTERN.pattern}")
        now = self.clock()
        m = self._mark
        sql = f"SELECT COUNT(*) FROM magstat_kv WHERE namespace = {m} AND expires_at > {m}"  # noqa: S608 - markers only

        def work(cur: Any) -> int:
            cur.execute(sql, (namespace, now))
            return int(cur.fetchone()[0])

        return self._transact(work)

    def ping(self) -> bool:
        """Whether the database answers and holds the table (created if missing)."""
        try:
            self.initialise()
        except StorageError:
            return False
        return True

    def _purge_if_due(self, now: float) -> None:
        """After a write: delete expired rows, at most once per ``purge_every`` (a failure waits for the next)."""
        if now < self._next_purge:
            return
        self._next_purge = now + self.purge_every
        with contextlib.suppress(StorageError):
            self.purge()


def _check(namespace: str, key: str, ttl_seconds: float) -> None:
    if not NAMESPACE_PATTERN.match(namespace):
        raise ValueError(f"namespace {namespace[:40]!r}: allowed: {NAMESPACE_PATTERN.pattern}")
    if not key or len(key) > MAX_KEY_CHARS or "\x00" in key:
        raise ValueError(f"key: allowed: 1 to {MAX_KEY_CHARS} characters without NUL")
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds {ttl_seconds!r}: allowed: a positive number of seconds")


def _retryable(exc: Exception) -> bool:
    """Whether running the transaction again may succeed.

    PostgreSQL: a deadlock or serialisation failure, or the duplicate-type or duplicate-table
    error of two workers creating the table at the same moment (the other one won). SQLite: the
    database was busy or locked past the busy handler (a WAL snapshot that went stale).
    """
    if isinstance(exc, sqlite3.OperationalError):
        return sqlite_busy(exc)
    return getattr(exc, "sqlstate", "") in ("40P01", "40001", "23505", "42P07")


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite database URL (``sqlite:///file.db``); ``None`` for an in-memory one or another database."""
    scheme, _, rest = url.partition(":")
    if scheme.split("+", 1)[0].lower() in ("postgresql", "postgres"):
        return None
    path = rest[3:] if rest.startswith("///") else rest.lstrip("/")
    return None if not path or path == ":memory:" else path


class WalCheckpointer:
    """Copies a SQLite database's write-ahead log into the database file, from a thread of its own.

    A SQLite connection otherwise does this itself in the commit that takes the log past
    ``wal_autocheckpoint`` pages, and that commit then waits for two fsyncs: in the service,
    on the event loop, every few hundred hook calls (measured: 15-40 ms stalls, which every
    call in flight waits out). The service's connections set a high ``wal_autocheckpoint`` (a
    bound on the log should this thread stop) and this thread checkpoints every
    ``every_seconds`` in ``PASSIVE`` mode, which never makes a reader or writer wait; SQLite
    releases the interpreter lock while it copies and syncs.

    Args:
        path: the database file.
        every_seconds: the time between two checkpoints.

    .. versionadded:: 0.3.0

    """

    def __init__(self, path: str, every_seconds: float = 0.5) -> None:
        self.path = path
        self.every = every_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0
        """Checkpoints run so far (for tests and operators)."""

    def start(self) -> None:
        """Start the thread (a daemon: it never holds up the process's exit)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="magstat-wal-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last checkpoint (waits at most a few seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """One passive checkpoint on ``conn``; an error is logged, and the next one tried later."""
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("SQLite checkpoint failed (%s); the next one is tried later", type(exc).__name__)
        else:
            self.checkpoints += 1

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.every):
                if conn is None:
                    if not Path(self.path).exists():
                        continue  # not created yet: the stores create it on first use
                    conn = sqlite3.connect(self.path, check_same_thread=False, timeout=1.0)
                self.checkpoint(conn)
            if conn is not None:
                self.checkpoint(conn)
        except sqlite3.Error as exc:
            log.warning("SQLite checkpoint thread stopped (%s)", type(exc).__name__)
        finally:
            if conn is not None:
                conn.close()
