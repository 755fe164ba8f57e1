"""``magstat serve --workers 2`` as a real subprocess: state shared across workers, metrics summed over them.

Which worker answered is read from the JSON log (every line carries the worker's ``pid``).
Requests go out on fresh connections, several at once, so that both workers accept some; a
round that happened to land on one worker only is repeated (a few rounds at most).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from magstat.adapters.cds_hooks.request import prefetch_templates
from tests.service.conftest import hook_request
from tests.service.ehr import Signer, prefetch_for
from tests.service.test_serve_cli import RUNNER, free_port

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals")

PV = "/cds-services/magstat-patient-view"
ROUNDS = 5
"""The most rounds of concurrent requests sent to reach both workers."""


class Workers:
    """A running ``magstat serve --workers 2``: its base URL and its log."""

    def __init__(self, base: str, log: Path) -> None:
        self.base = base
        self.log = log

    def lines(self) -> list[dict]:
        """The JSON log lines written so far."""
        out = []
        for line in self.log.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


@pytest.fixture(scope="module")
def workers(tmp_path_factory, signer: Signer) -> Iterator[Workers]:
    """``magstat serve --workers 2`` with authentication on, a SQLite database, on 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("workers")
    jwks = signer.write_jwks(tmp / "ehr.jwks.json")
    config = tmp / "magstat.toml"
    config.write_text(
        f'[cds]\nrequire_auth = true\n[[cds.trusted_issuers]]\niss = "{signer.iss}"\njwks_file = "{jwks}"\n\n'
        f'[database]\nurl = "sqlite:///{tmp / "shared.sqlite3"}"\n',
        encoding="utf-8",
    )
    port = free_port()
    log = tmp / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAGSTAT_", "PROMETHEUS_"))}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                RUNNER,
                "serve",
                "--config",
                str(config),
                "--workers",
                "2",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=out,
            env=env,
            cwd=tmp,
        )
    base = f"http://127.0.0.1:{port}"
    running = Workers(base, log)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            started = [line for line in running.lines() if "Application startup complete" in line["message"]]
            if len({line["pid"] for line in started}) == 2:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("two workers did not start: " + log.read_text()[-3000:])
        yield running
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _pid_of(workers: Workers, request_id: str) -> int:
    """The worker that answered a request (its access line is written just after the answer)."""
    deadline = time.monotonic() + 10
    while True:
        found = [line["pid"] for line in workers.lines() if line.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            assert found, f"no log line for {request_id}"
            return found[0]
        time.sleep(0.05)


def _fresh(method: str, url: str, **kwargs) -> httpx.Response:
    """One request on a connection of its own."""
    return httpx.request(method, url, timeout=30, **kwargs)


def _hook_body(kb, record) -> dict:
    body = hook_request("patient-view", record.patient_id)
    body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
    return body


def test_replayed_token_is_refused_by_the_other_worker(workers, signer, records, kb):
    """A token accepted by one worker is refused (401) by every worker, the other one included."""
    url = workers.base + PV
    token = signer.token(url)
    headers = {"Authorization": f"Bearer {token}"}
    body = _hook_body(kb, records["coleman"])
    request_id = "replay-first-" + str(time.monotonic_ns())
    first = _fresh("POST", url, json=body, headers={**headers, "X-Request-Id": request_id})
    assert 200 == first.status_code
    accepted_by = _pid_of(workers, request_id)
    refused_by: set[int] = set()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(ROUNDS):
            statuses = list(
                pool.map(lambda _i: _fresh("POST", url, json=body, headers=headers).status_code, range(16))
            )
            assert [401] * 16 == statuses
            time.sleep(0.2)
            refused_by = {
                line["pid"]
                for line in workers.lines()
                if line.get("event") == "auth_refused" and line.get("reason") == "replayed jti"
            }
            if refused_by - {accepted_by}:
                break
    assert refused_by - {accepted_by}, "every replay reached the worker that accepted the token"


def test_card_link_is_served_by_the_other_worker(workers, signer, records, kb):
    """The report behind a card link issued by one worker opens on the other worker too."""
    url = workers.base + PV
    request_id = "link-" + str(time.monotonic_ns())
    response = _fresh(
        "POST",
        url,
        json=_hook_body(kb, records["py06"]),
        headers={"Authorization": f"Bearer {signer.token(url)}", "X-Request-Id": request_id},
    )
    assert 200 == response.status_code
    cards = response.json()["cards"]
    assert cards
    link = cards[0]["links"][0]["url"]
    issued_by = _pid_of(workers, request_id)
    served_by: set[int] = set()
    with ThreadPoolExecutor(8) as pool:
        for round_number in range(ROUNDS):
            ids = [f"open-{round_number}-{i}-{time.monotonic_ns()}" for i in range(16)]
            pages = list(pool.map(lambda rid: _fresh("GET", link, headers={"X-Request-Id": rid}), ids))
            assert [200] * 16 == [page.status_code for page in pages]
            assert all("magnesium" in page.text.lower() for page in pages)
            time.sleep(0.2)
            wanted = set(ids)
            served_by = {line["pid"] for line in workers.lines() if line.get("request_id") in wanted}
            if served_by - {issued_by}:
                break
    assert served_by - {issued_by}, "every request for the report reached the worker that issued it"


def test_metrics_sum_every_worker_and_hold_no_patient_data(workers, signer, records, kb):
    """/metrics counts the hook calls of both workers, whichever answers, and names no patient."""
    url = workers.base + PV
    record = records["barrett"]
    ids = [f"metrics-{i}-{time.monotonic_ns()}" for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        statuses = list(
            pool.map(
                lambda rid: (
                    _fresh(
                        "POST",
                        url,
                        json=_hook_body(kb, record),
                        headers={"Authorization": f"Bearer {signer.token(url)}", "X-Request-Id": rid},
                    ).status_code
                ),
                ids,
            )
        )
    assert [200] * 8 == statuses
    for rid in ids:  # each access line is written just after its answer: wait for all of them
        _pid_of(workers, rid)
    answered = [
        line
        for line in workers.lines()
        if line.get("event") == "access"
        and line.get("route") == "/cds-services/{service_id}"
        and line["status"] == 200
    ]
    assert 2 == len({line["pid"] for line in answered}), "the calls did not reach both workers"
    expected = float(len(answered))
    series = 'magstat_cds_requests_total{hook="patient-view",service="magstat-patient-view",status="200"}'
    deadline = time.monotonic() + 5
    while True:
        text = _fresh("GET", workers.base + "/metrics").text
        found = [line for line in text.splitlines() if line.startswith(series)]
        if (found and float(found[0].rsplit(" ", 1)[1]) == expected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [f"{series} {expected}"] == found
    name = record.patient["name"][0]["family"]
    for secret in (record.patient_id, name, record.patient["birthDate"]):
        assert secret not in text


def test_override_on_one_worker_holds_the_card_back_on_the_other(workers, signer, records, kb):
    """A card overridden with its own reason, fed back to one worker, is held back by both workers."""
    url = workers.base + PV
    body = _hook_body(kb, records["antonio"])
    first = _fresh("POST", url, json=body, headers={"Authorization": f"Bearer {signer.token(url)}"})
    assert 200 == first.status_code
    cards = first.json()["cards"]
    card = next(c for c in cards if c.get("overrideReasons"))
    topic = card["source"]["topic"]["code"]
    reason = card["overrideReasons"][0]
    item = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"reason": reason},
        "outcomeTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    feedback_url = url + "/feedback"
    request_id = "override-" + str(time.monotonic_ns())
    stored = _fresh(
        "POST",
        feedback_url,
        json={"feedback": [item]},
        headers={"Authorization": f"Bearer {signer.token(feedback_url)}", "X-Request-Id": request_id},
    )
    assert 200 == stored.status_code, stored.text
    learned_by = _pid_of(workers, request_id)
    answered_by: set[int] = set()

    def call(rid: str) -> list[str]:
        response = _fresh(
            "POST",
            url,
            json=body,
            headers={"Authorization": f"Bearer {signer.token(url)}", "X-Request-Id": rid},
        )
        assert 200 == response.status_code
        return [c["source"]["topic"]["code"] for c in response.json()["cards"]]

    with ThreadPoolExecutor(8) as pool:
        for round_number in range(ROUNDS):
            ids = [f"after-override-{round_number}-{i}-{time.monotonic_ns()}" for i in range(12)]
            topics = list(pool.map(call, ids))
            assert all(topic not in shown for shown in topics), topics
            time.sleep(0.2)
            wanted = set(ids)
            answered_by = {line["pid"] for line in workers.lines() if line.get("request_id") in wanted}
            if answered_by - {learned_by}:
                break
    assert answered_by - {learned_by}, "every call reached the worker that stored the feedback"
