"""``magstat serve`` as a separate process: start-up refusals, demo mode, JSON logs without patient data."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from magstat.cli import serve
from tests.service.conftest import hook_request

# Runs the serve subcommand on its own parser, so that the test does not depend on its
# registration in magstat.cli (done by the CLI's maintainers).
RUNNER = (
    "import argparse, sys\n"
    "from magstat.cli import serve\n"
    "parser = argparse.ArgumentParser(prog='magstat')\n"
    "sub = parser.add_subparsers(dest='command')\n"
    "serve.define_parser(sub)\n"
    "sys.exit(serve.run(parser.parse_args(sys.argv[1:])))\n"
)


def free_port() -> int:
    """A port nobody listens on (bind to 0, read, close)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str, env_extra: dict | None = None, cwd=None) -> subprocess.Popen:
    """Start the serve subcommand in a subprocess."""
    import os  # noqa: PLC0415

    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGSTAT_")}
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )


def wait_up(url: str, proc: subprocess.Popen) -> None:
    """Wait until the server answers /healthz."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode())
        try:
            httpx.get(url + "/healthz", timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


def test_parser_options():
    """serve accepts --host, --port, --config and --demo."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser()
    serve.define_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "9000", "--config", "c.toml", "--demo"])
    assert ("0.0.0.0", 9000, "c.toml", True) == (args.host, args.port, args.config, args.demo)


def test_refuses_to_start_without_trusted_issuers(tmp_path):
    """Authentication is the default: without trusted EHRs the service does not start (exit 2)."""
    proc = start("--port", str(free_port()), cwd=tmp_path)
    _, err = proc.communicate(timeout=30)
    assert 2 == proc.returncode
    assert b"trusted_issuers" in err and b"--demo" in err


def test_bad_config_file_is_exit_2(tmp_path):
    """An unreadable or invalid config file is reported on one line with exit code 2."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[cds]\nalgorithms = ["HS256"]\n')
    proc = start("--config", str(bad), cwd=tmp_path)
    _, err = proc.communicate(timeout=30)
    assert 2 == proc.returncode
    assert b"cds.algorithms" in err


def test_a_port_in_use_is_exit_2_naming_it(tmp_path):
    """A taken port is a usage error (exit 2) before the service starts; uvicorn's own 3 means a bad knowledge base here."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start("--demo", "--port", str(port), cwd=tmp_path)
        _, err = proc.communicate(timeout=30)
    assert 2 == proc.returncode
    assert f"cannot listen on 127.0.0.1:{port}".encode() in err


def test_a_host_this_machine_does_not_have_is_exit_2(tmp_path):
    """A host name that does not resolve is named (exit 2), not left to uvicorn (exit 3)."""
    proc = start("--demo", "--host", "no-such-host.invalid", "--port", str(free_port()), cwd=tmp_path)
    _, err = proc.communicate(timeout=30)
    assert 2 == proc.returncode
    assert b"--host: cannot listen on 'no-such-host.invalid'" in err


@pytest.mark.skipif(sys.platform == "win32", reason="signals")
def test_demo_server_logs_json_without_patient_data(tmp_path, records, kb):
    """In demo mode the server says so loudly; its access log is JSON and never shows patient data."""
    from magstat.adapters.cds_hooks.request import prefetch_templates  # noqa: PLC0415
    from tests.service.ehr import prefetch_for  # noqa: PLC0415

    port = free_port()
    config = tmp_path / "magstat.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "fb.db"}"\n')
    proc = start("--demo", "--port", str(port), env_extra={"MAGSTAT_CONFIG": str(config)}, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_up(base, proc)
        record = records["py06"]
        body = hook_request("patient-view", record.patient_id)
        body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
        response = httpx.post(base + "/cds-services/magstat-patient-view", json=body, timeout=30)
        assert 200 == response.status_code
        httpx.post(
            base + f"/assess?patient={record.patient_id}", json={"resourceType": "Bundle", "entry": "bad"}
        )
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert "DEMO MODE: AUTHENTICATION IS DISABLED" in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    access = [line for line in lines if line.get("event") == "access"]
    assert {"/cds-services/{service_id}", "/assess", "/healthz"} <= {a["route"] for a in access}
    assert all({"method", "route", "status", "duration_ms", "request_id"} <= set(a) for a in access)
    name = record.patient["name"][0]["family"]
    for secret in (record.patient_id, name, record.patient["birthDate"]):
        assert secret not in text
