"""Prometheus /metrics and the access log's timing record: the named series, no patient data, protection."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from magstat.adapters.cds_hooks.request import prefetch_templates
from magstat.service import load_settings
from magstat.service.metrics import STAGES
from tests.service.conftest import hook_request, in_process_only, live, post
from tests.service.ehr import fhir_server, prefetch_for

PV = "/cds-services/magstat-patient-view"

SERIES = (
    "magstat_http_requests_total",
    "magstat_http_request_duration_seconds_bucket",
    "magstat_http_errors_total",
    "magstat_cds_requests_total",
    "magstat_cds_request_duration_seconds_bucket",
    "magstat_cds_stage_duration_seconds_bucket",
    "magstat_cds_cards_total",
    "magstat_cds_prefetch_misses_total",
    "magstat_fhir_fetch_duration_seconds_bucket",
    "magstat_fhir_fetch_failures_total",
    "magstat_auth_refused_total",
)


def _value(text: str, series: str) -> float:
    """The value of one series line (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_expose_the_named_series_without_patient_data(make_settings, signer, records, kb):
    """After hook calls (prefetch sent, read from a FHIR server, unreadable, unauthenticated) every series is there, no patient named."""
    settings = make_settings()
    record = records["py06"]
    other = records["coleman"]
    with fhir_server([other]) as ehr, live(settings) as server:
        url = server.url(PV)
        body = hook_request("patient-view", record.patient_id)
        body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
        assert 200 == post(server, PV, body, signer.token(url)).status_code
        fetched = hook_request("patient-view", other.patient_id, fhirServer=ehr.base)
        assert 200 == post(server, PV, fetched, signer.token(url)).status_code
        unreadable = hook_request(
            "patient-view",
            other.patient_id,
            fhirServer="http://127.0.0.1:9/fhir",
            prefetch={"patient": other.patient},
        )
        assert 200 == post(server, PV, unreadable, signer.token(url)).status_code
        assert 401 == post(server, PV, body, "not-a-token").status_code
        text = httpx.get(server.url("/metrics")).text
    for name in SERIES:
        assert any(line.startswith(name) for line in text.splitlines()), name
    assert 3.0 == _value(
        text, 'magstat_cds_requests_total{hook="patient-view",service="magstat-patient-view",status="200"}'
    )
    assert 1.0 == _value(text, "magstat_auth_refused_total")
    assert 2.0 == _value(text, 'magstat_fhir_fetch_duration_seconds_count{service="magstat-patient-view"}')
    assert 0 < _value(
        text, 'magstat_cds_prefetch_misses_total{key="observations",service="magstat-patient-view"}'
    )
    assert 0 < _value(
        text, 'magstat_fhir_fetch_failures_total{key="observations",service="magstat-patient-view"}'
    )
    for patient in (record, other):
        for secret in (
            patient.patient_id,
            patient.patient["name"][0]["family"],
            patient.patient["birthDate"],
        ):
            assert secret not in text
    assert fetched["hookInstance"] not in text


def _demo(tmp_path, **metrics):
    return load_settings(
        None, demo=True, metrics=metrics, database={"url": f"sqlite:///{tmp_path / 'feedback.sqlite3'}"}
    )


def test_metrics_need_their_token_when_one_is_set(tmp_path):
    """With metrics.bearer_token set, /metrics answers 401 without it and 200 with it."""
    settings = _demo(tmp_path, bearer_token="scrape-secret")
    with live(settings) as server:
        assert 401 == httpx.get(server.url("/metrics")).status_code
        wrong = httpx.get(server.url("/metrics"), headers={"Authorization": "Bearer nope"})
        assert 401 == wrong.status_code
        right = httpx.get(server.url("/metrics"), headers={"Authorization": "Bearer scrape-secret"})
        assert 200 == right.status_code
        assert "magstat_http_requests_total" in right.text


def test_metrics_can_be_turned_off(tmp_path):
    """With metrics.enabled false, /metrics is 404."""
    with live(_demo(tmp_path, enabled=False)) as server:
        assert 404 == httpx.get(server.url("/metrics")).status_code


@pytest.fixture
def access_log(caplog):
    """The access log records of the test."""
    caplog.set_level(logging.INFO, logger="magstat.service.access")
    return caplog


def _logged(caplog, key: str) -> list[dict]:
    """The access lines with ``key`` (the line is written just after the answer is sent: wait for it)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [r.fields for r in caplog.records if key in getattr(r, "fields", {})]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


@in_process_only
def test_access_log_has_the_timing_record_of_each_hook_call(demo_server, access_log, records, kb):
    """A hook call's access line names the hook instance, the total and every stage in milliseconds."""
    record = records["py06"]
    body = hook_request("patient-view", record.patient_id)
    body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
    assert 200 == post(demo_server, PV, body).status_code
    lines = _logged(access_log, "stages_ms")
    assert 1 == len(lines)
    line = lines[0]
    assert body["hookInstance"] == line["hook_instance"]
    assert ("magstat-patient-view", "patient-view") == (line["service"], line["hook"])
    assert list(STAGES) == list(line["stages_ms"])
    assert all(ms >= 0 for ms in line["stages_ms"].values())
    assert line["stages_ms"]["parse"] > 0 and line["stages_ms"]["adapter"] > 0
    assert sum(line["stages_ms"].values()) <= line["duration_ms"]
    assert line["cards"] >= 1


@in_process_only
def test_access_log_leaves_out_a_hook_instance_that_is_not_a_uuid(demo_server, access_log, records, kb):
    """A hookInstance that is not a UUID (it could carry anything) is logged as null."""
    record = records["py06"]
    body = hook_request("patient-view", record.patient_id)
    body["hookInstance"] = f"visit-of-{record.patient_id}"
    body["prefetch"] = prefetch_for(prefetch_templates(kb), body["context"], record)
    assert 200 == post(demo_server, PV, body).status_code
    lines = _logged(access_log, "hook_instance")
    assert [None] == [line["hook_instance"] for line in lines]
