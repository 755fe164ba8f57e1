"""A mock EHR for the service tests and the benchmark: Synthea records, prefetch, a FHIR server, JWTs.

- :class:`Record` indexes one patient's resources from a Synthea bundle (references rewritten to
  ``Patient/<id>`` as a FHIR server returns them) and answers the FHIR searches that magstat's
  prefetch templates use (a read by id; a type search by ``patient`` with an optional ``code``
  token list).
- :func:`prefetch_for` fills the prefetch templates the way an EHR would.
- :class:`FhirServer` serves records over real HTTP (stdlib ``http.server`` in a thread), with
  paging, an access-token check, and a delay or a failure on demand.
- :class:`Signer` makes EHR key pairs (ES384, RS384, ES256), their JWK Set and signed tokens.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from magstat.adapters.cds_hooks.request import render_template

_SUBJECT_KEYS = ("subject", "patient")


def load_bundle(path: Path) -> dict[str, Any]:
    """A Synthea bundle (plain or gzip JSON)."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return json.loads(raw)


class Record:
    """One patient's resources, searchable like a FHIR server would search them."""

    def __init__(self, bundle: Mapping[str, Any]) -> None:
        self.by_type: dict[str, list[dict[str, Any]]] = {}
        self.patient: dict[str, Any] | None = None
        for entry in bundle.get("entry", []):
            resource = json.loads(json.dumps(entry["resource"]))
            for key in _SUBJECT_KEYS:
                ref = resource.get(key)
                if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("urn:uuid:"):
                    ref["reference"] = "Patient/" + ref["reference"][len("urn:uuid:") :]
            self.by_type.setdefault(resource["resourceType"], []).append(resource)
            if resource["resourceType"] == "Patient":
                self.patient = resource
        assert self.patient is not None, "a patient bundle has a Patient"
        self.patient_id: str = self.patient["id"]

    def read(self, rtype: str, rid: str) -> dict[str, Any] | None:
        """A resource by type and id."""
        return next((r for r in self.by_type.get(rtype, []) if r.get("id") == rid), None)

    def search(self, rtype: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Resources of a type for ``patient`` (and ``code`` tokens, ``system|code`` or ``code``)."""
        patient = params.get("patient", "").removeprefix("Patient/")
        codes = [c for c in params.get("code", "").split(",") if c]
        statuses = {s for s in params.get("status", "").split(",") if s}
        out = []
        for resource in self.by_type.get(rtype, []):
            refs = [
                resource.get(k, {}).get("reference", "")
                for k in _SUBJECT_KEYS
                if isinstance(resource.get(k), dict)
            ]
            if patient and f"Patient/{patient}" not in refs:
                continue
            if codes and not _has_code(resource, codes):
                continue
            if statuses and resource.get("status") not in statuses:
                continue
            out.append(resource)
        return out

    def query(self, url: str) -> dict[str, Any] | None:
        """Answer a relative FHIR URL (a read or a search) with a resource or a searchset Bundle."""
        parts = urlsplit(url)
        path = parts.path.strip("/")
        if "/" in path:
            rtype, rid = path.split("/", 1)
            return self.read(rtype, unquote(rid))
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        found = self.search(path, params)
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"resource": r} for r in found],
        }


def _has_code(resource: Mapping[str, Any], tokens: list[str]) -> bool:
    for coding in resource.get("code", {}).get("coding", []):
        for token in tokens:
            system, _, code = token.rpartition("|")
            if coding.get("code") == code and (not system or coding.get("system") == system):
                return True
    return False


def prefetch_for(templates: Mapping[str, str], context: Mapping[str, Any], record: Record) -> dict[str, Any]:
    """The prefetch an EHR sends for the service's templates (``None`` where it has no data)."""
    out: dict[str, Any] = {}
    for key, template in templates.items():
        url = render_template(template, context)
        assert url is not None
        found = record.query(url)
        if found is not None and found.get("resourceType") == "Bundle" and not found["entry"]:
            found = None  # the specification's "no data" for a template
        out[key] = found
    return out


class FhirServer:
    """A small FHIR server over real HTTP, serving records, with paging and fault injection.

    Attributes:
        token: the access token every request must carry (``None``: no check).
        delay: seconds to wait before each answer (a slow server).
        fail: answer every request with HTTP 500.
        page_size: search results per page (``link[next]`` for the rest).
        requests: (path with query, Authorization header) of each request received.

    """

    def __init__(self, records: list[Record], *, token: str | None = None, page_size: int = 50) -> None:
        self.records = {r.patient_id: r for r in records}
        self.token = token
        self.delay = 0.0
        self.fail = False
        self.page_size = page_size
        self.requests: list[tuple[str, str | None]] = []
        self.extra: dict[str, Any] = {}
        self._server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        """The FHIR base URL."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/fhir"

    def start(self) -> FhirServer:
        """Start serving in a thread."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append((self.path, self.headers.get("Authorization")))
                if owner.delay:
                    time.sleep(owner.delay)
                if self.path in owner.extra:
                    return self._send(200, owner.extra[self.path])
                if owner.fail:
                    return self._send(500, {"resourceType": "OperationOutcome", "issue": []})
                if owner.token is not None and self.headers.get("Authorization") != f"Bearer {owner.token}":
                    return self._send(401, {"resourceType": "OperationOutcome", "issue": []})
                parts = urlsplit(self.path)
                if not parts.path.startswith("/fhir/"):
                    return self._send(404, {})
                rel = parts.path[len("/fhir/") :]
                params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                page = int(params.pop("_page", "1"))
                patient = params.get("patient") or (
                    rel.split("/", 1)[1] if rel.startswith("Patient/") else ""
                )
                record = owner.records.get(unquote(patient))
                if record is None:
                    return self._send(404, {"resourceType": "OperationOutcome", "issue": []})
                found = record.query(rel + ("?" + urlencode(params) if params else ""))
                if found is None:
                    return self._send(404, {"resourceType": "OperationOutcome", "issue": []})
                if found["resourceType"] == "Bundle":
                    entries = found["entry"]
                    start = (page - 1) * owner.page_size
                    found = dict(found, entry=entries[start : start + owner.page_size])
                    if start + owner.page_size < len(entries):
                        query = urlencode({**params, "_page": page + 1})
                        found["link"] = [{"relation": "next", "url": f"{owner.base}/{rel}?{query}"}]
                return self._send(200, found)

            def _send(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving (the port then refuses connections: a server that is down)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@contextmanager
def fhir_server(records: list[Record], **kwargs: Any) -> Iterator[FhirServer]:
    """A running :class:`FhirServer`."""
    server = FhirServer(records, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


class Signer:
    """An EHR's signing keys and the tokens it sends (CDS Hooks 2.0 JWT)."""

    def __init__(self, iss: str = "https://ehr.example.org") -> None:
        self.iss = iss
        self.keys: dict[str, tuple[str, Any]] = {
            "es384": ("ES384", ec.generate_private_key(ec.SECP384R1())),
            "rs384": ("RS384", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "es256": ("ES256", ec.generate_private_key(ec.SECP256R1())),
        }

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set."""
        keys = []
        for kid, (alg, private) in self.keys.items():
            algorithm = jwt.get_algorithm_by_name(alg)
            jwk = algorithm.to_jwk(private.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": alg})
        return {"keys": keys}

    def write_jwks(self, path: Path) -> Path:
        """Write the JWK Set to a file."""
        path.write_text(json.dumps(self.jwks()), encoding="utf-8")
        return path

    def token(
        self,
        aud: str,
        *,
        kid: str = "es384",
        iss: str | None = None,
        lifetime: int = 300,
        iat_offset: int = 0,
        jti: str | None = None,
        headers: Mapping[str, Any] | None = None,
        key: Any = None,
        alg: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token for the endpoint ``aud``."""
        default_alg, private = self.keys.get(kid, self.keys["es384"])
        now = int(time.time()) + iat_offset
        payload = {
            "iss": iss or self.iss,
            "aud": aud,
            "iat": now,
            "exp": now + lifetime,
            "jti": jti or str(uuid.uuid4()),
            "tenant": "tenant-1",
            **(claims or {}),
        }
        return jwt.encode(
            payload,
            key if key is not None else private,
            algorithm=alg or default_alg,
            headers={"kid": kid, "typ": "JWT", **(headers or {})},
        )
