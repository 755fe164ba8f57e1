"""A small FHIR Bulk Data server for the tests, on 127.0.0.1 only.

It serves the NDJSON files of a folder through the Bulk Data Access 2.0 flow (kick-off at the
system, Patient and Group levels, status polling, manifest, file download, DELETE), with a
SMART Backend Services token endpoint that checks the client's signed assertion against the
registered public key (and the registered ``jku`` when the assertion names one), a
CapabilityStatement whose export OperationDefinition lists ``_typeFilter`` or not, and switches
that inject the faults a real server shows: 429 with Retry-After at kick-off or on status polls,
a 500, a token endpoint briefly down (503), a file that 404s, a token that expires mid-download, a refused ``_typeFilter``. Every request is logged (method, path, query, whether a token came) so that
tests can assert what the client sent.
"""

from __future__ import annotations

import gzip
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def outcome(code: str, text: str, status: int) -> JSONResponse:
    """An OperationOutcome error response."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return JSONResponse(body, status_code=status, media_type="application/fhir+json")


def read_lines(path: Path) -> list[bytes]:
    """The non-blank lines of a plain or gzip NDJSON file."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [line for line in data.splitlines() if line.strip()]


@dataclass
class Faults:
    """Fault switches; each counts down as it fires."""

    kickoff_429: int = 0
    status_500: int = 0
    missing_file: str | None = None
    expire_tokens_after_files: int | None = None
    reject_type_filter: bool = False
    wrong_count: str | None = None
    unsupported_types: tuple[str, ...] = ()
    status_fatal: bool = False
    wrong_type: str | None = None
    status_429: int = 0
    status_429_retry_after: str = "0"
    token_503: int = 0
    status_transient_400: int = 0


@dataclass
class Job:
    """One export."""

    files: dict[str, tuple[str, bytes]]
    errors: dict[str, bytes]
    request: str
    polls_left: int
    cancelled: bool = False


@dataclass
class BulkServer:
    """The server's data, registered client, switches and request log.

    Attributes:
        data: folder of ``<Type>.ndjson[.gz]`` files served.
        client_id: the registered Backend Services client (``None``: an open server).
        public_key: the client's registered public key (PEM).
        token_lifetime: seconds a token lives.
        requires_access_token: the manifest's flag (files checked for a token when true).
        polls: 202 answers before the manifest.
        retry_after: the ``Retry-After`` of an in-progress answer.
        part_lines: lines per output file (a type with more is split).
        gzip: answer file requests that accept gzip with ``Content-Encoding: gzip``.
        groups: Group id -> member Patient ids.
        error_outcomes: OperationOutcome resources put in the manifest's error file.
        declares_type_filter: the export OperationDefinition the CapabilityStatement names lists
            ``_typeFilter``; ``None``: the server has no CapabilityStatement at all (404).
        jku: the JWK Set URL registered for the client (an assertion naming another is refused).
        kid: the ``kid`` of the registered key; an assertion naming another key is refused, as
            a server that picks the key by ``kid`` from the client's JWK Set does (``None``:
            any ``kid``).

    """

    data: Path
    client_id: str | None = None
    public_key: bytes | None = None
    token_lifetime: int = 300
    requires_access_token: bool = True
    polls: int = 1
    retry_after: str = "0"
    part_lines: int = 1000
    gzip: bool = False
    groups: dict[str, list[str]] = field(default_factory=dict)
    error_outcomes: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    log: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)
    seen_jti: set[str] = field(default_factory=set)
    jobs: dict[str, Job] = field(default_factory=dict)
    files_served: int = 0
    smart_v1: bool = False
    manifest_page_items: int | None = None
    scopes_asked: list[str] = field(default_factory=list)
    base: str = ""
    declares_type_filter: bool | None = True
    jku: str | None = None
    kid: str | None = None

    # -- helpers ------------------------------------------------------------------------------
    def authorised(self, request: Request) -> bool:
        """Whether the request carries a live token (always true for an open server)."""
        if self.client_id is None:
            return True
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip()
        return bool(token) and self.tokens.get(token, 0) > time.time()

    def resources(
        self, types: list[str], patients: set[str] | None, filters: list[str]
    ) -> dict[str, list[bytes]]:
        """Lines of each requested type, for the patients given, after the ``_typeFilter`` queries."""
        out: dict[str, list[bytes]] = {}
        for path in sorted(self.data.iterdir()):
            rtype = path.name.split(".")[0]
            if types and rtype not in types:
                continue
            lines = read_lines(path)
            if patients is not None:
                lines = [ln for ln in lines if _patient_of(json.loads(ln)) in patients]
            queries = [f.partition("?")[2] for f in filters if f.partition("?")[0] == rtype]
            if queries:
                lines = [ln for ln in lines if any(_matches(json.loads(ln), q) for q in queries)]
            if lines:
                out[rtype] = lines
        return out


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id"))
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return ref.rpartition("/")[2] or None


def _matches(resource: dict[str, Any], query: str) -> bool:
    """A ``code=system|code,...`` query (the only search the test server understands)."""
    name, _, values = query.partition("=")
    if name != "code":
        return True
    wanted = set(values.split(","))
    for coding in (resource.get("code") or {}).get("coding", []):
        if f"{coding.get('system')}|{coding.get('code')}" in wanted or str(coding.get("code")) in wanted:
            return True
    return False


def create_app(server: BulkServer) -> FastAPI:
    """The FastAPI application of a :class:`BulkServer`."""
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Response:
        server.log.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "token": "authorization" in request.headers,
                "t": time.monotonic(),
                "headers": {k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"},
            }
        )
        response: Response = await call_next(request)
        return response

    @app.get("/fhir/.well-known/smart-configuration")
    def smart_configuration() -> dict[str, Any]:
        return {
            "token_endpoint": f"{server.base}/auth/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": ["system/*.rs"],
            "capabilities": [
                "client-confidential-asymmetric",
                "permission-v1" if server.smart_v1 else "permission-v2",
            ],
        }

    @app.get("/fhir/metadata")
    def metadata() -> Response:
        if server.declares_type_filter is None:
            return outcome("not-found", "no CapabilityStatement here", 404)
        export = {"name": "export", "definition": f"{server.base}/OperationDefinition/export"}
        body = {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "operation": [export],
                    "resource": [
                        {"type": "Patient", "operation": [export]},
                        {"type": "Group", "operation": [export]},
                    ],
                }
            ],
        }
        return JSONResponse(body, media_type="application/fhir+json")

    @app.get("/fhir/OperationDefinition/export")
    def operation_definition() -> Response:
        names = ["_outputFormat", "_since", "_type"] + (
            ["_typeFilter"] if server.declares_type_filter else []
        )
        body = {
            "resourceType": "OperationDefinition",
            "name": "BulkDataExport",
            "status": "active",
            "kind": "operation",
            "code": "export",
            "system": True,
            "type": True,
            "instance": True,
            "parameter": [{"name": n, "use": "in", "min": 0, "max": "1", "type": "string"} for n in names],
        }
        return JSONResponse(body, media_type="application/fhir+json")

    @app.post("/fhir/auth/token")
    async def token(request: Request) -> JSONResponse:
        form = await request.form()

        def refuse(error: str, text: str, status: int = 401) -> JSONResponse:
            return JSONResponse({"error": error, "error_description": text}, status_code=status)

        if form.get("grant_type") != "client_credentials":
            return refuse("unsupported_grant_type", "only client_credentials", 400)
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return refuse("invalid_request", "client_assertion_type must be jwt-bearer", 400)
        assertion = str(form.get("client_assertion") or "")
        if server.faults.token_503:
            # The authorisation server is briefly down; it still saw the assertion's jti.
            server.faults.token_503 -= 1
            server.seen_jti.add(str(jwt.decode(assertion, options={"verify_signature": False}).get("jti")))
            return JSONResponse(
                {"error": "temporarily_unavailable"}, status_code=503, headers={"Retry-After": "0"}
            )
        if server.client_id is None or server.public_key is None:
            return refuse("invalid_client", "no client is registered")
        try:
            header = jwt.get_unverified_header(assertion)
            if header.get("alg") not in ("RS384", "ES384") or not header.get("kid"):
                return refuse("invalid_client", "alg must be RS384 or ES384, with a kid")
            if server.kid is not None and header["kid"] != server.kid:
                return refuse("invalid_client", "no registered key has this kid")
            if "jku" in header and header["jku"] != server.jku:
                return refuse("invalid_client", "jku is not the JWK Set URL registered for the client")
            claims = jwt.decode(
                assertion,
                server.public_key,
                algorithms=["RS384", "ES384"],
                audience=f"{server.base}/auth/token",
                issuer=server.client_id,
                options={"require": ["exp", "jti", "iss", "sub", "aud"]},
            )
        except jwt.PyJWTError as exc:
            return refuse("invalid_client", f"assertion refused: {type(exc).__name__}")
        if claims["sub"] != server.client_id:
            return refuse("invalid_client", "sub must be the client id")
        if claims["exp"] > time.time() + 300 + 5:
            return refuse("invalid_client", "exp more than five minutes ahead")
        if claims["jti"] in server.seen_jti:
            return refuse("invalid_client", "jti replayed")
        server.seen_jti.add(claims["jti"])
        scope = str(form.get("scope") or "")
        server.scopes_asked.append(scope)
        for item in scope.split():
            if not item.startswith("system/"):
                return refuse("invalid_scope", f"{item} is not a system scope", 400)
        value = secrets.token_urlsafe(24)
        server.tokens[value] = time.time() + server.token_lifetime
        return JSONResponse(
            {
                "access_token": value,
                "token_type": "bearer",
                "expires_in": server.token_lifetime,
                "scope": scope,
            }
        )

    def kickoff(request: Request, patients: set[str] | None) -> Response:
        if not server.authorised(request):
            return outcome("security", "no valid token", 401)
        if request.headers.get("prefer") != "respond-async":
            return outcome("invalid", "Prefer: respond-async is required", 400)
        if request.headers.get("accept") != "application/fhir+json":
            return outcome("invalid", "Accept: application/fhir+json is required", 400)
        if server.faults.kickoff_429:
            server.faults.kickoff_429 -= 1
            return Response(status_code=429, headers={"Retry-After": "1"})
        params = request.query_params
        filters = [f for value in params.getlist("_typeFilter") for f in value.split(",") if f]
        if filters and server.faults.reject_type_filter:
            return outcome("not-supported", "_typeFilter is not supported", 400)
        types = [t for t in params.get("_type", "").split(",") if t]
        # As the SMART reference server does: refuse the first requested type it does not hold.
        for rtype in types:
            if rtype in server.faults.unsupported_types:
                return outcome(
                    "processing",
                    f'The requested resource type "{rtype}" is not available on this server',
                    400,
                )
        data = server.resources(types, patients, filters)
        files: dict[str, tuple[str, bytes]] = {}
        for rtype, lines in data.items():
            for i in range(0, len(lines), server.part_lines):
                files[f"{rtype}-{i // server.part_lines + 1}"] = (
                    rtype,
                    b"\n".join(lines[i : i + server.part_lines]) + b"\n",
                )
        errors = {}
        if server.error_outcomes:
            errors["errors-1"] = b"".join(json.dumps(o).encode() + b"\n" for o in server.error_outcomes)
        job_id = secrets.token_hex(8)
        server.jobs[job_id] = Job(files, errors, str(request.url), server.polls)
        return Response(status_code=202, headers={"Content-Location": f"{server.base}/jobs/{job_id}"})

    @app.get("/fhir/$export")
    def system_export(request: Request) -> Response:
        return kickoff(request, None)

    @app.get("/fhir/Patient/$export")
    def patient_export(request: Request) -> Response:
        return kickoff(request, None)

    @app.get("/fhir/Group/{group_id}/$export")
    def group_export(group_id: str, request: Request) -> Response:
        if group_id not in server.groups:
            return outcome("not-found", f"Group/{group_id} is unknown", 404)
        return kickoff(request, set(server.groups[group_id]))

    @app.get("/fhir/jobs/{job_id}")
    def status(job_id: str, request: Request) -> Response:
        if not server.authorised(request):
            return outcome("security", "no valid token", 401)
        job = server.jobs.get(job_id)
        if job is None or job.cancelled:
            return outcome("not-found", "no such export", 404)
        if server.faults.status_429:
            server.faults.status_429 -= 1
            return Response(status_code=429, headers={"Retry-After": server.faults.status_429_retry_after})
        if server.faults.status_transient_400:
            server.faults.status_transient_400 -= 1
            return outcome("transient", "the status store is busy; ask again later", 400)
        if server.faults.status_500:
            server.faults.status_500 -= 1
            return Response(b"upstream hiccup", status_code=500)
        if server.faults.status_fatal:
            return outcome("processing", "the export failed for good", 500)
        if job.polls_left > 0:
            job.polls_left -= 1
            headers = {"X-Progress": "50% done"}
            if server.retry_after:
                headers["Retry-After"] = server.retry_after
            return Response(status_code=202, headers=headers)
        manifest = {
            "transactionTime": "2020-01-01T00:00:00Z",
            "request": job.request,
            "requiresAccessToken": server.requires_access_token,
            "output": [
                {
                    "type": rtype,
                    "url": f"{server.base}/files/{job_id}/{name}",
                    "count": body.count(b"\n")
                    + (1 if name in (server.faults.wrong_count, server.faults.wrong_type) else 0),
                }
                for name, (rtype, body) in job.files.items()
            ],
            "error": [
                {"type": "OperationOutcome", "url": f"{server.base}/files/{job_id}/{name}"}
                for name in job.errors
            ],
        }
        if server.manifest_page_items:
            return JSONResponse(manifest_page(manifest, job_id, 0))
        return JSONResponse(manifest, headers={"Expires": "Fri, 31 Dec 2100 23:59:59 GMT"})

    def manifest_page(manifest: dict[str, Any], job_id: str, number: int) -> dict[str, Any]:
        """Page ``number`` of a manifest split into pages of ``manifest_page_items`` output items."""
        size = server.manifest_page_items or 1
        items = manifest["output"]
        page = dict(manifest, output=items[number * size : (number + 1) * size])
        if number:
            page["error"] = []
        if (number + 1) * size < len(items):
            page["link"] = [{"relation": "next", "url": f"{server.base}/jobs/{job_id}/manifest/{number + 1}"}]
        return page

    @app.get("/fhir/jobs/{job_id}/manifest/{number}")
    def later_page(job_id: str, number: int, request: Request) -> Response:
        job = server.jobs[job_id]
        job.polls_left = 0
        server.manifest_page_items, size = None, server.manifest_page_items
        whole = json.loads(status(job_id, request).body)
        server.manifest_page_items = size
        return JSONResponse(manifest_page(whole, job_id, number))

    @app.delete("/fhir/jobs/{job_id}")
    def delete(job_id: str, request: Request) -> Response:
        job = server.jobs.get(job_id)
        if job is None or job.cancelled:
            return outcome("not-found", "no such export", 404)
        job.cancelled = True
        return Response(status_code=202)

    @app.get("/fhir/files/{job_id}/{name}")
    def file(job_id: str, name: str, request: Request) -> Response:
        if server.requires_access_token and not server.authorised(request):
            return outcome("security", "no valid token", 401)
        job = server.jobs.get(job_id)
        if job is None or job.cancelled:
            return outcome("not-found", "no such export", 404)
        if name == server.faults.missing_file:
            return outcome("not-found", "file gone", 404)
        body = job.errors[name] if name in job.errors else job.files[name][1]
        if name == server.faults.wrong_type:
            body += b'{"resourceType": "Encounter", "id": "stray"}\n'
        server.files_served += 1
        if (
            server.faults.expire_tokens_after_files is not None
            and server.files_served >= server.faults.expire_tokens_after_files
        ):
            server.faults.expire_tokens_after_files = None
            server.tokens.clear()
        headers = {}
        if server.gzip and "gzip" in request.headers.get("accept-encoding", ""):
            body = gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type="application/fhir+ndjson", headers=headers)

    return app


@contextmanager
def running(server: BulkServer) -> Iterator[BulkServer]:
    """Run the server on a free port of 127.0.0.1 in a thread for the duration of a block."""
    config = uvicorn.Config(create_app(server), host="127.0.0.1", port=0, log_config=None, access_log=False)
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not runner.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test Bulk Data server did not start")
        time.sleep(0.01)
    port = runner.servers[0].sockets[0].getsockname()[1]
    server.base = f"http://127.0.0.1:{port}/fhir"
    try:
        yield server
    finally:
        runner.should_exit = True
        thread.join(timeout=10)
