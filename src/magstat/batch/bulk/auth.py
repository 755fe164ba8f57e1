"""SMART Backend Services: an access token from a client-credentials grant with a signed JWT.

The client proves who it is with a short-lived JWT signed by its private key (RS384 for an RSA
key, ES384 for an EC P-384 key), sent as ``client_assertion`` to the token endpoint found in
``{base}/.well-known/smart-configuration``. The token is kept in memory only, renewed shortly
before it expires or when the server answers 401, and never written to a log or a file.
Signing is PyJWT's on ``cryptography`` keys.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from magstat.batch.bulk.errors import BulkAuthError, BulkExportError
from magstat.batch.bulk.http import RetryPolicy, parse_retry_after
from magstat.errors import InvalidInputError

__all__ = ["ASSERTION_LIFETIME", "BackendServicesAuth", "ClientKey", "NoAuth", "load_client_key"]

ASSERTION_LIFETIME = 240
"""Seconds until the client assertion expires: SMART Backend Services allows at most five minutes."""

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
"""The ``client_assertion_type`` of a JWT client assertion (RFC 7523)."""

RENEW_MARGIN = 60
"""Renew a token this many seconds before it expires (less for very short-lived tokens)."""


@dataclass(frozen=True)
class ClientKey:
    """A client's private key, its algorithm and its key id.

    Attributes:
        key: the private key object (never printed: ``repr`` hides it).
        alg: ``RS384`` or ``ES384``.
        kid: the key id sent in the JWT header (given, or the key's RFC 7638 thumbprint).

    """

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    alg: str
    kid: str

    def __repr__(self) -> str:
        return f"ClientKey(alg={self.alg!r}, kid={self.kid!r})"

    def public_jwk(self) -> dict[str, Any]:
        """The public key as a JWK (with ``kid``, ``alg`` and ``use``), for registering the client."""
        return {**_public_jwk(self.key), "kid": self.kid, "alg": self.alg, "use": "sig"}


def _public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {k: data[k] for k in ("kty", "n", "e")}
    data = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {k: data[k] for k in ("kty", "crv", "x", "y")}


def _thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint of a public JWK: SHA-256 over its required members, sorted."""
    canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode("ascii")


def load_client_key(path: Path, kid: str | None = None) -> ClientKey:
    """Read a PEM private key and pick its algorithm: RSA (2048 bits or more) → RS384, EC P-384 → ES384.

    Raises:
        InvalidInputError: the file cannot be read, is not an unencrypted PEM private key, or
            holds a key of another kind (the message never shows the key).

    """
    field = "--private-key"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(field, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise InvalidInputError(
            field,
            f"{path} is not an unencrypted PEM private key",
            allowed="a PEM file (PKCS#8 or traditional) holding an RSA or EC P-384 private key, without a passphrase",
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise InvalidInputError(
                field, f"the RSA key has {key.key_size} bits", allowed="an RSA key of 2048 bits or more"
            )
        alg = "RS384"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        alg = "ES384"
    else:
        kind = key.curve.name if isinstance(key, ec.EllipticCurvePrivateKey) else type(key).__name__
        raise InvalidInputError(
            field,
            f"a {kind} key cannot sign for SMART Backend Services",
            allowed="an RSA key (RS384) or an EC key on curve P-384 (ES384)",
        )
    return ClientKey(key, alg, kid or _thumbprint(_public_jwk(key)))


class NoAuth:
    """An open server: no token."""

    renewable = False

    def header(self) -> dict[str, str]:
        """No ``Authorization`` header."""
        return {}

    def renew(self) -> None:
        """Nothing to renew."""


class BackendServicesAuth:
    """Access tokens for one client at one FHIR server, obtained and renewed on demand.

    Args:
        base_url: the FHIR base URL (where ``.well-known/smart-configuration`` is).
        client_id: the client id the server registered.
        key: the client's private key.
        scope: the scopes to ask for (space-separated).
        http: the HTTP client to use.
        clock: seconds since the epoch (replaceable in tests).
        jku: the JWK Set URL registered for the client, sent in each assertion's header when
            given (optional in SMART Backend Services; a server then checks it against the
            registration).
        policy: retries of the discovery and token requests on 429, 5xx or a lost connection
            (each token try with a new assertion, so no ``jti`` is sent twice).
        sleep: how to wait between tries (replaceable in tests).

    """

    renewable = True

    def __init__(
        self,
        base_url: str,
        client_id: str,
        key: ClientKey,
        scope: str,
        http: httpx.Client,
        *,
        clock: Callable[[], float] = time.time,
        say: Callable[[str], None] = lambda _line: None,
        jku: str | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.jku = jku
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.client_id = client_id
        self.key = key
        self.scope = scope
        self.http = http
        self.clock = clock
        self.say = say
        self.token_endpoint: str | None = None
        self.granted_scope: str | None = None
        self._token: str | None = None
        self._renew_at = 0.0
        self.tokens_obtained = 0

    def __repr__(self) -> str:
        return f"BackendServicesAuth(client_id={self.client_id!r}, token_endpoint={self.token_endpoint!r})"

    def discover(self) -> str:
        """Find the token endpoint: ``.well-known/smart-configuration``, else the CapabilityStatement.

        Raises:
            BulkAuthError: no token endpoint is advertised, or the server does not accept this
                key's algorithm.

        """
        if self.token_endpoint:
            return self.token_endpoint
        config: dict[str, Any] = {}
        url = f"{self.base_url}/.well-known/smart-configuration"
        try:
            response = self._send(
                lambda: self.http.get(url, headers={"Accept": "application/json"}), "discovery"
            )
            if response.status_code == 200:
                config = response.json()
        except (BulkExportError, ValueError):
            config = {}
        endpoint = config.get("token_endpoint") if isinstance(config, dict) else None
        if not isinstance(endpoint, str) or not endpoint:
            endpoint = self._token_endpoint_from_metadata()
        if not endpoint:
            raise BulkAuthError(
                f"{self.base_url} advertises no token endpoint (neither .well-known/smart-configuration "
                "nor the CapabilityStatement's oauth-uris): is it a SMART Backend Services server?"
            )
        algs = config.get("token_endpoint_auth_signing_alg_values_supported")
        if isinstance(algs, list) and algs and self.key.alg not in algs:
            raise BulkAuthError(
                f"the server signs client assertions with {', '.join(map(str, algs))} only; this key gives "
                f"{self.key.alg} (use an {'EC P-384' if 'ES384' in algs else 'RSA'} key)"
            )
        capabilities = config.get("capabilities")
        if (
            isinstance(capabilities, list)
            and "permission-v1" in capabilities
            and "permission-v2" not in capabilities
            and ".rs" in self.scope
        ):
            # A SMART v1 server: system/Patient.rs is spelled system/Patient.read there.
            self.scope = " ".join(
                s.removesuffix(".rs") + ".read" if s.endswith(".rs") else s for s in self.scope.split()
            )
            self.say(f"auth: the server speaks SMART v1 scopes; asking for {self.scope}")
        self.token_endpoint = endpoint
        return endpoint

    def _token_endpoint_from_metadata(self) -> str | None:
        url = f"{self.base_url}/metadata"
        try:
            response = self._send(
                lambda: self.http.get(url, headers={"Accept": "application/fhir+json"}), "metadata"
            )
            data = response.json() if response.status_code == 200 else {}
        except (BulkExportError, ValueError):
            return None
        for rest in data.get("rest", []) if isinstance(data, dict) else []:
            for ext in (rest.get("security") or {}).get("extension", []):
                if str(ext.get("url", "")).endswith("/oauth-uris"):
                    for sub in ext.get("extension", []):
                        if sub.get("url") == "token" and isinstance(sub.get("valueUri"), str):
                            return str(sub["valueUri"])
        return None

    def assertion(self) -> str:
        """A fresh client assertion: ``iss`` = ``sub`` = client id, ``aud`` = token endpoint, unique ``jti``.

        Its header names the algorithm (RS384 or ES384), ``typ`` JWT, the key's ``kid`` and, when
        configured, the ``jku``; ``exp`` is four minutes ahead (the specification allows five).
        """
        endpoint = self.discover()
        now = int(self.clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": endpoint,
            "exp": now + ASSERTION_LIFETIME,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self.key.kid, "typ": "JWT"}
        if self.jku:
            headers["jku"] = self.jku
        return jwt.encode(claims, self.key.key, algorithm=self.key.alg, headers=headers)

    def renew(self) -> None:
        """Ask for a new access token now.

        Raises:
            BulkAuthError: the token endpoint refused the client (wrong key, unknown client,
                scope not allowed).
            BulkExportError: the token endpoint could not be reached.

        """
        endpoint = self.discover()

        def post() -> httpx.Response:
            form = {
                "grant_type": "client_credentials",
                "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(),  # a new jti for every try
            }
            return self.http.post(endpoint, data=form, headers={"Accept": "application/json"})

        response = self._send(post, "token")
        if response.status_code == 429 or response.status_code >= 500:
            raise BulkExportError(
                f"the token endpoint {endpoint} answered HTTP {response.status_code} "
                f"{self.policy.attempts} times; try again later"
            )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code != 200 or not isinstance(body.get("access_token"), str):
            error = str(body.get("error") or f"HTTP {response.status_code}")
            detail = str(body.get("error_description") or "")[:200]
            raise BulkAuthError(
                f"the token endpoint refused client {self.client_id!r}: {error}"
                + (f" ({detail})" if detail else "")
                + " - check that the server has this client's public key (kid "
                + f"{self.key.kid!r}) and allows the scope {self.scope!r}"
            )
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 300.0
        self._token = body["access_token"]
        self._renew_at = self.clock() + seconds - min(RENEW_MARGIN, seconds / 5)
        self.granted_scope = body.get("scope") if isinstance(body.get("scope"), str) else None
        self.tokens_obtained += 1

    def _send(self, send: Callable[[], httpx.Response], what: str) -> httpx.Response:
        """Send, and on 429, 5xx or a lost connection try again (``Retry-After``, else back-off).

        Returns the last response, whatever its status.

        Raises:
            BulkExportError: no connection after every try.

        """
        attempt = 0
        while True:
            last = attempt + 1 >= self.policy.attempts
            try:
                response = send()
            except httpx.TransportError as exc:
                if last:
                    raise BulkExportError(
                        f"{what}: {self.base_url} could not be reached ({type(exc).__name__})"
                    ) from None
                wait = self.policy.backoff(attempt)
                self.say(f"auth: {what}: no connection, trying again in {wait:g} s")
            else:
                if last or not (response.status_code == 429 or response.status_code >= 500):
                    return response
                hint = parse_retry_after(response.headers.get("Retry-After"))
                wait = (
                    self.policy.backoff(attempt) if hint is None else min(hint, self.policy.max_retry_after)
                )
                self.say(f"auth: {what}: HTTP {response.status_code}, trying again in {wait:g} s")
            self.sleep(wait)
            attempt += 1

    def header(self) -> dict[str, str]:
        """The ``Authorization`` header, with a token renewed first if it is about to expire."""
        if self._token is None or self.clock() >= self._renew_at:
            self.renew()
        return {"Authorization": f"Bearer {self._token}"}
