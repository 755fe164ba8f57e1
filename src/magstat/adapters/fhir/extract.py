"""Read a FHIR R4 Bundle, or a single resource, into :class:`~magstat.core.facts.PatientFacts`.

What is read, and the choices made where FHIR leaves room:

- **Input**: a Bundle of any type (collection, transaction, searchset, batch, document,
  batch-response ...) or one resource. Bundles nested as ``entry.resource`` (a searchset inside
  a batch-response) are flattened, up to three levels. Entries without a ``resource`` (a
  transaction-response, a DELETE) are passed over. References may be ``urn:uuid:<id>``,
  ``Patient/<id>`` or absolute URLs ending in ``Patient/<id>`` (``/_history/..`` dropped).
- **Which patient**: one Patient in the input is taken as the patient. Several Patients need
  ``patient_id``; then only resources whose ``subject`` points to that patient are read.
  Resources without a subject are kept. With a single Patient and no ``patient_id``, a
  resource whose subject is someone else is left out and listed in ``excluded``.
- **Patient**: ``birthDate`` to ``birth_date``; a partial date (``1970``, ``1970-04``) becomes
  its earliest day (1970-01-01, 1970-04-01), the same rule as every other partial date here.
  ``gender`` male/female to ``sex``; other/unknown stay ``None``. ``deceasedDateTime`` on or
  before ``as_of`` (or ``deceasedBoolean`` true) sets ``deceased``; a later date of death is not
  death at ``as_of``.
- **Observation**: ``entered-in-error`` and ``cancelled`` are passed over; so are results dated
  after ``as_of`` (not known then) and results without a value (``dataAbsentReason``). A lab
  test is recognised with :func:`~magstat.core.match.match_test`; its value is converted to the
  test's canonical unit (the UCUM ``code`` when ``system`` is UCUM, else ``unit``) and refused
  when the unit is unknown or the converted value is outside the test's plausible range. A
  result with a comparator (``<0.5``) keeps it (``Lab.comparator``): the core reads a bound only
  where it decides the result and names any other. A ``valueString`` that is only a number with
  an optional comparator and a unit magstat knows ("<0.3 mmol/L") is read as that quantity;
  any other text (no unit, a note after the number) is left out and listed, never refused. A
  test recognised *by name only* whose unit or value does not fit is probably another test:
  it is left out with a note and never refuses the input. The eGFR equation is taken from
  the knowledge-base note of the LOINC code. An Observation recognised as a sign (no value, a
  boolean, or a yes/no or present/absent concept) becomes a :class:`SignFact` with its date; an
  answer of no/absent is context ``negated``; the latest report of each sign wins. Observations
  that name a condition are not read.
- **Condition**: ``verificationStatus`` refuted/entered-in-error are passed over (provisional,
  differential and the rest are read and kept in ``verification``), as are conditions with onset
  (else recorded date) after ``as_of``. ``onset[x]`` and ``abatement[x]`` are read as dateTime,
  Period or Age (Age counted from the birth date). ``current`` comes from ``clinicalStatus``
  (active/recurrence/relapse: true; inactive/remission/resolved: false; absent: unknown),
  overridden by a dated abatement: abated on or before ``as_of`` is not current, abated after it
  was current at ``as_of``. ``category`` is kept. Every condition stays on the list, recognised
  (condition id) or not (``condition=None``). A name found in the text carries its ConText
  context (:mod:`magstat.core.context`): "History of ...", "No ...", "Mother has ..." are kept
  with ``current=False``. Every sign named by the codes or text becomes a :class:`SignFact` with
  its context and date: ``current`` only when the text puts it so and the condition is current;
  otherwise the ConText context, ``chronic`` (a lifelong diagnosis named after the sign, such as
  epilepsy), or the clinical status. A current ``pregnancy``/``lactation`` sets ``pregnant`` /
  ``lactating`` to true; otherwise they stay unknown.
- **MedicationRequest / MedicationStatement**: the drug comes from
  ``medicationCodeableConcept`` or a ``medicationReference`` to a Medication in the bundle or
  in ``contained`` (with its ingredients). Request status active/on-hold is current,
  completed/stopped/cancelled is not, unknown is unknown, entered-in-error/draft are passed
  over, and a request authored after ``as_of`` is passed over. Request ``intent`` order,
  original-order, reflex-order, filler-order or instance-order (or no intent) is an order and
  its status decides; proposal, plan or option is not an order being taken, whatever its
  status: it is listed but not current (a planned PPI is not yet a cause of magnesium loss, and
  proposed magnesium is not magnesium given). A medication whose text names
  every drug in it as stopped or not taken ("omeprazole, discontinued"; ConText, see
  :func:`~magstat.core.match.match_drug`) is not current, whatever its status. Statement status
  active/intended/on-hold is current unless ``effectivePeriod.end`` is before ``as_of``;
  completed/stopped/not-taken is not; entered-in-error is passed over; a statement whose
  effective start is after ``as_of`` is passed over.
- **MedicationAdministration**: one dose given (an infusion, a dose on the ward), read with
  the same drug, route and reason reading as an order. Status in-progress, on-hold and
  completed say the drug was given: it is a current medication when the administration is
  still going (in-progress or on-hold, an ``effectivePeriod`` with no end) or was given within
  the knowledge-base parameter ``medications.administered_within_days`` (1 day) of ``as_of``
  (the day of ``effectiveDateTime``, else of ``effectivePeriod.end``, else of its start);
  given earlier, it is not current; given with no date, current is unknown. Stopped is not
  current; unknown is unknown; not-done and entered-in-error are passed over, and an
  administration that starts after ``as_of`` is passed over. The single ``dosage`` gives the
  route (``dosage.route``, else its text) and the dose as written (``dosage.text``, else the
  dose and rate); no amount per day is derived from one dose. MedicationDispense is not read
  (a fill says nothing about when the drug is taken).
- **Known versus empty lists**: ``medications`` is a tuple (possibly empty) when the input
  holds at least one MedicationRequest, MedicationStatement or MedicationAdministration of the
  patient, and ``None`` (unknown) otherwise; ``conditions`` likewise with Condition. An input
  without medication resources says nothing about medications.
- **Bad input**: a malformed resource, an unknown unit or an implausible value raises
  :class:`~magstat.errors.InvalidInputError` naming the entry, resource and field
  (``Bundle.entry[12] (Observation/abc).valueQuantity.unit``) when ``strict``; otherwise that
  resource is left out and a one-line reason is added to ``PatientFacts.excluded``. No other
  exception escapes. Nothing is logged.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

from magstat.adapters.fhir.flatten import READ_TYPES, FlatViews, ResourceRow, views_for_kb
from magstat.adapters.supplements import supplements_from_medications
from magstat.core import factbuild
from magstat.core.facts import (
    AllergyFact,
    ConditionFact,
    Lab,
    Medication,
    PatientFacts,
    Sex,
    SignFact,
    SupplementFact,
)
from magstat.core.match import (
    LOINC,
    Match,
    canonical_system,
    find_signs,
    match_condition,
    match_drug,
    match_sign,
    match_supplement,
    match_test,
)
from magstat.core.units import allowed_units, parse_unit, to_canonical
from magstat.core.validate import COMPARATORS
from magstat.errors import InvalidInputError
from magstat.kb.schema import KnowledgeBase

__all__ = ["facts_from_fhir", "facts_from_rows", "is_fhir"]

_UCUM = "http://unitsofmeasure.org"
_READ = frozenset(READ_TYPES)
_MAX_NESTING = 3

_OBSERVATION_SKIP = frozenset({"entered-in-error", "cancelled"})
_CLINICAL_STATUS: Mapping[str, bool] = {
    "active": True,
    "recurrence": True,
    "relapse": True,
    "inactive": False,
    "remission": False,
    "resolved": False,
}
_VERIFICATION_SKIP = frozenset({"refuted", "entered-in-error"})
_ALLERGY_STATUS = {"active": True, "inactive": False, "resolved": False}
_REQUEST_STATUS: Mapping[str, bool | None] = {
    "active": True,
    "on-hold": True,
    "completed": False,
    "stopped": False,
    "cancelled": False,
    "unknown": None,
}
_REQUEST_SKIP = frozenset({"entered-in-error", "draft"})
# MedicationRequest.intent: an order (its status decides) or only planned (never current).
_REQUEST_ORDERS = frozenset({"order", "original-order", "reflex-order", "filler-order", "instance-order"})
_REQUEST_PLANNED = frozenset({"proposal", "plan", "option"})
_REQUEST_INTENTS = ", ".join(sorted(_REQUEST_ORDERS | _REQUEST_PLANNED))
_STATEMENT_STATUS: Mapping[str, bool | None] = {
    "active": True,
    "intended": True,
    "on-hold": True,
    "completed": False,
    "stopped": False,
    "not-taken": False,
    "unknown": None,
}
_STATEMENT_SKIP = frozenset({"entered-in-error"})
# MedicationAdministration: given (the window decides whether that is current), not current,
# unknown; not-done and entered-in-error are passed over.
_ADMINISTRATION_GIVEN = frozenset({"in-progress", "on-hold", "completed"})
_ADMINISTRATION_STATUS: Mapping[str, bool | None] = {"stopped": False, "unknown": None}
_ADMINISTRATION_SKIP = frozenset({"not-done", "entered-in-error"})
_ADMINISTERED = "dosage (one)"  # the dosage key of an administration, read as one object
_ADMINISTRATION_ALLOWED = ", ".join(
    sorted(_ADMINISTRATION_GIVEN | set(_ADMINISTRATION_STATUS) | _ADMINISTRATION_SKIP)
)
_GENDER: Mapping[str, Sex | None] = {
    "male": "male",
    "female": "female",
    "other": None,
    "unknown": None,
}

# Answers that say a finding is present or absent: SNOMED CT yes/present/positive and
# no/absent/negative, HL7 v2 table 0136 Y/N, and the same words as text.
_PRESENT_CODES = frozenset({"373066001", "52101004", "10828004", "Y"})
_ABSENT_CODES = frozenset({"373067005", "2667000", "260385009", "N"})
_PRESENT_WORDS = frozenset({"yes", "present", "positive", "true"})
_ABSENT_WORDS = frozenset({"no", "absent", "negative", "false"})

# Leading equation name of a knowledge-base LOINC note ("CKD-EPI 2021 race-free ...").
_EQUATION = re.compile(r"(CKD-EPI(?: \d{4})?|MDRD)\b")
# Exceptions that odd JSON can cause in the readers below; each becomes an InvalidInputError.
_MALFORMED = (
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    IndexError,
    ArithmeticError,
    RecursionError,
)

_Codes = tuple[tuple[str | None, str | None], ...]
_T = TypeVar("_T")


def is_fhir(data: object) -> bool:
    """Tell whether ``data`` looks like a FHIR resource (an object with a string ``resourceType``).

    Args:
        data: parsed JSON or YAML.

    Returns:
        ``True`` for a FHIR resource or Bundle, ``False`` for anything else (such as magstat's
        own patient document).

    .. versionadded:: 0.1.0

    """
    return isinstance(data, Mapping) and isinstance(data.get("resourceType"), str)


def facts_from_fhir(
    data: Mapping[str, Any],
    kb: KnowledgeBase,
    *,
    as_of: date,
    strict: bool = True,
    patient_id: str | None = None,
) -> PatientFacts:
    """Read a FHIR R4 Bundle or single resource into the facts of one patient.

    The choices made where FHIR leaves room (statuses, dates, which lists are known) are
    described in the module documentation.

    Args:
        data: a parsed FHIR R4 resource: a Bundle, or a Patient, Observation, Condition,
            MedicationRequest, MedicationStatement, MedicationAdministration or
            AllergyIntolerance.
        kb: the knowledge base that recognises tests, drugs, conditions and signs.
        as_of: the date of the assessment; later results, orders and diagnoses are not read.
        strict: refuse the whole input at the first bad resource (``True``), or leave bad
            resources out and list them in ``PatientFacts.excluded`` (``False``).
        patient_id: the Patient to read when the input holds several.

    Returns:
        The patient's facts, every one with the resource it came from.

    Raises:
        InvalidInputError: the input is not a FHIR resource; it holds several Patients and no
            ``patient_id``, or not the Patient asked for; or (``strict``) a resource is
            malformed or has an unknown unit or an implausible value. The field names the
            entry, resource and element.

    .. versionadded:: 0.1.0

    """
    if not isinstance(data, Mapping):
        raise InvalidInputError("resourceType", "the input is not a FHIR resource", value=type(data).__name__)
    if not isinstance(data.get("resourceType"), str):
        raise InvalidInputError(
            "resourceType",
            "missing: the input is not a FHIR resource",
            allowed="a FHIR R4 resource",
        )
    try:
        reader = _Reader(kb, as_of, strict)
        return reader.read_rows(reader.collect(data), patient_id)
    except _MALFORMED as exc:  # a safety net: the readers turn these into field errors
        raise InvalidInputError(
            str(data.get("resourceType")), f"malformed FHIR input ({type(exc).__name__})"
        ) from None


def facts_from_rows(
    rows: Sequence[ResourceRow],
    kb: KnowledgeBase,
    *,
    as_of: date,
    strict: bool = True,
    patient_id: str | None = None,
) -> PatientFacts:
    """Read the view rows of one patient's resources into their facts.

    The rows come from the knowledge base's views (:mod:`magstat.adapters.fhir.flatten`),
    evaluated in process (:func:`facts_from_fhir`) or in an SQL engine (``magstat screen``);
    the clinical reading is the same for both. A resource type and id seen twice is read once.

    Args:
        rows: the resources, in input order (referenced Medications may come first).
        kb: the knowledge base that recognises tests, drugs, conditions and signs.
        as_of: the date of the assessment.
        strict: refuse at the first bad resource, or leave it out with a note in ``excluded``.
        patient_id: the Patient to read when the rows hold several.

    Returns:
        The patient's facts.

    Raises:
        InvalidInputError: as :func:`facts_from_fhir`.

    .. versionadded:: 0.3.0

    """
    try:
        return _Reader(kb, as_of, strict).read_rows(rows, patient_id)
    except _MALFORMED as exc:  # a safety net: the readers turn these into field errors
        raise InvalidInputError("rows", f"malformed FHIR input ({type(exc).__name__})") from None


# --------------------------------------------------------------------------------------------
# Reading JSON values; each raises InvalidInputError with the element path.


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def _obj(owner: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any] | None:
    value = owner.get(key)
    if value is None or type(value) is dict or isinstance(value, Mapping):
        return value
    raise InvalidInputError(_path(where, key), f"expected an object, got {_kind(value)}")


def _str(owner: Mapping[str, Any], key: str, where: str = "") -> str | None:
    value = owner.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidInputError(_path(where, key), f"expected a string, got {_kind(value)}")


def _list(owner: Mapping[str, Any], key: str, where: str = "") -> Sequence[Any]:
    value = owner.get(key)
    if value is None:
        return ()
    if isinstance(value, list):
        return value
    raise InvalidInputError(_path(where, key), f"expected a list, got {_kind(value)}")


def _num(owner: Mapping[str, Any], key: str, where: str = "") -> float | None:
    value = owner.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(_path(where, key), "not a number", value=value)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond what a double holds (10**400)
        number = math.inf
    if not math.isfinite(number):
        raise InvalidInputError(_path(where, key), "not a finite number", value=value)
    return number


_DATES: dict[str, date] = {}


def _date(owner: Mapping[str, Any], key: str, where: str = "") -> date | None:
    """Read a FHIR date/dateTime/instant as its date part; a partial date as its first day."""
    value = owner.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        found = _DATES.get(value)
        if found is not None:
            return found
        found = _parse_date(value)
        if found is not None:
            if len(_DATES) >= _MEMO_LIMIT:
                _DATES.clear()
            _DATES[value] = found
            return found
    raise InvalidInputError(
        _path(where, key),
        "not a FHIR date or dateTime",
        value=value,
        allowed="YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a zone",
    )


def _parse_date(value: str) -> date | None:
    n = len(value)
    try:
        if n >= 10 and value[4] == "-" and value[7] == "-" and (n == 10 or value[10] == "T"):
            parts = value[0:4], value[5:7], value[8:10]
            if all(p.isascii() and p.isdigit() for p in parts):
                return date(int(parts[0]), int(parts[1]), int(parts[2]))
        elif n == 7 and value[4] == "-" and value[:4].isdigit() and value[5:].isdigit():
            return date(int(value[:4]), int(value[5:]), 1)
        elif n == 4 and value.isascii() and value.isdigit():
            return date(int(value), 1, 1)
    except ValueError:
        pass
    return None


def _concept(cc: Mapping[str, Any] | None, where: str) -> tuple[_Codes, str | None]:
    """Codings and text of a CodeableConcept; the text falls back to the displays joined."""
    if cc is None:
        return (), None
    simple = _simple_concept(cc)
    if simple is not None:
        return simple
    codes: list[tuple[str | None, str | None]] = []
    displays: list[str] = []
    for i, coding in enumerate(_list(cc, "coding", where)):
        if type(coding) is dict:
            system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
            if (
                (system is None or type(system) is str)
                and (code is None or type(code) is str)
                and (display is None or type(display) is str)
            ):  # the common case, read without the per-field helpers
                codes.append((system, code))
                if display:
                    displays.append(display)
                continue
        at = f"{where}.coding[{i}]"
        if not isinstance(coding, Mapping):
            raise InvalidInputError(at, f"expected an object, got {_kind(coding)}")
        codes.append((_str(coding, "system", at), _str(coding, "code", at)))
        display = _str(coding, "display", at)
        if display:
            displays.append(display)
    text = _str(cc, "text", where)
    if not text and displays:
        text = " / ".join(dict.fromkeys(displays))
    return tuple(codes), text or None


def _simple_concept(cc: Mapping[str, Any]) -> tuple[_Codes, str | None] | None:
    """:func:`_concept` of the usual concept, one coding of strings (read in one go); else ``None``."""
    coding = cc.get("coding")
    if type(coding) is list and len(coding) == 1:
        first, text = coding[0], cc.get("text")
        if type(first) is dict and (text is None or type(text) is str):
            system, code, display = first.get("system"), first.get("code"), first.get("display")
            if (
                (system is None or type(system) is str)
                and (code is None or type(code) is str)
                and (display is None or type(display) is str)
            ):
                return ((system, code),), text or display or None
    return None


def _first_code(codes: _Codes) -> str | None:
    """The first non-empty code."""
    for _, code in codes:
        if code:
            return code
    return None


# SNOMED CT route-of-administration codes (the FHIR R4 example value set for Dosage.route).
_ROUTE_CODES = {
    "47625008": "intravenous",
    "78421000": "intramuscular",
    "26643006": "oral",
    "34206005": "subcutaneous",
    "45890007": "transdermal",
}
_ROUTE_WORDS = (
    ("intravenous", "intravenous"),
    ("intramuscular", "intramuscular"),
    ("by mouth", "oral"),
    ("oral", "oral"),
    ("subcutaneous", "subcutaneous"),
    ("transdermal", "transdermal"),
    ("topical", "transdermal"),
)
_ROUTE_ABBREVIATIONS = {"iv": "intravenous", "im": "intramuscular", "po": "oral", "sc": "subcutaneous"}
# UCUM period units of Timing.repeat, in days.
_PERIOD_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.4375, "a": 365.25}
# Mass units of a dose quantity, in mg.
_DOSE_MG = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001}


def _route(text: str | None, codes: _Codes = ()) -> str | None:
    """The route of a dosage: from its SNOMED CT code, else from the words of its text."""
    for _system, code in codes:
        if code in _ROUTE_CODES:
            return _ROUTE_CODES[code]
    if not text:
        return None
    lower = text.lower()
    for word, route in _ROUTE_WORDS:
        if word in lower:
            return route
    for token in re.findall(r"[a-z]+", lower):
        if token in _ROUTE_ABBREVIATIONS:
            return _ROUTE_ABBREVIATIONS[token]
    return None


def _dose_mg_per_day(dosage: Mapping[str, Any], where: str) -> float | None:
    """Amount per day in mg from a FHIR Dosage: doseAndRate dose x timing.repeat frequency / period.

    ``None`` when the dose is not a mass (tablets, mL) or no frequency is given: nothing is
    guessed. A negative or zero dose, frequency or period is refused.
    """
    dose_mg = None
    for i, dr in enumerate(_list(dosage, "doseAndRate", where)):
        at = f"{where}.doseAndRate[{i}]"
        if not isinstance(dr, Mapping):
            raise InvalidInputError(at, f"expected an object, got {_kind(dr)}")
        quantity = _obj(dr, "doseQuantity", at)
        if quantity is None:
            continue
        value = _num(quantity, "value", f"{at}.doseQuantity")
        unit = (
            _str(quantity, "code", f"{at}.doseQuantity") or _str(quantity, "unit", f"{at}.doseQuantity") or ""
        ).strip()
        if value is None:
            continue
        if value <= 0:
            raise InvalidInputError(f"{at}.doseQuantity.value", "a dose must be positive", value=value)
        factor = _DOSE_MG.get(unit.lower())
        if factor is not None:
            dose_mg = value * factor
            break
    if dose_mg is None:
        return None
    timing = _obj(dosage, "timing", where)
    repeat = _obj(timing, "repeat", f"{where}.timing") if timing is not None else None
    if repeat is None:
        return None
    at = f"{where}.timing.repeat"
    frequency = _num(repeat, "frequency", at)
    period = _num(repeat, "period", at)
    period_unit = _str(repeat, "periodUnit", at)
    if frequency is None and period is None:
        return None
    frequency = 1.0 if frequency is None else frequency
    period = 1.0 if period is None else period
    if frequency <= 0 or period <= 0:
        raise InvalidInputError(at, "frequency and period must be positive", value=f"{frequency}/{period}")
    if period_unit is None:
        return None
    days = _PERIOD_DAYS.get(period_unit)
    if days is None:
        raise InvalidInputError(
            f"{at}.periodUnit", "not a UCUM period unit", value=period_unit, allowed=", ".join(_PERIOD_DAYS)
        )
    return dose_mg * frequency / (period * days)


def _administered_dosage(dosage: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """The dose as written and the route of a MedicationAdministration's ``dosage``.

    The dose is ``dosage.text``, else the dose quantity and the rate ("4 g at 1 g/h"); the route
    comes from ``dosage.route``, else from the text. A dose or rate that is not positive is
    refused, naming the element.
    """
    if dosage is None:
        return None, None
    text = _str(dosage, "text", "dosage")
    route_codes, route_text = _concept(_obj(dosage, "route", "dosage"), "dosage.route")
    parts = []
    dose = _obj(dosage, "dose", "dosage")
    if dose is not None:
        parts.append(_amount(dose, "dosage.dose"))
    rate = _obj(dosage, "rateQuantity", "dosage")
    if rate is not None:
        parts.append("at " + _amount(rate, "dosage.rateQuantity"))
    ratio = _obj(dosage, "rateRatio", "dosage")
    if ratio is not None:
        numerator = _obj(ratio, "numerator", "dosage.rateRatio")
        denominator = _obj(ratio, "denominator", "dosage.rateRatio")
        if numerator is not None and denominator is not None:
            over = _amount(denominator, "dosage.rateRatio.denominator")
            parts.append(f"at {_amount(numerator, 'dosage.rateRatio.numerator')} per {over}")
    shown = text or " ".join(p for p in parts if p) or None
    return shown, _route(route_text, route_codes) or _route(text)


def _amount(quantity: Mapping[str, Any], where: str) -> str:
    """A Quantity as written ("4 g"); a value that is not positive is refused."""
    value = _num(quantity, "value", where)
    unit = _str(quantity, "unit", where) or _str(quantity, "code", where) or ""
    if value is None:
        return unit
    if value <= 0:
        raise InvalidInputError(f"{where}.value", "a dose or rate must be positive", value=value)
    return f"{value:g} {unit}".strip()


def _code_words(codes: _Codes) -> str | None:
    """Name an entry that has codes but no text (``http://snomed.info/sct 123``)."""
    for system, code in codes:
        if code:
            return f"{system} {code}" if system else code
    return None


def _ref_key(reference: str) -> tuple[str | None, str]:
    """Normalise a reference to (resource type or ``None``, id)."""
    if reference.startswith("urn:"):  # urn:uuid:<id>, urn:oid:<id>
        return None, reference.rsplit(":", 1)[-1]
    parts = [p for p in reference.split("?", 1)[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, reference


_NUMBER_TEXT = re.compile(
    r"\s*(?P<comparator><=|>=|<|>)?\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>[^\s\d<>=].*?)?\s*"
)
"""A result written as text: an optional comparator, a number with a decimal point, an optional unit."""


def _quantity_unit(q: Mapping[str, Any], where: str) -> tuple[str | None, str]:
    """Return the unit of a Quantity and its element: the UCUM code first, else ``unit``."""
    code = _str(q, "code", where)
    if code and _str(q, "system", where) == _UCUM:
        return code, _path(where, "code")
    unit = _str(q, "unit", where)
    if unit:
        return unit, _path(where, "unit")
    if code:
        return code, _path(where, "code")
    return None, _path(where, "unit")


# --------------------------------------------------------------------------------------------
# Knowledge-base lookups, cached per knowledge-base content.

_Matcher = Callable[[KnowledgeBase, _Codes, str | None], Match]
_MATCHERS: Mapping[str, _Matcher] = {
    "test": match_test,
    "sign": match_sign,
    "condition": match_condition,
    "drug": match_drug,
}
_MEMO_LIMIT = 100_000
"""Entries per memo table; a full table starts again empty (a population's distinct values fit)."""


@dataclass(frozen=True, slots=True)
class _TestInfo:
    equations: Mapping[str, str]  # LOINC code -> the equation its note names (eGFR)
    unitless: bool  # a score or count: a missing unit means the canonical one


@dataclass(frozen=True, slots=True)
class _ConditionCode:
    """What a Condition's code and text say, whatever the resource: read once per distinct pair."""

    found: Match  # the condition it names
    signs: tuple[Match, ...]  # the signs it names
    sign_ids: tuple[str, ...]  # their ids, first of each, once
    name: str  # what the condition is called


class _Memo:
    """The knowledge base's answers for the distinct values a population repeats, per knowledge base.

    A record names the same tests, diagnoses and drugs again and again, and a population the
    same few thousand: each answer (a match, the ConText reading of a diagnosis, a unit
    conversion) is computed once per distinct input and kept, each table bounded by
    :data:`_MEMO_LIMIT`. The tables of one knowledge base never answer for another.
    """

    __slots__ = (
        "canonical",
        "conditions",
        "kb",
        "matches",
        "observation_used",
        "observations",
        "signs",
        "supplements",
        "tests",
    )

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.matches: dict[str, dict[tuple[_Codes, str | None], Match]] = {k: {} for k in _MATCHERS}
        self.signs: dict[tuple[_Codes, str | None], tuple[Match, ...]] = {}
        self.tests: dict[str, _TestInfo] = {}
        self.observation_used: dict[tuple[Any, ...], bool] = {}
        self.canonical: dict[tuple[str, float, str], float] = {}
        self.conditions: dict[tuple[_Codes, str | None], _ConditionCode] = {}
        self.supplements: dict[str | None, Match] = {}
        self.observations: dict[tuple[_Codes, str | None], tuple[Match, Match | None]] = {}

    def match(self, kind: str, codes: _Codes, text: str | None) -> Match:
        """Call a core matcher once per distinct (codes, text)."""
        table = self.matches[kind]
        key = (codes, text)
        found = table.get(key)
        if found is None:
            if len(table) >= _MEMO_LIMIT:
                table.clear()
            found = table[key] = _MATCHERS[kind](self.kb, codes, text)
        return found

    def observation_match(self, codes: _Codes, text: str | None) -> tuple[Match, Match | None]:
        """The test an Observation's code names, else the sign (``None`` when it names a test)."""
        key = (codes, text)
        found = self.observations.get(key)
        if found is None:
            test = self.match("test", codes, text)
            found = (test, None if test else self.match("sign", codes, text))
            if len(self.observations) >= _MEMO_LIMIT:
                self.observations.clear()
            self.observations[key] = found
        return found

    def supplement(self, text: str | None) -> Match:
        """:func:`match_supplement` once per distinct text."""
        found = self.supplements.get(text)
        if found is None:
            if len(self.supplements) >= _MEMO_LIMIT:
                self.supplements.clear()
            found = self.supplements[text] = match_supplement(self.kb, text)
        return found

    def find_signs(self, codes: _Codes, text: str | None) -> tuple[Match, ...]:
        """:func:`find_signs` once per distinct (codes, text)."""
        key = (codes, text)
        found = self.signs.get(key)
        if found is None:
            if len(self.signs) >= _MEMO_LIMIT:
                self.signs.clear()
            found = self.signs[key] = find_signs(self.kb, codes, text)
        return found

    def condition(self, codes: _Codes, text: str | None) -> _ConditionCode:
        """The condition and signs a Condition's code and text name, once per distinct pair."""
        key = (codes, text)
        found = self.conditions.get(key)
        if found is None:
            signs = self.find_signs(codes, text)
            found = _ConditionCode(
                self.match("condition", codes, text),
                signs,
                tuple(dict.fromkeys(m.ids[0] for m in signs)),
                text or _code_words(codes) or "unnamed condition",
            )
            if len(self.conditions) >= _MEMO_LIMIT:
                self.conditions.clear()
            self.conditions[key] = found
        return found

    def test_info(self, test_id: str) -> _TestInfo:
        """LOINC notes and whether a missing unit means the canonical one, per test."""
        info = self.tests.get(test_id)
        if info is None:
            test = self.kb.tests[test_id]
            unit = parse_unit(test.canonical_unit)
            equations = {c.code: _EQUATION.match(c.note) for c in test.loinc if c.note}
            info = self.tests[test_id] = _TestInfo(
                {code: found.group(1) for code, found in equations.items() if found},
                unit is not None and unit.dimension in ("score", "drinks"),
            )
        return info

    def to_canonical(self, test_id: str, value: float, unit: str) -> float:
        """:func:`to_canonical` once per distinct (test, value, unit); errors are not kept."""
        if not value:  # 0.0 and -0.0 are equal keys but not equal results
            return to_canonical(self.kb, test_id, value, unit)
        key = (test_id, value, unit)
        found = self.canonical.get(key)
        if found is None:
            found = to_canonical(self.kb, test_id, value, unit)
            if len(self.canonical) >= _MEMO_LIMIT:
                self.canonical.clear()
            self.canonical[key] = found
        return found

    def observation_code_used(self, code: Mapping[str, Any]) -> bool:
        """Whether an Observation ``code`` (an object) names a test or sign, or is malformed.

        ``False`` means: well-formed, and the reader recognises nothing in it.
        """
        coding = code.get("coding")
        key: tuple[Any, ...] | None = None
        if type(coding) is list and len(coding) == 1 and type(coding[0]) is dict:
            first = coding[0]
            # The whole input of the reading of a one-coding concept; unhashable values
            # (a list where a string belongs) are malformed and go the long way.
            key = (first.get("system"), first.get("code"), first.get("display"), code.get("text"))
            try:
                found = self.observation_used.get(key)
            except TypeError:
                key = found = None
            if found is not None:
                return found
        try:
            codes, text = _concept(code, "code")
        except InvalidInputError:
            used = True
        else:
            used = bool(codes or text) and bool(
                self.match("test", codes, text) or self.match("sign", codes, text)
            )
        if key is not None:
            if len(self.observation_used) >= _MEMO_LIMIT:
                self.observation_used.clear()
            self.observation_used[key] = used
        return used


_MEMOS: dict[str, _Memo] = {}


def _memo(kb: KnowledgeBase) -> _Memo:
    """The memo tables of ``kb`` (by content), a few knowledge bases at most."""
    found = _MEMOS.get(kb.sha256)
    if found is None or found.kb is not kb:
        if len(_MEMOS) >= 8:
            _MEMOS.clear()
        found = _MEMOS[kb.sha256] = _Memo(kb)
    return found


# --------------------------------------------------------------------------------------------
# The reader

_CHOICE_KEYS = {p: (f"{p}DateTime", f"{p}Period", f"{p}Age") for p in ("onset", "abatement")}


_Item = ResourceRow


@dataclass(frozen=True, slots=True)
class _DatedSign:
    when: date | None
    fact: SignFact


@dataclass(frozen=True, slots=True)
class _Demographics:
    patient_id: str | None
    birth_date: date | None
    sex: Sex | None
    deceased: bool | None = None
    deceased_date: date | None = None


_Fact = Lab | Medication | ConditionFact | SignFact | AllergyFact | _DatedSign


class _Reader:
    """Reads one input; holds the state of that one call only."""

    def __init__(self, kb: KnowledgeBase, as_of: date, strict: bool) -> None:
        self.kb = kb
        self.as_of = as_of
        self.strict = strict
        self.excluded: list[str] = []
        self.patient_keys: frozenset[str] | None = None
        self.note_other_patients = True
        self.medications_by_ref: dict[str, Mapping[str, Any]] = {}
        self.birth_date: date | None = None
        self.flat: FlatViews = views_for_kb(kb)
        self.memo = _memo(kb)
        self.used_codes = self.memo.observation_used
        self.unused_ids: set[str] = set()  # ids of Observations left out before their rows
        self.subjects: dict[str, bool] = {}  # subject reference -> about the chosen patient

    # -- input structure ---------------------------------------------------------------------

    def _bad(self, err: InvalidInputError, label: str) -> None:
        """Refuse the input (strict) or note the left-out part (lenient)."""
        if self.strict:
            raise err
        self.excluded.append(f"{label}: {err.problem}" if err.field == label else f"{label}: {err.message}")

    def collect(self, data: Mapping[str, Any]) -> list[_Item]:
        """The rows of the resources of a Bundle (nested ones too) or of one resource."""
        rtype = str(data["resourceType"])
        if rtype != "Bundle":
            return [self._row(rtype, data, "", 0, None)] if rtype in _READ else []
        items: list[_Item] = []
        self._walk(data, "Bundle", 0, items)
        return items

    def _row(
        self, rtype: str, resource: Mapping[str, Any], bundle: str, index: int, full_url: str | None
    ) -> _Item:
        """Run the knowledge base's view of ``rtype`` on one resource."""
        try:
            return ResourceRow(rtype, self.flat.row(rtype, resource), bundle, index, full_url)
        except InvalidInputError as err:
            error = err
        except _MALFORMED as exc:
            error = InvalidInputError("", f"malformed {rtype} ({type(exc).__name__})")
        rid = resource.get("id")
        values = {"id": rid} if isinstance(rid, str) else {}
        return ResourceRow(rtype, values, bundle, index, full_url, error=error)

    def _walk(
        self,
        bundle: Mapping[str, Any],
        where: str,
        depth: int,
        items: list[_Item],
    ) -> None:
        entries = bundle.get("entry")
        if entries is None:
            return
        if not isinstance(entries, list):
            field = f"{where}.entry"
            self._bad(InvalidInputError(field, f"expected a list, got {_kind(entries)}"), field)
            return
        for i, entry in enumerate(entries):
            if type(entry) is dict:
                # The usual entry, a resource with a type: read here; anything else below.
                resource = entry.get("resource")
                if type(resource) is dict:
                    rtype = resource.get("resourceType")
                    if type(rtype) is str and rtype and rtype != "Bundle":
                        if rtype not in _READ or (
                            rtype == "Observation" and self._observation_unused(resource)
                        ):
                            continue
                        full_url = entry.get("fullUrl")
                        items.append(
                            self._row(
                                rtype, resource, where, i, full_url if isinstance(full_url, str) else None
                            )
                        )
                        continue
            if type(entry) is not dict and not isinstance(entry, Mapping):
                field = f"{where}.entry[{i}]"
                self._bad(InvalidInputError(field, f"expected an object, got {_kind(entry)}"), field)
                continue
            resource = entry.get("resource")
            if resource is None:
                continue
            is_map = type(resource) is dict or isinstance(resource, Mapping)
            rtype = resource.get("resourceType") if is_map else None
            if not isinstance(rtype, str) or not rtype:
                field = f"{where}.entry[{i}].resource"
                problem = "has no resourceType" if isinstance(resource, Mapping) else "is not an object"
                self._bad(InvalidInputError(field, problem), field)
                continue
            if rtype == "Bundle":
                field = f"{where}.entry[{i}].resource"
                if depth >= _MAX_NESTING:
                    self._bad(InvalidInputError(field, "Bundles nested too deeply"), field)
                else:
                    self._walk(resource, field, depth + 1, items)
                continue
            if rtype not in _READ:
                continue
            if rtype == "Observation" and self._observation_unused(resource):
                continue
            full_url = entry.get("fullUrl")
            items.append(
                self._row(rtype, resource, where, i, full_url if isinstance(full_url, str) else None)
            )

    def _observation_unused(self, resource: Mapping[str, Any]) -> bool:
        """Whether the reader would pass over this Observation silently: its row is not needed.

        Most Observations of a record are vital signs, surveys and panels the knowledge base
        does not know; making their rows is most of the work of a large Bundle. One is left
        out here only when :meth:`_observation` would return nothing for it without a note:
        a skipped status, or a well-formed ``code`` that names no test or sign. A resource
        type and id is read once, the first time it is seen; a later Observation with the id
        of one left out here is therefore left out too (:attr:`unused_ids`).
        """
        rid = resource.get("id")
        if type(rid) is str and rid in self.unused_ids:
            return True
        code = resource.get("code")
        if code is None:
            unused = True
        elif type(code) is dict:
            coding = code.get("coding")
            used = None
            if type(coding) is list and len(coding) == 1 and type(coding[0]) is dict:
                first = coding[0]  # observation_code_used's memo, looked up here: most are hits
                try:
                    used = self.used_codes.get(
                        (first.get("system"), first.get("code"), first.get("display"), code.get("text"))
                    )
                except TypeError:
                    used = None
            unused = not (self.memo.observation_code_used(code) if used is None else used)
        else:
            unused = False  # malformed: the reader names what is wrong, unless the status skips it
        if not unused:
            status = resource.get("status")
            if type(status) is not str or status not in _OBSERVATION_SKIP:
                return False
        if type(rid) is str and rid:
            self.unused_ids.add(rid)
        return True

    # -- the patient -------------------------------------------------------------------------

    @staticmethod
    def _identity(item: _Item) -> set[str]:
        keys: set[str] = set()
        rid = item.values.get("id")
        if isinstance(rid, str) and rid:
            keys.add(rid)
        if item.full_url:
            keys.add(_ref_key(item.full_url)[1])
        return keys or {f"#{item.bundle}.entry[{item.index}]"}

    def _choose_patient(self, patients: list[_Item], patient_id: str | None) -> _Item | None:
        if patient_id is not None:
            self.note_other_patients = False
            chosen = [p for p in patients if patient_id in self._identity(p)]
            if patients and not chosen:
                raise InvalidInputError(
                    "patient_id", "no Patient with this id in the input", value=patient_id
                )
            patient = chosen[0] if chosen else None
            keys = self._identity(patient) if patient else set()
            self.patient_keys = frozenset(keys | {patient_id})
            return patient
        identities: list[set[str]] = []
        for item in patients:
            keys = self._identity(item)
            if not any(keys & known for known in identities):
                identities.append(keys)
        if len(identities) > 1:
            raise InvalidInputError(
                "Bundle.entry",
                "more than one Patient; pass a patient id",
                value=f"{len(identities)} Patients",
                allowed="a patient id naming one of them",
            )
        if patients:
            self.patient_keys = frozenset(self._identity(patients[0]))
            return patients[0]
        return None

    def _for_patient(self, resource: Mapping[str, Any]) -> bool:
        """Whether the resource is about the chosen patient (or cannot tell: kept)."""
        if self.patient_keys is None:
            return True
        subject = _obj(resource, "subject")
        if subject is None:
            return True
        reference = _str(subject, "reference", "subject")
        if not reference or reference.startswith("#"):
            return True
        found = self.subjects.get(reference)
        if found is None:
            rtype, rid = _ref_key(reference)
            found = self.subjects[reference] = rtype in (None, "Patient") and rid in self.patient_keys
        return found

    def _about_patient(self, resource: Mapping[str, Any]) -> bool:
        """Like :meth:`_for_patient`, but a malformed subject counts as this patient's."""
        try:
            return self._for_patient(resource)
        except InvalidInputError:
            return True

    def _patient(self, item: _Item) -> _Demographics:
        res = item.values
        birth = _date(res, "birthDate")
        if birth is not None and birth > self.as_of:
            raise InvalidInputError(
                "birthDate",
                "the birth date is after the as-of date",
                value=res.get("birthDate"),
                allowed=f"a date on or before {self.as_of.isoformat()}",
            )
        gender = _str(res, "gender")
        if gender is not None and gender not in _GENDER:
            raise InvalidInputError(
                "gender",
                "not a FHIR administrative gender",
                value=gender,
                allowed=", ".join(_GENDER),
            )
        rid = _str(res, "id")
        deceased, died = self._deceased(res)
        return _Demographics(rid or None, birth, _GENDER.get(gender) if gender else None, deceased, died)

    def _deceased(self, res: Mapping[str, Any]) -> tuple[bool | None, date | None]:
        """``deceased[x]``: a date at or before ``as_of`` is death; a later date is not yet."""
        if "deceasedDateTime" in res:
            died = _date(res, "deceasedDateTime")
            if died is None:
                return None, None
            return died <= self.as_of, died
        if "deceasedBoolean" in res:
            flag = res["deceasedBoolean"]
            if not isinstance(flag, bool):
                raise InvalidInputError("deceasedBoolean", f"expected true/false, got {_kind(flag)}")
            return flag, None
        return None, None

    # -- the whole input ---------------------------------------------------------------------

    def read_rows(self, rows: Sequence[_Item], patient_id: str | None) -> PatientFacts:
        items: list[_Item] = []
        seen: set[tuple[str, str]] = set()
        for row in rows:
            rid = row.values.get("id")
            if isinstance(rid, str) and rid:
                if (row.rtype, rid) in seen:  # the same resource twice (a searchset _include)
                    continue
                seen.add((row.rtype, rid))
            items.append(row)
        patients = [item for item in items if item.rtype == "Patient"]
        patient = self._choose_patient(patients, patient_id)
        for item in items:
            if item.rtype == "Medication":
                self._index_medication(item)

        demographics = _Demographics(patient_id, None, None)
        if patient is not None:
            found = self._guarded(patient, self._patient)
            if found is not None:
                demographics = _Demographics(
                    found.patient_id or patient_id,
                    found.birth_date,
                    found.sex,
                    found.deceased,
                    found.deceased_date,
                )
        self.birth_date = demographics.birth_date

        handlers: Mapping[str, Callable[[_Item], list[_Fact]]] = {
            "Observation": self._observation,
            "Condition": self._condition,
            "MedicationRequest": self._medication_request,
            "MedicationStatement": self._medication_statement,
            "MedicationAdministration": self._medication_administration,
            "AllergyIntolerance": self._allergy,
        }
        labs: list[Lab] = []
        medications: list[Medication] = []
        conditions: list[ConditionFact] = []
        signs: list[SignFact] = []
        observed: dict[str, _DatedSign] = {}
        allergies: list[AllergyFact] = []
        has_medications = has_conditions = has_allergies = False
        for item in items:
            rtype = item.rtype
            handler = handlers.get(rtype)
            if handler is None:
                continue
            # As _guarded, with the usual case (no error) first.
            if item.error is not None:
                self._failed(item, item.error)
                continue
            try:
                facts = handler(item)
            except InvalidInputError as err:
                self._failed(item, err)
                continue
            except _MALFORMED as exc:
                self._failed(item, InvalidInputError("", f"malformed {rtype} ({type(exc).__name__})"))
                continue
            if rtype == "Condition":
                has_conditions = has_conditions or self._about_patient(item.values)
            elif rtype == "AllergyIntolerance":
                has_allergies = has_allergies or self._about_patient(item.values)
            elif rtype != "Observation":
                has_medications = has_medications or self._about_patient(item.values)
            for fact in facts:
                if isinstance(fact, ConditionFact):
                    conditions.append(fact)
                elif isinstance(fact, Lab):
                    labs.append(fact)
                elif isinstance(fact, SignFact):
                    signs.append(fact)
                elif isinstance(fact, Medication):
                    medications.append(fact)
                elif isinstance(fact, AllergyFact):
                    allergies.append(fact)
                else:
                    old = observed.get(fact.fact.sign)
                    if old is None or (fact.when or date.min) >= (old.when or date.min):
                        observed[fact.fact.sign] = fact
        signs.extend(dated.fact for dated in observed.values())

        supplements = self._supplements(medications)

        def flag(condition_id: str) -> bool | None:
            current = any(c.condition == condition_id and c.current is True for c in conditions)
            return True if current else None

        return PatientFacts(
            as_of=self.as_of,
            patient_id=demographics.patient_id,
            birth_date=demographics.birth_date,
            sex=demographics.sex,
            pregnant=flag("pregnancy"),
            lactating=flag("lactation"),
            medications=tuple(medications) if has_medications else None,
            conditions=tuple(conditions) if has_conditions else None,
            allergies=tuple(allergies) if has_allergies else None,
            signs=tuple(signs),
            labs=tuple(labs),
            supplements=supplements,
            excluded=tuple(self.excluded),
            deceased=demographics.deceased,
            deceased_date=demographics.deceased_date,
        )

    def _supplements(self, medications: list[Medication]) -> tuple[SupplementFact, ...] | None:
        """Magnesium products on the list, as supplement facts (shared with the document reader)."""
        return supplements_from_medications(self.kb, medications, self.memo.supplement)

    def _guarded(self, item: _Item, handler: Callable[[_Item], _T]) -> _T | None:
        """Run a handler; a failure refuses the input or leaves this resource out."""
        try:
            if item.error is not None:
                raise item.error
            return handler(item)
        except InvalidInputError as err:
            failure = err
        except _MALFORMED as exc:
            failure = InvalidInputError("", f"malformed {item.rtype} ({type(exc).__name__})")
        self._failed(item, failure)
        return None

    def _failed(self, item: _Item, failure: InvalidInputError) -> None:
        """A handler failed: refuse the input (strict) or leave this resource out with a note."""
        if item.rtype != "Patient" and not self._about_patient(item.values):
            return  # another patient's resource: none of our business
        if self.strict:
            raise failure.at(item.where) from None
        reason = failure.message if failure.field else failure.problem
        self.excluded.append(f"{item.note_label}: {reason}")

    def _other_patient(self, item: _Item) -> list[_Fact]:
        if self.note_other_patients:
            self.excluded.append(f"{item.note_label}: subject is not the Patient of this input")
        return []

    # -- Observation -------------------------------------------------------------------------

    def _observation(self, item: _Item) -> list[_Fact]:
        res = item.values
        status = res.get("status")
        if isinstance(status, str) and status in _OBSERVATION_SKIP:
            return []
        codes, text = _concept(_obj(res, "code"), "code")
        if not codes and not text:
            return []
        test, sign = self.memo.observation_match(codes, text)
        if not test and not sign:
            return []
        if not self._for_patient(res):
            return self._other_patient(item)
        when = self._observation_date(res)
        if when is not None and when > self.as_of:
            return []  # not known at the as-of date
        if test:
            return self._lab(item, test, codes, when)
        assert sign is not None
        return self._observed_sign(item, sign, when)

    @staticmethod
    def _observation_date(res: Mapping[str, Any]) -> date | None:
        when = _date(res, "effectiveDateTime")
        if when is None:
            period = _obj(res, "effectivePeriod")
            when = _date(period, "start", "effectivePeriod") if period else None
        if when is None:
            when = _date(res, "effectiveInstant")
        if when is None:
            when = _date(res, "issued")
        return when

    def _lab(self, item: _Item, test: Match, codes: _Codes, when: date | None) -> list[_Fact]:
        by_name = (test.matched_by or "").startswith("text")
        try:
            lab = self._lab_value(item, test.ids[0], test.matched_by, codes, when)
        except InvalidInputError as err:
            if not by_name:
                raise
            # Recognised by name only: a unit or value that does not fit says it is most
            # likely another test, so it is noted, never refused.
            name = self.kb.tests[test.ids[0]].name
            self.excluded.append(
                f"{item.note_label}: not read as {name} (recognised by name only): {err.message}"
            )
            return []
        return [] if lab is None else [lab]

    def _lab_value(
        self,
        item: _Item,
        test_id: str,
        matched_by: str | None,
        codes: _Codes,
        when: date | None,
    ) -> Lab | None:
        res = item.values
        test = self.kb.tests[test_id]
        info = self.memo.test_info(test_id)
        quantity = _obj(res, "valueQuantity")
        unit: str | None
        comparator = None
        if quantity is not None:
            # A bound ("<0.2") is kept as one; the core reads it only where it decides the result.
            comparator = _str(quantity, "comparator", "valueQuantity") or None
            if comparator is not None and comparator not in COMPARATORS:
                raise InvalidInputError(
                    "valueQuantity.comparator",
                    "not a FHIR quantity comparator",
                    value=comparator,
                    allowed=", ".join(sorted(COMPARATORS)),
                )
            value = _num(quantity, "value", "valueQuantity")
            if value is None:
                return None
            value_field = "valueQuantity.value"
            unit, unit_field = _quantity_unit(quantity, "valueQuantity")
        elif "valueInteger" in res:
            value = _num(res, "valueInteger")
            if value is None:
                return None
            value_field = unit_field = "valueInteger"
            unit = None
        elif isinstance(res.get("valueString"), str) and (
            parsed := _NUMBER_TEXT.fullmatch(res["valueString"])
        ):
            # A number written as text ("<0.3 mmol/L", "0.62 mmol/L"): read as the quantity it
            # states, unit included. Without a unit in the text it is left out, never guessed.
            if parsed["unit"] is None and not info.unitless:
                self.excluded.append(f"{item.note_label}: valueString gives no unit; {test.name} left out")
                return None
            if parsed["unit"] is not None:
                try:
                    self.memo.to_canonical(test_id, float(parsed["value"]), parsed["unit"])
                except InvalidInputError:
                    # Free text ("1.2 mg/dL (L)"): not a unit magstat knows; left out, not refused.
                    self.excluded.append(
                        f"{item.note_label}: valueString unit not recognised; {test.name} left out"
                    )
                    return None
            comparator = parsed["comparator"]
            value = float(parsed["value"])
            value_field = unit_field = "valueString"
            unit = parsed["unit"]
        else:
            # In the view's column order, so that every path names the same one.
            other = next(
                (k for k in self.flat.names["Observation"] if k.startswith("value") and k in res), None
            )
            if other is not None:
                self.excluded.append(f"{item.note_label}: {other} is not a number; {test.name} left out")
            return None  # no value (dataAbsentReason) or not a quantity
        if unit is None:
            if not info.unitless:
                raise InvalidInputError(
                    unit_field,
                    f"no unit given for {test.name}",
                    allowed=", ".join(allowed_units(self.kb, test)),
                )
            unit = test.canonical_unit
        canonical = self._convert(test_id, value, unit, unit_field)
        if not test.plausible_low <= canonical <= test.plausible_high:
            raise InvalidInputError(
                value_field,
                f"implausible {test.name} ({canonical:g} {test.canonical_unit}); a unit mix-up?",
                value=f"{value:g} {unit}",
                allowed=f"{test.plausible_low:g} to {test.plausible_high:g} {test.canonical_unit}",
            )
        ref_low, ref_high = self._reference_range(res, test_id, unit)
        return factbuild.lab(
            test=test_id,
            value=canonical,
            unit=test.canonical_unit,
            when=when,
            reported_value=value,
            reported_unit=unit,
            ref_low=ref_low,
            ref_high=ref_high,
            method=self._method(res, info, codes),
            origin=factbuild.origin(item.origin, matched_by),
            comparator=comparator,
        )

    def _convert(self, test_id: str, value: float, unit: str, field: str) -> float:
        try:
            return self.memo.to_canonical(test_id, value, unit)
        except InvalidInputError as err:
            raise InvalidInputError(field, err.problem, value=err.value, allowed=err.allowed) from None

    def _reference_range(
        self, res: Mapping[str, Any], test_id: str, value_unit: str
    ) -> tuple[float | None, float | None]:
        for i, rng in enumerate(_list(res, "referenceRange")):
            at = f"referenceRange[{i}]"
            if not isinstance(rng, Mapping):
                raise InvalidInputError(at, f"expected an object, got {_kind(rng)}")
            bounds: list[float | None] = []
            for key in ("low", "high"):
                q = _obj(rng, key, at)
                number = _num(q, "value", f"{at}.{key}") if q is not None else None
                if q is None or number is None:
                    bounds.append(None)
                    continue
                # A range without a unit is in the unit of the result.
                unit, unit_field = _quantity_unit(q, f"{at}.{key}")
                bounds.append(self._convert(test_id, number, unit or value_unit, unit_field))
            low, high = bounds
            if low is None and high is None:
                continue  # a range given only as text or by age: look at the next one
            if low is not None and high is not None and low > high:
                raise InvalidInputError(at, "low is above high", value=f"{low:g} > {high:g}")
            return low, high
        return None, None

    @staticmethod
    def _method(res: Mapping[str, Any], info: _TestInfo, codes: _Codes) -> str | None:
        equations = info.equations
        for system, code in codes:
            if code and code in equations and canonical_system(system) == LOINC:
                return equations[code]
        codes_m, text = _concept(_obj(res, "method"), "method")
        return text or _code_words(codes_m)

    def _observed_sign(self, item: _Item, sign: Match, when: date | None) -> list[_Fact]:
        res = item.values
        present: bool | None
        if "valueBoolean" in res:
            value = res["valueBoolean"]
            if not isinstance(value, bool):
                raise InvalidInputError("valueBoolean", f"expected true/false, got {_kind(value)}")
            present = value
        elif "valueCodeableConcept" in res:
            present = _presence(_obj(res, "valueCodeableConcept"))
        elif "dataAbsentReason" in res or any(k.startswith("value") for k in res):
            present = None  # no answer, or a measurement that does not say present/absent
        else:
            present = True  # the finding itself was recorded
        if present is None:
            return []
        origin = factbuild.origin(item.origin, sign.matched_by)
        context, trigger = sign.context, sign.trigger
        if present is False and context == "current":
            context, trigger = "negated", "valueBoolean" if "valueBoolean" in res else "valueCodeableConcept"
        if context == "negated":
            present = False
        return [
            _DatedSign(when, factbuild.sign_fact(sign_id, present, origin, context, trigger, when))
            for sign_id in sign.ids
        ]

    # -- Condition ---------------------------------------------------------------------------

    def _condition(self, item: _Item) -> list[_Fact]:
        res = item.values
        verification = None
        if res.get("verificationStatus") is not None:
            verification_codes, _ = _concept(_obj(res, "verificationStatus"), "verificationStatus")
            verification = _first_code(verification_codes)
            if verification in _VERIFICATION_SKIP:
                return []
        codes, text = _concept(_obj(res, "code"), "code")
        if not codes and not text:
            return []  # nothing to show or recognise
        if not self._for_patient(res):
            return self._other_patient(item)
        onset = self._when(res, "onset", "start")
        if onset is not None and onset > self.as_of:
            return []
        recorded = _date(res, "recordedDate")
        if onset is None and recorded is not None and recorded > self.as_of:
            return []
        current, status = self._condition_current(res)
        reading = self.memo.condition(codes, text)
        found, signs, name, sign_ids = reading.found, reading.signs, reading.name, reading.sign_ids
        category = None
        categories = res.get("category")
        if categories is not None:
            for i, cc in enumerate(_list(res, "category")):
                concept = _simple_concept(cc) if type(cc) is dict else None
                if concept is None:  # the field path is made only for the long way, which may need it
                    concept = _concept(cc if isinstance(cc, Mapping) else None, f"category[{i}]")
                category = _first_code(concept[0]) or concept[1]
                if category:
                    break
        abatement = self._when(res, "abatement", "end")
        facts: list[_Fact] = []
        now: bool | None
        source = item.origin
        for condition_id in found.ids or (None,):
            origin = factbuild.origin(source, found.matched_by)
            if condition_id is not None and found.context != "current":
                # "History of ...", "No ...", "Mother has ...": named, but not current.
                context, trigger, now = found.context, found.trigger, False
            else:
                context, trigger, now = status, "clinicalStatus" if status != "current" else None, current
            facts.append(
                factbuild.condition_fact(
                    name,
                    condition_id,
                    now,
                    onset,
                    origin,
                    context=context,
                    trigger=trigger,
                    verification=verification,
                    category=category,
                    abatement=abatement,
                    signs=sign_ids,
                )
            )
        when = onset or recorded
        for sign in signs:
            context, trigger = sign.context, sign.trigger
            if context == "current" and current is not True:
                # Resolved, inactive or of unknown status: not a current sign.
                context, trigger = (status if status != "current" else "unknown_status"), "clinicalStatus"
            origin = factbuild.origin(source, sign.matched_by)
            facts.append(
                factbuild.sign_fact(sign.ids[0], context != "negated", origin, context, trigger, when)
            )
        return facts

    def _when(self, res: Mapping[str, Any], prefix: str, edge: str) -> date | None:
        """A date from ``<prefix>DateTime``, ``<prefix>Period`` (its ``edge``) or ``<prefix>Age``."""
        date_key, period_key, age_key = _CHOICE_KEYS[prefix]
        if date_key in res:
            when = _date(res, date_key)
            if when is not None:
                return when
        if period_key not in res and age_key not in res:
            return None
        period = _obj(res, period_key)
        if period is not None:
            return _date(period, edge, f"{prefix}Period") or _date(
                period, "start" if edge == "end" else "end", f"{prefix}Period"
            )
        age = _obj(res, f"{prefix}Age")
        if age is not None and self.birth_date is not None:
            years = _num(age, "value", f"{prefix}Age")
            unit = (_str(age, "code", f"{prefix}Age") or _str(age, "unit", f"{prefix}Age") or "a").lower()
            days_per = {"a": 365.25, "yr": 365.25, "year": 365.25, "years": 365.25, "mo": 30.44, "d": 1.0}
            if years is not None and unit in days_per:
                return self.birth_date + timedelta(days=round(years * days_per[unit]))
        return None

    # -- AllergyIntolerance ------------------------------------------------------------------

    def _allergy(self, item: _Item) -> list[_Fact]:
        """An allergy or intolerance: its substance read as a drug, its status, type and reaction.

        Refuted and entered-in-error records are passed over; ``clinicalStatus`` active is
        current, inactive or resolved is not, absent is unknown; a text that negates the
        substance ("No known allergy to magnesium") is not current.
        """
        res = item.values
        if res.get("verificationStatus") is not None:
            verification_codes, _ = _concept(_obj(res, "verificationStatus"), "verificationStatus")
            if _first_code(verification_codes) in _VERIFICATION_SKIP:
                return []
        codes, text = _concept(_obj(res, "code"), "code")
        if not codes and not text:
            return []
        if not self._for_patient(res):
            return self._other_patient(item)
        current: bool | None = None
        if res.get("clinicalStatus") is not None:
            status = _first_code(_concept(_obj(res, "clinicalStatus"), "clinicalStatus")[0])
            if status is not None:
                if status not in _ALLERGY_STATUS:
                    raise InvalidInputError(
                        "clinicalStatus",
                        "not an allergy clinical status",
                        value=status,
                        allowed=", ".join(_ALLERGY_STATUS),
                    )
                current = _ALLERGY_STATUS[status]
        found = self.memo.match("drug", codes, text)
        if found.context != "current":
            current = False
        reactions: list[str] = []
        for i, reaction in enumerate(_list(res, "reaction")):
            if not isinstance(reaction, Mapping):
                raise InvalidInputError(f"reaction[{i}]", f"expected an object, got {_kind(reaction)}")
            for j, manifestation in enumerate(_list(reaction, "manifestation", f"reaction[{i}]")):
                shown = _concept(
                    manifestation if isinstance(manifestation, Mapping) else None,
                    f"reaction[{i}].manifestation[{j}]",
                )[1]
                if shown:
                    reactions.append(shown)
        kind = _str(res, "type") if "type" in res else None
        criticality = _str(res, "criticality") if "criticality" in res else None
        return [
            AllergyFact(
                text=text or "allergy (no substance text)",
                drugs=found.ids,
                current=current,
                reaction=", ".join(dict.fromkeys(reactions)) or None,
                kind=kind,
                criticality=criticality,
                origin=factbuild.origin(item.origin, found.matched_by),
            )
        ]

    def _condition_current(self, res: Mapping[str, Any]) -> tuple[bool | None, str]:
        """Whether the condition is current at ``as_of``, and the context word that says why.

        ``clinicalStatus`` active/recurrence/relapse is current, inactive/remission/resolved is
        not; a dated ``abatement[x]`` on or before ``as_of`` ends it, after it means it was
        still current then.
        """
        status_codes = (
            _concept(_obj(res, "clinicalStatus"), "clinicalStatus")[0] if "clinicalStatus" in res else ()
        )
        current: bool | None = None
        word = "unknown_status"
        for _, code in status_codes:
            if code is None:
                continue
            if code not in _CLINICAL_STATUS:
                raise InvalidInputError(
                    "clinicalStatus",
                    "not a condition clinical status",
                    value=code,
                    allowed=", ".join(_CLINICAL_STATUS),
                )
            current = _CLINICAL_STATUS[code]
            word = "current" if current else code
            break
        # A dated abatement says when it stopped, which the status (as of today) cannot.
        period = _obj(res, "abatementPeriod") if "abatementPeriod" in res else None
        if "abatementDateTime" not in res and period is not None:
            end = _date(period, "end", "abatementPeriod")
            start = _date(period, "start", "abatementPeriod")
            if end is not None and end <= self.as_of:
                return False, "resolved"
            if start is not None and start <= self.as_of:
                return None, "unknown_status"  # abating around the as-of date
        abated = self._when(res, "abatement", "start")
        if abated is not None:
            return (True, "current") if abated > self.as_of else (False, "resolved")
        if "abatementBoolean" in res and res["abatementBoolean"] is True:
            return False, "resolved"
        return current, word

    # -- MedicationRequest / MedicationStatement ---------------------------------------------

    def _index_medication(self, item: _Item) -> None:
        rid = item.values.get("id")
        if isinstance(rid, str) and rid:
            self.medications_by_ref[f"Medication/{rid}"] = item.values
        if item.full_url:
            self.medications_by_ref[item.full_url] = item.values
            rtype, key = _ref_key(item.full_url)
            self.medications_by_ref[f"{rtype or 'Medication'}/{key}"] = item.values

    def _medication(
        self,
        item: _Item,
        current: bool | None,
        start: date | None,
        dosage_key: str,
    ) -> list[_Fact]:
        res = item.values
        codes, name, text = self._drug_concept(res)
        found = self.memo.match("drug", codes, text)
        if current is not False and found.context != "current":
            # The text names the drug as stopped or not taken ("omeprazole, discontinued"): not
            # current, whether the status said active or unknown (as a patient document reads it).
            current = False
        dose = route = None
        per_day: float | None = None
        # An administration has one dosage (the dose given); orders and statements a list.
        if dosage_key == _ADMINISTERED:
            dose, route = _administered_dosage(_obj(res, "dosage"))
        elif dosages := _list(res, dosage_key):
            first = dosages[0]
            if not isinstance(first, Mapping):
                raise InvalidInputError(f"{dosage_key}[0]", f"expected an object, got {_kind(first)}")
            dose = _str(first, "text", f"{dosage_key}[0]")
            route_codes, route_text = _concept(
                _obj(first, "route", f"{dosage_key}[0]"), f"{dosage_key}[0].route"
            )
            route = _route(route_text, route_codes) or _route(dose)
            # Several dosage lines taken together (morning and evening doses) add up.
            amounts = []
            for i, dosage in enumerate(dosages):
                if not isinstance(dosage, Mapping):
                    raise InvalidInputError(f"{dosage_key}[{i}]", f"expected an object, got {_kind(dosage)}")
                amounts.append(_dose_mg_per_day(dosage, f"{dosage_key}[{i}]"))
            if amounts and all(a is not None for a in amounts):
                per_day = sum(a for a in amounts if a is not None)
        reasons = []
        for i, reason in enumerate(_list(res, "reasonCode")):
            if not isinstance(reason, Mapping):
                raise InvalidInputError(f"reasonCode[{i}]", f"expected an object, got {_kind(reason)}")
            reason_codes, reason_text = _concept(reason, f"reasonCode[{i}]")
            words = reason_text or _code_words(reason_codes)
            if words:
                reasons.append(words)
        for i, ref in enumerate(_list(res, "reasonReference")):
            if isinstance(ref, Mapping):
                display = _str(ref, "display", f"reasonReference[{i}]")
                if display:
                    reasons.append(display)
        return [
            factbuild.medication(
                text=name or _code_words(codes) or "unnamed medication",
                drugs=found.ids,
                current=current,
                start=start,
                dose=dose,
                origin=factbuild.origin(item.origin, found.matched_by),
                route=route,
                reason="; ".join(reasons) or None,
                dose_mg_per_day=per_day,
            )
        ]

    def _drug_concept(self, res: Mapping[str, Any]) -> tuple[_Codes, str | None, str | None]:
        """Codes, display name and text to match of the medication[x] of a resource."""
        cc = _obj(res, "medicationCodeableConcept")
        if cc is not None:
            codes, text = _concept(cc, "medicationCodeableConcept")
            return codes, text, text
        ref = _obj(res, "medicationReference")
        if ref is None:
            raise InvalidInputError(
                "medication[x]",
                "missing",
                allowed="medicationCodeableConcept or medicationReference",
            )
        reference = _str(ref, "reference", "medicationReference")
        display = _str(ref, "display", "medicationReference")
        med = self._resolve_medication(res, reference) if reference else None
        if med is None:
            return (), display or reference, display
        where = f"medicationReference ({reference})"
        codes, text = _concept(_obj(med, "code", where), f"{where}.code")
        all_codes = list(codes)
        words = [text] if text else []
        for i, ingredient in enumerate(_list(med, "ingredient", where)):
            at = f"{where}.ingredient[{i}]"
            if not isinstance(ingredient, Mapping):
                raise InvalidInputError(at, f"expected an object, got {_kind(ingredient)}")
            ing_codes, ing_text = _concept(_obj(ingredient, "itemCodeableConcept", at), at)
            all_codes.extend(ing_codes)
            if ing_text:
                words.append(ing_text)
        name = text or display or (" / ".join(words) or None)
        return tuple(all_codes), name, " / ".join(words) or display

    def _resolve_medication(self, res: Mapping[str, Any], reference: str) -> Mapping[str, Any] | None:
        if reference.startswith("#"):
            for i, contained in enumerate(_list(res, "contained")):
                if not isinstance(contained, Mapping):
                    raise InvalidInputError(f"contained[{i}]", f"expected an object, got {_kind(contained)}")
                if contained.get("id") == reference[1:]:
                    return contained
            return None
        found = self.medications_by_ref.get(reference)
        if found is None:
            rtype, rid = _ref_key(reference)
            found = self.medications_by_ref.get(f"{rtype or 'Medication'}/{rid}")
        return found

    def _medication_request(self, item: _Item) -> list[_Fact]:
        res = item.values
        status = _str(res, "status")
        if status in _REQUEST_SKIP:
            return []
        if not self._for_patient(res):
            return self._other_patient(item)
        if status is not None and status not in _REQUEST_STATUS:
            raise InvalidInputError(
                "status",
                "not a MedicationRequest status",
                value=status,
                allowed=", ".join((*_REQUEST_STATUS, *_REQUEST_SKIP)),
            )
        intent = _str(res, "intent")
        if intent is not None and intent not in _REQUEST_ORDERS and intent not in _REQUEST_PLANNED:
            raise InvalidInputError(
                "intent", "not a MedicationRequest intent", value=intent, allowed=_REQUEST_INTENTS
            )
        authored = _date(res, "authoredOn")
        if authored is not None and authored > self.as_of:
            return []  # ordered after the as-of date
        current = _REQUEST_STATUS[status] if status is not None else None
        if intent in _REQUEST_PLANNED:
            current = False  # proposed or planned, not ordered: not taken (yet)
        return self._medication(item, current, authored, "dosageInstruction")

    def _medication_statement(self, item: _Item) -> list[_Fact]:
        res = item.values
        status = _str(res, "status")
        if status in _STATEMENT_SKIP:
            return []
        if not self._for_patient(res):
            return self._other_patient(item)
        if status is not None and status not in _STATEMENT_STATUS:
            raise InvalidInputError(
                "status",
                "not a MedicationStatement status",
                value=status,
                allowed=", ".join((*_STATEMENT_STATUS, *_STATEMENT_SKIP)),
            )
        start = _date(res, "effectiveDateTime")
        end = None
        period = _obj(res, "effectivePeriod")
        if period is not None:
            start = _date(period, "start", "effectivePeriod")
            end = _date(period, "end", "effectivePeriod")
        if start is not None and start > self.as_of:
            return []  # not begun at the as-of date
        current = _STATEMENT_STATUS[status] if status is not None else None
        if current is True and end is not None and end < self.as_of:
            current = False
        return self._medication(item, current, start, "dosage")

    def _medication_administration(self, item: _Item) -> list[_Fact]:
        """A dose given: a current medication while it runs or within the window after it was given.

        See the module documentation; the window is the knowledge-base parameter
        ``medications.administered_within_days``.
        """
        res = item.values
        status = _str(res, "status")
        if status in _ADMINISTRATION_SKIP:
            return []
        if not self._for_patient(res):
            return self._other_patient(item)
        if (
            status is not None
            and status not in _ADMINISTRATION_GIVEN
            and status not in _ADMINISTRATION_STATUS
        ):
            raise InvalidInputError(
                "status",
                "not a MedicationAdministration status",
                value=status,
                allowed=_ADMINISTRATION_ALLOWED,
            )
        start = given = _date(res, "effectiveDateTime")
        end = None
        period = _obj(res, "effectivePeriod")
        if period is not None:
            start = _date(period, "start", "effectivePeriod")
            end = _date(period, "end", "effectivePeriod")
            given = end or start
        if start is not None and start > self.as_of:
            return []  # not begun at the as-of date
        current: bool | None
        if status is None:
            current = None
        elif status not in _ADMINISTRATION_GIVEN:
            current = _ADMINISTRATION_STATUS[status]
        elif status != "completed" and period is not None and end is None:
            current = True  # still running (or paused) at the as-of date
        elif given is None:
            current = None  # given, but when is not recorded
        else:
            window = self.kb.parameters["medications.administered_within_days"].value
            current = (self.as_of - given).days <= window
        return self._medication(item, current, start, _ADMINISTERED)


def _presence(cc: Mapping[str, Any] | None) -> bool | None:
    """Read a yes/no or present/absent answer; ``None`` for any other answer."""
    codes, text = _concept(cc, "valueCodeableConcept")
    for _, code in codes:
        if code in _PRESENT_CODES:
            return True
        if code in _ABSENT_CODES:
            return False
    word = (text or "").strip().lower()
    if word in _PRESENT_WORDS:
        return True
    if word in _ABSENT_WORDS:
        return False
    return None
