"""HTTP for the Bulk Data client: one request with bounded retries, ``Retry-After`` and token renewal.

A request that meets ``429 Too Many Requests``, a ``5xx`` status (unless its OperationOutcome
says the failure is final) or a network error is tried again after the server's
``Retry-After`` (seconds or an HTTP date), or else after an exponential back-off
(``base * 2**n``, capped); at most ``attempts`` times in all. A ``401`` renews the access token
once and tries again. Nothing here writes the token, a request body or a response body anywhere.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from magstat.batch.bulk.errors import BulkAuthError, BulkExportError

__all__ = ["Auth", "BulkHttp", "RetryPolicy", "outcome_text", "parse_retry_after", "transient_outcome"]

TRANSIENT_CODES = frozenset(
    {"transient", "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled"}
)
"""OperationOutcome issue codes of the FHIR ``transient`` family: worth another try."""


class Auth(Protocol):
    """Where the ``Authorization`` header comes from."""

    renewable: bool

    def header(self) -> dict[str, str]:
        """The header to send (empty for an open server)."""
        ...

    def renew(self) -> None:
        """Get a new token now."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to try again.

    Attributes:
        attempts: tries of one request in all (the first included) on 429, 5xx or a network error.
        base: the first back-off, in seconds; it doubles after each try.
        cap: the longest back-off, in seconds.
        max_retry_after: the longest ``Retry-After`` honoured, in seconds (a longer one is cut to this).
        poll_start: the first wait between status polls when the server gives no ``Retry-After``.
        poll_cap: the longest wait between status polls.
        timeout: seconds the export may take from kick-off to the manifest.

    """

    attempts: int = 6
    base: float = 1.0
    cap: float = 60.0
    max_retry_after: float = 3600.0
    poll_start: float = 1.0
    poll_cap: float = 120.0
    timeout: float = 6 * 3600.0

    def backoff(self, attempt: int) -> float:
        """The wait after failed try number ``attempt`` (0-based): ``base * 2**attempt``, at most ``cap``."""
        return float(min(self.cap, self.base * (2.0**attempt)))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP date; ``None`` if unusable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def outcome_text(response: httpx.Response, limit: int = 300) -> str:
    """A short account of an error response: the OperationOutcome's issues, or the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    parts: list[str] = []
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        for issue in body.get("issue") or []:
            if not isinstance(issue, dict):
                continue
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
            parts.append(
                f"{issue.get('severity', '?')}/{issue.get('code', '?')}" + (f": {text}" if text else "")
            )
    summary = "; ".join(parts) if parts else (response.reason_phrase or "")
    summary = " ".join(summary.split())
    if len(summary) > limit:
        summary = summary[: limit - 3] + "..."
    return f"HTTP {response.status_code}" + (f" ({summary})" if summary else "")


def transient_outcome(response: httpx.Response) -> bool:
    """Whether an error response carries an OperationOutcome with an issue of the ``transient`` family.

    Bulk Data asks a server whose status request failed without the export failing to say so
    with such a code, so that the client tries again later.
    """
    return bool(_outcome_codes(response) & TRANSIENT_CODES)


def _final_outcome(response: httpx.Response) -> bool:
    """Whether a 5xx response carries an OperationOutcome whose issues are all non-transient."""
    codes = _outcome_codes(response)
    return bool(codes) and not (codes & TRANSIENT_CODES)


def _outcome_codes(response: httpx.Response) -> set[str]:
    """The issue codes of a response's OperationOutcome (none when the body is not one)."""
    try:
        body = response.json()
    except ValueError:
        return set()
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return set()
    return {str(i.get("code")) for i in body.get("issue") or [] if isinstance(i, dict)}


class BulkHttp:
    """Requests to a Bulk Data server with the retry policy and the access token.

    Args:
        http: the HTTP client.
        auth: where tokens come from.
        policy: retries and back-off.
        sleep: how to wait (replaceable in tests).
        say: where to report a retry (one line, no data).

    """

    def __init__(
        self,
        http: httpx.Client,
        auth: Auth,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        say: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.http = http
        self.auth = auth
        self.policy = policy
        self.sleep = sleep
        self.say = say
        self.retries = 0

    def _wait(self, response: httpx.Response | None, attempt: int, what: str) -> None:
        hint = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        wait = min(hint, self.policy.max_retry_after) if hint is not None else self.policy.backoff(attempt)
        reason = f"HTTP {response.status_code}" if response is not None else "no connection"
        self.say(
            f"{what}: {reason}, trying again in {wait:g} s (try {attempt + 2} of {self.policy.attempts})"
        )
        self.retries += 1
        self.sleep(wait)

    @contextmanager
    def _open(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        use_auth: bool,
        what: str,
        *,
        retry_429: bool = True,
        **kwargs: Any,
    ) -> Iterator[httpx.Response]:
        """Send until a response worth returning; yield it open (streamed), then close it."""
        renewed = False
        attempt = 0
        while True:
            sent = dict(headers)
            if use_auth:
                sent.update(self.auth.header())
            request = self.http.build_request(method, url, headers=sent, **kwargs)
            try:
                response = self.http.send(request, stream=True)
            except httpx.TransportError as exc:
                if attempt + 1 < self.policy.attempts:
                    self._wait(None, attempt, what)
                    attempt += 1
                    continue
                raise BulkExportError(f"{what}: {url} could not be reached ({type(exc).__name__})") from None
            status = response.status_code
            if status == 401 and use_auth and self.auth.renewable and not renewed:
                response.close()
                self.say(f"{what}: the access token was refused (HTTP 401); asking for a new one")
                self.auth.renew()
                renewed = True
                continue
            if status in (401, 403) and use_auth:
                response.read()
                response.close()
                raise BulkAuthError(
                    f"{what}: the server refused the client's access: {outcome_text(response)}"
                )
            final = False
            if status >= 500:
                response.read()
                final = _final_outcome(response)
            retryable = (status == 429 and retry_429) or (status >= 500 and not final)
            if retryable and attempt + 1 < self.policy.attempts:
                response.close()
                self._wait(response, attempt, what)
                attempt += 1
                continue
            try:
                yield response
            finally:
                response.close()
            return

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        use_auth: bool = True,
        what: str,
        retry_429: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request (retried as the policy says) and return the read response, whatever its status.

        ``retry_429=False`` returns a 429 at once, for a caller that paces itself (status polling,
        where a 429 means "poll less often", not "give up after a few tries").

        Raises:
            BulkExportError: the server could not be reached after every try.
            BulkAuthError: the server refused the token after one renewal.

        """
        with self._open(method, url, headers, use_auth, what, retry_429=retry_429, **kwargs) as response:
            response.read()
            return response

    def stream(
        self, url: str, *, headers: Mapping[str, str], use_auth: bool, what: str
    ) -> AbstractContextManager[httpx.Response]:
        """GET ``url`` streamed (retried on the way to a response); use as a context manager."""
        return self._open("GET", url, headers, use_auth, what)
