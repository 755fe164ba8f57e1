"""``magstat feedback report``: rates per card kind and reason over time, from a generated history."""

from __future__ import annotations

import csv
import datetime as dt
import re
import uuid
from pathlib import Path

import pytest

pytest.importorskip("pydantic_settings", reason="the service extra is not installed")

from magstat.adapters.cds_hooks.cards import OVERRIDE_SYSTEM, SUGGESTION_ORDER_SERUM_MG
from magstat.adapters.cds_hooks.concerns import CardState
from magstat.cli import main
from magstat.service.feedback import FeedbackRecord, FeedbackStore
from magstat.service.settings import CdsSettings
from magstat.service.suppression import CardMemory, ShownCard

SERVICE = "magstat-patient-view"


def history(url: str) -> None:
    """Cards shown and feedback with known counts.

    January, status: 10 shown, 4 overridden (3 already-monitored, 1 not-applicable), 2 accepted
    (both the serum Mg order). February, status: 20 shown, 5 overridden (all already-monitored),
    10 accepted (8 with the order); drug-lowers-magnesium: 4 shown, 1 overridden (short-course).
    One override is sent twice (counted once) and one item names a card never shown.
    """
    store = FeedbackStore(url)
    store.initialise()
    memory = CardMemory(store, CdsSettings(repeat_window_hours=0))
    memory.initialise()
    records: list[FeedbackRecord] = []
    counter = 0

    def show(kind: str, when: dt.datetime) -> str:
        nonlocal counter
        counter += 1
        card = {
            "uuid": str(uuid.uuid4()),
            "indicator": "info",
            "source": {"topic": {"code": kind}},
            "overrideReasons": [{"code": "already-monitored"}],
        }
        state = CardState(0, frozenset(), frozenset())
        shown = memory.select(SERVICE, f"patient-{counter}", [ShownCard(card, kind, state)], when)
        assert [card] == shown
        return str(card["uuid"])

    def override(card: str, code: str, when: dt.datetime) -> None:
        records.append(
            FeedbackRecord(
                SERVICE, card, "overridden", (), when, OVERRIDE_SYSTEM, code, code.replace("-", " ")
            )
        )

    def accept(card: str, order: bool, when: dt.datetime) -> None:
        suggestion = SUGGESTION_ORDER_SERUM_MG if order else str(uuid.uuid4())
        records.append(FeedbackRecord(SERVICE, card, "accepted", (suggestion,), when))

    jan, feb = dt.datetime(2026, 1, 10, 9, tzinfo=dt.UTC), dt.datetime(2026, 2, 12, 9, tzinfo=dt.UTC)
    cards = [show("status", jan) for _ in range(10)]
    for card, code in zip(cards, ["already-monitored"] * 3 + ["not-applicable"], strict=False):
        override(card, code, jan)
    override(cards[0], "already-monitored", jan)  # sent twice
    for card in cards[4:6]:
        accept(card, True, jan)
    cards = [show("status", feb) for _ in range(20)]
    for card in cards[:5]:
        override(card, "already-monitored", feb)
    for i, card in enumerate(cards[5:15]):
        accept(card, i < 8, feb)
    lowering = [show("drug-lowers-magnesium", feb) for _ in range(4)]
    override(lowering[0], "short-course", feb)
    override(str(uuid.uuid4()), "not-applicable", feb)
    store.add(records)
    store.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_gives_the_known_rates(tmp_path):
    """The CSV holds the counts and rates of the generated history, per month and card kind."""
    url = f"sqlite:///{tmp_path / 'fb.sqlite3'}"
    history(url)
    out = tmp_path / "report"
    assert 0 == main(["feedback", "report", "--db", url, "--out", str(out)])
    rates = {(r["period"], r["card_kind"]): r for r in read_csv(out / "feedback-rates.csv")}
    assert {
        "period": "2026-01",
        "card_kind": "status",
        "shown": "10",
        "accepted": "2",
        "overridden": "4",
        "acceptance_rate": "0.2000",
        "override_rate": "0.4000",
        "serum_mg_orders_accepted": "2",
    } == rates[("2026-01", "status")]
    feb = rates[("2026-02", "status")]
    expected = ("20", "10", "5", "0.5000", "0.2500", "8")
    assert expected == (
        feb["shown"],
        feb["accepted"],
        feb["overridden"],
        feb["acceptance_rate"],
        feb["override_rate"],
        feb["serum_mg_orders_accepted"],
    )
    assert "0.2500" == rates[("2026-02", "drug-lowers-magnesium")]["override_rate"]
    assert ("0", "1", "") == (
        rates[("2026-02", "unknown")]["shown"],
        rates[("2026-02", "unknown")]["overridden"],
        rates[("2026-02", "unknown")]["override_rate"],
    )
    reasons = {
        (r["period"], r["card_kind"], r["reason_code"]): r for r in read_csv(out / "override-reasons.csv")
    }
    assert ("3", "0.7500") == (
        reasons[("2026-01", "status", "already-monitored")]["count"],
        reasons[("2026-01", "status", "already-monitored")]["share_of_overrides"],
    )
    assert "1" == reasons[("2026-01", "status", "not-applicable")]["count"]
    assert "short course" == reasons[("2026-02", "drug-lowers-magnesium", "short-course")]["reason_display"]


def test_report_page_is_offline_with_plots(tmp_path):
    """The HTML page has inline SVG plots, no script and no external resource."""
    url = f"sqlite:///{tmp_path / 'fb.sqlite3'}"
    history(url)
    out = tmp_path / "report"
    assert 0 == main(["feedback", "report", "--db", url, "--out", str(out), "--period", "week"])
    page = (out / "feedback-report.html").read_text(encoding="utf-8")
    assert 4 == page.count("<svg")
    assert "<script" not in page
    assert [] == re.findall(r"(?:src|href)=\"([^\"]+)\"", page)
    assert "2026-W02" in page


def test_report_refuses_a_missing_database(tmp_path, capsys):
    """A --db that is not a database URL, or an SQLite file that does not exist, is exit 2 naming --db."""
    assert 2 == main(["feedback", "report", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "o")])
    assert "--db" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert 2 == main(["feedback", "report", "--db", missing, "--out", str(tmp_path / "o")])
    assert "no such SQLite file" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
