"""The working state shared by the rules of one assessment, and the helpers that word its findings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from magstat.core.facts import Lab, Medication, PatientFacts
from magstat.core.prepared import Prepared
from magstat.core.result import Action, Finding, InputUsed
from magstat.kb.schema import DriRow, KnowledgeBase

_RANK = {"urgent": 0, "high": 1, "routine": 2}


_FIXED = tuple(f"%.{d}f" for d in range(5))  # printf-style: the same text as f"{value:.{d}f}", faster


def _fmt(value: float, digits: int = 2) -> str:
    """Round for display and drop trailing zeros (0.70 -> 0.7, 60.0 -> 60)."""
    text = _FIXED[digits] % value if 0 <= digits < len(_FIXED) else f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _sentence(text: str) -> str:
    """Capitalise the first letter only (units like mmol/L keep their case) and end with a stop."""
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _in_text(name: str) -> str:
    """A knowledge-base name inside a sentence: a capital that only starts the name is lowered.

    Acronyms and symbols keep their case ("QT-prolonging drugs", "SGLT2 inhibitors",
    "amphotericin B", "anti-EGFR monoclonal antibodies").
    """
    if len(name) > 1 and name[0].isupper() and name[1].islower():
        return name[0].lower() + name[1:]
    return name


def _lab_input(name: str, lab: Lab) -> InputUsed:
    return InputUsed(
        name=name,
        value=round(lab.value, 4),
        unit=lab.unit,
        date=lab.when,
        source=lab.origin.resource,
        matched_by=lab.origin.matched_by,
    )


@dataclass
class _Work:
    """Mutable scratch space of one assessment (never leaves :func:`magstat.core.assess.assess`)."""

    facts: PatientFacts
    kb: KnowledgeBase
    p: Prepared
    age: float | None = None
    latest: dict[str, Lab] = field(default_factory=dict)
    stale: dict[str, Lab] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    next_steps: dict[str, Action] = field(default_factory=dict)
    safety: dict[str, Action] = field(default_factory=dict)
    limitations: dict[str, Action] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    major: list[str] = field(default_factory=list)
    minor: list[str] = field(default_factory=list)
    specific_signs: list[str] = field(default_factory=list)
    supportive_signs: list[str] = field(default_factory=list)
    present_signs: set[str] = field(default_factory=set)
    current_conditions: set[str] = field(default_factory=set)
    current_classes: dict[str, list[Medication]] = field(default_factory=dict)
    current_drugs: set[str] = field(default_factory=set)
    dri_row: DriRow | None = None
    """The DRI row of the patient's life stage (found by the intake step; ``None`` without an age)."""
    """The drug ids of current medications."""
    low_markers: list[str] = field(default_factory=list)
    alcohol_proxy: bool = False
    mg_history: list[tuple[date | None, float]] = field(default_factory=list)
    refuted_signs: dict[str, str] = field(default_factory=dict)
    conflicts: dict[str, list[Lab]] = field(default_factory=dict)
    mg_therapy: list[Medication] = field(default_factory=list)
    severity_reason: str | None = None
    unrecognised_medications: list[str] = field(default_factory=list)
    """Texts of medications not recognised that may be current (not known to be stopped)."""
    unrecognised_conditions: list[str] = field(default_factory=list)
    """Texts of conditions not recognised that may be current (neither resolved nor read as a sign)."""

    def find(self, finding: Finding) -> None:
        self.findings.append(finding)

    def step(
        self, statement_id: str, reason: str, priority: Literal["urgent", "high", "routine"] = "routine"
    ) -> None:
        self._act(self.next_steps, statement_id, reason, priority)

    def safe(
        self, statement_id: str, reason: str, priority: Literal["urgent", "high", "routine"] = "routine"
    ) -> None:
        self._act(self.safety, statement_id, reason, priority)

    def limit(self, statement_id: str, reason: str) -> None:
        self._act(self.limitations, statement_id, reason, "routine")

    def _act(
        self,
        table: dict[str, Action],
        statement_id: str,
        reason: str,
        priority: Literal["urgent", "high", "routine"],
    ) -> None:
        old = table.get(statement_id)
        if old is not None:
            if _RANK[priority] < _RANK[old.priority]:
                table[statement_id] = Action(old.id, old.text, old.reason, old.sources, priority)
            return
        statement = self.kb.statements.get(statement_id) or self.kb.statement(statement_id)
        table[statement_id] = Action(statement_id, statement.text, reason, statement.sources, priority)
