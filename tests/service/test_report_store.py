"""Reports behind card links in the shared store: kept, expired, trimmed, and never opened unless signed by our key."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import yaml

from magstat.adapters.document import facts_from_document
from magstat.core.assess import assess
from magstat.service.reports import NAMESPACE, ReportStore
from magstat.service.store import SharedStore
from tests.conftest import ROOT


@pytest.fixture
def demo_facts(kb):
    """The facts of the first demonstration case."""
    data = yaml.safe_load((ROOT / "src/magstat/demo/case-01-ppi-diuretic-deficient.yaml").read_text())
    return facts_from_document(data, kb, as_of=dt.date(2026, 1, 1))


def _result(kb, facts):
    return assess(facts, kb)


def test_report_round_trip_between_two_stores(tmp_path, kb, demo_facts):
    """A report kept through one store (one worker) is read back through another with the same key."""
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    writer = ReportStore(SharedStore(url), 60, 100, b"k" * 32)
    reader = ReportStore(SharedStore(url), 60, 100, b"k" * 32)
    result = _result(kb, demo_facts)
    token = writer.put(result)
    assert result.status == reader.get(token).status


def test_report_not_signed_by_our_key_is_not_opened(tmp_path, kb, demo_facts):
    """Bytes under a report token that our key did not sign (another key, or altered) are not unpickled."""
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    shared = SharedStore(url)
    ours = ReportStore(shared, 60, 100, b"k" * 32)
    theirs = ReportStore(shared, 60, 100, b"x" * 32)
    token = theirs.put(_result(kb, demo_facts))
    assert None is ours.get(token)
    mine = ours.put(_result(kb, demo_facts))
    raw = bytearray(shared.get(NAMESPACE, mine))
    raw[10] ^= 0xFF
    shared.put(NAMESPACE, mine, bytes(raw), 60)
    assert None is ours.get(mine)
    assert None is ours.get("not-a-token")


def test_reports_expire_and_are_trimmed(tmp_path, kb, demo_facts):
    """A report is gone after its time to live; beyond max_entries the oldest go."""
    shared = SharedStore(f"sqlite:///{tmp_path / 'shared.sqlite3'}")
    reports = ReportStore(shared, 60, 3, b"k" * 32, trim_every_seconds=0)
    result = _result(kb, demo_facts)
    tokens = [reports.put(result) for _ in range(5)]
    assert 3 == shared.count(NAMESPACE)
    assert None is reports.get(tokens[0])
    assert None is not reports.get(tokens[-1])
    shared.clock = lambda: time.time() + 61
    assert None is reports.get(tokens[-1])
