"""``magstat feedback report``: how clinicians answer the CDS Hooks cards, over time.

Reads the service's feedback database (SQLite file or PostgreSQL URL) and writes, into a folder:

- ``feedback-rates.csv``: one row per period and card kind: cards shown, cards accepted,
  cards overridden, the acceptance and override rates (of the cards shown), and how many
  serum magnesium orders were accepted from cards;
- ``override-reasons.csv``: one row per period, card kind and override reason, with its count
  and its share of that period's overrides of that kind;
- ``feedback-report.html``: the same as an offline page with inline SVG plots (no script, no
  network), so that a hospital can set its override rates beside the published ones and see a
  rise in magnesium ordering.

A card counts once per outcome however many feedback items name it. The cards shown come from
the service's card memory (``magstat_cds_card``); feedback on a card the service did not record
is counted under the kind ``unknown`` and has no rate.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import html
import io
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magstat.errors import InvalidInputError

__all__ = ["FeedbackSummary", "define_parser", "run", "summarise"]

_RATES = "feedback-rates.csv"
_REASONS = "override-reasons.csv"
_PAGE = "feedback-report.html"


def define_parser(sub: Any) -> None:
    """Add the ``feedback`` subcommand and its ``report`` action."""
    parser = sub.add_parser("feedback", help="reports on the CDS Hooks card feedback")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    report = actions.add_parser(
        "report", help="override and acceptance rates per card kind and reason over time (HTML + CSV)"
    )
    report.add_argument(
        "--db", required=True, help="the feedback database: sqlite:///file.db or postgresql://..."
    )
    report.add_argument("--out", required=True, help="folder for the report (created if missing)")
    report.add_argument(
        "--period", choices=("month", "week", "day"), default="month", help="time step (default: month)"
    )


@dataclass(frozen=True, slots=True)
class FeedbackSummary:
    """The counts behind the report.

    Attributes:
        periods: the periods, oldest first.
        kinds: the card kinds, sorted.
        shown: (period, kind) -> cards shown.
        accepted: (period, kind) -> cards with a suggestion accepted.
        overridden: (period, kind) -> cards overridden.
        orders: (period, kind) -> cards whose serum magnesium order was accepted.
        reasons: (period, kind, code, display) -> cards overridden with that reason.

    """

    periods: tuple[str, ...]
    kinds: tuple[str, ...]
    shown: dict[tuple[str, str], int]
    accepted: dict[tuple[str, str], int]
    overridden: dict[tuple[str, str], int]
    orders: dict[tuple[str, str], int]
    reasons: dict[tuple[str, str, str, str], int]

    def rate(self, counts: dict[tuple[str, str], int], period: str, kind: str) -> float | None:
        """``counts`` over the cards shown, or ``None`` when none were recorded as shown."""
        shown = self.shown.get((period, kind), 0)
        return counts.get((period, kind), 0) / shown if shown else None


def _period(stamp: str, step: str) -> str:
    when = dt.datetime.fromisoformat(stamp)
    if step == "day":
        return when.date().isoformat()
    if step == "week":
        year, week, _ = when.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{when.year:04d}-{when.month:02d}"


def summarise(
    cards: Sequence[tuple[str, str, str]], feedback: Sequence[dict[str, Any]], step: str = "month"
) -> FeedbackSummary:
    """Count cards shown and feedback per period and card kind.

    Args:
        cards: (card uuid, card kind, time shown) of every card the service recorded.
        feedback: the feedback rows (as :meth:`magstat.service.feedback.FeedbackStore.rows`).
        step: ``month``, ``week`` or ``day``.

    """
    from magstat.adapters.cds_hooks.cards import SUGGESTION_ORDER_SERUM_MG  # noqa: PLC0415 - light import

    kind_of = {uuid: kind for uuid, kind, _ in cards}
    shown: Counter[tuple[str, str]] = Counter((_period(when, step), kind) for _, kind, when in cards)
    seen: set[tuple[str, str, str]] = set()
    accepted: Counter[tuple[str, str]] = Counter()
    overridden: Counter[tuple[str, str]] = Counter()
    orders: Counter[tuple[str, str]] = Counter()
    reasons: Counter[tuple[str, str, str, str]] = Counter()
    for row in feedback:
        kind = kind_of.get(row["card_uuid"], "unknown")
        period = _period(row["outcome_timestamp"], step)
        key = (period, kind)
        outcome = row["outcome"]
        if (period, outcome, row["card_uuid"]) in seen:
            continue  # a card counts once per outcome and period
        seen.add((period, outcome, row["card_uuid"]))
        if outcome == "accepted":
            accepted[key] += 1
            if SUGGESTION_ORDER_SERUM_MG in row["accepted_suggestions"]:
                orders[key] += 1
        else:
            overridden[key] += 1
            code = row.get("override_code") or "(no reason)"
            display = row.get("override_display") or ""
            reasons[(period, kind, code, display)] += 1
    periods = tuple(sorted({p for p, _ in shown} | {p for p, _ in accepted} | {p for p, _ in overridden}))
    kinds = tuple(sorted({k for _, k in shown} | {k for _, k in accepted} | {k for _, k in overridden}))
    return FeedbackSummary(
        periods, kinds, dict(shown), dict(accepted), dict(overridden), dict(orders), dict(reasons)
    )


def _read(url: str) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
    from magstat.service.feedback import FeedbackStore, StorageError  # noqa: PLC0415 - optional part

    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise InvalidInputError(
            "--db", "is not a database URL", value=url[:80], allowed="sqlite:///file.db or postgresql://..."
        )
    store = FeedbackStore(url)
    if store.kind == "sqlite" and (store._dsn == ":memory:" or not Path(store._dsn).is_file()):
        raise InvalidInputError(
            "--db", "no such SQLite file", value=store._dsn, allowed="an existing feedback database"
        )
    try:
        feedback = store.rows()
        try:
            cards = [
                (str(u), str(k), str(s))
                for u, k, s in store.execute(
                    [("SELECT card_uuid, card_kind, shown_at FROM magstat_cds_card ORDER BY shown_at", ())],
                    fetch=True,
                )
            ]
        except StorageError:
            cards = []  # a database written before the card memory existed: no rates, counts only
    except StorageError as exc:
        raise InvalidInputError("--db", f"cannot be read as a magstat feedback database ({exc})") from None
    finally:
        store.close()
    return cards, feedback


def _fmt_rate(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def write_csv(summary: FeedbackSummary, out: Path) -> None:
    """Write ``feedback-rates.csv`` and ``override-reasons.csv`` into ``out``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "period",
            "card_kind",
            "shown",
            "accepted",
            "overridden",
            "acceptance_rate",
            "override_rate",
            "serum_mg_orders_accepted",
        ]
    )
    for period in summary.periods:
        for kind in summary.kinds:
            key = (period, kind)
            counts = (summary.shown.get(key, 0), summary.accepted.get(key, 0), summary.overridden.get(key, 0))
            if not any(counts):
                continue
            writer.writerow(
                [
                    period,
                    kind,
                    *counts,
                    _fmt_rate(summary.rate(summary.accepted, period, kind)),
                    _fmt_rate(summary.rate(summary.overridden, period, kind)),
                    summary.orders.get(key, 0),
                ]
            )
    _atomic(out / _RATES, buf.getvalue())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["period", "card_kind", "reason_code", "reason_display", "count", "share_of_overrides"])
    for (period, kind, code, display), count in sorted(summary.reasons.items()):
        total = summary.overridden.get((period, kind), 0)
        writer.writerow([period, kind, code, display, count, f"{count / total:.4f}" if total else ""])
    _atomic(out / _REASONS, buf.getvalue())


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


_COLOURS = ("#1b6ca8", "#c0392b", "#2e8b57", "#8e44ad", "#d35400", "#7f8c8d", "#16a085")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _line_chart(title: str, periods: Sequence[str], series: dict[str, list[float | None]]) -> str:
    """An SVG line chart of rates (0-100 %) per period, one line per series."""
    width, height, left, bottom, top = 760, 260, 48, 40, 16
    plot_w, plot_h = width - left - 230, height - bottom - top
    step = plot_w / max(len(periods) - 1, 1)
    body = []
    for pct in (0, 25, 50, 75, 100):
        y = top + plot_h * (1 - pct / 100)
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{pct}%</text>')
    for i, period in enumerate(periods):
        x = left + i * step
        body.append(
            f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11">{_e(period)}</text>'
        )
    for n, (name, values) in enumerate(series.items()):
        colour = _COLOURS[n % len(_COLOURS)]
        points = [(left + i * step, top + plot_h * (1 - v)) for i, v in enumerate(values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for x, y in points:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
        ly = top + 14 * n + 8
        body.append(f'<rect x="{left + plot_w + 12}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>')
        body.append(f'<text x="{left + plot_w + 26}" y="{ly + 1}" font-size="11">{_e(name)}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">{"".join(body)}</svg>'
    )


def _bar_chart(title: str, items: Sequence[tuple[str, int]]) -> str:
    """An SVG horizontal bar chart of counts."""
    width, row = 640, 22
    height = max(row * len(items) + 10, 40)
    most = max((v for _, v in items), default=0) or 1
    body = []
    for i, (label, value) in enumerate(items):
        y = 5 + i * row
        w = 300 * value / most
        body.append(f'<text x="270" y="{y + 14}" text-anchor="end" font-size="11">{_e(label)}</text>')
        body.append(f'<rect x="278" y="{y + 3}" width="{w:.1f}" height="14" fill="{_COLOURS[0]}"/>')
        body.append(f'<text x="{284 + w:.1f}" y="{y + 14}" font-size="11">{value}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">{"".join(body)}</svg>'
    )


def render_html(summary: FeedbackSummary, source: str) -> str:
    """The offline report page (inline SVG, no script, no external resource)."""
    kinds = [k for k in summary.kinds if any(summary.shown.get((p, k)) for p in summary.periods)]
    override_series = {k: [summary.rate(summary.overridden, p, k) for p in summary.periods] for k in kinds}
    accept_series = {k: [summary.rate(summary.accepted, p, k) for p in summary.periods] for k in kinds}
    orders = [(p, sum(summary.orders.get((p, k), 0) for k in summary.kinds)) for p in summary.periods]
    reason_totals: Counter[str] = Counter()
    for (_, kind, code, display), count in summary.reasons.items():
        reason_totals[f"{kind}: {display or code}"] += count
    rows = []
    for period in summary.periods:
        for kind in summary.kinds:
            key = (period, kind)
            shown, acc, ovr = (
                summary.shown.get(key, 0),
                summary.accepted.get(key, 0),
                summary.overridden.get(key, 0),
            )
            if not (shown or acc or ovr):
                continue
            ar, orate = (
                summary.rate(summary.accepted, period, kind),
                summary.rate(summary.overridden, period, kind),
            )
            rows.append(
                f"<tr><td>{_e(period)}</td><td>{_e(kind)}</td><td>{shown}</td><td>{acc}</td><td>{ovr}</td>"
                f"<td>{'' if ar is None else f'{ar:.1%}'}</td><td>{'' if orate is None else f'{orate:.1%}'}</td>"
                f"<td>{summary.orders.get(key, 0)}</td></tr>"
            )
    sections = [
        (
            "Override rate per card kind",
            "Cards overridden over cards shown. Published override rates of EHR alerts run from 49 % to 96 %.",
            _line_chart("override rate per card kind", summary.periods, override_series),
        ),
        (
            "Acceptance rate per card kind",
            "Cards with a suggestion accepted over cards shown.",
            _line_chart("acceptance rate per card kind", summary.periods, accept_series),
        ),
        (
            "Serum magnesium orders accepted from cards",
            "A steady rise here, with no rise in low results, may mean the cards drive ordering beyond need.",
            _bar_chart("serum magnesium orders accepted per period", orders),
        ),
        (
            "Override reasons",
            "Every period together.",
            _bar_chart("override reasons", reason_totals.most_common()),
        ),
    ]
    body = "".join(f"<section><h2>{_e(t)}</h2><p>{_e(d)}</p>{svg}</section>" for t, d, svg in sections)
    table = (
        "<table><thead><tr><th>period</th><th>card kind</th><th>shown</th><th>accepted</th><th>overridden</th>"
        "<th>acceptance rate</th><th>override rate</th><th>Mg orders accepted</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>magstat card feedback</title>'
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}"
        "td:nth-child(-n+2),th:nth-child(-n+2){text-align:left;white-space:nowrap}</style></head><body>"
        "<h1>magstat CDS Hooks card feedback</h1>"
        f"<p>Database: {_e(source)}. Periods: {len(summary.periods)}. CSV: {_RATES}, {_REASONS}.</p>"
        f"{body}<section><h2>Counts</h2>{table}</section></body></html>\n"
    )


def _safe_url(url: str) -> str:
    """The URL without a password (for the page)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}{sep}{user}@{host}"
    return url


def run(args: argparse.Namespace) -> int:
    """Write the report; return the exit code."""
    cards, feedback = _read(args.db)
    summary = summarise(cards, feedback, args.period)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(summary, out)
    _atomic(out / _PAGE, render_html(summary, _safe_url(args.db)))
    sys.stderr.write(
        f"magstat: {len(cards)} cards shown, {len(feedback)} feedback items, "
        f"{len(summary.periods)} periods -> {out / _PAGE}\n"
    )
    return 0
