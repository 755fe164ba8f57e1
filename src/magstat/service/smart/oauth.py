"""The OAuth 2.0 side of SMART App Launch 2.2: discovery, authorization request, tokens.

The protocol pieces come from Authlib: the authorization URL (RFC 6749 4.1.1), the PKCE
challenge (RFC 7636, S256 only), the token request bodies (authorization code and refresh),
the signed client assertion (RFC 7523 ``private_key_jwt``) and the token object with its
expiry. The requests are sent with the service's shared HTTP client, within a deadline.

What SMART App Launch 2.2 asks of the app, and where it is done:

- discovery from ``{iss}/.well-known/smart-configuration``: :func:`discover` (the
  authorization and token endpoints are required; a server that lists its PKCE methods must
  list ``S256``; a confidential client needs ``private_key_jwt`` where the server lists its
  authentication methods);
- the authorization request with ``response_type=code``, ``client_id``, ``redirect_uri``,
  ``launch`` (EHR launch), ``scope``, ``state`` (256 random bits), ``aud`` (the FHIR base
  URL), ``code_challenge`` and ``code_challenge_method=S256``: :func:`authorization_url`;
- the token request with the code, the redirect URI and the PKCE verifier, the client
  identified by ``client_id`` (public) or by a client assertion signed with RS384 or ES384,
  ``iss`` = ``sub`` = client id, ``aud`` = the token endpoint, ``exp`` at most five minutes
  ahead and a fresh ``jti`` (confidential): :func:`exchange_code`, :func:`refresh`.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, RSAKey

from magstat.service.smart.config import SmartEhr

__all__ = [
    "ASSERTION_LIFETIME_SECONDS",
    "ClientKey",
    "SmartAuthError",
    "SmartEndpoints",
    "Tokens",
    "authorization_url",
    "discover",
    "exchange_code",
    "load_client_key",
    "new_secret",
    "refresh",
]

ASSERTION_LIFETIME_SECONDS = 300
"""A client assertion expires this long after it is made (SMART: no more than five minutes)."""

_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_MAX_DOCUMENT_BYTES = 1024 * 1024


class SmartAuthError(Exception):
    """A step of the launch failed.

    Attributes:
        kind: what failed, for the error page and the log (never a token or patient data):
            ``discovery``, ``unsupported``, ``token``, ``invalid_grant``, ``unreachable``.
        detail: a short reason (an OAuth error code or a transport error type).

    """

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


@dataclass(frozen=True, slots=True)
class SmartEndpoints:
    """What the app uses of an EHR's ``.well-known/smart-configuration``."""

    authorization_endpoint: str
    token_endpoint: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClientKey:
    """The app's private key for one EHR, its algorithm and key id."""

    key: RSAKey | ECKey
    alg: str
    kid: str

    def public_jwk(self) -> dict[str, Any]:
        """The public key as a JWK (for the EHR's registration, or a JWKS URL)."""
        jwk = dict(self.key.as_dict(private=False))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]}


@dataclass(frozen=True, slots=True)
class Tokens:
    """A token response: the access token, its expiry, the refresh token and the launch context."""

    access_token: str
    expires_at: float | None
    refresh_token: str | None
    scope: str
    patient: str | None
    need_patient_banner: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (kept in the server-side session)."""
        return {
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
            "patient": self.patient,
            "need_patient_banner": self.need_patient_banner,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokens:
        """Read back :meth:`to_dict`."""
        return cls(
            access_token=str(data["access_token"]),
            expires_at=data.get("expires_at"),
            refresh_token=data.get("refresh_token"),
            scope=str(data.get("scope") or ""),
            patient=data.get("patient"),
            need_patient_banner=bool(data.get("need_patient_banner")),
        )

    def expired(self, now: float, leeway: float = 30.0) -> bool:
        """Whether the access token has expired (or will within ``leeway`` seconds)."""
        return self.expires_at is not None and self.expires_at - leeway <= now


def new_secret() -> str:
    """A random value for ``state``, a PKCE verifier or a CSRF token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


@cache
def _read_key(path: Path, mtime_ns: int, key_id: str | None) -> ClientKey:
    pem = path.read_bytes()
    key: RSAKey | ECKey
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # a short key is refused just below
            key = RSAKey.import_key(pem)
    except (JoseError, ValueError):
        key = ECKey.import_key(pem)
        if key.curve_name != "P-384":
            raise ValueError(f"an EC key must be on P-384 for ES384 (this one is {key.curve_name})") from None
        alg = "ES384"
    else:
        size = int(getattr(key.raw_value, "key_size", 0))
        if size < 2048:
            raise ValueError(f"an RSA key needs at least 2048 bits (this one has {size})")
        alg = "RS384"
    if key.is_private is False:
        raise ValueError("the file holds a public key; the private key is needed")
    return ClientKey(key, alg, key_id or key.thumbprint())


def load_client_key(ehr: SmartEhr) -> ClientKey | None:
    """The private key of a confidential client (``None`` for a public one).

    RSA keys sign with RS384, EC P-384 keys with ES384 (the algorithms SMART names).

    Raises:
        ValueError: the file cannot be read or holds no usable private key.

    """
    if ehr.private_key_file is None:
        return None
    try:
        stat = ehr.private_key_file.stat()
        return _read_key(ehr.private_key_file, stat.st_mtime_ns, ehr.key_id)
    except OSError as exc:
        raise ValueError(f"{ehr.private_key_file}: cannot be read ({exc.strerror})") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{ehr.private_key_file}: not a usable RSA or EC P-384 private key ({exc})"
        ) from None


async def _get_json(http: httpx.AsyncClient, url: str, timeout: float) -> Any:
    try:
        # No credential goes with this request, so a redirect (some servers move the document) is followed.
        response = await http.get(
            url, headers={"Accept": "application/json"}, timeout=timeout, follow_redirects=True
        )
    except httpx.HTTPError as exc:
        raise SmartAuthError("unreachable", type(exc).__name__) from None
    if response.status_code != 200:
        raise SmartAuthError("discovery", f"HTTP {response.status_code}")
    if len(response.content) > _MAX_DOCUMENT_BYTES:
        raise SmartAuthError("discovery", "document too large")
    try:
        return response.json()
    except ValueError:
        raise SmartAuthError("discovery", "not JSON") from None


def _endpoint(data: Mapping[str, Any], name: str, allow_http: bool) -> str:
    url = data.get(name)
    if not isinstance(url, str):
        raise SmartAuthError("discovery", f"{name} is missing")
    parts = urlsplit(url)
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        raise SmartAuthError("discovery", f"{name} is not an https URL")
    if not parts.netloc or parts.fragment:
        raise SmartAuthError("discovery", f"{name} is not a URL")
    return url


async def discover(
    http: httpx.AsyncClient, ehr: SmartEhr, *, timeout: float, allow_http: bool
) -> SmartEndpoints:
    """Read the EHR's ``.well-known/smart-configuration`` and check it fits the app.

    Raises:
        SmartAuthError: the document cannot be read, lacks an endpoint, or the server does not
            offer what the app needs (PKCE S256; ``private_key_jwt`` for a confidential client).

    """
    data = await _get_json(http, f"{ehr.iss}/.well-known/smart-configuration", timeout)
    if not isinstance(data, Mapping):
        raise SmartAuthError("discovery", "not a JSON object")
    authorize = _endpoint(data, "authorization_endpoint", allow_http)
    token = _endpoint(data, "token_endpoint", allow_http)
    methods = data.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise SmartAuthError("unsupported", "the server does not offer PKCE with S256")
    auth_methods = data.get("token_endpoint_auth_methods_supported")
    if ehr.confidential and isinstance(auth_methods, list) and "private_key_jwt" not in auth_methods:
        raise SmartAuthError("unsupported", "the server does not offer private_key_jwt client authentication")
    capabilities = data.get("capabilities")
    caps = tuple(c for c in capabilities if isinstance(c, str)) if isinstance(capabilities, list) else ()
    return SmartEndpoints(authorize, token, caps)


def authorization_url(
    endpoints: SmartEndpoints,
    ehr: SmartEhr,
    *,
    redirect_uri: str,
    scope: str,
    state: str,
    code_verifier: str,
    launch: str | None,
    aud: str | None = None,
) -> str:
    """The URL of the authorization request to send the browser to.

    Args:
        endpoints: the EHR's endpoints.
        ehr: the registered EHR (its client id and ``iss``, sent as ``aud``).
        redirect_uri: ``/smart/callback`` on the app's origin.
        scope: the scopes asked.
        state: the random ``state`` kept in the session.
        code_verifier: the PKCE verifier kept in the session (only its S256 hash is sent).
        launch: the EHR's ``launch`` value (EHR launch); ``None`` for a standalone launch.
        aud: the FHIR base URL exactly as the EHR sent it as ``iss`` (a server may compare ``aud``
            with its own base URL character for character, trailing slash included); by default
            the registered ``iss``.

    """
    url: str = prepare_grant_uri(
        endpoints.authorization_endpoint,
        client_id=ehr.client_id,
        response_type="code",
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        aud=aud or ehr.iss,
        launch=launch,
        code_challenge=create_s256_code_challenge(code_verifier),
        code_challenge_method="S256",
    )
    return url


def _client_authentication(ehr: SmartEhr, key: ClientKey | None, token_endpoint: str) -> dict[str, str]:
    if key is None:
        return {"client_id": ehr.client_id}
    assertion = private_key_jwt_sign(
        key.key,
        client_id=ehr.client_id,
        token_endpoint=token_endpoint,
        alg=key.alg,
        header={"kid": key.kid, "typ": "JWT"},
        expires_in=ASSERTION_LIFETIME_SECONDS,
    )
    return {"client_assertion_type": _ASSERTION_TYPE, "client_assertion": str(assertion)}


async def _token_request(
    http: httpx.AsyncClient, token_endpoint: str, body: str, *, timeout: float, now: float
) -> Tokens:
    try:
        response = await http.post(
            token_endpoint,
            content=body.encode("ascii"),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            timeout=timeout,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise SmartAuthError("unreachable", type(exc).__name__) from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SmartAuthError("token", f"HTTP {response.status_code}, not a JSON object")
    if response.status_code != 200 or "error" in data:
        error = data.get("error")
        code = error if isinstance(error, str) and error.replace("_", "").isalpha() else "error"
        raise SmartAuthError("invalid_grant" if code == "invalid_grant" else "token", code[:64])
    access = data.get("access_token")
    if not isinstance(access, str) or not access:
        raise SmartAuthError("token", "no access_token")
    if str(data.get("token_type", "")).lower() != "bearer":
        raise SmartAuthError("token", "token_type is not Bearer")
    expires_in = data.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)  # some servers send the number as a string
    expires_at = None
    if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
        expires_at = now + float(expires_in)
    refresh_token = data.get("refresh_token")
    patient = data.get("patient")
    return Tokens(
        access_token=access,
        expires_at=expires_at,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        scope=str(data.get("scope") or ""),
        patient=patient if isinstance(patient, str) and patient else None,
        need_patient_banner=data.get("need_patient_banner") is True,
    )


async def exchange_code(
    http: httpx.AsyncClient,
    endpoints: SmartEndpoints,
    ehr: SmartEhr,
    key: ClientKey | None,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    timeout: float,
) -> Tokens:
    """Exchange the authorization code for tokens (with the PKCE verifier).

    Raises:
        SmartAuthError: ``invalid_grant`` (the code is expired, used or not for this client),
            ``token`` (another refusal or a malformed answer), ``unreachable``.

    """
    body = prepare_token_request(
        "authorization_code",
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=code_verifier,
        **_client_authentication(ehr, key, endpoints.token_endpoint),
    )
    return await _token_request(http, endpoints.token_endpoint, body, timeout=timeout, now=time.time())


async def refresh(
    http: httpx.AsyncClient,
    token_endpoint: str,
    ehr: SmartEhr,
    key: ClientKey | None,
    tokens: Tokens,
    *,
    timeout: float,
) -> Tokens:
    """A new access token from the refresh token; the launch context is kept.

    Raises:
        SmartAuthError: the refresh was refused or failed (the user launches again).

    """
    if tokens.refresh_token is None:
        raise SmartAuthError("invalid_grant", "no refresh token")
    body = prepare_token_request(
        "refresh_token",
        refresh_token=tokens.refresh_token,
        **_client_authentication(ehr, key, token_endpoint),
    )
    new = await _token_request(http, token_endpoint, body, timeout=timeout, now=time.time())
    return Tokens(
        access_token=new.access_token,
        expires_at=new.expires_at,
        refresh_token=new.refresh_token or tokens.refresh_token,
        scope=new.scope or tokens.scope,
        patient=tokens.patient,
        need_patient_banner=tokens.need_patient_banner,
    )
