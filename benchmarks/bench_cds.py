"""Latency of the CDS Hooks patient-view service at fixed request rates, one and several workers, from a separate load process.

Run from the project root (after the README's set-up command):

    .venv/bin/python benchmarks/bench_cds.py [--rates 100 300 600 1000] [--workers 1 2] \
        [--seconds 20] [--warmup 5] [--patients DIR]
    .venv/bin/python benchmarks/bench_cds.py --hold 300 --seconds 300 --workers 2

``--patients`` names a folder holding ``synthea/`` and ``synthea-py/`` FHIR bundles (``.json``
or ``.json.gz``); the default is the repository's small test set, ``tests/data``.

What it does, for each ``--workers`` count in turn (side by side in one run):

1. Starts ``magstat serve --workers N`` in its own process group on a free port, with
   authentication on (a JWKS file made here), a SQLite database in a temporary folder and its
   JSON access log written to a file.
2. Builds one patient-view request per synthetic patient of ``--patients`` (both sets), each with
   the prefetch an EHR sends for the service's own templates, drawn from the full record.
3. Signs one JWT per request in advance (ES384, a fresh ``jti`` each, as an EHR does), so that
   the load process spends nothing on signing while it sends.
4. Sends requests at each rate (open loop: a request leaves at its scheduled time whether or not
   earlier ones have returned; latency counts from the scheduled time, so a stalled server
   cannot hide its queue) over keep-alive HTTP/1.1 connections (a minimal client on uvloop when
   installed), cycling through the patients. The first ``--warmup`` seconds are not measured.
5. Records, per rate: p50/p90/p99/max latency in ms, errors (any status but 200, timeouts,
   connection errors), the rate achieved, how late the load process sent (its own lag: if
   that grows, the client, not the server, is the bottleneck), the 1-minute load average during
   the run, and the server's own view from its access log (total and per-stage medians, share
   under 500 ms). Before each rate it waits until the server answers ``/healthz`` within
   200 ms, so that one rate's backlog does not spill into the next.

``--hold RATE`` instead holds one rate for ``--seconds`` and samples the resident memory (RSS)
of every server process every 10 s: it reports errors and the RSS growth from the end of the
warm-up to the end.

Each result also gives ``cpu_ms_per_call``: the CPU time (user + system, from ``/proc``) the
server's processes used during the run divided by the hook calls they logged, and this load
process's CPU time per request sent. Below saturation it is what one call costs, whatever
else runs on the machine, so it compares two versions on a busy machine where latency cannot.

Prints one JSON object, and with ``--markdown`` a table for RESULTS.md. Not a test: the numbers
depend on the machine; the server and this load process share it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import platform
import signal
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
REQUEST_TIMEOUT = 30.0
MAX_CONNECTIONS = 1024
"""Connections the load process opens at most; beyond, requests wait for one (the clock runs)."""


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


class Server:
    """``magstat serve --workers N`` in its own process group, with its log in a file."""

    def __init__(self, workdir: Path, signer: Signer, workers: int) -> None:
        self.workdir = workdir
        self.workers = workers
        self.port = free_port()
        self.log = workdir / f"server-{workers}.log"
        jwks = signer.write_jwks(workdir / "ehr.jwks.json")
        config = workdir / f"magstat-{workers}.toml"
        config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}\n\n'
            f'[cds]\nrequire_auth = true\n[[cds.trusted_issuers]]\niss = "{signer.iss}"\njwks_file = "{jwks}"\n\n'
            f'[database]\nurl = "sqlite:///{workdir / f"feedback-{workers}.sqlite3"}"\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAGSTAT_", "PROMETHEUS_"))}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVER, "serve", "--config", str(config), "--workers", str(workers)],
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {self.log.read_text()[-2000:]}")
            started = {
                e["pid"] for e in self.entries() if e.get("message") == "Application startup complete."
            }
            if len(started) >= workers:
                return
            time.sleep(0.2)
        self.stop()
        raise SystemExit("server did not start")

    def entries(self) -> list[dict[str, Any]]:
        """The JSON lines of the server log so far."""
        out = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def pids(self) -> list[int]:
        """The server's processes: the supervisor and its workers."""
        found = [self.proc.pid]
        for pid in found:
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                found.extend(int(c) for c in children)
        return found

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server's processes together."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                # Fields 14 and 15 of /proc/PID/stat, counted after the command name's parenthesis.
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / ticks

    def rss_mib(self) -> dict[int, float]:
        """Resident memory of each server process, MiB."""
        out = {}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[pid] = round(int(line.split()[1]) / 1024, 1)
        return out

    def stop(self) -> None:
        """Stop the server (SIGINT to the supervisor, then the group if needed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


class Pool:
    """Keep-alive HTTP/1.1 connections to the server (a minimal client: low overhead per request)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def post(self, path: str, body: bytes, token: str) -> int:
        """POST a JSON body; return the status code."""
        async with self.slots:
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
            try:
                writer.write(head + body)
                await writer.drain()
                status_line = await reader.readline()
                status = int(status_line.split()[1])
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
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
    lags: list[float] = []
    statuses: dict[str, int] = {}
    tasks = []
    loads: list[float] = []

    async def one(i: int, scheduled: float) -> None:
        try:
            status = await asyncio.wait_for(
                pool.post(PATH, payloads[i % len(payloads)], tokens[i]), REQUEST_TIMEOUT
            )
            key = str(status)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError) as exc:
            key = type(exc).__name__
        if scheduled - start >= warmup:
            latencies.append((loop.time() - scheduled) * 1000)
            statuses[key] = statuses.get(key, 0) + 1

    async def sample_load() -> None:
        while True:
            loads.append(os.getloadavg()[0])
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample_load())
    wall = time.monotonic()
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif scheduled - start >= warmup:
            lags.append(-delay * 1000)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    sampler.cancel()
    wall = time.monotonic() - wall
    for _, _, writer in pool.idle:
        writer.close()
    latencies.sort()
    lags.sort()
    measured = len(latencies)

    def pct(values: list[float], p: float) -> float:
        return round(values[min(len(values) - 1, int(p / 100 * len(values)))], 2) if values else 0.0

    errors = sum(n for k, n in statuses.items() if k != "200")
    return {
        "rate_per_s": rate,
        "requests": measured,
        "sent": total,
        "achieved_per_s": round(total / wall, 1),
        "p50_ms": pct(latencies, 50),
        "p90_ms": pct(latencies, 90),
        "p99_ms": pct(latencies, 99),
        "max_ms": round(latencies[-1], 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
        "errors": errors,
        "statuses": statuses,
        "send_lag_ms": {"p99": pct(lags, 99), "max": round(lags[-1], 2) if lags else 0.0},
        "load_average_1min": {"mean": round(statistics.fmean(loads), 2), "max": round(max(loads), 2)},
    }


def server_view(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The hook calls as the server logged them: total and per-stage medians, share under 500 ms."""
    calls = [
        e for e in entries if e.get("event") == "access" and e.get("route") == "/cds-services/{service_id}"
    ]
    if not calls:
        return {}
    totals = sorted(e["duration_ms"] for e in calls)
    stages = {
        name: round(statistics.median(e["stages_ms"][name] for e in calls if "stages_ms" in e), 3)
        for name in ("parse", "auth", "fetch", "adapter", "assess", "cards")
    }
    return {
        "calls": len(calls),
        "p50_ms": totals[len(totals) // 2],
        "p99_ms": totals[int(len(totals) * 0.99)],
        "under_500ms_percent": round(100 * sum(t < 500 for t in totals) / len(totals), 3),
        "stage_median_ms": stages,
        "workers_answering": len({e.get("pid") for e in calls}),
    }


def cpu_per_call(server_cpu: float, client_cpu: float, result: dict[str, Any]) -> dict[str, Any]:
    """CPU milliseconds per hook call: the server's processes together, and this load process.

    Every call of the run counts, the warm-up's included, as the CPU times cover the whole run.
    Below saturation this is what a call costs, whatever else the machine does; at and above
    it, queued calls that end after the run are missing and the figure reads low.
    """
    calls = (result.get("server") or {}).get("calls", 0)
    sent = result["sent"]
    return {
        "server": round(1000 * server_cpu / calls, 3) if calls else None,
        "client": round(1000 * client_cpu / sent, 3) if sent else None,
        "calls": calls,
    }


def drain(port: int, limit_seconds: float = 120.0) -> float:
    """Wait until the server answers /healthz within 200 ms (its queue from the last rate is gone); return the wait."""
    began = time.monotonic()
    while time.monotonic() - began < limit_seconds:
        asked = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                while conn.recv(65536):
                    pass
        except OSError:
            pass
        if time.monotonic() - asked < 0.2:
            break
        time.sleep(1.0)
    return round(time.monotonic() - began, 1)


def sign(signer: Signer, url: str, count: int) -> list[str]:
    """``count`` tokens for ``url``, each with a fresh jti, valid 10 minutes (the service's longest)."""
    return [signer.token(url, lifetime=600) for _ in range(count)]


def run_levels(
    args: argparse.Namespace, payloads: list[bytes], signer: Signer, tmp: Path
) -> list[dict[str, Any]]:
    """Every rate against each worker count."""
    runs = []
    for workers in args.workers:
        server = Server(tmp, signer, workers)
        try:
            url = f"http://127.0.0.1:{server.port}{PATH}"
            for rate in args.rates:
                tokens = sign(signer, url, int(rate * (args.warmup + args.seconds)) + 1)
                waited = drain(server.port)
                before = len(server.entries())
                server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
                result = asyncio.run(run_rate(server.port, payloads, tokens, rate, args.seconds, args.warmup))
                client_cpu = time.process_time() - client_cpu
                time.sleep(0.5)
                server_cpu = server.cpu_seconds() - server_cpu
                result["server"] = server_view(server.entries()[before:])
                result["cpu_ms_per_call"] = cpu_per_call(server_cpu, client_cpu, result)
                result["workers"] = workers
                result["drained_before_s"] = waited
                runs.append(result)
                print(json.dumps(result), file=sys.stderr)
                time.sleep(2.0)
        finally:
            server.stop()
    return runs


def run_hold(args: argparse.Namespace, payloads: list[bytes], signer: Signer, tmp: Path) -> dict[str, Any]:
    """One rate held for ``--seconds`` on the first worker count, with the server's RSS sampled."""
    server = Server(tmp, signer, args.workers[0])
    samples: list[tuple[float, dict[int, float]]] = []
    try:
        url = f"http://127.0.0.1:{server.port}{PATH}"
        tokens = sign(signer, url, int(args.hold * (args.warmup + args.seconds)) + 1)

        async def held() -> dict[str, Any]:
            async def sample() -> None:
                began = time.monotonic()
                while True:
                    samples.append((round(time.monotonic() - began, 1), server.rss_mib()))
                    await asyncio.sleep(10.0)

            sampler = asyncio.create_task(sample())
            try:
                return await run_rate(server.port, payloads, tokens, args.hold, args.seconds, args.warmup)
            finally:
                sampler.cancel()

        server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
        result = asyncio.run(held())
        client_cpu = time.process_time() - client_cpu
        samples.append((round(args.warmup + args.seconds, 1), server.rss_mib()))
        time.sleep(0.5)
        server_cpu = server.cpu_seconds() - server_cpu
        result["server"] = server_view(server.entries())
        result["cpu_ms_per_call"] = cpu_per_call(server_cpu, client_cpu, result)
    finally:
        server.stop()
    after_warmup = next((rss for t, rss in samples if t >= args.warmup), samples[0][1])
    end = samples[-1][1]
    result["workers"] = args.workers[0]
    result["rss_mib"] = {
        "after_warmup": after_warmup,
        "end": end,
        "growth_total": round(sum(end.values()) - sum(after_warmup.values()), 1),
        "samples": [{"t_s": t, "total": round(sum(rss.values()), 1)} for t, rss in samples],
    }
    return result


def markdown(runs: list[dict[str, Any]]) -> str:
    """The results as a RESULTS.md table."""
    rows = [
        "| workers | rate | p50 | p90 | p99 | max | errors | achieved/s | client lag p99 | load avg (mean/max) "
        "| server p50 / p99 | CPU ms per call, server / load process |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s = r.get("server") or {}
        cpu = r.get("cpu_ms_per_call") or {}
        rows.append(
            f"| {r['workers']} | {r['rate_per_s']:g}/s | {r['p50_ms']} ms | {r['p90_ms']} ms | {r['p99_ms']} ms | "
            f"{r['max_ms']} ms | {r['errors']} | {r['achieved_per_s']} | {r['send_lag_ms']['p99']} ms | "
            f"{r['load_average_1min']['mean']} / {r['load_average_1min']['max']} | "
            f"{s.get('p50_ms', '-')} / {s.get('p99_ms', '-')} ms | "
            f"{cpu.get('server', '-')} / {cpu.get('client', '-')} |"
        )
    return "\n".join(rows)


def main() -> None:
    """Run the benchmark and print its results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 300.0, 600.0, 1000.0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--hold", type=float, metavar="RATE", help="hold this rate for --seconds, sampling RSS"
    )
    parser.add_argument("--markdown", action="store_true", help="also print a table for RESULTS.md")
    parser.add_argument(
        "--patients", type=Path, default=DEFAULT_PATIENTS, help="folder with synthea/ and synthea-py/"
    )
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415 - optional: a faster event loop for the load process

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    load_before = os.getloadavg()
    payloads = bodies(records(args.patients))
    signer = Signer()
    with tempfile.TemporaryDirectory() as tmp:
        if args.hold:
            outcome: Any = run_hold(args, payloads, signer, Path(tmp))
        else:
            outcome = run_levels(args, payloads, signer, Path(tmp))
    sizes = sorted(len(p) for p in payloads)
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "patients": len(payloads),
                "request_kib": {
                    "median": round(sizes[len(sizes) // 2] / 1024, 1),
                    "max": round(sizes[-1] / 1024, 1),
                },
                "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                "seconds_measured": args.seconds,
                "hold" if args.hold else "results": outcome,
            },
            indent=2,
        )
    )
    if args.markdown and not args.hold:
        print(markdown(outcome))


if __name__ == "__main__":
    main()
