"""The assessment: status, calculators, findings with their basis, next steps, safety.

Everything here is plain frozen data; :func:`Assessment.to_dict` gives the stable JSON
contract of ``magstat assess --format json``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, TypeVar

__all__ = [
    "STATUSES",
    "Action",
    "Assessment",
    "EgfrResult",
    "FemgResult",
    "Finding",
    "InputUsed",
    "IntakeResult",
    "LoadingResult",
    "MdsResult",
    "Relevance",
    "SerumMagnesium",
    "Status",
    "SupplementResult",
]

Status = Literal["excess", "deficient", "likely_deficient", "at_risk", "unlikely", "indeterminate"]

STATUSES: tuple[Status, ...] = (
    "excess",
    "deficient",
    "likely_deficient",
    "at_risk",
    "unlikely",
    "indeterminate",
)

DEFICIT_RANK: dict[str, int] = {
    "unlikely": 0,
    "indeterminate": 1,
    "at_risk": 2,
    "likely_deficient": 3,
    "deficient": 4,
}
"""How strongly a status points to a deficit; ``excess`` stands apart (see ``assess``)."""


T = TypeVar("T")


def _slot_init(cls: type[T]) -> type[T]:
    """Give a frozen, slotted dataclass an ``__init__`` that stores its fields as plain slots.

    The ``__init__`` that ``dataclass(frozen=True)`` writes stores every field with
    ``object.__setattr__``, several times slower than a plain attribute store; one assessment
    builds a few dozen of these objects, so this was a large share of its time. The new
    ``__init__`` gives the object, for the time of the stores, a twin class with the same slots
    and no frozen ``__setattr__`` (two class switches, then one fast store per field); an
    instance of a subclass is filled through the slots' descriptors instead. The class is
    otherwise unchanged: same fields, defaults, equality, hash and repr, and still frozen
    (assigning an attribute raises ``FrozenInstanceError``). Like ``dataclass`` itself, the
    function is generated from source, once per class at import.
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    twin = type(f"_{cls.__name__}Slots", (), {"__slots__": tuple(names), "__module__": cls.__module__})
    env: dict[str, Any] = {"_cls": cls, "_twin": twin, "_set_class": object.__setattr__}
    params: list[str] = []
    fast: list[str] = []
    slow: list[str] = []
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default_factory is not MISSING or not f.init:
            raise TypeError(f"{cls.__name__}.{f.name}: only plain fields and defaults are supported")
        if f.default is MISSING:
            params.append(f.name)
        else:
            env[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        env[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        fast.append(f"      self.{f.name} = {f.name}")
        slow.append(f"      _set_{f.name}(self, {f.name})")
    source = (
        f"def _make({', '.join(env)}):\n"
        f"  def __init__(self, {', '.join(params)}):\n"
        "    if type(self) is _cls:\n"
        "      _set_class(self, '__class__', _twin)\n" + "\n".join(fast) + "\n"
        "      self.__class__ = _cls\n"
        "    else:\n" + "\n".join(slow) + "\n"
        "  return __init__\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, {}, namespace)  # noqa: S102 - generated from the class's own field names
    init = namespace["_make"](**env)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


@_slot_init
@dataclass(frozen=True, slots=True)
class InputUsed:
    """One input a finding used, with where it came from."""

    name: str
    value: str | float | bool | None
    unit: str | None = None
    date: dt.date | None = None
    source: str | None = None
    matched_by: str | None = None
    context: str | None = None
    """For a sign or condition read from a record: its context (``current``, ``negated``,
    ``historical``, ``hypothetical``, ``family``, ``chronic``, ``not_recent`` ...) and the
    trigger that set it (``negated by "denies"``). ``None`` for other inputs."""

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``context`` only where set)."""
        out: dict[str, Any] = {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "date": self.date.isoformat() if self.date else None,
            "source": self.source,
            "matched_by": self.matched_by,
        }
        if self.context is not None:
            out["context"] = self.context
        return out


@_slot_init
@dataclass(frozen=True, slots=True)
class Finding:
    """A statement about the patient with its basis: inputs, rule and cited sources.

    Attributes:
        id: stable identifier (``serum_mg.below_lab_range``, ``drug.ppi``).
        category: ``serum_magnesium``, ``risk_factor``, ``sign``, ``test``, ``calculator``,
            ``diet``, ``supplement``, ``protective``.
        text: the statement in plain clinical language.
        weight: what it contributes: ``deficit``, ``excess``, ``major``, ``minor``,
            ``specific``, ``supportive``, ``nonspecific``, ``reassuring`` or ``info``.
        rule: the rule applied, in words, with its thresholds.
        strength: strength of the evidence behind it.

    """

    id: str
    category: str
    text: str
    weight: str
    rule: str
    inputs: tuple[InputUsed, ...]
    sources: tuple[str, ...]
    strength: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "category": self.category,
            "text": self.text,
            "weight": self.weight,
            "rule": self.rule,
            "strength": self.strength,
            "inputs": [i.to_dict() for i in self.inputs],
            "sources": list(self.sources),
        }


@_slot_init
@dataclass(frozen=True, slots=True)
class Action:
    """A next step or a safety consideration, with the reason it applies to this patient."""

    id: str
    text: str
    reason: str
    sources: tuple[str, ...]
    priority: Literal["urgent", "high", "routine"] = "routine"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "text": self.text,
            "reason": self.reason,
            "priority": self.priority,
            "sources": list(self.sources),
        }


@_slot_init
@dataclass(frozen=True, slots=True)
class MdsResult:
    """Magnesium Depletion Score: components, score from the known ones, band."""

    score: int | None
    complete: bool
    band: Literal["low", "middle", "high"] | None
    components: dict[str, int | None]
    possible_range: tuple[int, int] | None
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "score": self.score,
            "complete": self.complete,
            "band": self.band,
            "components": dict(self.components),
            "possible_range": list(self.possible_range) if self.possible_range else None,
            "sources": list(self.sources),
        }


@_slot_init
@dataclass(frozen=True, slots=True)
class EgfrResult:
    """Kidney function used by the rules.

    ``comparator`` is ``>``, ``>=``, ``<`` or ``<=`` when the laboratory reported only a bound
    (">60"); ``value`` is then the nearest number inside the bound (just above 60 for ">60"), so
    that every rule that compares it with a cut-off the bound decides answers as the bound does.
    A bound is used only where it decides every cut-off of the rules but the MDS's 90.

    .. versionchanged:: 0.9.0 ``comparator``.
    """

    value: float | None
    equation: str | None
    origin: Literal["reported", "computed"] | None
    date: dt.date | None
    inputs: tuple[InputUsed, ...] = ()
    sources: tuple[str, ...] = ()
    comparator: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "value": None if self.value is None else round(self.value, 1),
            "equation": self.equation,
            "origin": self.origin,
            "date": self.date.isoformat() if self.date else None,
            "inputs": [i.to_dict() for i in self.inputs],
            "sources": list(self.sources),
            "comparator": self.comparator,
        }


SerumBand = Literal["below_lab_range", "low_normal", "normal", "above_lab_range"]


@_slot_init
@dataclass(frozen=True, slots=True)
class SerumMagnesium:
    """The most recent serum magnesium, in three units, against both thresholds."""

    mmol_l: float | None
    band: SerumBand | None = None
    mg_dl: float | None = None
    meq_l: float | None = None
    date: dt.date | None = None
    current: bool | None = None
    lab_low: float | None = None
    lab_high: float | None = None
    interval_from: Literal["lab", "default"] | None = None
    evidence_lower: float | None = None
    ctcae_grade: int | None = None
    source: str | None = None
    history: tuple[tuple[dt.date | None, float], ...] = ()
    comparator: str | None = None
    """``<``, ``<=``, ``>`` or ``>=`` when the laboratory reported only a bound that places the
    value below (or above) the interval; ``mmol_l`` is then the bound. ``None`` for an exact value.

    .. versionadded:: 0.6.0
    """

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "mmol_l": _r(self.mmol_l, 3),
            "comparator": self.comparator,
            "mg_dl": _r(self.mg_dl, 2),
            "meq_l": _r(self.meq_l, 2),
            "band": self.band,
            "date": self.date.isoformat() if self.date else None,
            "current": self.current,
            "lab_interval_mmol_l": [_r(self.lab_low, 3), _r(self.lab_high, 3)]
            if self.interval_from
            else None,
            "interval_from": self.interval_from,
            "evidence_based_lower_mmol_l": self.evidence_lower,
            "ctcae_grade": self.ctcae_grade,
            "source": self.source,
            "history": [{"date": d.isoformat() if d else None, "mmol_l": _r(v, 3)} for d, v in self.history],
        }


@_slot_init
@dataclass(frozen=True, slots=True)
class FemgResult:
    """Fractional excretion of magnesium and its reading."""

    percent: float | None
    interpretation: Literal["renal", "extrarenal", "indeterminate"] | None
    inputs: tuple[InputUsed, ...] = ()
    note: str | None = None
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "percent": _r(self.percent, 2),
            "interpretation": self.interpretation,
            "note": self.note,
            "inputs": [i.to_dict() for i in self.inputs],
            "sources": list(self.sources),
        }


@_slot_init
@dataclass(frozen=True, slots=True)
class LoadingResult:
    """Magnesium loading (tolerance) test retention."""

    retention_percent: float | None
    interpretation: Literal["deficient", "borderline", "normal"] | None
    valid: bool | None
    note: str | None = None
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "retention_percent": _r(self.retention_percent, 1),
            "interpretation": self.interpretation,
            "valid": self.valid,
            "note": self.note,
            "sources": list(self.sources),
        }


@_slot_init
@dataclass(frozen=True, slots=True)
class IntakeResult:
    """Dietary magnesium against the life stage's EAR and RDA (or AI)."""

    mg_per_day: float | None
    estimated_from: Literal["reported", "food_frequency"] | None
    life_stage: str | None
    ear_mg: float | None
    rda_mg: float | None
    rda_is_ai: bool
    percent_of_rda: float | None
    below_ear: bool | None
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "mg_per_day": _r(self.mg_per_day, 0),
            "estimated_from": self.estimated_from,
            "life_stage": self.life_stage,
            "ear_mg": self.ear_mg,
            "rda_mg": self.rda_mg,
            "rda_is_ai": self.rda_is_ai,
            "percent_of_rda": _r(self.percent_of_rda, 0),
            "below_ear": self.below_ear,
            "sources": list(self.sources),
        }


@_slot_init
@dataclass(frozen=True, slots=True)
class SupplementResult:
    """Supplemental elemental magnesium against the tolerable upper intake level.

    ``elemental_mg_per_day`` counts the products whose content is known; those whose content
    is not (a product without a dose) are in ``unknown_content``, and the total is then a lower
    bound: ``above_ul`` is ``None`` (unknown) unless the known part alone is above the UL.

    .. versionchanged:: 0.7.0 ``unknown_content``; ``above_ul`` is ``None`` while content is unknown.
    """

    elemental_mg_per_day: float | None
    ul_mg: float | None
    above_ul: bool | None
    not_counted: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    unknown_content: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "elemental_mg_per_day": _r(self.elemental_mg_per_day, 0),
            "ul_mg": self.ul_mg,
            "above_ul": self.above_ul,
            "not_counted": list(self.not_counted),
            "sources": list(self.sources),
            "unknown_content": list(self.unknown_content),
        }


@_slot_init
@dataclass(frozen=True, slots=True)
class Relevance:
    """An outcome domain that matters for this patient, why, and the evidence."""

    domain: str
    name: str
    why: str
    evidence: tuple[dict[str, Any], ...]
    sources: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "domain": self.domain,
            "name": self.name,
            "why": self.why,
            "evidence": [dict(e) for e in self.evidence],
            "sources": list(self.sources),
        }


@_slot_init
@dataclass(frozen=True, slots=True)
class Assessment:
    """The explained assessment of one patient at one date."""

    status: Status
    severity: str | None
    summary: str
    as_of: dt.date
    patient_id: str | None
    age_years: float | None
    sex: str | None
    mds: MdsResult
    egfr: EgfrResult
    serum_magnesium: SerumMagnesium
    femg: FemgResult
    loading_test: LoadingResult
    intake: IntakeResult
    supplements: SupplementResult
    findings: tuple[Finding, ...]
    next_steps: tuple[Action, ...]
    safety: tuple[Action, ...]
    relevance: tuple[Relevance, ...]
    limitations: tuple[Action, ...]
    missing_inputs: tuple[str, ...]
    unrecognised: tuple[str, ...]
    excluded: tuple[str, ...]
    kb_version: str
    kb_sha256: str
    sources: tuple[str, ...] = field(default=())
    deceased: bool = False
    """The patient died at or before ``as_of``: not assessed as living (status indeterminate)."""
    deceased_date: dt.date | None = None
    severity_reason: str | None = None
    """Why the severity is what it is (the value, symptoms, refractory hypokalaemia ...)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``magstat assess --format json`` (see design.md section 3)."""
        return {
            "status": self.status,
            "severity": self.severity,
            "severity_reason": self.severity_reason,
            "summary": self.summary,
            "as_of": self.as_of.isoformat(),
            "patient": {
                "id": self.patient_id,
                "age_years": _r(self.age_years, 1),
                "sex": self.sex,
                "deceased_date": self.deceased_date.isoformat() if self.deceased_date else None,
            },
            "deceased": self.deceased,
            "mds": self.mds.to_dict(),
            "egfr": self.egfr.to_dict(),
            "serum_magnesium": self.serum_magnesium.to_dict(),
            "femg": self.femg.to_dict(),
            "loading_test": self.loading_test.to_dict(),
            "intake": self.intake.to_dict(),
            "supplements": self.supplements.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "next_steps": [a.to_dict() for a in self.next_steps],
            "safety": [a.to_dict() for a in self.safety],
            "relevance": [r.to_dict() for r in self.relevance],
            "limitations": [a.to_dict() for a in self.limitations],
            "missing_inputs": list(self.missing_inputs),
            "unrecognised": list(self.unrecognised),
            "excluded": list(self.excluded),
            "sources": list(self.sources),
            "knowledge_base": {"version": self.kb_version, "sha256": self.kb_sha256},
            "disclaimer": (
                "Decision support, not a diagnosis: review the basis of each finding before acting on it."
            ),
        }


NO_EGFR = EgfrResult(None, None, None, None)
"""The kidney function when nothing gives it (frozen and holding no mutable value: shared)."""
NO_FEMG = FemgResult(None, None)
"""The FEMg when it cannot be computed (frozen, shared)."""
NO_LOADING = LoadingResult(None, None, None)
"""The loading test when none was done (frozen, shared)."""
NO_SUPPLEMENTS = SupplementResult(None, None, None)
"""Supplements when not asked (frozen, shared)."""
NO_SERUM_MG = SerumMagnesium(mmol_l=None)
"""No serum magnesium result at all (frozen, shared)."""


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------------------------
# Fast construction for the rules. An assessment builds a few dozen findings, inputs and
# actions; calling a frozen dataclass stores each field through a descriptor call (and a call
# with keywords also packs them into a dict). These builders fill a plain slotted object of
# the same layout and then give it the frozen class: the object is in every way one that the
# class's own constructor would have made (same fields, equality, hash, repr, still frozen).
# tests/core/test_result_builders.py checks that the layouts and the results stay the same.

_new = object.__new__


class _InputUsedSlots:
    __slots__ = ("context", "date", "matched_by", "name", "source", "unit", "value")
    context: str | None
    date: dt.date | None
    matched_by: str | None
    name: str
    source: str | None
    unit: str | None
    value: str | float | bool | None


class _FindingSlots:
    __slots__ = ("category", "id", "inputs", "rule", "sources", "strength", "text", "weight")
    category: str
    id: str
    inputs: tuple[InputUsed, ...]
    rule: str
    sources: tuple[str, ...]
    strength: str
    text: str
    weight: str


class _ActionSlots:
    __slots__ = ("id", "priority", "reason", "sources", "text")
    id: str
    priority: Literal["urgent", "high", "routine"]
    reason: str
    sources: tuple[str, ...]
    text: str


def new_input(  # noqa: PLR0917 - the fields of InputUsed, in order
    name: str,
    value: str | float | bool | None,
    unit: str | None = None,
    date: dt.date | None = None,
    source: str | None = None,
    matched_by: str | None = None,
    context: str | None = None,
) -> InputUsed:
    """``InputUsed(...)``, faster (same arguments, same object)."""
    o = _new(_InputUsedSlots)
    o.name = name
    o.value = value
    o.unit = unit
    o.date = date
    o.source = source
    o.matched_by = matched_by
    o.context = context
    o.__class__ = InputUsed  # type: ignore[assignment]
    return o  # type: ignore[return-value]


def new_finding(  # noqa: PLR0917 - the fields of Finding, in order
    id: str,
    category: str,
    text: str,
    weight: str,
    rule: str,
    inputs: tuple[InputUsed, ...],
    sources: tuple[str, ...],
    strength: str = "",
) -> Finding:
    """``Finding(...)``, faster (same arguments, same object)."""
    o = _new(_FindingSlots)
    o.id = id
    o.category = category
    o.text = text
    o.weight = weight
    o.rule = rule
    o.inputs = inputs
    o.sources = sources
    o.strength = strength
    o.__class__ = Finding  # type: ignore[assignment]
    return o  # type: ignore[return-value]


def new_action(
    id: str,
    text: str,
    reason: str,
    sources: tuple[str, ...],
    priority: Literal["urgent", "high", "routine"] = "routine",
) -> Action:
    """``Action(...)``, faster (same arguments, same object)."""
    o = _new(_ActionSlots)
    o.id = id
    o.text = text
    o.reason = reason
    o.sources = sources
    o.priority = priority
    o.__class__ = Action  # type: ignore[assignment]
    return o  # type: ignore[return-value]


def _positional_builder(cls: type[T]) -> Callable[..., T]:
    """A builder of ``cls`` that takes every field, positionally, in the class's field order.

    The same as the builders above, generated from the class's fields (as ``dataclass`` and
    :func:`_slot_init` generate their code): a plain slotted twin is filled and given the
    frozen class. A call to the class itself costs the constructor call, the ``__init__`` of
    :func:`_slot_init` and two class switches (each compares the two classes' slots); this
    costs one switch. For the results made once or a few times per assessment (an assessment
    has 28 fields).
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    twin = type(f"_{cls.__name__}Built", (), {"__slots__": tuple(names), "__module__": cls.__module__})
    source = (
        f"def build({', '.join(names)}):\n"
        "  o = _new(_twin)\n" + "".join(f"  o.{name} = {name}\n" for name in names) + "  o.__class__ = _cls\n"
        "  return o\n"
    )
    namespace: dict[str, Any] = {"_new": _new, "_twin": twin, "_cls": cls}
    exec(source, namespace)  # noqa: S102 - generated from the class's own field names
    build: Callable[..., T] = namespace["build"]
    build.__qualname__ = build.__name__ = f"new_{cls.__name__}"
    build.__doc__ = f"``{cls.__name__}(...)`` with every field given positionally, in order, faster."
    return build


new_assessment = _positional_builder(Assessment)
"""``Assessment(...)`` with all 28 fields, positionally (see :func:`_positional_builder`)."""
new_mds = _positional_builder(MdsResult)
"""``MdsResult(...)`` with every field, positionally."""
new_egfr = _positional_builder(EgfrResult)
"""``EgfrResult(...)`` with every field, positionally."""
new_relevance = _positional_builder(Relevance)
"""``Relevance(...)`` with every field, positionally."""
