"""Full reports behind the card links: kept in memory for a while, reached by an unguessable URL.

A card's link opens the HTML report in the clinician's browser, which cannot send the EHR's
JWT; the URL therefore carries a random 256-bit token instead, and the report is forgotten after
``cds.report_ttl_seconds`` (or when ``cds.report_max_entries`` newer ones push it out). The
assessment is kept, not its HTML: a report is rendered only if someone opens it. It is kept
pickled and compressed (about 4 KiB): one bytes object per report, which the garbage collector
never has to walk, so that thousands of kept reports do not slow every request down.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import pickle
import re
import secrets
import threading
import time
import zlib
from collections import OrderedDict

from magstat.core.result import Assessment

__all__ = ["TOKEN_PATTERN", "ReportStore"]

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")
"""A report token: 32 random bytes, URL-safe base64 without padding."""


class ReportStore:
    """Assessments by token, each for a limited time."""

    def __init__(self, ttl_seconds: float, max_entries: int) -> None:
        self.ttl = ttl_seconds
        self.max = max_entries
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, result: Assessment) -> str:
        """Keep an assessment; return its token."""
        token = secrets.token_urlsafe(32)
        expires = time.monotonic() + self.ttl
        packed = zlib.compress(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL), 1)
        with self._lock:
            self._items[token] = (expires, packed)
            while len(self._items) > self.max:
                self._items.popitem(last=False)
        return token

    def get(self, token: str) -> Assessment | None:
        """The assessment of a token, or ``None`` when unknown or expired."""
        if not TOKEN_PATTERN.match(token):
            return None
        now = time.monotonic()
        with self._lock:
            found = self._items.get(token)
            if found is None:
                return None
            if found[0] < now:
                del self._items[token]
                return None
        # Only bytes this process pickled itself are ever unpickled (never input from outside).
        result: Assessment = pickle.loads(zlib.decompress(found[1]))  # noqa: S301
        return result

    def __len__(self) -> int:
        return len(self._items)
