"""Checks on :class:`PatientFacts` before any rule runs: implausible input is refused.

Adapters check what they read, but the core checks again, so that no surface can hand the
rules a value that failed: a unit that is not canonical, a value outside physiological
possibility, a birth date after the as-of date, an id the knowledge base does not define.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from magstat.core.context import FACT_CONTEXTS
from magstat.core.facts import Lab, PatientFacts
from magstat.core.prepared import Prepared, prepared
from magstat.errors import InvalidInputError
from magstat.kb.schema import KnowledgeBase

__all__ = [
    "COMPARATORS",
    "MAX_AGE_YEARS",
    "all_plausible",
    "check_comparator",
    "check_conditions",
    "check_entries",
    "check_facts",
    "check_labs",
    "check_medications",
    "check_other_entries",
    "check_person",
    "is_finite",
    "lab_error",
    "lab_plausible",
]

MAX_AGE_YEARS = 130.0
"""Oldest plausible age (project choice, source MAGSTAT): beyond it a birth date is a typo."""

_NUMBER_TYPES = (float, int)

COMPARATORS = frozenset({"<", "<=", ">", ">="})
"""The bounds a result may carry instead of an exact value (FHIR ``Quantity.comparator``)."""


def _known_comparator(value: object) -> bool:
    """Whether ``value`` may stand as a result's comparator: absent, or one of :data:`COMPARATORS`."""
    return value is None or (type(value) is str and value in COMPARATORS)


def check_comparator(field: str, value: object) -> str | None:
    """A result's comparator as given, or the error that names ``field``, the value and what is allowed.

    Raises:
        InvalidInputError: ``value`` is neither absent nor one of :data:`COMPARATORS`.

    .. versionadded:: 0.6.0

    """
    if not _known_comparator(value):
        raise InvalidInputError(
            field, "unknown comparator", value=value, allowed=", ".join(sorted(COMPARATORS)) + " or absent"
        )
    return value  # type: ignore[return-value]


_MAX_MG_PER_DAY = 10_000.0
"""Plausibility limit for diet and supplement amounts, mg/day (project choice, MAGSTAT)."""


def _where(field: str, resource: str | None) -> str:
    return f"{field} ({resource})" if resource else field


def is_finite(value: float) -> bool:
    """``math.isfinite``, false for an integer no double holds (``10**400``) instead of raising."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _number(field: str, value: float, low: float, high: float, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not is_finite(value):
        raise InvalidInputError(field, "must be a finite number", value=value, allowed=allowed)
    if not low <= value <= high:
        raise InvalidInputError(field, "physiologically implausible value", value=value, allowed=allowed)


def check_facts(facts: PatientFacts, kb: KnowledgeBase, p: Prepared | None = None) -> None:
    """Refuse facts that the rules must not interpret.

    Args:
        facts: the facts to check.
        kb: the knowledge base they refer to.
        p: ``kb``'s prepared tables, when the caller holds them already.

    Raises:
        InvalidInputError: naming the field, the value and what is allowed.

    """
    check_person(facts)
    check_labs(facts, kb, (p or prepared(kb)).lab_limits)
    check_entries(facts, kb)


def check_person(facts: PatientFacts) -> None:
    """The first part of :func:`check_facts`: birth date, age and sex."""
    if facts.birth_date is not None:
        if facts.birth_date > facts.as_of:
            raise InvalidInputError(
                "birth_date",
                "is after the as-of date",
                value=facts.birth_date.isoformat(),
                allowed=f"a date on or before {facts.as_of.isoformat()}",
            )
        if (facts.as_of - facts.birth_date).days / 365.2425 > MAX_AGE_YEARS:
            raise InvalidInputError(
                "birth_date",
                "gives an implausible age",
                value=facts.birth_date.isoformat(),
                allowed=f"an age of at most {MAX_AGE_YEARS:.0f} years",
            )
    if facts.age_years is not None:
        _number("age_years", facts.age_years, 0, MAX_AGE_YEARS, f"0 to {MAX_AGE_YEARS:.0f} years")
    if facts.sex not in (None, "female", "male"):
        raise InvalidInputError("sex", "unknown value", value=facts.sex, allowed="female, male or absent")


def check_labs(
    facts: PatientFacts, kb: KnowledgeBase, limits: Mapping[str, tuple[str, float, float]]
) -> bool:
    """The results' part of :func:`check_facts`: the first implausible result is refused.

    The whole record is tested in one fast pass; only when it fails are the results checked
    one by one, in record order, so that the error names the first that fails.

    Returns:
        Whether the fast pass held: every result plausible and exact (no ``comparator``).

    Raises:
        InvalidInputError: naming the result, its value and what is allowed.

    .. versionchanged:: 0.6.0 returns whether the fast pass held.

    """
    labs = facts.labs
    if all_plausible(labs, limits):
        return True
    for lab in labs:
        if not lab_plausible(lab, limits):
            lab_error(facts, kb, lab)
    return False


def all_plausible(labs: Iterable[Lab], limits: Mapping[str, tuple[str, float, float]]) -> bool:
    """Whether every result passes :func:`lab_plausible` and is exact (the fast test of a record).

    A record has hundreds of results, nearly all without reference limits, so the limits are
    looked at only when a result has one. The test is conservative: ``False`` means "check
    each result" (:func:`check_labs` then does), not that one is implausible; a result reported
    as a bound (``comparator``) is one to check.

    .. versionchanged:: 0.6.0 a result with a ``comparator`` makes it ``False``.
    """
    try:
        for lab in labs:
            unit, low, high = limits[lab.test]  # an unknown test: KeyError
            value = lab.value
            # Written out for the interpreter: an exact type and two plain comparisons cost
            # fewer steps than a tuple membership and a chained comparison (a long record has
            # hundreds of results).
            if not (
                lab.unit == unit
                and (type(value) is float or type(value) is int)
                and low <= value
                and value <= high
                and lab.comparator is None
            ):
                return False
            if lab.ref_low is not None or lab.ref_high is not None:
                ref_low = lab.ref_low
                ref_high = lab.ref_high
                if not (
                    (low <= ref_high <= high)  # type: ignore[operator]
                    if ref_low is None
                    else (low <= ref_low <= high)
                    if ref_high is None
                    else (low <= ref_low < ref_high <= high)
                ):
                    return False
    except KeyError:
        return False
    return True


def lab_plausible(lab: Lab, limits: Mapping[str, tuple[str, float, float]]) -> bool:
    """Whether one result passes :func:`check_facts` (the fast test; see :func:`lab_error`)."""
    spec = limits.get(lab.test)
    if spec is None or not _known_comparator(lab.comparator):
        return False
    unit, low, high = spec
    value = lab.value
    if lab.unit != unit or type(value) not in _NUMBER_TYPES or not low <= value <= high:
        return False
    ref_low = lab.ref_low
    ref_high = lab.ref_high
    if ref_low is None:
        return ref_high is None or low <= ref_high <= high
    if ref_high is None:
        return low <= ref_low <= high
    return low <= ref_low < ref_high <= high


def lab_error(facts: PatientFacts, kb: KnowledgeBase, lab: Lab) -> None:
    """Raise the error that names what is wrong with a result that failed :func:`lab_plausible`.

    A result that only failed the fast test (a number of a subclass of ``float``, say) passes.
    """
    test = kb.tests.get(lab.test)
    i = facts.labs.index(lab)  # the first equal result, which would have failed first
    field = _where(f"labs[{i}]", lab.origin.resource)
    if test is None:
        raise InvalidInputError(
            f"{field}.test", "unknown test", value=lab.test, allowed=", ".join(sorted(kb.tests))
        )
    check_comparator(f"{field}.comparator", lab.comparator)
    if lab.unit != test.canonical_unit:
        raise InvalidInputError(
            f"{field}.unit",
            "facts must carry the test's canonical unit",
            value=lab.unit,
            allowed=test.canonical_unit,
        )
    allowed = f"{test.plausible_low:g} to {test.plausible_high:g} {test.canonical_unit}"
    _number(f"{field}.value", lab.value, test.plausible_low, test.plausible_high, allowed)
    for name, limit in (("ref_low", lab.ref_low), ("ref_high", lab.ref_high)):
        if limit is not None:
            _number(f"{field}.{name}", limit, test.plausible_low, test.plausible_high, allowed)
    if lab.ref_low is not None and lab.ref_high is not None and lab.ref_low >= lab.ref_high:
        raise InvalidInputError(
            f"{field}.ref_low",
            "reference range low must be below high",
            value=[lab.ref_low, lab.ref_high],
            allowed="low < high",
        )


def check_entries(facts: PatientFacts, kb: KnowledgeBase) -> None:
    """The last part of :func:`check_facts`: medications, conditions, signs, diet, supplements."""
    check_medications(facts, kb)
    check_conditions(facts, kb)
    check_other_entries(facts, kb)


def check_medications(facts: PatientFacts, kb: KnowledgeBase) -> None:
    """The drug ids of the medications (the first part of :func:`check_entries`)."""
    # Every id at once; the entries are searched one by one only to name the one that fails.
    meds = facts.medications or ()
    if meds and not kb.drugs.keys() >= {d for m in meds for d in m.drugs}:
        for i, med in enumerate(meds):
            for drug in med.drugs:
                if drug not in kb.drugs:
                    raise InvalidInputError(
                        _where(f"medications[{i}].drugs", med.origin.resource), "unknown drug id", value=drug
                    )


def check_conditions(facts: PatientFacts, kb: KnowledgeBase) -> None:
    """The condition ids of the problem list (the second part of :func:`check_entries`)."""
    conditions = facts.conditions or ()
    if conditions and not kb.conditions.keys() >= {
        c.condition for c in conditions if c.condition is not None
    }:
        for i, cond in enumerate(conditions):
            if cond.condition is not None and cond.condition not in kb.conditions:
                raise InvalidInputError(
                    _where(f"conditions[{i}].condition", cond.origin.resource),
                    "unknown condition id",
                    value=cond.condition,
                )


def check_other_entries(facts: PatientFacts, kb: KnowledgeBase) -> None:
    """Signs, diet, food frequency, supplements and loading test (the rest of :func:`check_entries`)."""
    for i, sign in enumerate(facts.signs):
        if sign.context not in FACT_CONTEXTS:
            raise InvalidInputError(
                _where(f"signs[{i}].context", sign.origin.resource),
                "unknown context",
                value=sign.context,
                allowed=", ".join(FACT_CONTEXTS),
            )
        if sign.sign not in kb.signs:
            raise InvalidInputError(
                _where(f"signs[{i}]", sign.origin.resource),
                "unknown sign",
                value=sign.sign,
                allowed=", ".join(sorted(kb.signs)),
            )
    if facts.diet_mg_per_day is not None:
        _number("diet_mg_per_day", facts.diet_mg_per_day, 0, _MAX_MG_PER_DAY, "0 to 10000 mg/day")
    for i, serving in enumerate(facts.food_frequency or ()):
        _number(f"food_frequency[{i}].servings_per_day", serving.servings_per_day, 0, 50, "0 to 50")
    for i, supplement in enumerate(facts.supplements or ()):
        field = _where(f"supplements[{i}]", supplement.origin.resource)
        if supplement.form is not None and supplement.form not in kb.supplements:
            raise InvalidInputError(
                f"{field}.form",
                "unknown supplement form",
                value=supplement.form,
                allowed=", ".join(sorted(kb.supplements)),
            )
        for name, amount in (
            ("elemental_mg_per_day", supplement.elemental_mg_per_day),
            ("product_mg_per_day", supplement.product_mg_per_day),
        ):
            if amount is not None:
                _number(f"{field}.{name}", amount, 0, _MAX_MG_PER_DAY, "0 to 10000 mg/day")
    for i, allergy in enumerate(facts.allergies or ()):
        for drug_id in allergy.drugs:
            if drug_id not in kb.drugs:
                raise InvalidInputError(
                    _where(f"allergies[{i}].drugs", allergy.origin.resource),
                    "unknown drug id",
                    value=drug_id,
                    allowed="a drug id of the knowledge base (magstat kb show drugs)",
                )
    if facts.loading_dose_mmol is not None:
        _number("loading_dose_mmol", facts.loading_dose_mmol, 0.1, 200, "0.1 to 200 mmol")
    for name, amount in (
        ("loading_urine_mmol", facts.loading_urine_mmol),
        ("loading_baseline_urine_mmol", facts.loading_baseline_urine_mmol),
    ):
        if amount is not None:
            _number(name, amount, 0, 200, "0 to 200 mmol")
