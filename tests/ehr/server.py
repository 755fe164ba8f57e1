"""A test EHR: a FHIR R4 server of Synthea patients and a SMART authorization server, on loopback.

One ASGI application on 127.0.0.1 serves:

- ``/fhir``: the FHIR server. ``GET /fhir/.well-known/smart-configuration``; reads
  (``Patient/<id>``, ``RiskAssessment/<id>``); searches by ``patient`` (with the ``code`` and
  ``status`` filters of magstat's searches) paged by ``_count`` with ``link[next]``;
  ``POST /fhir/RiskAssessment``. Every request needs a bearer token of the authorization
  server; the token is for one patient (reading another is refused with 403) and for the
  scopes granted (a read needs ``r``/``s``, a create ``c``, in SMART v1 or v2 syntax).
- ``/auth``: the authorization server, built on Authlib's OAuth 2.0 server: the
  authorization endpoint with a consent page (Allow / Deny; a patient picker for a
  standalone launch), the token endpoint (authorization code with PKCE S256 required, refresh
  tokens rotated on use), client authentication ``none`` (public) or ``private_key_jwt``
  checked against the client's registered JWK Set (RS384 / ES384, ``jti`` used once).
- ``/ehr/launch``: the EHR's own page for a patient: it makes a launch context and opens the
  app's launch URL, in the page (redirect) or in an iframe of this origin.

Switches for the tests: ``auto_consent`` ("allow"/"deny": no consent page), ``token_lifetime``,
``fhir_down`` (every FHIR request answers 500), ``fhir_delay``, ``page_size``, ``pkce_methods``
(what the smart-configuration lists), and the request
log ``requests`` (method, path, whether a token came).
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import uvicorn
from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.service.ehr import Record

PRACTITIONER = "Practitioner/test-clinician"


# --------------------------------------------------------------------------------------------
# Registered clients, codes and tokens


@dataclass
class Client(ClientMixin):
    """An app registered with the EHR: public (no keys) or confidential (a JWK Set)."""

    client_id: str
    redirect_uris: list[str]
    jwks: dict[str, Any] | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == ("private_key_jwt" if self.jwks else "none")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class User:
    """Who authorized, and for which patient."""

    practitioner: str
    patient: str


@dataclass
class Code:
    """An authorization code with what was asked and granted."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class Grant:
    """What an access or refresh token stands for."""

    client_id: str
    scope: str
    user: User
    expires_at: float
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked


# --------------------------------------------------------------------------------------------
# The authorization server (Authlib)


class _Request(OAuth2Request):
    """An Authlib request from what the ASGI handler has already read."""

    def __init__(
        self, method: str, uri: str, headers: Mapping[str, str], query: dict[str, str], form: dict[str, str]
    ):
        super().__init__(method, uri, headers=dict(headers))
        self._args = query
        self._form = form
        self.payload = BasicOAuth2Payload({**query, **form})

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Server(AuthorizationServer):
    def __init__(self, ehr: TestEhr) -> None:
        super().__init__(scopes_supported=None)
        self.ehr = ehr

    def query_client(self, client_id: str) -> Client | None:
        return self.ehr.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        user = request.user
        expires = time.time() + float(token.get("expires_in", 3600))
        scope = str(token.get("scope", ""))
        self.ehr.access[token["access_token"]] = Grant(request.client.client_id, scope, user, expires)
        if "refresh_token" in token:
            self.ehr.refresh[token["refresh_token"]] = Grant(
                request.client.client_id, scope, user, time.time() + 24 * 3600
            )

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request  # built by the handler, which has read the form already

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        head = dict(headers or [])
        if isinstance(body, dict):
            return JSONResponse(body, status_code=status, headers=head)
        return Response(body or "", status_code=status, headers=head)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "private_key_jwt"]  # noqa: RUF012

    @property
    def ehr(self) -> TestEhr:
        return self.server.ehr  # type: ignore[no-any-return]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.ehr.codes[code] = Code(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=data.get("redirect_uri", ""),
            scope=request.scope or data.get("scope", ""),
            user=request.user,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            expires_at=time.time() + self.ehr.code_lifetime,
        )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        found = self.ehr.codes.get(code)
        if found is None or found.client_id != client.client_id or found.expires_at < time.time():
            return None
        return found

    def delete_authorization_code(self, authorization_code: Code) -> None:
        self.ehr.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> User:
        return authorization_code.user

    def create_token_response(self) -> tuple[int, dict[str, Any], Any]:
        status, token, headers = super().create_token_response()
        # SMART launch context: the patient chosen or launched, and the banner request.
        token["patient"] = self.request.user.patient
        token["need_patient_banner"] = self.ehr.need_patient_banner
        return status, token, headers


class _RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "private_key_jwt"]  # noqa: RUF012
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Grant | None:
        found = self.server.ehr.refresh.get(refresh_token)
        return None if found is None or found.revoked or found.is_expired() else found

    def authenticate_user(self, refresh_token: Grant) -> User:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Grant) -> None:
        refresh_token.revoked = True


class _PrivateKeyJwt(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, ehr: TestEhr) -> None:
        super().__init__(leeway=30)
        self.ehr = ehr

    def get_audiences(self) -> list[str]:
        return [self.ehr.url("/auth/token")]

    def validate_jti(self, claims: Mapping[str, Any], jti: str) -> bool:
        key = f"{claims['sub']}:{jti}"
        if key in self.ehr.seen_jti:
            return False
        self.ehr.seen_jti.add(key)
        return True

    def resolve_client_public_key(self, client: Client) -> KeySet:
        assert client.jwks is not None
        return KeySet.import_key_set(client.jwks)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        # SMART: the assertion is signed with RS384 or ES384, expires within five minutes.
        try:
            token = jose_jwt.decode(assertion, resolve_key, algorithms=["RS384", "ES384"])
        except JoseError as exc:
            from authlib.oauth2.rfc6749 import InvalidClientError  # noqa: PLC0415

            raise InvalidClientError(description=exc.description) from exc
        self.verify_claims(token.claims)
        if float(token.claims["exp"]) > time.time() + 300 + self.leeway:
            from authlib.oauth2.rfc6749 import InvalidClientError  # noqa: PLC0415

            raise InvalidClientError(description="exp more than five minutes ahead")
        self.ehr.assertions.append(dict(token.header) | {"claims": dict(token.claims)})
        return token.claims


# --------------------------------------------------------------------------------------------
# Scopes


def _allows(scopes: str, resource_type: str, action: str) -> bool:
    """Whether granted SMART scopes (v1 or v2) allow ``action`` (r, s, c) on a patient's resource type."""
    for scope in scopes.split():
        context, _, rest = scope.partition("/")
        if context not in ("patient", "user"):
            continue
        rtype, _, perms = rest.partition(".")
        perms = perms.split("?", 1)[0]
        if rtype not in (resource_type, "*"):
            continue
        if perms in ("*",) or (perms == "read" and action in "rs") or (perms == "write" and action == "c"):
            return True
        if action in perms and set(perms) <= set("cruds"):
            return True
    return False


# --------------------------------------------------------------------------------------------
# The EHR


@dataclass
class TestEhr:
    """The test EHR: its records, registered apps, grants and switches (see the module doc)."""

    records: dict[str, Record]
    clients: dict[str, Client] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    access: dict[str, Grant] = field(default_factory=dict)
    refresh: dict[str, Grant] = field(default_factory=dict)
    launches: dict[str, str] = field(default_factory=dict)
    seen_jti: set[str] = field(default_factory=set)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    saved: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, bool]] = field(default_factory=list)
    auto_consent: str | None = None
    token_lifetime: int = 3600
    code_lifetime: float = 60.0
    page_size: int = 10
    fhir_down: bool = False
    fhir_delay: float = 0.0
    need_patient_banner: bool = True
    pkce_methods: tuple[str, ...] = ("S256",)
    base: str = ""

    def __post_init__(self) -> None:
        self.server = _Server(self)
        self.server.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: secrets.token_urlsafe(24),
                refresh_token_generator=lambda **_: secrets.token_urlsafe(24),
                expires_generator=lambda client, grant_type: self.token_lifetime,
            ),
        )
        self.server.register_client_auth_method("private_key_jwt", _PrivateKeyJwt(self))
        self.server.register_grant(_CodeGrant, [CodeChallenge(required=True)])
        self.server.register_grant(_RefreshGrant)

    # -- configuration

    @property
    def fhir_base(self) -> str:
        """The FHIR base URL (the ``iss`` of launches)."""
        return self.url("/fhir")

    @property
    def origin(self) -> str:
        """The EHR's web origin."""
        return self.base

    def url(self, path: str) -> str:
        """An absolute URL on the EHR."""
        return self.base + path

    def register(self, client_id: str, redirect_uri: str, jwks: dict[str, Any] | None = None) -> Client:
        """Register an app (confidential when a JWK Set is given)."""
        client = Client(client_id, [redirect_uri], jwks)
        self.clients[client_id] = client
        return client

    def new_launch(self, patient_id: str) -> str:
        """A launch context for a patient (the ``launch`` value of an EHR launch)."""
        launch = secrets.token_urlsafe(16)
        self.launches[launch] = patient_id
        return launch

    def token_for(self, patient_id: str, scope: str, client_id: str = "test", lifetime: float = 600) -> str:
        """An access token minted directly (tests of what the FHIR server lets a token read)."""
        token = secrets.token_urlsafe(24)
        self.access[token] = Grant(client_id, scope, User(PRACTITIONER, patient_id), time.time() + lifetime)
        return token

    def expire_access_tokens(self) -> None:
        """End every access token now (refresh tokens stay valid)."""
        for grant in self.access.values():
            grant.expires_at = 0.0

    # -- the application

    def app(self) -> Starlette:
        """The ASGI application."""
        return Starlette(
            routes=[
                Route("/fhir/.well-known/smart-configuration", self._smart_configuration),
                Route("/fhir/{path:path}", self._fhir, methods=["GET", "POST"]),
                Route("/auth/authorize", self._authorize, methods=["GET", "POST"]),
                Route("/auth/token", self._token, methods=["POST"]),
                Route("/ehr/launch", self._ehr_launch),
            ]
        )

    async def _smart_configuration(self, request: Request) -> Response:
        self.requests.append(("GET", "/fhir/.well-known/smart-configuration", False))
        return JSONResponse(
            {
                "issuer": self.base,
                "authorization_endpoint": self.url("/auth/authorize"),
                "token_endpoint": self.url("/auth/token"),
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "scopes_supported": ["launch", "launch/patient", "openid", "fhirUser", "online_access"],
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": list(self.pkce_methods),
                "capabilities": [
                    "launch-ehr",
                    "launch-standalone",
                    "client-public",
                    "client-confidential-asymmetric",
                    "context-ehr-patient",
                    "context-standalone-patient",
                    "permission-patient",
                    "permission-v2",
                ],
            }
        )

    # authorization endpoint

    def _oauth_request(self, request: Request, form: dict[str, str]) -> _Request:
        query = dict(request.query_params.items())
        return _Request(request.method, str(request.url), request.headers, query, form)

    def _smart_checks(self, params: Mapping[str, str]) -> tuple[str, str | None]:
        """SMART's own rules on the request: ``aud``, PKCE S256, a known ``launch``. Returns (error, patient)."""
        if params.get("aud", "").rstrip("/") != self.fhir_base:
            return "invalid_request", None
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return "invalid_request", None
        launch = params.get("launch")
        if launch:
            patient = self.launches.get(launch)
            return ("", patient) if patient else ("invalid_request", None)
        if "launch/patient" not in params.get("scope", "").split():
            return "invalid_scope", None
        return "", None

    def _error_redirect(self, params: Mapping[str, str], error: str) -> Response:
        client = self.clients.get(params.get("client_id", ""))
        uri = params.get("redirect_uri", "")
        if client is None or not client.check_redirect_uri(uri):
            return HTMLResponse(f"<p>Bad request: {html.escape(error)}</p>", status_code=400)
        query = urlencode({"error": error, "state": params.get("state", "")})
        return RedirectResponse(f"{uri}?{query}", status_code=302)

    async def _authorize(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()} if request.method == "POST" else {}
        self.requests.append((request.method, "/auth/authorize", False))
        decision = form.pop("decision", None) or self.auto_consent
        chosen = form.pop("patient", None)
        params = {**dict(request.query_params), **form}
        oauth_request = self._oauth_request(request, form)
        try:
            grant = self.server.get_consent_grant(request=oauth_request, end_user=None)
        except OAuth2Error as error:
            return self._error_redirect(params, error.error)
        error, patient = self._smart_checks(params)
        if error:
            return self._error_redirect(params, error)
        if decision is None:
            return self._consent_page(params, standalone=patient is None)
        if decision != "allow":
            return self.server.create_authorization_response(
                request=oauth_request, grant_user=None, grant=grant
            )
        patient = patient or chosen
        if patient not in self.records:
            return self._error_redirect(params, "invalid_request")
        user = User(PRACTITIONER, patient)
        oauth_request.user = user
        return self.server.create_authorization_response(request=oauth_request, grant_user=user, grant=grant)

    def _consent_page(self, params: Mapping[str, str], *, standalone: bool) -> HTMLResponse:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )
        picker = ""
        if standalone:
            options = "".join(
                f'<option value="{html.escape(pid)}">{html.escape(_display(r))}</option>'
                for pid, r in self.records.items()
            )
            picker = (
                f'<label for="patient">Patient</label> <select id="patient" name="patient">{options}</select>'
            )
        body = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'><title>Test EHR: allow access</title></head>"
            "<body><h1>Test EHR</h1>"
            f"<p>{html.escape(params.get('client_id', ''))} asks for: {html.escape(params.get('scope', ''))}</p>"
            f'<form method="post" action="{self.url("/auth/authorize")}">{hidden}{picker}'
            '<button type="submit" name="decision" value="allow">Allow</button> '
            '<button type="submit" name="decision" value="deny">Deny</button></form></body></html>'
        )
        return HTMLResponse(body)

    async def _token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.requests.append(("POST", "/auth/token", False))
        result: Response = self.server.create_token_response(self._oauth_request(request, form))
        return result

    # the EHR's page

    async def _ehr_launch(self, request: Request) -> Response:
        patient = request.query_params.get("patient", "")
        app = request.query_params.get("app", "")
        launch = self.new_launch(patient)
        target = f"{app}?{urlencode({'iss': self.fhir_base, 'launch': launch})}"
        if request.query_params.get("framed"):
            body = (
                "<!doctype html><html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'><title>Test EHR chart</title></head>"
                f"<body><h1>Test EHR: chart of {html.escape(_display(self.records[patient]))}</h1>"
                f'<iframe id="app" title="magstat" src="{html.escape(target)}" width="1100" height="800"></iframe>'
                "</body></html>"
            )
            return HTMLResponse(body)
        return RedirectResponse(target, status_code=302)

    # FHIR

    def _grant(self, request: Request) -> Grant | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        found = self.access.get(token.strip()) if scheme.lower() == "bearer" else None
        return None if found is None or found.is_expired() else found

    async def _fhir(self, request: Request) -> Response:
        path = request.path_params["path"].strip("/")
        grant = self._grant(request)
        query = f"?{request.url.query}" if request.url.query else ""
        self.requests.append((request.method, f"/fhir/{path}{query}", grant is not None))
        if self.fhir_delay:
            await _sleep(self.fhir_delay)
        if self.fhir_down:
            return _outcome(500, "exception", "the server is down")
        if grant is None:
            return _outcome(401, "login", "a valid access token is needed")
        if request.method == "POST":
            return await self._create(request, path, grant)
        if "/" in path:
            rtype, rid = path.split("/", 1)
            if not _allows(grant.scope, rtype, "r"):
                return _outcome(403, "forbidden", "the token's scopes do not allow this read")
            return self._read(rtype, rid, grant)
        return self._search(request, path, grant)

    def _read(self, rtype: str, rid: str, grant: Grant) -> Response:
        if rtype == "Patient":
            if rid != grant.user.patient:
                return _outcome(403, "forbidden", "the token is for another patient")
            found = self.records[grant.user.patient].read("Patient", rid)
        elif rtype == "RiskAssessment":
            found = self.saved.get(rid)
            if (
                found is not None
                and found.get("subject", {}).get("reference") != f"Patient/{grant.user.patient}"
            ):
                return _outcome(403, "forbidden", "the token is for another patient")
        else:
            found = self.records[grant.user.patient].read(rtype, rid)
        if found is None:
            return _outcome(404, "not-found", "no such resource")
        return JSONResponse(found, media_type="application/fhir+json")

    def _search(self, request: Request, rtype: str, grant: Grant) -> Response:
        if not _allows(grant.scope, rtype, "s"):
            return _outcome(403, "forbidden", "the token's scopes do not allow this search")
        params = dict(request.query_params)
        patient = params.get("patient", "").removeprefix("Patient/")
        if patient != grant.user.patient:
            return _outcome(403, "forbidden", "a search must name the token's patient")
        count = min(int(params.pop("_count", self.page_size)), self.page_size)  # the server's largest page
        offset = int(params.pop("_offset", 0))
        record = self.records.get(patient)
        found = record.search(rtype, params) if record else []
        page = found[offset : offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": [{"fullUrl": f"{self.fhir_base}/{rtype}/{r.get('id')}", "resource": r} for r in page],
        }
        if offset + count < len(found):
            query = urlencode({**params, "_count": count, "_offset": offset + count})
            bundle["link"].append({"relation": "next", "url": f"{self.fhir_base}/{rtype}?{query}"})
        return JSONResponse(bundle, media_type="application/fhir+json")

    async def _create(self, request: Request, rtype: str, grant: Grant) -> Response:
        if rtype != "RiskAssessment":
            return _outcome(405, "not-supported", "only RiskAssessment can be created")
        if not _allows(grant.scope, rtype, "c"):
            return _outcome(403, "forbidden", "the token's scopes do not allow creating a RiskAssessment")
        try:
            resource = json.loads(await request.body())
        except ValueError:
            return _outcome(400, "structure", "not JSON")
        if not isinstance(resource, dict) or resource.get("resourceType") != "RiskAssessment":
            return _outcome(400, "structure", "not a RiskAssessment")
        if resource.get("subject", {}).get("reference") != f"Patient/{grant.user.patient}":
            return _outcome(403, "forbidden", "the subject is not the token's patient")
        rid = secrets.token_hex(8)
        resource = {**resource, "id": rid, "meta": {"versionId": "1"}}
        self.saved[rid] = resource
        return Response(
            status_code=201, headers={"Location": f"{self.fhir_base}/RiskAssessment/{rid}/_history/1"}
        )


def _display(record: Record) -> str:
    assert record.patient is not None
    for name in record.patient.get("name", []):
        given = " ".join(name.get("given", []))
        return f"{given} {name.get('family', '')}".strip()
    return record.patient_id


def _outcome(status: int, code: str, text: str) -> JSONResponse:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return JSONResponse(body, status_code=status, media_type="application/fhir+json")


async def _sleep(seconds: float) -> None:
    import asyncio  # noqa: PLC0415

    await asyncio.sleep(seconds)


def query_of(url: str) -> dict[str, str]:
    """The query parameters of a URL (one value each)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@contextmanager
def running(ehr: TestEhr) -> Iterator[TestEhr]:
    """Serve the test EHR on a free loopback port in a thread, for the duration of a block."""
    config = uvicorn.Config(
        ehr.app(), host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test EHR did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    ehr.base = f"http://127.0.0.1:{port}"
    try:
        yield ehr
    finally:
        server.should_exit = True
        thread.join(timeout=10)
