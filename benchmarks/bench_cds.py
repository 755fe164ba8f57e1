"""Latency of the CDS Hooks patient-view service at a fixed request rate, from a separate load process.

Run from the project root (after the README's set-up command):

    .venv/bin/python benchmarks/bench_cds.py [--rates 100 300] [--seconds 30] [--warmup 5] [--patients DIR]

``--patients`` names a folder holding ``synthea/`` and ``synthea-py/`` FHIR bundles (``.json``
or ``.json.gz``); the default is the repository's small test set, ``tests/data``.

What it does:

1. Starts ``magstat serve`` in its own process on a free port, with authentication on (a JWKS
   file made here) and its JSON access log written to a temporary file.
2. Builds one patient-view request per synthetic patient of ``--patients`` (both sets), each with
   the prefetch an EHR sends for the service's own templates, drawn from the full record.
3. Signs one JWT per request in advance (ES384, a fresh ``jti`` each, as an EHR does).
4. Sends requests at a fixed rate (open loop: a request is sent at its scheduled time whether or
   not earlier ones have returned; latency counts from the scheduled time, so a stalled server
   cannot hide its queue) over keep-alive HTTP/1.1 connections, cycling through the patients.
5. Prints one JSON object: per rate, p50/p90/p99/max latency in ms, errors, and the rate achieved.

Not a test: the numbers depend on the machine; the server and this load process share it.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATIENTS = ROOT / "tests" / "data"
sys.path.insert(0, str(ROOT))

from tests.service.ehr import Record, Signer, prefetch_for  # noqa: E402

from magstat.adapters.cds_hooks.request import prefetch_templates  # noqa: E402
from magstat.kb import load  # noqa: E402

SERVER = (
    "import argparse, sys\n"
    "from magstat.cli import serve\n"
    "parser = argparse.ArgumentParser(prog='magstat')\n"
    "serve.define_parser(parser.add_subparsers(dest='command'))\n"
    "sys.exit(serve.run(parser.parse_args(sys.argv[1:])))\n"
)
PATH = "/cds-services/magstat-patient-view"


def records(root: Path) -> list[Record]:
    """Every synthetic patient of both sets under ``root``."""
    out = []
    for name in ("synthea", "synthea-py"):
        for path in sorted((root / name).glob("*.json*")):
            if path.name.startswith(("hospital", "practitioner")) or not path.name.endswith((".json", ".gz")):
                continue
            raw = path.read_bytes()
            out.append(Record(json.loads(gzip.decompress(raw) if path.name.endswith(".gz") else raw)))
    if not out:
        raise SystemExit(f"no FHIR bundles in {root}/synthea or {root}/synthea-py")
    return out


def bodies(patients: list[Record]) -> list[bytes]:
    """One patient-view request body per patient, with the EHR's prefetch for our templates."""
    templates = prefetch_templates(load())
    out = []
    for record in patients:
        context = {"userId": "Practitioner/bench", "patientId": record.patient_id}
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": context,
            "prefetch": prefetch_for(templates, context, record),
        }
        out.append(json.dumps(body, separators=(",", ":")).encode())
    return out


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: Path, signer: Signer, port: int) -> subprocess.Popen[bytes]:
    """Start ``magstat serve`` with authentication on; wait until it answers."""
    jwks = signer.write_jwks(workdir / "ehr.jwks.json")
    config = workdir / "magstat.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'[cds]\nrequire_auth = true\n[[cds.trusted_issuers]]\niss = "{signer.iss}"\njwks_file = "{jwks}"\n\n'
        f'[database]\nurl = "sqlite:///{workdir / "feedback.sqlite3"}"\n',
        encoding="utf-8",
    )
    log = (workdir / "server.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGSTAT_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, "serve", "--config", str(config)], stdout=log, stderr=log, env=env
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(workdir / 'server.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


class Pool:
    """Keep-alive HTTP/1.1 connections to the server (a minimal client: low overhead per request)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes, token: str) -> int:
        """POST a JSON body; return the status code."""
        now = time.monotonic()
        while self.idle and now - self.idle[0][0] > 3.0:  # the server closes idle ones after 5 s
            self.idle.pop(0)[2].close()
        if self.idle:
            _, reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        writer.write(head + body)
        await writer.drain()
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        self.idle.append((time.monotonic(), reader, writer))
        return status


async def run_rate(
    port: int, payloads: list[bytes], tokens: list[str], rate: float, seconds: float, warmup: float
) -> dict[str, Any]:
    """Send at ``rate`` per second for ``warmup + seconds``; measure the last ``seconds``."""
    pool = Pool(port)
    total = int(rate * (warmup + seconds))
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    tasks = []

    async def one(i: int, scheduled: float) -> None:
        try:
            status = await pool.post(PATH, payloads[i % len(payloads)], tokens[i])
            key = str(status)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            key = type(exc).__name__
        if scheduled - start >= warmup:
            latencies.append((loop.time() - scheduled) * 1000)
            statuses[key] = statuses.get(key, 0) + 1

    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    latencies.sort()
    measured = len(latencies)

    def pct(p: float) -> float:
        return round(latencies[min(measured - 1, int(p / 100 * measured))], 2)

    errors = sum(n for k, n in statuses.items() if k != "200")
    return {
        "rate_per_s": rate,
        "requests": measured,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(latencies[-1], 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
        "errors": errors,
        "statuses": statuses,
    }


def main() -> None:
    """Run the benchmark and print its results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 300.0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--patients", type=Path, default=DEFAULT_PATIENTS, help="folder with synthea/ and synthea-py/"
    )
    args = parser.parse_args()

    load_before = os.getloadavg()
    patients = records(args.patients)
    payloads = bodies(patients)
    signer = Signer()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(Path(tmp), signer, port)
        try:
            url = f"http://127.0.0.1:{port}{PATH}"
            results = []
            for rate in args.rates:
                count = int(rate * (args.warmup + args.seconds)) + 1
                tokens = [signer.token(url) for _ in range(count)]
                results.append(asyncio.run(run_rate(port, payloads, tokens, rate, args.seconds, args.warmup)))
                time.sleep(1.0)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        server_ms = sorted(
            entry["duration_ms"]
            for line in (Path(tmp) / "server.log").read_text().splitlines()
            if line.startswith("{")
            for entry in [json.loads(line)]
            if entry.get("event") == "access" and entry.get("route") == "/cds-services/{service_id}"
        )
    sizes = sorted(len(p) for p in payloads)
    load_after = os.getloadavg()
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "patients": len(payloads),
                "request_kib": {
                    "median": round(sizes[len(sizes) // 2] / 1024, 1),
                    "max": round(sizes[-1] / 1024, 1),
                },
                "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
                "seconds_measured": args.seconds,
                "server_side_ms_all_rates": {
                    "p50": server_ms[len(server_ms) // 2],
                    "p99": server_ms[int(len(server_ms) * 0.99)],
                    "max": server_ms[-1],
                },
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
