"""Fetching what the EHR did not prefetch from its FHIR server, within a deadline.

Each missing prefetch template is rendered with the hook context and read from ``fhirServer``
with the ``fhirAuthorization`` bearer token, all at once. Search results are followed page by
page (``link[next]``) while the pages stay on the same server. Whatever has not arrived when
the deadline passes is given up, and the service answers with what it has: each query that
failed or timed out becomes a note shown on the cards. The access token is sent only to URLs
under ``fhirServer`` and is never logged.

The deadline is kept without cancelling requests in flight: every request carries the time
left as its own connect, pool, read and write timeouts and checks the clock between chunks, so
it ends by itself at the deadline and gives its connection back to the pool. Cancelling an
HTTP request while it waits on a connection can leave the pool's slot taken for good (after a
burst of calls to a FHIR server that never answered, every later read then failed); the caller
therefore returns at the deadline and leaves the stragglers to finish on their own timeouts.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["FetchResult", "fetch_templates"]

_MAX_RESPONSE_BYTES = 64 * 1024 * 1024

_STRAGGLERS: set[asyncio.Task[Any]] = set()
"""Reads still running after their call returned at the deadline (kept until they end)."""


@dataclass(slots=True)
class FetchResult:
    """What was read: values by prefetch key, which keys are complete, and notes on failures."""

    values: dict[str, Any] = field(default_factory=dict)
    complete: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    """Keys whose read failed or did not finish in time (not the same as "no data")."""


class _FetchError(Exception):
    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(why)


async def fetch_templates(
    http: httpx.AsyncClient,
    fhir_server: str,
    access_token: str | None,
    queries: Mapping[str, str],
    *,
    deadline_seconds: float,
    max_pages: int,
) -> FetchResult:
    """Read rendered prefetch queries from the FHIR server, concurrently, within a deadline.

    Args:
        http: the shared HTTP client.
        fhir_server: the EHR's FHIR base URL.
        access_token: the ``fhirAuthorization.access_token``, if given.
        queries: prefetch key to relative FHIR URL (tokens already filled).
        deadline_seconds: the time allowed for all of them.
        max_pages: the most pages read of one search.

    """
    base = fhir_server.rstrip("/") + "/"
    headers = {"Accept": "application/fhir+json, application/json"}
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    result = FetchResult()
    ends = time.monotonic() + deadline_seconds
    tasks = {
        asyncio.ensure_future(_read(http, base, base + query.lstrip("/"), headers, max_pages, ends=ends)): key
        for key, query in queries.items()
    }
    if not tasks:
        return result
    _done, pending = await asyncio.wait(tasks, timeout=max(0.0, ends - time.monotonic()))
    for task in pending:
        # Not cancelled (see the module doc): each ends on its own timeouts, moments from now.
        _STRAGGLERS.add(task)
        task.add_done_callback(_forget)
    for task, key in tasks.items():
        if task in pending:
            result.notes.append(f"{key}: the FHIR server did not answer within {deadline_seconds:g} s")
            continue
        exc = task.exception()
        if isinstance(exc, _FetchError):
            result.notes.append(f"{key}: could not be read from the FHIR server ({exc.why})")
        elif exc is not None:
            result.notes.append(f"{key}: could not be read from the FHIR server ({type(exc).__name__})")
        else:
            value, complete = task.result()
            result.values[key] = value
            if complete:
                result.complete.add(key)
            else:
                result.notes.append(f"{key}: only the first {max_pages} pages were read")
    result.failed = {key for task, key in tasks.items() if task in pending or task.exception() is not None}
    return result


def _forget(task: asyncio.Task[Any]) -> None:
    """Drop a straggler once it has ended, consuming its outcome."""
    _STRAGGLERS.discard(task)
    if not task.cancelled():
        task.exception()


async def _read(
    http: httpx.AsyncClient, base: str, url: str, headers: Mapping[str, str], max_pages: int, *, ends: float
) -> tuple[Any, bool]:
    """One query: a resource (read) or the entries of every page (search), by ``ends``."""
    first = await _get(http, url, headers, ends)
    if first is None or first.get("resourceType") != "Bundle":
        return first, True
    entries = list(_entries(first))
    page = first
    for _ in range(max_pages - 1):
        nxt = _next_link(page)
        if nxt is None:
            break
        if not nxt.startswith(base):
            raise _FetchError("a next page points outside the FHIR server")
        page = await _get(http, nxt, headers, ends) or {}
        entries.extend(_entries(page))
    else:
        if _next_link(page) is not None:
            return {"resourceType": "Bundle", "type": "searchset", "entry": entries}, False
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}, True


async def _get(
    http: httpx.AsyncClient, url: str, headers: Mapping[str, str], ends: float
) -> dict[str, Any] | None:
    left = ends - time.monotonic()
    if left <= 0:
        raise _FetchError("deadline passed")
    try:
        async with http.stream(
            "GET", url, headers=headers, follow_redirects=False, timeout=httpx.Timeout(left)
        ) as response:
            if response.status_code in (404, 410):
                return None  # a read of a resource that is not there: no data
            if response.status_code != 200:
                raise _FetchError(f"HTTP {response.status_code}")
            size = 0
            chunks = []
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > _MAX_RESPONSE_BYTES:
                    raise _FetchError("response too large")
                if time.monotonic() > ends:
                    raise _FetchError("deadline passed")  # a server that trickles its answer
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise _FetchError(type(exc).__name__) from None
    try:
        data = json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        raise _FetchError("not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise _FetchError("not a FHIR resource")
    if data["resourceType"] == "OperationOutcome":
        raise _FetchError("the server returned an OperationOutcome")
    return data


def _entries(bundle: Mapping[str, Any]) -> list[Any]:
    entries = bundle.get("entry")
    return [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, list) else []


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else ():
        if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None
