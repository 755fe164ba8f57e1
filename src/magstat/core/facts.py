"""What is known about a patient: typed, unit-explicit, tri-state facts.

Adapters (patient document, FHIR) build :class:`PatientFacts`; the core never sees raw input.
``None`` always means *unknown*: an absent medication list is not an empty one, an absent sign
is not a sign reported absent.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

__all__ = [
    "AllergyFact",
    "ConditionFact",
    "FoodServing",
    "Lab",
    "Medication",
    "Origin",
    "PatientFacts",
    "Sex",
    "SignFact",
    "SupplementFact",
]

Sex = Literal["female", "male"]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a fact came from, so that a clinician can check it at its source.

    Attributes:
        resource: the resource or document field it was read from (``Observation/123``,
            ``labs[0]``).
        matched_by: how it was recognised (``LOINC 19123-9``, ``RxNorm 7646``,
            ``text "omeprazole"``, ``field``).

    """

    resource: str | None = None
    matched_by: str | None = None


@dataclass(frozen=True, slots=True)
class Lab:
    """One laboratory (or questionnaire) result, converted to its test's canonical unit.

    Attributes:
        test: knowledge-base test id (``serum_mg``, ``serum_creatinine``, ``egfr`` ...).
        value: the value in the test's canonical unit (``unit``).
        unit: the canonical unit of the test.
        when: the date the specimen was taken, or ``None`` if not reported.
        reported_value: the value as reported.
        reported_unit: the unit as reported.
        ref_low: the reporting lab's lower reference limit, canonical unit, if given.
        ref_high: the reporting lab's upper reference limit, canonical unit, if given.
        method: what the result says of its method (for eGFR: the equation), if anything.
        comparator: ``<``, ``<=``, ``>`` or ``>=`` when the laboratory reported only a bound
            ("<0.2 mmol/L": the true value is below ``value``); ``None`` for an exact value.
            The core uses a bound only where it decides the result: a serum magnesium below
            the lower limit of its interval whatever its exact value (or above the upper
            limit); any other bound is shown and not used.

    .. versionchanged:: 0.6.0 ``comparator``.

    """

    test: str
    value: float
    unit: str
    when: date | None = None
    reported_value: float | None = None
    reported_unit: str | None = None
    ref_low: float | None = None
    ref_high: float | None = None
    method: str | None = None
    origin: Origin = field(default_factory=Origin)
    comparator: str | None = None


@dataclass(frozen=True, slots=True)
class Medication:
    """A medication on the patient's list.

    Attributes:
        text: the name as given (drug name, display or code text).
        drugs: knowledge-base drug ids recognised in it (a combination product has several;
            empty when not recognised).
        current: taken at the as-of date; ``None`` if that cannot be told.
        start: when it was started, if known (long-term PPI use depends on it).
        dose: the dose as written, if given.
        route: how it is given (``intravenous``, ``intramuscular``, ``oral`` or the route as
            written), if recorded.
        reason: the indication recorded with it (``reasonCode``), if any.
        dose_mg_per_day: the amount per day in mg, when the structured dosage gives a mass dose
            and a frequency (dose x frequency / period); ``None`` otherwise.
        draft: an order not yet signed (a CDS Hooks draft order): counted as current for its
            risks and safety checks, but it has reached no sample taken so far.

    .. versionchanged:: 0.2.0 ``route``, ``reason`` and ``dose_mg_per_day``.
    .. versionchanged:: 0.10.0 ``draft``.

    """

    text: str
    drugs: tuple[str, ...]
    current: bool | None
    start: date | None = None
    dose: str | None = None
    origin: Origin = field(default_factory=Origin)
    route: str | None = None
    reason: str | None = None
    dose_mg_per_day: float | None = None
    draft: bool = False


@dataclass(frozen=True, slots=True)
class ConditionFact:
    """A condition on the problem list.

    Attributes:
        text: the condition as given.
        condition: knowledge-base condition id if recognised, else ``None``.
        current: active at the as-of date; ``None`` if that cannot be told.
        onset: onset date, if known.

    """

    text: str
    condition: str | None
    current: bool | None
    onset: date | None = None
    origin: Origin = field(default_factory=Origin)
    context: str = "current"
    """Where the record puts it: ``current``, ``negated``, ``historical``, ``hypothetical``,
    ``family`` (from the text, by ConText) or ``resolved``/``inactive`` (from a FHIR status)."""
    trigger: str | None = None
    """What set the context: a ConText trigger phrase or a FHIR element (``clinicalStatus``)."""
    verification: str | None = None
    """FHIR ``verificationStatus`` (``provisional``, ``differential``, ``confirmed`` ...), if given."""
    category: str | None = None
    """FHIR ``category`` (``problem-list-item``, ``encounter-diagnosis``), if given."""
    abatement: date | None = None
    signs: tuple[str, ...] = ()
    """Knowledge-base signs read from this entry (so it is not listed as unrecognised)."""


@dataclass(frozen=True, slots=True)
class SignFact:
    """A sign or symptom reported present (``True``) or reported absent (``False``), in context."""

    sign: str
    present: bool
    origin: Origin = field(default_factory=Origin)
    context: str = "current"
    """``current``, or why it does not count now: ``negated``, ``historical``, ``hypothetical``,
    ``family``, ``chronic`` (a lifelong diagnosis named after the sign). Only a ``current`` sign
    reported present counts; a negated one is also reported absent (``present=False``)."""
    trigger: str | None = None
    """The ConText trigger phrase or FHIR element that set the context."""
    when: date | None = None
    """When it was recorded (onset, recorded or observation date); ``None`` when undated. A
    dated sign counts as current only within ``signs.recent_days`` of the as-of date."""


@dataclass(frozen=True, slots=True)
class SupplementFact:
    """A magnesium supplement or product the patient takes.

    Give ``elemental_mg_per_day`` when the label states elemental magnesium; otherwise
    ``product_mg_per_day`` (the weight of the salt) and the knowledge base's elemental
    percentage of ``form`` is used.
    """

    form: str | None
    text: str
    elemental_mg_per_day: float | None = None
    product_mg_per_day: float | None = None
    origin: Origin = field(default_factory=Origin)


@dataclass(frozen=True, slots=True)
class AllergyFact:
    """An allergy or intolerance the record lists (FHIR ``AllergyIntolerance``).

    Attributes:
        text: the substance as given (code display or text).
        drugs: knowledge-base drug ids recognised in it (empty when not recognised).
        current: active at the as-of date; ``None`` if that cannot be told.
        reaction: the recorded reaction (manifestation), if any.
        kind: ``allergy`` or ``intolerance`` as recorded, if stated.
        criticality: ``low``, ``high`` or ``unable-to-assess`` as recorded, if stated.

    .. versionadded:: 0.7.0

    """

    text: str
    drugs: tuple[str, ...]
    current: bool | None
    reaction: str | None = None
    kind: str | None = None
    criticality: str | None = None
    origin: Origin = field(default_factory=Origin)


@dataclass(frozen=True, slots=True)
class FoodServing:
    """Servings per day of a knowledge-base food (short food-frequency answer)."""

    food: str
    servings_per_day: float


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """Everything known about one patient at one date.

    Attributes:
        as_of: the date the assessment is for; "current" and "recent" are judged against it.
        patient_id: an identifier to echo back (never interpreted).
        birth_date: date of birth; when given, age is computed from it and ``as_of``.
        age_years: age, when no birth date is given.
        sex: sex for reference values (CKD-EPI, DRIs, heavy drinking); ``None`` if unknown.
        pregnant, lactating: tri-state.
        medications: the medication list; ``None`` when no list was available.
        conditions: the problem list; ``None`` when no list was available.
        signs: signs and symptoms reported present or absent; any other sign is unknown.
        labs: results in canonical units, any order.
        chronic_stress: tri-state.
        high_metabolic_demand: strenuous training or other high demand; tri-state.
        diet_mg_per_day: estimated magnesium intake from food, if known.
        food_frequency: short food-frequency answers, used when ``diet_mg_per_day`` is absent.
        supplements: magnesium supplements; ``None`` when not asked.
        loading_dose_mmol, loading_urine_mmol, loading_baseline_urine_mmol: magnesium loading
            test inputs (IV dose, urine magnesium in the collection after it, baseline urine
            over the same time), used when no retention percentage is given as a lab.

    """

    as_of: date
    patient_id: str | None = None
    birth_date: date | None = None
    age_years: float | None = None
    sex: Sex | None = None
    pregnant: bool | None = None
    lactating: bool | None = None
    medications: tuple[Medication, ...] | None = None
    conditions: tuple[ConditionFact, ...] | None = None
    signs: tuple[SignFact, ...] = ()
    labs: tuple[Lab, ...] = ()
    chronic_stress: bool | None = None
    high_metabolic_demand: bool | None = None
    diet_mg_per_day: float | None = None
    food_frequency: tuple[FoodServing, ...] | None = None
    supplements: tuple[SupplementFact, ...] | None = None
    loading_dose_mmol: float | None = None
    loading_urine_mmol: float | None = None
    loading_baseline_urine_mmol: float | None = None
    excluded: tuple[str, ...] = ()
    """Resources or fields left out because they failed checks (lenient reading); each says why."""
    deceased: bool | None = None
    """The record says the patient has died (FHIR ``deceased[x]``); ``None`` when not stated."""
    deceased_date: date | None = None
    """The date of death, when given. A death after ``as_of`` does not count at ``as_of``."""
    allergies: tuple[AllergyFact, ...] | None = None
    """Recorded allergies and intolerances; ``None`` when no list was available.

    .. versionadded:: 0.7.0
    """
