"""Cards that clinicians keep reading: feedback-driven suppression and one card per concern.

Three rules decide whether a card the assessment warrants is shown (see docs/service.md):

1. *Overridden with a reason*: a card overridden with one of its own ``overrideReasons`` is not
   shown again for that patient and concern for ``cds.override_suppression_days``.
2. *Order accepted*: a card whose "order serum magnesium" suggestion was accepted is not shown
   again for ``cds.order_result_due_days`` (the result should be back by then).
3. *Said once across hooks*: a card whose concern another service (another hook) showed for the
   same patient within ``cds.repeat_window_hours`` is not shown again.

None of them hides a card when the state behind it is worse than when the earlier card was shown
(:func:`magstat.adapters.cds_hooks.concerns.is_worse`), and none ever hides a ``critical`` card.

What is stored, in the feedback database: per card shown, its uuid, service, kind, indicator, the
override reasons it offered, the time, and (for the retention period only) an HMAC of the patient
id and the concern with the HMAC digests of the low results and lowering drugs behind it; per rule
above, the HMAC key of patient and concern, the cause, the service, the hashed state and the end
time (deleted once past). The HMAC secret is ``cds.suppression_secret``; without it, a random key
is drawn at start-up (the rules then last until the process restarts). No patient id, result or
drug name is stored in the clear.

The database calls are blocking; the routes run them in a thread. When the database fails, every
card is shown (showing a card twice is safer than hiding it).

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from magstat.adapters.cds_hooks.cards import OVERRIDE_SYSTEM, SUGGESTION_ORDER_SERUM_MG
from magstat.adapters.cds_hooks.concerns import CardState, is_worse
from magstat.service.feedback import FeedbackRecord, FeedbackStore, StorageError
from magstat.service.settings import CdsSettings

__all__ = ["CardMemory", "ShownCard"]

log = logging.getLogger("magstat.service.suppression")

_CARD_TABLE = """
CREATE TABLE IF NOT EXISTS magstat_cds_card (
    card_uuid TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    card_kind TEXT NOT NULL,
    indicator TEXT NOT NULL,
    shown_at TEXT NOT NULL,
    reasons TEXT NOT NULL,
    concern_key TEXT,
    state TEXT
)
"""
_RULE_TABLE = """
CREATE TABLE IF NOT EXISTS magstat_cds_suppression (
    concern_key TEXT NOT NULL,
    cause TEXT NOT NULL CHECK (cause IN ('shown', 'overridden', 'ordered')),
    service_id TEXT NOT NULL,
    state TEXT NOT NULL,
    since TEXT NOT NULL,
    until TEXT NOT NULL
)
"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS magstat_cds_suppression_key ON magstat_cds_suppression (concern_key)",
    "CREATE INDEX IF NOT EXISTS magstat_cds_suppression_until ON magstat_cds_suppression (until)",
    "CREATE INDEX IF NOT EXISTS magstat_cds_card_shown ON magstat_cds_card (shown_at)",
)


@dataclass(frozen=True, slots=True)
class ShownCard:
    """A card the assessment warrants, with what suppression needs to know of it.

    Attributes:
        card: the card (CDS Hooks JSON).
        concern: the concern it speaks to.
        state: the state behind it (tokens in the clear; hashed before storage).

    """

    card: dict[str, Any]
    concern: str
    state: CardState


def _stamp(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


class CardMemory:
    """Remembers cards shown and feedback on them, and says which cards to hold back."""

    def __init__(self, store: FeedbackStore, settings: CdsSettings) -> None:
        self.store = store
        self.settings = settings
        secret = settings.suppression_secret
        self._key = secret.get_secret_value().encode() if secret is not None else secrets.token_bytes(32)
        self._ready = False

    def _digest(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def concern_key(self, patient_id: str, concern: str) -> str:
        """The stored key of a patient and a concern (an HMAC: the patient id is not stored)."""
        return self._digest(f"{patient_id}\x1f{concern}")

    def initialise(self) -> None:
        """Create the tables if they are missing.

        Raises:
            StorageError: the database cannot be reached or written.

        """
        self.store.execute([(_CARD_TABLE, ()), (_RULE_TABLE, ()), *((sql, ()) for sql in _INDEXES)])
        self._ready = True

    def select(
        self, service_id: str, patient_id: str, candidates: Sequence[ShownCard], now: datetime
    ) -> list[dict[str, Any]]:
        """The cards to show, in order; remember them as shown.

        Args:
            service_id: the service called.
            patient_id: ``context.patientId``.
            candidates: the cards the assessment warrants.
            now: the service clock.

        """
        if not candidates:
            return []
        try:
            if not self._ready:
                self.initialise()
            return self._select(service_id, patient_id, candidates, now)
        except StorageError as exc:
            log.error("card memory unavailable, every card is shown: %s", exc)
            return [c.card for c in candidates]

    def _select(
        self, service_id: str, patient_id: str, candidates: Sequence[ShownCard], now: datetime
    ) -> list[dict[str, Any]]:
        m = self.store.mark
        stamp = _stamp(now)
        keys = {c.concern: self.concern_key(patient_id, c.concern) for c in candidates}
        wanted = sorted(set(keys.values()))
        rows = self.store.execute(
            [
                (
                    "SELECT concern_key, cause, service_id, state FROM magstat_cds_suppression "  # noqa: S608 - markers only
                    f"WHERE until > {m} AND concern_key IN ({', '.join([m] * len(wanted))})",
                    (stamp, *wanted),
                )
            ],
            fetch=True,
        )
        rules: dict[str, list[tuple[str, str, CardState]]] = {}
        for key, cause, rule_service, state in rows:
            rules.setdefault(key, []).append((cause, rule_service, CardState.from_json(json.loads(state))))
        shown: list[ShownCard] = []
        for cand in candidates:
            state = cand.state.mapped(self._digest)
            if cand.card.get("indicator") != "critical" and any(
                (cause != "shown" or rule_service != service_id) and not is_worse(state, before)
                for cause, rule_service, before in rules.get(keys[cand.concern], ())
            ):
                continue
            shown.append(cand)
        if shown:
            self._remember(service_id, keys, shown, now)
        return [c.card for c in shown]

    def _remember(
        self, service_id: str, keys: dict[str, str], shown: Sequence[ShownCard], now: datetime
    ) -> None:
        m = self.store.mark
        stamp = _stamp(now)
        window = timedelta(hours=self.settings.repeat_window_hours)
        keep = max(
            window,
            timedelta(days=self.settings.override_suppression_days),
            timedelta(days=self.settings.order_result_due_days),
            timedelta(hours=1),
        )
        statements: list[tuple[str, Sequence[Any]]] = [
            ("DELETE FROM magstat_cds_suppression WHERE until <= " + m, (stamp,)),  # noqa: S608 - marker only
            (
                f"UPDATE magstat_cds_card SET concern_key = NULL, state = NULL WHERE shown_at < {m} "  # noqa: S608 - markers only
                "AND concern_key IS NOT NULL",
                (_stamp(now - keep),),
            ),
        ]
        for cand in shown:
            card = cand.card
            state = json.dumps(cand.state.mapped(self._digest).to_json())
            reasons = json.dumps([r["code"] for r in card.get("overrideReasons", ())])
            statements.append(
                (
                    "INSERT INTO magstat_cds_card (card_uuid, service_id, card_kind, indicator, shown_at, "  # noqa: S608 - markers only
                    f"reasons, concern_key, state) VALUES ({', '.join([m] * 8)}) "
                    "ON CONFLICT (card_uuid) DO UPDATE SET concern_key = excluded.concern_key, "
                    "state = excluded.state",
                    (
                        card["uuid"],
                        service_id,
                        card["source"]["topic"]["code"],
                        card["indicator"],
                        stamp,
                        reasons,
                        keys[cand.concern],
                        state,
                    ),
                )
            )
            if window > timedelta(0):
                # The same concern shown again by the same service in the same state: the new rule
                # replaces the old one, which it outlasts and which decides nothing else (a chart
                # opened all day would otherwise add a row per opening, each read back by the next).
                statements.append(
                    (
                        "DELETE FROM magstat_cds_suppression WHERE concern_key = "  # noqa: S608 - markers only
                        f"{m} AND cause = 'shown' AND service_id = {m} AND state = {m} AND until <= {m}",
                        (keys[cand.concern], service_id, state, _stamp(now + window)),
                    )
                )
                statements.append(
                    (
                        "INSERT INTO magstat_cds_suppression (concern_key, cause, service_id, state, since, until) "  # noqa: S608 - markers only
                        f"VALUES ({', '.join([m] * 6)})",
                        (keys[cand.concern], "shown", service_id, state, stamp, _stamp(now + window)),
                    )
                )
        self.store.execute(statements)

    def learn(self, records: Sequence[FeedbackRecord], now: datetime) -> int:
        """Turn feedback into suppression rules; return how many rules were made.

        An override counts only with a reason from the card's own ``overrideReasons``; an
        acceptance only when the "order serum magnesium" suggestion was accepted. Feedback on a
        card the service does not remember (unknown, or past the retention period) changes
        nothing. A database error is logged and makes no rule (the feedback itself is stored
        by then).
        """
        try:
            if not self._ready:
                self.initialise()
            return self._learn(records, now)
        except StorageError as exc:
            log.error("card memory unavailable, feedback made no suppression rule: %s", exc)
            return 0

    def _learn(self, records: Sequence[FeedbackRecord], now: datetime) -> int:
        m = self.store.mark
        statements: list[tuple[str, Sequence[Any]]] = []
        for record in records:
            if record.outcome == "overridden":
                if record.override_system != OVERRIDE_SYSTEM or not record.override_code:
                    continue
                cause, period = "overridden", timedelta(days=self.settings.override_suppression_days)
            elif SUGGESTION_ORDER_SERUM_MG in record.accepted_suggestions:
                cause, period = "ordered", timedelta(days=self.settings.order_result_due_days)
            else:
                continue
            if period <= timedelta(0):
                continue
            rows = self.store.execute(
                [
                    (
                        "SELECT concern_key, state, reasons FROM magstat_cds_card "  # noqa: S608 - markers only
                        f"WHERE card_uuid = {m} AND service_id = {m} AND concern_key IS NOT NULL",
                        (record.card_uuid, record.service_id),
                    )
                ],
                fetch=True,
            )
            if not rows:
                continue
            key, state, reasons = rows[0]
            if cause == "overridden" and record.override_code not in json.loads(reasons):
                continue
            statements.append(
                (
                    "INSERT INTO magstat_cds_suppression (concern_key, cause, service_id, state, since, until) "  # noqa: S608 - markers only
                    f"VALUES ({', '.join([m] * 6)})",
                    (key, cause, record.service_id, state, _stamp(now), _stamp(now + period)),
                )
            )
        if statements:
            self.store.execute(statements)
        return len(statements)
