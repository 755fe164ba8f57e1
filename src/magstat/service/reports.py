"""Full reports behind the card links: kept for a while in the shared store, reached by an unguessable URL.

A card's link opens the HTML report in the clinician's browser, which cannot send the EHR's
JWT; the URL therefore carries a random 256-bit token instead, and the report is forgotten after
``cds.report_ttl_seconds``. The assessment is kept, not its HTML: a report is rendered only if
someone opens it.

The reports live in the ``report`` namespace of the store every worker process shares
(:mod:`magstat.service.store`), so that a link issued by one worker opens on any other. Each is
kept pickled and compressed (about 4 KiB), followed by an HMAC-SHA256 tag under
``cds.report_secret``: only a report that a magstat worker holding that key wrote is ever
unpickled, never bytes someone else put in the database. ``cds.report_max_entries`` bounds
how many are kept: the oldest beyond it are deleted, at most every ``trim_every_seconds`` per
process (so the bound is exceeded by at most the reports of that interval).

The calls are blocking (database I/O); the service runs them on its database thread pool.

.. versionadded:: 0.1.0
.. versionchanged:: 0.3.0
   In the shared store instead of one process's memory, signed with ``cds.report_secret``.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import re
import secrets
import time
import zlib
from collections.abc import Callable

from magstat.core.result import Assessment
from magstat.service.store import SharedStore

__all__ = ["NAMESPACE", "TOKEN_PATTERN", "ReportStore"]

TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")
"""A report token: 32 random bytes, URL-safe base64 without padding."""

NAMESPACE = "report"
"""The namespace of the reports in the shared store."""

_TAG_BYTES = 32


class ReportStore:
    """Assessments by token, each for a limited time, in the shared store.

    Args:
        store: the shared store.
        ttl_seconds: how long a report is kept.
        max_entries: how many reports are kept at most (the oldest go first).
        secret: the HMAC key of the stored reports (every worker must have the same).
        trim_every_seconds: the least time between two trims to ``max_entries`` by this process.
        clock: monotonic seconds, for the trim interval (tests replace it).

    """

    def __init__(
        self,
        store: SharedStore,
        ttl_seconds: float,
        max_entries: int,
        secret: bytes,
        *,
        trim_every_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self.max = max_entries
        self._key = secret
        self.trim_every = trim_every_seconds
        self._clock = clock
        self._next_trim = 0.0

    def _tag(self, token: str, packed: bytes) -> bytes:
        return hmac.new(self._key, token.encode() + b"\x1f" + packed, hashlib.sha256).digest()

    def put(self, result: Assessment) -> str:
        """Keep an assessment; return its token.

        Raises:
            StorageError: the store cannot be written.

        """
        token = secrets.token_urlsafe(32)
        packed = zlib.compress(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL), 1)
        self.store.put(NAMESPACE, token, packed + self._tag(token, packed), self.ttl)
        now = self._clock()
        if now >= self._next_trim:
            self._next_trim = now + self.trim_every
            self.store.trim(NAMESPACE, self.max)
        return token

    def get(self, token: str) -> Assessment | None:
        """The assessment of a token, or ``None`` when unknown, expired or not signed by our key.

        Raises:
            StorageError: the store cannot be read.

        """
        if not TOKEN_PATTERN.match(token):
            return None
        raw = self.store.get(NAMESPACE, token)
        if raw is None or len(raw) <= _TAG_BYTES:
            return None
        packed, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(token, packed)):
            return None
        # Only bytes a worker holding the report key wrote reach here (the tag is checked).
        result: Assessment = pickle.loads(zlib.decompress(packed))  # noqa: S301
        return result
