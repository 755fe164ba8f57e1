"""The working state shared by the rules of one assessment, and the helpers that word its findings."""

from __future__ import annotations

from datetime import date
from typing import Literal

from magstat.core.facts import ConditionFact, Lab, Medication, PatientFacts
from magstat.core.prepared import Prepared
from magstat.core.result import Action, EgfrResult, Finding, InputUsed, SerumMagnesium, new_action, new_input
from magstat.kb.schema import DriRow, KnowledgeBase

_RANK = {"urgent": 0, "high": 1, "routine": 2}


_FIXED = tuple(f"%.{d}f" for d in range(5))  # printf-style: the same text as f"{value:.{d}f}", faster


def _fmt(value: float, digits: int = 2) -> str:
    """Round for display and drop trailing zeros (0.70 -> 0.7, 60.0 -> 60)."""
    text = _FIXED[digits] % value if 0 <= digits < len(_FIXED) else f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _mg_shown(serum: SerumMagnesium) -> str:
    """The serum magnesium in mmol/L as a text, with its bound when one was reported ("<0.40")."""
    return f"{serum.comparator or ''}{_fmt(serum.mmol_l or 0.0, 2)}"


def _egfr_shown(egfr: EgfrResult) -> str:
    """The eGFR as a whole number, with its bound when one was reported (">60")."""
    return f"{egfr.comparator or ''}{_fmt(egfr.value or 0.0, 0)}"


def _egfr_input(egfr: EgfrResult) -> InputUsed:
    """The eGFR a rule used, as an input shown with the finding (a bound as written: ">60")."""
    assert egfr.value is not None
    shown: float | str = round(egfr.value, 1)
    if egfr.comparator is not None:
        shown = f"{egfr.comparator}{_fmt(egfr.value, 1)}"
    return new_input("eGFR", shown, "mL/min/1.73 m2", egfr.date)


def _sentence(text: str) -> str:
    """Capitalise the first letter only (units like mmol/L keep their case) and end with a stop."""
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _therapy_reached(w: _Work, when: date | None) -> bool:
    """Whether magnesium given as treatment may have reached a sample taken on ``when``.

    A therapy started after the sample's date did not reach it, nor did a draft order (not yet
    given); one without a start date, or a sample without a date, may have.
    """
    return any(not m.draft and (m.start is None or when is None or m.start <= when) for m in w.mg_therapy)


def _in_text(name: str) -> str:
    """A knowledge-base name inside a sentence: a capital that only starts the name is lowered.

    Acronyms and symbols keep their case ("QT-prolonging drugs", "SGLT2 inhibitors",
    "amphotericin B", "anti-EGFR monoclonal antibodies").
    """
    if len(name) > 1 and name[0].isupper() and name[1].islower():
        return name[0].lower() + name[1:]
    return name


def _lab_input(name: str, lab: Lab) -> InputUsed:
    origin = lab.origin
    # A result reported as a bound is shown as written ("<0.4").
    value = round(lab.value, 4) if lab.comparator is None else f"{lab.comparator}{_fmt(lab.value, 4)}"
    # Positional: name, value, unit, date, source, matched_by (a call by keyword is slower).
    return new_input(name, value, lab.unit, lab.when, origin.resource, origin.matched_by)


def _low_albumin(w: _Work) -> Lab | None:
    """The current albumin when it is below the laboratory's own range (no default range)."""
    albumin = w.latest.get("albumin")
    if albumin is None or albumin.ref_low is None or albumin.value >= albumin.ref_low:
        return None
    return albumin


class _Work:
    """Mutable scratch space of one assessment (never leaves :func:`magstat.core.assess.assess`).

    A plain slotted class (made once per assessment; a dataclass with default factories was
    slower to build).
    """

    __slots__ = (
        "age",
        "alcohol_proxy",
        "current_classes",
        "current_conditions",
        "current_drugs",
        "dri_row",
        "facts",
        "findings",
        "kb",
        "latest",
        "limitations",
        "low_markers",
        "major",
        "mds_taking",
        "mds_unsure",
        "mg_history",
        "mg_labs",
        "mg_therapy",
        "minor",
        "missing",
        "next_steps",
        "oral_magnesium",
        "p",
        "present_signs",
        "recorded_conditions",
        "refuted_signs",
        "safety",
        "severity_reason",
        "specific_signs",
        "stale",
        "supportive_signs",
        "unrecognised_conditions",
        "unrecognised_medications",
    )

    def __init__(self, facts: PatientFacts, kb: KnowledgeBase, p: Prepared) -> None:
        self.facts = facts
        self.kb = kb
        self.p = p
        self.age: float | None = None
        self.latest: dict[str, Lab] = {}
        self.stale: dict[str, Lab] = {}
        self.findings: list[Finding] = []
        self.next_steps: dict[str, Action] = {}
        self.safety: dict[str, Action] = {}
        self.limitations: dict[str, Action] = {}
        self.missing: list[str] = []
        self.major: list[str] = []
        self.minor: list[str] = []
        self.specific_signs: list[str] = []
        self.supportive_signs: list[str] = []
        self.present_signs: set[str] = set()
        self.current_conditions: set[str] = set()
        self.recorded_conditions: dict[str, list[ConditionFact]] = {}
        """Current conditions that lower or raise magnesium -> their entries, in record order."""
        self.current_classes: dict[str, list[Medication]] = {}
        self.current_drugs: set[str] = set()
        """The drug ids of current medications."""
        self.mds_taking: dict[str, list[Medication]] = {"diuretic": [], "ppi": []}
        """MDS medication component -> the current medications that count for it."""
        self.mds_unsure: set[str] = set()
        """MDS medication components of medications that may be current (current unknown)."""
        self.dri_row: DriRow | None = None
        """The DRI row of the patient's life stage (found by the intake step; ``None`` without an age)."""
        self.low_markers: list[str] = []
        self.alcohol_proxy = False
        self.mg_history: list[tuple[date | None, float]] = []
        self.mg_labs: list[Lab] = []
        """Every serum magnesium at or before the as-of date, in record order (bounds included)."""
        self.refuted_signs: dict[str, str] = {}
        self.mg_therapy: list[Medication] = []
        self.oral_magnesium: list[str] = []
        """The texts of the magnesium products taken by mouth (counted by the supplements step)."""
        self.severity_reason: str | None = None
        self.unrecognised_medications: dict[str, None] = {}
        """Texts of medications not recognised that may be current (not known to be stopped),
        each once, in the order first met (a dict used as an ordered set)."""
        self.unrecognised_conditions: dict[str, None] = {}
        """Texts of conditions not recognised that may be current (neither resolved nor read as a
        sign), each once, in the order first met."""

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

    def limit_fixed(self, statement_id: str, reason: str) -> None:
        """Like :meth:`limit` for a reason that is a constant text of the rules (never patient text).

        The action is then made once per knowledge base and shared (it is frozen).
        """
        self._act_fixed(self.limitations, statement_id, reason, "routine")

    def step_fixed(
        self, statement_id: str, reason: str, priority: Literal["urgent", "high", "routine"] = "routine"
    ) -> None:
        """Like :meth:`step` for a reason made only of texts of the rules and the knowledge base.

        Never patient text: the action is then made once per knowledge base and shared (it is
        frozen).
        """
        self._act_fixed(self.next_steps, statement_id, reason, priority)

    def _act_fixed(
        self,
        table: dict[str, Action],
        statement_id: str,
        reason: str,
        priority: Literal["urgent", "high", "routine"],
    ) -> None:
        if statement_id in table:
            self._act(table, statement_id, reason, priority)  # a priority raised, if higher
            return
        key = (statement_id, reason, priority)
        made = self.p.fixed_actions.get(key)
        if made is None:
            made = self.p.fixed_actions[key] = self._new_action(statement_id, reason, priority)
        table[statement_id] = made

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
                table[statement_id] = new_action(old.id, old.text, old.reason, old.sources, priority)
            return
        table[statement_id] = self._new_action(statement_id, reason, priority)

    def _new_action(
        self, statement_id: str, reason: str, priority: Literal["urgent", "high", "routine"]
    ) -> Action:
        """The action of a KB statement, with its text and sources, for ``reason``."""
        statement = self.kb.statements.get(statement_id) or self.kb.statement(statement_id)
        return new_action(statement_id, statement.text, reason, statement.sources, priority)
