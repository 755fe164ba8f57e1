"""Authentication of the EHR as CDS Hooks requires: a JWT bearer token signed with its private key.

What is checked, in order (any failure is a 401 whose body says only "authentication failed"; the
reason goes to the service log, without the token):

1. ``Authorization: Bearer <JWT>`` is present and the token is a well-formed JWS.
2. Header: ``alg`` is one of the configured asymmetric algorithms (never ``none``, never HMAC),
   ``typ`` is ``JWT``, ``kid`` is present, there is no ``crit``, and ``jku``, if present, is the
   JWKS URL configured for that issuer (a key location the token names itself is never fetched).
3. ``iss`` is a configured trusted issuer; ``kid`` names a signing key in that issuer's JWK Set
   (a file, re-read when it changes, or a URL, fetched and cached); the key type fits ``alg``;
   symmetric (``oct``) keys are never used.
4. Signature, ``exp``, ``iat`` (with the configured clock skew), ``aud`` equal to the URL of the
   endpoint called, ``exp - iat`` no longer than the configured maximum.
5. ``jti`` was not seen before from that issuer (kept until the token expires). The service
   keeps the ids in the store its worker processes share (:class:`SharedReplayCache`), so a
   token replayed against another worker is refused too; a store that cannot be reached fails
   closed (503, the request is not served).

.. versionadded:: 0.1.0
.. versionchanged:: 0.3.0
   The replay check is asynchronous and, in the service, shared by every worker process.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from jwt import PyJWK
from jwt.utils import base64url_decode

from magstat.service.settings import CdsSettings, TrustedIssuer
from magstat.service.store import SharedStore

__all__ = ["AuthError", "ClientIdentity", "ReplayCache", "ReplayGuard", "SharedReplayCache", "TokenVerifier"]

log = logging.getLogger("magstat.service.auth")

_KEY_ALGORITHMS: Mapping[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
    "OKP": frozenset({"EdDSA"}),
}
_EC_CURVES: Mapping[str, str] = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_MIN_REFRESH_SECONDS = 30.0
"""Least time between two fetches of a JWKS URL: an unknown kid cannot make us hammer the EHR."""


class AuthError(Exception):
    """The request is not authenticated; ``reason`` is for the service log only."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """Who called: the verified issuer, key id and, if sent, the tenant."""

    iss: str
    kid: str
    jti: str
    tenant: str | None = None


class ReplayGuard(Protocol):
    """What the verifier asks of a replay cache."""

    async def first_use(self, iss: str, jti: str, expires: float, now: float) -> bool:
        """Record the token; ``False`` when it was seen before (a replay)."""
        ...


class SharedReplayCache:
    """Remembers ``(iss, jti)`` in the shared store until the token expires (every worker sees it).

    Args:
        store: the store every worker process shares.
        run: runs a blocking call off the event loop (the service's database pool).

    The key is a SHA-256 digest of issuer and id, so that any length of either fits.

    Raises:
        StorageError: from :meth:`first_use`, when the store cannot be reached (fail closed).

    """

    NAMESPACE = "jti"

    def __init__(self, store: SharedStore, run: Callable[[Callable[[], Any]], Awaitable[Any]]) -> None:
        self.store = store
        self.run = run

    async def first_use(self, iss: str, jti: str, expires: float, now: float) -> bool:
        """Record the token; ``False`` when any worker saw it before (a replay)."""
        key = hashlib.sha256(f"{iss}\x1f{jti}".encode()).hexdigest()
        ttl = max(1.0, expires - now)
        added: bool = await self.run(lambda: self.store.add(self.NAMESPACE, key, b"", ttl))
        return added


class ReplayCache:
    """Remembers ``(iss, jti)`` in this process's memory until the token expires.

    For one process only (a library user verifying tokens itself); the service uses
    :class:`SharedReplayCache`, which every worker process sees.
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._max = max_entries
        self._next_prune = 0.0

    async def first_use(self, iss: str, jti: str, expires: float, now: float) -> bool:
        """Record the token; ``False`` when it was seen before (a replay) or the cache is full."""
        key = (iss, jti)
        with self._lock:
            if now >= self._next_prune or len(self._seen) >= self._max:
                self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
                self._next_prune = now + 10.0
            if key in self._seen:
                return False
            if len(self._seen) >= self._max:
                return False  # refuse rather than forget: a flood must not open replay
            self._seen[key] = expires
            return True

    def __len__(self) -> int:
        return len(self._seen)


class _KeySet:
    """The public keys of one trusted issuer, from a file or a URL."""

    def __init__(self, issuer: TrustedIssuer, cache_seconds: float) -> None:
        self.issuer = issuer
        self.cache_seconds = cache_seconds
        self._keys: dict[str, Mapping[str, Any]] = {}
        self._stamp: tuple[int, int] | None = None
        self._fetched = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str, http: httpx.AsyncClient | None) -> Mapping[str, Any]:
        """The JWK with ``kid``.

        Raises:
            AuthError: no such key, or the key set cannot be read.

        """
        if self.issuer.jwks_file is not None:
            self._load_file(self.issuer.jwks_file)
        elif self._due(kid):
            async with self._lock:
                if self._due(kid):  # another request may have fetched while we waited
                    await self._fetch(http)
        found = self._keys.get(kid)
        if found is None:
            raise AuthError("unknown kid")
        return found

    def _due(self, kid: str) -> bool:
        """Whether to fetch the URL: the cache is stale, or the kid is new and we may refetch."""
        age = time.monotonic() - self._fetched
        return age > self.cache_seconds or (kid not in self._keys and age > _MIN_REFRESH_SECONDS)

    def _load_file(self, path: Path) -> None:
        try:
            stat = path.stat()
        except OSError as exc:
            raise AuthError(f"JWKS file unreadable ({exc.strerror})") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise AuthError(f"JWKS file unreadable ({type(exc).__name__})") from None
        self._keys = _signing_keys(data)
        self._stamp = stamp

    async def _fetch(self, http: httpx.AsyncClient | None) -> None:
        url = self.issuer.jwks_url
        assert url is not None
        self._fetched = time.monotonic()
        if http is None:
            raise AuthError("no HTTP client to fetch the JWKS")
        try:
            response = await http.get(url, timeout=5.0, follow_redirects=False)
            response.raise_for_status()
            keys = _signing_keys(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            # Keep the keys we had: a JWKS endpoint that blips must not lock every EHR out.
            log.warning("JWKS fetch failed for issuer %s: %s", self.issuer.iss, type(exc).__name__)
            if not self._keys:
                raise AuthError("JWKS unavailable") from None
            return
        self._keys = keys


def _signing_keys(data: object) -> dict[str, Mapping[str, Any]]:
    """The usable signing keys of a JWK Set, by kid: asymmetric, for signatures, with a kid."""
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys: dict[str, Mapping[str, Any]] = {}
    for jwk in data["keys"]:
        if not isinstance(jwk, Mapping):
            continue
        kid, kty = jwk.get("kid"), jwk.get("kty")
        if not isinstance(kid, str) or kty not in _KEY_ALGORITHMS:
            continue  # symmetric ("oct") and unknown key types are never used
        if jwk.get("use", "sig") != "sig" or "d" in jwk:
            continue  # an encryption key, or a private key published by mistake
        keys[kid] = jwk
    return keys


def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
    if alg not in _KEY_ALGORITHMS.get(str(jwk.get("kty")), frozenset()):
        return False
    if "alg" in jwk and jwk["alg"] != alg:
        return False
    return not (jwk.get("kty") == "EC" and jwk.get("crv") != _EC_CURVES[alg])


class TokenVerifier:
    """Verifies the JWT of each CDS Hooks request (see the module documentation)."""

    def __init__(self, settings: CdsSettings, replay: ReplayGuard | None = None) -> None:
        self.settings = settings
        self.allowed = frozenset(settings.algorithms)
        self.issuers = {i.iss: _KeySet(i, settings.jwks_cache_seconds) for i in settings.trusted_issuers}
        self.replay: ReplayGuard = replay or ReplayCache()
        self.http: httpx.AsyncClient | None = None
        # Public key objects built from JWKs, by (iss, kid, alg), with the JWK they came from.
        self._built: dict[tuple[str, str, str], tuple[Mapping[str, Any], Any]] = {}

    def issuer(self, iss: str) -> TrustedIssuer | None:
        """The configuration of a trusted issuer."""
        found = self.issuers.get(iss)
        return found.issuer if found else None

    async def verify(self, authorization: str | None, audiences: Iterable[str]) -> ClientIdentity:
        """Check the ``Authorization`` header value against the trusted issuers.

        Args:
            authorization: the header value (``Bearer <JWT>``), or ``None``.
            audiences: the URLs the ``aud`` claim may name (the endpoint called).

        Raises:
            AuthError: the request is not authenticated.

        """
        token = _bearer(authorization)
        header, unverified = _unverified_parts(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.allowed:
            raise AuthError(f"algorithm not allowed ({str(alg)[:16]})")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.upper() != "JWT":
            raise AuthError("typ is not JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("no kid")
        if "crit" in header:
            raise AuthError("crit header not supported")
        iss = unverified.get("iss")
        if not isinstance(iss, str):
            raise AuthError("no iss")
        keyset = self.issuers.get(iss)
        if keyset is None:
            raise AuthError("unknown issuer")
        jku = header.get("jku")
        if jku is not None and jku != keyset.issuer.jwks_url:
            raise AuthError("jku not allowed")
        jwk = await keyset.key(kid, self.http)
        if not _fits(jwk, alg):
            raise AuthError("key does not fit alg")
        try:
            key = self._public_key(iss, kid, alg, jwk)
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=list(audiences),
                issuer=iss,
                leeway=self.settings.clock_skew_seconds,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("wrong audience") from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad signature") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthError(f"invalid token ({type(exc).__name__})") from None
        now = time.time()
        exp, iat, jti = claims["exp"], claims["iat"], claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise AuthError("bad jti")
        if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)):
            raise AuthError("bad iat or exp")
        if iat > now + self.settings.clock_skew_seconds:
            raise AuthError("issued in the future")
        if exp - iat > self.settings.max_token_lifetime_seconds:
            raise AuthError("lifetime too long")
        if not await self.replay.first_use(iss, jti, float(exp) + self.settings.clock_skew_seconds, now):
            raise AuthError("replayed jti")
        tenant = claims.get("tenant")
        return ClientIdentity(iss, kid, jti, tenant if isinstance(tenant, str) else None)

    def _public_key(self, iss: str, kid: str, alg: str, jwk: Mapping[str, Any]) -> Any:
        """The key object of a JWK, built once (a re-read key set builds it anew)."""
        cached = self._built.get((iss, kid, alg))
        if cached is not None and cached[0] is jwk:
            return cached[1]
        key = PyJWK(dict(jwk), algorithm=alg).key
        self._built[(iss, kid, alg)] = (jwk, key)
        return key


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWS, not yet verified: only to pick the issuer's key.

    Read once here, in the way PyJWT reads them (which then verifies the token, reading it
    again), instead of through two unverified decodes that each check every segment (about
    70 µs a call).

    Raises:
        AuthError: ``malformed token`` (the header) or ``malformed claims`` (the payload).

    """
    try:
        signing_input, _, _signature = token.encode("utf-8").rpartition(b".")
        header_segment, dot, payload_segment = signing_input.partition(b".")
        if not dot:
            raise ValueError("not enough segments")
        header = json.loads(base64url_decode(header_segment))
        if not isinstance(header, dict) or not isinstance(header.get("kid", ""), str):
            raise ValueError("not a JWS header")
    except (ValueError, TypeError, binascii.Error):
        raise AuthError("malformed token") from None
    try:
        claims = json.loads(base64url_decode(payload_segment))
        if not isinstance(claims, dict):
            raise ValueError("not a claims object")
    except (ValueError, TypeError, binascii.Error):
        raise AuthError("malformed claims") from None
    return header, claims


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 16_384:
        raise AuthError("not a Bearer token")
    return token
