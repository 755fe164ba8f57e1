"""Server-side sessions of the SMART app: the browser holds an opaque random id, the rest is here.

A session holds what the app needs between requests: during the launch the ``state``, the PKCE
verifier and the EHR; after it the tokens, the patient id and the granted scopes. Nothing
clinical is stored: each result page reads the chart again with the access token.

:class:`SessionStore` is the small interface the routes use (put, get, delete, each entry with
its own lifetime). The service keeps its sessions in :class:`SharedSessionStore`, on the shared
key/value store of the feedback database (:mod:`magstat.service.store`, namespace
``session``), so that every worker process sees every session; :class:`MemorySessionStore`
keeps them in one process (tests, the standalone web app).

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from magstat.service.store import SharedStore

__all__ = ["SESSION_ID_PATTERN", "MemorySessionStore", "SessionStore", "SharedSessionStore", "new_session_id"]

SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{43}$"
"""A session id: 32 random bytes, URL-safe base64 without padding."""


def new_session_id() -> str:
    """A new opaque session id (256 random bits)."""
    return secrets.token_urlsafe(32)


class SessionStore(Protocol):
    """Key/value entries with a lifetime each; values are JSON-ready dicts."""

    def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl_seconds`` (replacing what was there)."""

    def get(self, key: str) -> dict[str, Any] | None:
        """The value of ``key``, or ``None`` when unknown or expired."""

    def delete(self, key: str) -> None:
        """Forget ``key`` (no error when unknown)."""


class MemorySessionStore:
    """Sessions in this process's memory, each until it expires; the oldest go first when full.

    Args:
        max_entries: the most sessions kept; beyond it the oldest is dropped (its user
            launches again).
        clock: seconds on a monotonic clock (tests move it forward).

    """

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._items: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries
        self._clock = clock

    def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl_seconds``."""
        expires = self._clock() + ttl_seconds
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (expires, copy.deepcopy(value))
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def get(self, key: str) -> dict[str, Any] | None:
        """The value of ``key``, or ``None`` when unknown or expired (an expired one is removed)."""
        now = self._clock()
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            if found[0] <= now:
                del self._items[key]
                return None
            return copy.deepcopy(found[1])

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class SharedSessionStore:
    """Sessions in the service's shared key/value store (namespace ``session``), as JSON.

    Its calls block on the database: the routes call them off the event loop. A database that
    cannot be reached raises :class:`magstat.service.feedback.StorageError`.
    """

    NAMESPACE = "session"

    def __init__(self, store: SharedStore) -> None:
        self.store = store

    def put(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl_seconds``."""
        self.store.put(self.NAMESPACE, key, json.dumps(value).encode("utf-8"), ttl_seconds)

    def get(self, key: str) -> dict[str, Any] | None:
        """The value of ``key``, or ``None`` when unknown or expired."""
        raw = self.store.get(self.NAMESPACE, key)
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        self.store.delete(self.NAMESPACE, key)
