"""What a card is about and what the patient's state was when it was shown: the inputs of suppression.

A clinician who overrides a card, or accepts its serum magnesium order, should not meet the same
card on every chart open; but a card must come back when the picture gets worse. This module
names, for each card, the *concern* it speaks to and the *state* of the assessment behind it, and
says when one state is worse than another. It is pure: the service keeps these (hashed, never in
the clear) and decides what to show (:mod:`magstat.service.suppression`).

Concerns:

- ``no-recent-mg``: a card whose point is "measure serum magnesium" (an ``at_risk`` status card
  with the next step ``ns.measure_serum_mg``, or a card about a drug that lowers magnesium while
  there is no current result). A patient-view card and an order-select card for the same PPI
  share it, so the patient's chart says it once.
- ``magnesium-status``: any other status card.
- ``drug-lowers-magnesium``: a lowering-drug card when a current serum magnesium is known.
- otherwise the card's kind (``renal-wasting``, ``safety``, ``magnesium-product-kidney``).

A state is worse than an earlier one when the card is more urgent (indicator, then status, then
severity), when a low magnesium result appears that was not there, or when a drug of a
knowledge-base class that lowers magnesium appears that was not there.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from magstat.core.facts import PatientFacts
from magstat.core.result import Assessment
from magstat.kb.schema import KnowledgeBase

__all__ = ["CardState", "card_concern", "card_kind", "card_state", "is_worse"]

_INDICATOR_RANK = {"info": 0, "warning": 1, "critical": 2}
_STATUS_RANK = {
    "unlikely": 0,
    "indeterminate": 0,
    "at_risk": 1,
    "likely_deficient": 2,
    "deficient": 3,
    "excess": 3,
}
_SEVERITY_RANK = {"mild": 1, "moderate": 2, "severe": 3, "life-threatening": 4}


@dataclass(frozen=True, slots=True)
class CardState:
    """What a card rested on, in a form that can be compared later.

    Attributes:
        rank: urgency of the card: indicator, then status, then severity (higher is worse).
        low_results: one token per low serum magnesium result (date and value).
        drugs: the knowledge-base ids of current drugs of a class that lowers magnesium.

    """

    rank: int
    low_results: frozenset[str]
    drugs: frozenset[str]

    def mapped(self, digest: Callable[[str], str]) -> CardState:
        """The same state with every token replaced by ``digest(token)`` (for storage)."""
        return CardState(
            self.rank,
            frozenset(digest(t) for t in self.low_results),
            frozenset(digest(t) for t in self.drugs),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form (sorted, so equal states give equal text)."""
        return {"rank": self.rank, "low": sorted(self.low_results), "drugs": sorted(self.drugs)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CardState:
        """Read the JSON form back."""
        return cls(int(data["rank"]), frozenset(data.get("low", ())), frozenset(data.get("drugs", ())))


def card_kind(card: Mapping[str, Any]) -> str:
    """The kind of a magstat card (its ``source.topic.code``)."""
    return str(card["source"]["topic"]["code"])


def card_concern(card: Mapping[str, Any], result: Assessment) -> str:
    """The concern a card speaks to (see the module doc)."""
    kind = card_kind(card)
    no_result = any(a.id == "ns.measure_serum_mg" for a in result.next_steps)
    if kind == "status":
        return "no-recent-mg" if result.status == "at_risk" and no_result else "magnesium-status"
    if kind == "drug-lowers-magnesium":
        return "no-recent-mg" if no_result else "drug-lowers-magnesium"
    return kind


def card_state(
    card: Mapping[str, Any], result: Assessment, facts: PatientFacts, kb: KnowledgeBase
) -> CardState:
    """The state of the assessment behind a card.

    Args:
        card: the card.
        result: the assessment the card was made from.
        facts: the facts assessed (the current medications).
        kb: the knowledge base (which drug classes lower magnesium).

    """
    rank = (
        _INDICATOR_RANK.get(str(card.get("indicator")), 0) * 100
        + _STATUS_RANK.get(result.status, 0) * 10
        + _SEVERITY_RANK.get(result.severity or "", 0)
    )
    serum = result.serum_magnesium
    limit = max(serum.lab_low or 0.0, serum.evidence_lower or 0.0)
    low = {
        f"serum-mg/{when.isoformat() if when else 'undated'}/{value:.3f}"
        for when, value in serum.history
        if limit and value < limit
    }
    if serum.mmol_l is not None and serum.band in ("below_lab_range", "low_normal"):
        when = serum.date.isoformat() if serum.date else "undated"
        low.add(f"serum-mg/{when}/{serum.mmol_l:.3f}")
    drugs = {
        drug_id
        for med in facts.medications or ()
        if med.current is not False
        for drug_id in med.drugs
        if drug_id in kb.drugs
        and any(
            kb.drug_classes[c].effect == "lowers" for c in kb.drugs[drug_id].classes if c in kb.drug_classes
        )
    }
    return CardState(rank, frozenset(low), frozenset(drugs))


def is_worse(now: CardState, before: CardState) -> bool:
    """Whether ``now`` is worse than ``before``: more urgent, a new low result or a new drug."""
    return (
        now.rank > before.rank or bool(now.low_results - before.low_results) or bool(now.drugs - before.drugs)
    )
