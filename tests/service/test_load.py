"""Load held on ``magstat serve --workers 2``: 100 requests/s, open loop, authenticated, realistic prefetch.

Marked slow (60 s of load by default; ``MAGSTAT_LOAD_SECONDS`` sets it, ``MAGSTAT_LOAD_RATE`` the
rate). It uses the load generator of ``benchmarks/bench_cds.py`` and checks what must hold on any
machine: no error (every request 200 within 30 s) and bounded memory; the latency figures are
printed, and the five-minute hold with its latency bar is the benchmark's (benchmarks/RESULTS.md).

The default rate is one two workers sustain on the two-CPU machines CI runs on, with the load
generator on the same CPUs (measured: about 270 calls/s at saturation, p99 24 ms at 100/s). Issue
11's 300/s is not sustained there yet (RESULTS.md, "1 and 2 workers, on a quiet machine"); set
``MAGSTAT_LOAD_RATE=300`` to hold that rate on a larger machine.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys

import pytest

from tests.conftest import ROOT, run_async

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

RSS_GROWTH_BOUND_MIB = 150.0
"""The most the server's processes may grow together, from the end of the warm-up to the end."""


def _bench():
    spec = importlib.util.spec_from_file_location("bench_cds", ROOT / "benchmarks" / "bench_cds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_held_without_errors_or_memory_growth(tmp_path, signer):
    """At 100/s for a minute, two workers answer every request 200 and grow by less than the bound."""
    bench = _bench()
    rate = float(os.environ.get("MAGSTAT_LOAD_RATE", "100"))
    seconds = float(os.environ.get("MAGSTAT_LOAD_SECONDS", "60"))
    warmup = 5.0
    payloads = bench.bodies(bench.records(bench.DEFAULT_PATIENTS))
    server = bench.Server(tmp_path, signer, 2)
    samples = []
    try:
        url = f"http://127.0.0.1:{server.port}{bench.PATH}"
        tokens = bench.sign(signer, url, int(rate * (warmup + seconds)) + 1)

        async def held():
            async def after_warmup():
                await asyncio.sleep(warmup + 0.2)
                samples.append(server.rss_mib())

            sampler = asyncio.create_task(after_warmup())
            result = await bench.run_rate(server.port, payloads, tokens, rate, seconds, warmup)
            await sampler
            return result

        result = run_async(held())
        samples.append(server.rss_mib())
        view = bench.server_view(server.entries())
    finally:
        server.stop()
    growth = sum(samples[-1].values()) - sum(samples[0].values())
    print(
        f"\nload {rate:g}/s for {seconds:g} s on 2 workers: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"max {result['max_ms']} ms, errors {result['errors']}, load average {result['load_average_1min']}, "
        f"RSS growth {growth:.1f} MiB"
    )
    assert {"200": result["requests"]} == result["statuses"]
    assert 2 == view["workers_answering"]
    assert growth < RSS_GROWTH_BOUND_MIB, samples
