"""``magstat screen --fhir-server``: the Bulk Data client against the test server, faults included.

Every test runs the real client over HTTP against ``tests/batch/bulk_server.py`` on 127.0.0.1.
Waits are the server's (``Retry-After`` of 0 or 1 s) or capped back-offs, so each test takes a
few seconds at most.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from collections.abc import Iterator
from email.utils import format_datetime
from pathlib import Path

import httpx
import jwt
import pytest

pytest.importorskip("uvicorn", reason="the service extra is not installed")
pytest.importorskip("httpx", reason="the bulk extra is not installed")
pytest.importorskip("duckdb", reason="the batch extra is not installed")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from magstat.batch.bulk import BulkHttp, ExportRequest, NoAuth, RetryPolicy, run_export
from magstat.batch.bulk.auth import BackendServicesAuth, ClientKey, load_client_key
from magstat.batch.bulk.http import parse_retry_after
from magstat.batch.readers.fhir_bulk import NEEDED_TYPES
from magstat.cli import main
from magstat.cli.screen import _since_arg
from tests.batch.bulk_server import BulkServer, Faults, read_lines, running
from tests.conftest import DATA

EXPORT = DATA / "bulk" / "synthea"
AS_OF = "2020-01-01"
OUTPUTS = ("results.parquet", "summary.json", "report.html", "issues.csv")


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    """A private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The public half as PEM."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """The client's RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    """A key the server has never seen."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    """The client's RSA key in a PEM file."""
    path = tmp_path / "client.pem"
    path.write_bytes(pem(rsa_key))
    return path


@pytest.fixture
def open_server() -> Iterator[BulkServer]:
    """An open Bulk Data server (no authorisation) with the six test patients."""
    with running(BulkServer(EXPORT, polls=2)) as server:
        yield server


@pytest.fixture
def auth_server(rsa_key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BulkServer]:
    """A server that registers client ``magstat`` with the RSA key's public half under its default kid."""
    path = tmp_path_factory.mktemp("registered") / "key.pem"
    path.write_bytes(pem(rsa_key))
    kid = load_client_key(path).kid
    server = BulkServer(EXPORT, client_id="magstat", public_key=public_pem(rsa_key), kid=kid)
    with running(server):
        yield server


def screen_server(
    server: BulkServer, out: Path, *extra: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run ``magstat screen --fhir-server`` and return (exit code, stdout, stderr)."""
    code = main(["screen", "--fhir-server", server.base, "--out", str(out), "--as-of", AS_OF, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def with_key(key_file: Path) -> list[str]:
    """The Backend Services options."""
    return ["--client-id", "magstat", "--private-key", str(key_file)]


def requests(server: BulkServer, part: str, method: str = "GET") -> list[dict]:
    """The logged requests whose path contains ``part``."""
    return [e for e in server.log if part in e["path"] and e["method"] == method]


def test_export_screens_exactly_as_the_folder(open_server, tmp_path, capsys):
    """The outputs equal, byte for byte, a folder screening of the downloaded export; the results equal the source's."""
    out = tmp_path / "out"
    code, stdout, stderr = screen_server(open_server, out, capsys=capsys)
    assert 0 == code, stderr
    assert "Condition 35, MedicationRequest 17, Observation 330, Patient 6" in stdout
    assert (out / "export" / "manifest.json").is_file()
    assert (out / "export" / "magstat-export.json").is_file()
    folder = tmp_path / "folder"
    assert 0 == main(["screen", str(out / "export"), "--out", str(folder), "--as-of", AS_OF])
    for name in OUTPUTS:
        assert (folder / name).read_bytes() == (out / name).read_bytes(), name
    source = tmp_path / "source"
    assert 0 == main(["screen", str(EXPORT), "--out", str(source), "--as-of", AS_OF])
    assert (source / "results.parquet").read_bytes() == (out / "results.parquet").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    assert 6 == summary["patients"]
    # Each phase reports on stderr, as plain lines that read in a log.
    for phase in ("export: kick-off", "export: 50% done", "download: 4/4", "screen: done, 6 patients"):
        assert phase in stderr


def test_kickoff_follows_the_specification(open_server, tmp_path, capsys):
    """The kick-off asks asynchronously for FHIR JSON and only the types magstat reads; Encounters stay out."""
    code, _, stderr = screen_server(open_server, tmp_path / "out", "--since", "2019-06-01", capsys=capsys)
    assert 0 == code, stderr
    (kickoff,) = requests(open_server, "$export")
    assert "/fhir/$export" == kickoff["path"]
    assert "respond-async" == kickoff["headers"]["prefer"]
    assert "application/fhir+json" == kickoff["headers"]["accept"]
    assert list(NEEDED_TYPES) == kickoff["query"]["_type"].split(",")
    assert "2019-06-01T00:00:00Z" == kickoff["query"]["_since"]
    assert "_typeFilter" not in kickoff["query"]
    assert not list((tmp_path / "out" / "export").glob("Encounter*"))
    # Status polls ask for JSON; after the download the client tells the server it is done.
    assert all("application/json" == e["headers"]["accept"] for e in requests(open_server, "/jobs/"))
    assert 1 == len(requests(open_server, "/jobs/", "DELETE"))
    assert "--since exports only what changed" in stderr


def test_rerun_reuses_the_kept_export(open_server, tmp_path, capsys):
    """A second run with the same request screens the kept export without asking the server anything."""
    out = tmp_path / "out"
    assert 0 == screen_server(open_server, out, capsys=capsys)[0]
    first = {name: (out / name).read_bytes() for name in OUTPUTS}
    before = len(open_server.log)
    code, stdout, stderr = screen_server(open_server, out, capsys=capsys)
    assert 0 == code, stderr
    assert before == len(open_server.log)
    assert "kept export reused" in stdout
    assert first == {name: (out / name).read_bytes() for name in OUTPUTS}
    code, _, stderr = screen_server(open_server, out, "--new-export", capsys=capsys)
    assert 0 == code, stderr
    assert 2 == len(requests(open_server, "$export"))


def test_backend_services_rsa(auth_server, key_file, tmp_path, capsys):
    """An RSA key signs an RS384 assertion the server checks; every request carries the token; none is printed."""
    code, stdout, stderr = screen_server(auth_server, tmp_path / "out", *with_key(key_file), capsys=capsys)
    assert 0 == code, stderr
    assert "warning: sending a client assertion and tokens over plain http" in stderr
    assert 1 == len(auth_server.seen_jti)
    exchanges = [e for e in auth_server.log if "/auth/" not in e["path"] and ".well-known" not in e["path"]]
    assert exchanges and all(e["token"] for e in exchanges)
    token_request = requests(auth_server, "/auth/token", "POST")
    assert 1 == len(token_request)
    for secret in [*auth_server.tokens, key_file.read_text().splitlines()[1]]:
        assert secret not in stdout + stderr
        assert secret not in "".join(p.read_text() for p in (tmp_path / "out" / "export").glob("*.json"))


def test_scopes(auth_server, key_file, tmp_path, capsys):
    """The client asks for system/<Type>.rs by default, and the v1 spelling from a server that speaks only v1."""
    assert 0 == screen_server(auth_server, tmp_path / "a", *with_key(key_file), capsys=capsys)[0]
    assert [" ".join(f"system/{t}.rs" for t in NEEDED_TYPES)] == auth_server.scopes_asked
    auth_server.smart_v1 = True
    code, _, stderr = screen_server(auth_server, tmp_path / "b", *with_key(key_file), capsys=capsys)
    assert 0 == code, stderr
    assert " ".join(f"system/{t}.read" for t in NEEDED_TYPES) == auth_server.scopes_asked[-1]
    assert "SMART v1 scopes" in stderr


def test_print_jwks_registers_the_key(rsa_key, key_file, capsys):
    """--print-jwks prints the public JWK (kid, alg RS384) that verifies the client's assertions; no private part."""
    assert 0 == main(["screen", "--print-jwks", "--private-key", str(key_file)])
    (jwk,) = json.loads(capsys.readouterr().out)["keys"]
    assert {"kty", "n", "e", "kid", "alg", "use"} == set(jwk)
    assert "RS384" == jwk["alg"]
    client = load_client_key(key_file)
    assert client.kid == jwk["kid"]
    with httpx.Client() as http:
        auth = BackendServicesAuth("http://127.0.0.1:9/fhir", "magstat", client, "system/*.rs", http)
        auth.token_endpoint = "http://127.0.0.1:9/fhir/auth/token"
        assertion = auth.assertion()
    assert jwk["kid"] == jwt.get_unverified_header(assertion)["kid"]
    claims = jwt.decode(
        assertion, jwt.PyJWK(jwk).key, algorithms=["RS384"], audience=auth.token_endpoint, issuer="magstat"
    )
    assert "magstat" == claims["sub"]
    assert claims["exp"] - time.time() <= 300


def test_backend_services_es384(tmp_path, capsys):
    """An EC P-384 key signs ES384 assertions that the server accepts."""
    key = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "ec.pem"
    path.write_bytes(pem(key))
    assert "ES384" == load_client_key(path).alg
    with running(BulkServer(EXPORT, client_id="magstat", public_key=public_pem(key))) as server:
        code, _, stderr = screen_server(server, tmp_path / "out", *with_key(path), capsys=capsys)
    assert 0 == code, stderr
    assert 1 == len(server.seen_jti)


def test_wrong_key_is_refused(auth_server, other_rsa_key, tmp_path, capsys):
    """A key the server did not register is refused: exit 6, a clear message, no export, no traceback."""
    path = tmp_path / "wrong.pem"
    path.write_bytes(pem(other_rsa_key))
    out = tmp_path / "out"
    code, _, stderr = screen_server(auth_server, out, *with_key(path), capsys=capsys)
    assert 6 == code
    assert "refused client 'magstat': invalid_client" in stderr
    assert "Traceback" not in stderr
    assert not requests(auth_server, "$export")
    assert not (out / "summary.json").exists()


def test_key_named_by_another_kid_is_refused(auth_server, key_file, tmp_path, capsys):
    """The registered key under a kid the server does not know is refused (exit 6): the server picks keys by kid."""
    code, _, stderr = screen_server(
        auth_server, tmp_path / "out", *with_key(key_file), "--key-id", "not-registered", capsys=capsys
    )
    assert 6 == code
    assert "no registered key has this kid" in stderr


def test_unusable_key_file_is_invalid_input(tmp_path, capsys):
    """A key file that is not a PEM private key is refused with exit 2, naming the option."""
    path = tmp_path / "key.pem"
    path.write_text("not a key")
    code = main(
        ["screen", "--fhir-server", "http://127.0.0.1:9/fhir", "--out", str(tmp_path / "o"), *with_key(path)]
    )
    assert 2 == code
    assert "--private-key" in capsys.readouterr().err


def test_429_with_retry_after_is_honoured(open_server, tmp_path, capsys):
    """A 429 at kick-off makes the client wait the server's Retry-After (1 s), then it goes on."""
    open_server.faults = Faults(kickoff_429=1)
    code, _, stderr = screen_server(open_server, tmp_path / "out", capsys=capsys)
    assert 0 == code, stderr
    first, second = requests(open_server, "$export")
    assert second["t"] - first["t"] >= 0.95
    assert "kick-off: HTTP 429, trying again in 1 s" in stderr


def test_500_then_success(open_server, tmp_path, capsys):
    """A 500 on a status poll is retried with back-off and the export completes."""
    open_server.faults = Faults(status_500=1)
    code, _, stderr = screen_server(open_server, tmp_path / "out", capsys=capsys)
    assert 0 == code, stderr
    assert "status: HTTP 500, trying again" in stderr


def test_missing_file_fails_clearly_and_resumes(open_server, tmp_path, capsys):
    """A file that 404s is named and fails the run (exit 5, nothing screened); a rerun fetches only that file."""
    open_server.faults = Faults(missing_file="Observation-1")
    out = tmp_path / "out"
    code, _, stderr = screen_server(open_server, out, capsys=capsys)
    assert 5 == code
    assert "Observation.1.ndjson: HTTP 404" in stderr
    assert "files/" in stderr and "Observation-1" in stderr
    assert not (out / "summary.json").exists()
    assert (out / "export" / "Patient.1.ndjson").is_file()
    open_server.faults = Faults()
    fetched = len(requests(open_server, "/files/"))
    code, _, stderr = screen_server(open_server, out, capsys=capsys)
    assert 0 == code, stderr
    assert 1 == len(requests(open_server, "/files/")) - fetched
    assert 1 == len(requests(open_server, "$export"))
    assert "3 of 4 files already downloaded and verified" in stderr


def test_expired_token_is_renewed_mid_download(auth_server, key_file, tmp_path, capsys):
    """When the server drops the token after the first file, the client gets a new one and finishes."""
    auth_server.faults = Faults(expire_tokens_after_files=1)
    code, _, stderr = screen_server(auth_server, tmp_path / "out", *with_key(key_file), capsys=capsys)
    assert 0 == code, stderr
    assert 2 == len(auth_server.seen_jti)
    assert "asking for a new one" in stderr


def test_token_endpoint_503_is_retried_with_a_new_assertion(auth_server, key_file, tmp_path, capsys):
    """A token endpoint that answers 503 twice is asked again, each time with a new jti, and the run completes."""
    auth_server.faults = Faults(token_503=2)
    code, _, stderr = screen_server(auth_server, tmp_path / "out", *with_key(key_file), capsys=capsys)
    assert 0 == code, stderr
    assert 3 == len(auth_server.seen_jti)  # a replayed jti would have been refused
    assert 3 == len(requests(auth_server, "/auth/token", "POST"))
    assert "auth: token: HTTP 503, trying again in 0 s" in stderr


def test_token_renewed_before_it_expires(auth_server, rsa_key):
    """A token is reused while it is fresh and renewed (new assertion, new jti) shortly before expires_in runs out."""
    auth_server.token_lifetime = 30
    now = [time.time()]
    with httpx.Client() as http:
        client_key = ClientKey(rsa_key, "RS384", auth_server.kid)
        auth = BackendServicesAuth(
            auth_server.base, "magstat", client_key, "system/*.rs", http, clock=lambda: now[0]
        )
        first = auth.header()
        now[0] += 20
        assert first == auth.header()
        assert 1 == len(auth_server.seen_jti)
        now[0] += 5  # 25 s: within the last fifth of the token's 30 s
        second = auth.header()
    assert first != second
    assert 2 == len(auth_server.seen_jti)


def test_files_without_token_when_not_required(rsa_key, key_file, tmp_path, capsys):
    """With requiresAccessToken false, files are fetched without the token."""
    server = BulkServer(
        EXPORT, client_id="magstat", public_key=public_pem(rsa_key), requires_access_token=False
    )
    with running(server):
        code, _, stderr = screen_server(server, tmp_path / "out", *with_key(key_file), capsys=capsys)
        files = requests(server, "/files/")
    assert 0 == code, stderr
    assert files and not any(e["token"] for e in files)


def test_gzip_transfer(open_server, tmp_path, capsys):
    """Files sent with Content-Encoding gzip arrive decoded and screen the same."""
    open_server.gzip = True
    out = tmp_path / "out"
    code, _, stderr = screen_server(open_server, out, capsys=capsys)
    assert 0 == code, stderr
    file_request = requests(open_server, "/files/")[0]["headers"]
    assert "gzip" in file_request["accept-encoding"]
    assert "application/fhir+ndjson" == file_request["accept"]
    assert read_lines(EXPORT / "Patient.ndjson.gz") == read_lines(out / "export" / "Patient.1.ndjson")


def test_resource_of_another_type_fails(open_server, tmp_path, capsys):
    """A file holding a resource of a type other than the manifest's fails the run by name (exit 5)."""
    open_server.faults = Faults(wrong_type="Condition-1")
    code, _, stderr = screen_server(open_server, tmp_path / "out", capsys=capsys)
    assert 5 == code
    assert (
        "Condition.1.ndjson: the manifest says Condition, but the file holds 1 Encounter (first at line 36)"
        in stderr
    )


def test_transient_status_error_is_retried(open_server, tmp_path):
    """A 4xx status answer whose OperationOutcome code is transient is a failed poll, not a failed export: poll again."""
    open_server.faults = Faults(status_transient_400=2)
    waits: list[float] = []
    with httpx.Client() as http:
        client = BulkHttp(http, NoAuth(), RetryPolicy(), sleep=waits.append)
        result = run_export(ExportRequest(open_server.base, types=("Patient",)), tmp_path / "export", client)
    assert [1.0, 2.0] == waits[:2]
    assert 6 == result.resources["Patient"]


def test_final_error_status_is_not_retried(open_server, tmp_path, capsys):
    """A 5xx whose OperationOutcome code is not transient ends the run at once (exit 5) with the server's words."""
    open_server.faults = Faults(status_fatal=True)
    code, _, stderr = screen_server(open_server, tmp_path / "out", capsys=capsys)
    assert 5 == code
    assert "the export failed: HTTP 500 (error/processing: the export failed for good)" in stderr
    assert 1 == len(requests(open_server, "/jobs/"))


def test_polling_backs_off_without_retry_after(open_server, tmp_path):
    """Without Retry-After the status is polled after 1, 2, 4 ... seconds."""
    open_server.polls = 4
    open_server.retry_after = ""
    waits: list[float] = []
    with httpx.Client() as http:
        client = BulkHttp(http, NoAuth(), RetryPolicy(), sleep=waits.append)
        run_export(ExportRequest(open_server.base, types=("Patient",)), tmp_path / "export", client)
    assert [1.0, 2.0, 4.0, 8.0] == waits


def test_count_mismatch_fails(open_server, tmp_path, capsys):
    """A file whose lines differ from the manifest's count is fetched once more, then fails the run by name."""
    open_server.faults = Faults(wrong_count="Patient-1")
    code, _, stderr = screen_server(open_server, tmp_path / "out", capsys=capsys)
    assert 5 == code
    assert "Patient.1.ndjson: the manifest says 7 resources, the file has 6 lines" in stderr
    assert 2 == len([e for e in requests(open_server, "/files/") if e["path"].endswith("Patient-1")])


def test_error_array_is_kept_and_reported(open_server, tmp_path, capsys):
    """The manifest's error files are downloaded, counted and reported; the screening still runs."""
    open_server.error_outcomes = [
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "processing", "diagnostics": "one resource failed"}],
        },
        {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "not-supported"}]},
    ]
    out = tmp_path / "out"
    code, stdout, stderr = screen_server(open_server, out, capsys=capsys)
    assert 0 == code, stderr
    assert 2 == len(read_lines(out / "export" / "errors" / "OperationOutcome.1.ndjson"))
    assert "server errors: 2 OperationOutcome(s)" in stdout
    assert "error/processing 1, warning/not-supported 1" in stderr
    summary = json.loads((out / "summary.json").read_text())
    listed = {f["name"]: f["read"] for f in summary["input"]["files"]}
    assert listed["errors/OperationOutcome.1.ndjson"] is False


def test_type_filter_sent_and_refused(open_server, tmp_path, capsys):
    """--type-filter sends Observation?code=LOINC...; a server that refuses it is asked again without it."""
    code, _, stderr = screen_server(open_server, tmp_path / "a", "--type-filter", capsys=capsys)
    assert 0 == code, stderr
    (kickoff,) = requests(open_server, "$export")
    assert kickoff["query"]["_typeFilter"].startswith("Observation?code=http://loinc.org|")
    filtered = len(read_lines(tmp_path / "a" / "export" / "Observation.1.ndjson"))
    assert filtered < len(read_lines(EXPORT / "Observation.ndjson.gz"))
    open_server.faults = Faults(reject_type_filter=True)
    code, _, stderr = screen_server(open_server, tmp_path / "b", "--type-filter", capsys=capsys)
    assert 0 == code, stderr
    assert "refused _typeFilter" in stderr
    retry = requests(open_server, "$export")[-1]
    assert "_typeFilter" not in retry["query"]


@pytest.mark.parametrize(
    ("declares", "why"),
    [(False, "does not list it"), (None, "does not say")],
    ids=["not-listed", "no-metadata"],
)
def test_type_filter_only_where_the_server_declares_it(open_server, tmp_path, capsys, declares, why):
    """--type-filter is not sent when the CapabilityStatement's export definition leaves it out or cannot be read."""
    open_server.declares_type_filter = declares
    code, _, stderr = screen_server(open_server, tmp_path / "out", "--type-filter", capsys=capsys)
    assert 0 == code, stderr
    (kickoff,) = requests(open_server, "$export")
    assert "_typeFilter" not in kickoff["query"]
    assert f"CapabilityStatement {why} whether $export supports _typeFilter; not sending it" in stderr
    assert requests(open_server, "/metadata")
    assert not any(e["token"] for e in requests(open_server, "/metadata"))
    whole = len(read_lines(EXPORT / "Observation.ndjson.gz"))
    assert whole == len(read_lines(tmp_path / "out" / "export" / "Observation.1.ndjson"))


def test_status_429_slows_polling_without_giving_up(open_server, tmp_path):
    """429s on status polls (more than the retry budget) make the client wait their Retry-After, seconds or HTTP date."""
    open_server.faults = Faults(status_429=8, status_429_retry_after="3")
    waits: list[float] = []
    with httpx.Client() as http:
        client = BulkHttp(http, NoAuth(), RetryPolicy(), sleep=waits.append)
        run_export(ExportRequest(open_server.base, types=("Patient",)), tmp_path / "a", client)
    assert [3.0] * 8 == waits[:8]
    assert 8 + 3 == len(requests(open_server, "/jobs/"))  # 8 refused, 2 in progress, 1 manifest
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    open_server.faults = Faults(status_429=1, status_429_retry_after=format_datetime(when, usegmt=True))
    waits.clear()
    with httpx.Client() as http:
        client = BulkHttp(http, NoAuth(), RetryPolicy(), sleep=waits.append)
        run_export(ExportRequest(open_server.base, types=("Patient",)), tmp_path / "b", client)
    assert 27.0 <= waits[0] <= 30.0


def test_patient_level_export(open_server, tmp_path, capsys):
    """--patient-level kicks off Patient/$export and screens every patient."""
    out = tmp_path / "out"
    code, _, stderr = screen_server(open_server, out, "--patient-level", capsys=capsys)
    assert 0 == code, stderr
    assert "/fhir/Patient/$export" == requests(open_server, "$export")[0]["path"]
    assert 6 == json.loads((out / "summary.json").read_text())["patients"]


def test_jku_is_sent_and_checked(auth_server, key_file, tmp_path, capsys):
    """--jku puts the registered JWK Set URL in the assertion header; another URL is refused; http is invalid."""
    auth_server.jku = "https://client.example/magstat/jwks.json"
    code, _, stderr = screen_server(
        auth_server, tmp_path / "a", *with_key(key_file), "--jku", auth_server.jku, capsys=capsys
    )
    assert 0 == code, stderr
    assert 1 == len(auth_server.seen_jti)
    code, _, stderr = screen_server(
        auth_server, tmp_path / "b", *with_key(key_file), "--jku", "https://evil.example/jwks", capsys=capsys
    )
    assert 6 == code
    assert "jku is not the JWK Set URL registered" in stderr
    code, _, stderr = screen_server(
        auth_server, tmp_path / "c", *with_key(key_file), "--jku", "http://client.example/jwks", capsys=capsys
    )
    assert 2 == code
    assert "--jku" in stderr


def test_types_the_server_lacks_are_dropped(open_server, tmp_path, capsys):
    """A kick-off refused for a named type is sent again without that type, and the run says so."""
    open_server.faults = Faults(unsupported_types=("MedicationStatement", "Medication"))
    code, _, stderr = screen_server(open_server, tmp_path / "out", capsys=capsys)
    assert 0 == code, stderr
    kickoffs = requests(open_server, "$export")
    assert 3 == len(kickoffs)
    assert [
        "Patient",
        "Condition",
        "MedicationRequest",
        "MedicationAdministration",
        "AllergyIntolerance",
        "Observation",
    ] == kickoffs[-1]["query"]["_type"].split(",")
    assert "refused _type MedicationStatement" in stderr
    assert "refused _type Medication " in stderr


def test_paged_manifest_is_followed(open_server, tmp_path, capsys):
    """A manifest split into pages (link relation next) is read whole: every file of every page is fetched."""
    open_server.part_lines = 100
    open_server.manifest_page_items = 2
    out = tmp_path / "out"
    code, _, stderr = screen_server(open_server, out, capsys=capsys)
    assert 0 == code, stderr
    assert "the manifest came in 4 pages" in stderr
    assert 7 == len(list((out / "export").glob("*.ndjson")))
    assert 330 == sum(len(read_lines(p)) for p in (out / "export").glob("Observation.*.ndjson"))
    assert 6 == json.loads((out / "summary.json").read_text())["patients"]


def test_group_export(open_server, tmp_path, capsys):
    """--group exports Group/ID/$export with only the group's patients; an unknown group fails with exit 5."""
    ids = [json.loads(line)["id"] for line in read_lines(EXPORT / "Patient.ndjson.gz")][:2]
    open_server.groups = {"cohort-1": ids}
    out = tmp_path / "out"
    code, _, stderr = screen_server(open_server, out, "--group", "cohort-1", capsys=capsys)
    assert 0 == code, stderr
    assert "/fhir/Group/cohort-1/$export" == requests(open_server, "$export")[0]["path"]
    assert 2 == json.loads((out / "summary.json").read_text())["patients"]
    code, _, stderr = screen_server(open_server, tmp_path / "none", "--group", "nope", capsys=capsys)
    assert 5 == code
    assert "Group/nope is unknown" in stderr


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupt_cancels_the_export(open_server, tmp_path, how):
    """Ctrl-C or SIGTERM while the export is being built sends DELETE to the status URL; the server forgets it."""
    open_server.polls = 100

    def interrupt(_seconds: float) -> None:
        if how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler interrupts this wait
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGTERM)
    with httpx.Client() as http:
        client = BulkHttp(http, NoAuth(), RetryPolicy(), sleep=interrupt)
        with pytest.raises(KeyboardInterrupt):
            run_export(ExportRequest(open_server.base, types=("Patient",)), tmp_path / "export", client)
    assert previous == signal.getsignal(signal.SIGTERM)
    assert 1 == len(requests(open_server, "/jobs/", "DELETE"))
    assert all(job.cancelled for job in open_server.jobs.values())
    state = json.loads((tmp_path / "export" / "magstat-export.json").read_text())
    assert state["status_url"] is None


def test_export_timeout_is_bounded(open_server, tmp_path, capsys):
    """An export not ready within --export-timeout fails with exit 5 and is cancelled at the server."""
    open_server.polls = 1000
    open_server.retry_after = "1"
    started = time.monotonic()
    code, _, stderr = screen_server(open_server, tmp_path / "out", "--export-timeout", "2", capsys=capsys)
    assert 5 == code
    assert time.monotonic() - started < 15
    assert "not ready after 2 s" in stderr
    assert 1 == len(requests(open_server, "/jobs/", "DELETE"))


def test_foreign_output_folder_is_refused(open_server, tmp_path, capsys):
    """An output folder holding other files is refused (exit 2) before anything is exported."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, stderr = screen_server(open_server, out, capsys=capsys)
    assert 2 == code
    assert "not a magstat screening output" in stderr
    assert not open_server.log


def test_usage_errors(tmp_path, capsys):
    """INPUT with --fhir-server, or a server option without it, is a usage error (exit 2)."""
    out = str(tmp_path / "o")
    assert 2 == main(["screen", str(EXPORT), "--fhir-server", "http://127.0.0.1:9/fhir", "--out", out])
    assert 2 == main(["screen", str(EXPORT), "--group", "g", "--out", out])
    assert 2 == main(["screen", "--fhir-server", "http://127.0.0.1:9/fhir", "--client-id", "x", "--out", out])
    with pytest.raises(SystemExit):
        main(
            [
                "screen",
                "--fhir-server",
                "http://127.0.0.1:9/fhir",
                "--since",
                "2019-01-01T10:00",
                "--out",
                out,
            ]
        )
    assert "no time zone" in capsys.readouterr().err


def test_since_is_a_fhir_instant():
    """--since takes a date (midnight UTC) or a zoned date-time, and gives a FHIR instant in UTC."""
    assert "2019-06-01T00:00:00Z" == _since_arg("2019-06-01")
    assert "2019-06-01T08:30:00Z" == _since_arg("2019-06-01T10:30:00+02:00")
    assert "2019-06-01T10:30:00Z" == _since_arg("2019-06-01T10:30:00Z")


def test_retry_after_forms():
    """Retry-After is read as delay-seconds or as an HTTP date; anything else is ignored."""
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC).timestamp()
    assert 120.0 == parse_retry_after("120", now)
    assert 30.0 == parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now)
    assert 0.0 == parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now)
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
