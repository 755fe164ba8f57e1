"""magstat's own patient document (JSON or YAML) to :class:`PatientFacts`, and its JSON Schema.

The document is for people and for tools that do not speak FHIR. A key that is left out means
*unknown*; an empty list means *none*. Every refusal names the field, the value and what is
allowed. ``magstat schema`` prints :func:`json_schema`.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from magstat.adapters.supplements import supplements_from_medications
from magstat.core.facts import (
    AllergyFact,
    ConditionFact,
    FoodServing,
    Lab,
    Medication,
    Origin,
    PatientFacts,
    SignFact,
    SupplementFact,
)
from magstat.core.match import (
    find_signs,
    match_condition,
    match_drug,
    match_supplement,
    match_test,
)
from magstat.core.units import to_canonical
from magstat.core.validate import COMPARATORS, check_comparator, is_finite
from magstat.errors import InvalidInputError
from magstat.kb.schema import KnowledgeBase

__all__ = ["FIELDS", "Field", "facts_from_document", "json_schema"]


@dataclass(frozen=True, slots=True)
class Field:
    """One top-level field of the document that holds a single value.

    The reader (:func:`facts_from_document`) and the JSON Schema (:func:`json_schema`) are both
    made from :data:`FIELDS`, so they accept the same values. ``null`` is always allowed and
    means unknown, as leaving the key out does.

    Attributes:
        kind: ``text`` (non-empty), ``id`` (text or integer), ``date`` (YYYY-MM-DD),
            ``number``, ``integer``, ``tri`` (true, false or null) or ``choice``.
        description: what the field means, for the schema.
        minimum: the smallest number allowed (``number`` and ``integer``).
        maximum: the largest number allowed.
        choices: the values allowed (``choice``).

    """

    kind: Literal["text", "id", "date", "number", "integer", "tri", "choice"]
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


FIELDS: dict[str, Field] = {
    "magstat": Field("text", "document format version, e.g. '1'"),
    "id": Field("id", "the patient's identifier, text or a whole number"),
    "as_of": Field("date", "date of the assessment (overridden by --as-of); required unless given there"),
    "birth_date": Field("date", "date of birth"),
    "deceased": Field("tri", "the patient has died (not assessed as living)"),
    "deceased_date": Field("date", "date of death; on or before as_of: not assessed as living"),
    "age": Field("number", "age in years, when the date of birth is not known", 0, 130),
    "sex": Field("choice", "sex at birth", choices=("female", "male")),
    "pregnant": Field("tri", "currently pregnant"),
    "lactating": Field("tri", "currently breastfeeding"),
    "alcohol_drinks_per_day": Field("number", "average standard drinks a day", 0),
    "audit_c": Field("integer", "AUDIT-C score", 0, 12),
    "chronic_stress": Field("tri", "chronic psychological stress"),
    "high_metabolic_demand": Field("tri", "high metabolic demand (e.g. endurance sport, heavy labour)"),
}
"""The single-valued top-level fields: add a line here (and read it in facts_from_document)."""

_TOP_KEYS = (
    "magstat",
    "id",
    "as_of",
    "birth_date",
    "deceased",
    "deceased_date",
    "age",
    "sex",
    "pregnant",
    "lactating",
    "medications",
    "conditions",
    "alcohol_drinks_per_day",
    "audit_c",
    "chronic_stress",
    "high_metabolic_demand",
    "signs",
    "labs",
    "diet",
    "supplements",
    "allergies",
    "loading_test",
)


def _keys(where: str, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in data:
        if key not in allowed:
            raise InvalidInputError(
                f"{where}.{key}" if where else str(key),
                "unknown field",
                allowed=", ".join(allowed),
            )


def _mapping(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInputError(where, "must be an object", value=value, allowed="an object of fields")
    return value


def _list(where: str, value: object) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInputError(where, "must be a list", value=value, allowed="a list (empty for none)")
    return value


def _text(where: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(where, "must be a non-empty text", value=value)
    return value.strip()


def _bool(where: str, value: object) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidInputError(
            where, "must be true or false", value=value, allowed="true, false or null (unknown)"
        )
    return value


def _number(where: str, value: object, minimum: float | None = None, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not is_finite(value):
        raise InvalidInputError(where, "must be a number", value=value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "" if minimum is None else f"{minimum:g}"
        high = "" if maximum is None else f"{maximum:g}"
        allowed = f"{low} to {high}" if low and high else (f"{low} or more" if low else f"{high} or less")
        raise InvalidInputError(where, "implausible value", value=value, allowed=allowed)
    return float(value)


def _integer(where: str, value: object, minimum: float | None = None, maximum: float | None = None) -> int:
    # 2.0 is a whole number, as JSON Schema's "integer" says; 2.5 is not.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(where, "must be a whole number", value=value)
    return int(_number(where, value, minimum, maximum))


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _date(where: str, value: object) -> date:
    if isinstance(value, date):  # YAML reads an unquoted date as a date
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidInputError(where, "not a date", value=value, allowed="YYYY-MM-DD")


def _code_value(where: str, value: object) -> str:
    """A code: a non-empty text or a whole number (YAML reads SNOMED codes as numbers)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(where, value)


def _field(name: str, value: object) -> Any:
    """The value of a single-valued top-level field, checked against :data:`FIELDS`."""
    spec = FIELDS[name]
    if value is None:
        return None
    if spec.kind == "text":
        return _text(name, value)
    if spec.kind == "id":
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(name, "must be a non-empty text or a whole number", value=value)
        return value
    if spec.kind == "date":
        return _date(name, value)
    if spec.kind == "number":
        return _number(name, value, spec.minimum, spec.maximum)
    if spec.kind == "integer":
        return _integer(name, value, spec.minimum, spec.maximum)
    if spec.kind == "tri":
        return _bool(name, value)
    if value not in spec.choices:
        raise InvalidInputError(
            name, "unknown value", value=value, allowed=", ".join(spec.choices) + " (or leave out if unknown)"
        )
    return value


def _opt_date(where: str, value: object) -> date | None:
    return None if value is None else _date(where, value)


def _codes(where: str, value: object) -> list[tuple[str | None, str | None]]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out: list[tuple[str | None, str | None]] = []
    for i, item in enumerate(items):
        spot = f"{where}[{i}]" if isinstance(value, list) else where
        data = _mapping(spot, item)
        _keys(spot, data, ("system", "code", "display"))
        if data.get("display") is not None and not isinstance(data["display"], str):
            raise InvalidInputError(f"{spot}.display", "must be a text", value=data["display"])
        out.append(
            (_text(f"{spot}.system", data.get("system")), _code_value(f"{spot}.code", data.get("code")))
        )
    return out


def facts_from_document(data: object, kb: KnowledgeBase, *, as_of: date | None = None) -> PatientFacts:
    """Read a magstat patient document.

    Args:
        data: the parsed JSON or YAML document.
        kb: the knowledge base (for recognising names and codes and converting units).
        as_of: the date to assess at; overrides the document's ``as_of``. One of the two is
            required.

    Returns:
        The patient's facts in canonical units.

    Raises:
        InvalidInputError: a field is unknown, malformed, implausible or in an unknown unit.

    """
    doc = _mapping("(document)", data)
    _keys("", doc, _TOP_KEYS)
    fields = {name: _field(name, doc.get(name)) for name in FIELDS}
    when = as_of or fields["as_of"]
    if when is None:
        raise InvalidInputError("as_of", "is required (in the document or as --as-of)", allowed="YYYY-MM-DD")
    labs = [_lab(f"labs[{i}]", item, kb) for i, item in enumerate(_list("labs", _or(doc.get("labs"), [])))]
    for key in ("alcohol_drinks_per_day", "audit_c"):
        if fields[key] is not None:
            labs.append(
                Lab(
                    test=key,
                    value=float(fields[key]),
                    unit=kb.tests[key].canonical_unit,
                    origin=Origin(key, "field"),
                )
            )
    diet = _mapping("diet", _or(doc.get("diet"), {}))
    _keys("diet", diet, ("mg_per_day", "food_frequency"))
    ffq = None
    if diet.get("food_frequency") is not None:
        answers = _mapping("diet.food_frequency", diet["food_frequency"])
        ffq = []
        for food, per_week in answers.items():
            if food not in kb.foods:
                raise InvalidInputError(
                    f"diet.food_frequency.{food}", "unknown food", allowed=", ".join(sorted(kb.foods))
                )
            ffq.append(FoodServing(food, _number(f"diet.food_frequency.{food}", per_week, 0) / 7.0))
    loading = _mapping("loading_test", _or(doc.get("loading_test"), {}))
    _keys(
        "loading_test",
        loading,
        ("retention_percent", "dose_mmol", "urine_mmol", "baseline_urine_mmol", "date"),
    )
    loading_date = _opt_date("loading_test.date", loading.get("date"))
    if loading.get("retention_percent") is not None:
        labs.append(
            Lab(
                test="loading_retention",
                value=_number("loading_test.retention_percent", loading["retention_percent"]),
                unit="%",
                when=loading_date,
                origin=Origin("loading_test", "field"),
            )
        )
    medications = None
    if doc.get("medications") is not None:
        medications = tuple(
            _medication(f"medications[{i}]", item, kb)
            for i, item in enumerate(_list("medications", doc["medications"]))
        )
    conditions = None
    if doc.get("conditions") is not None:
        conditions = tuple(
            _condition(f"conditions[{i}]", item, kb)
            for i, item in enumerate(_list("conditions", doc["conditions"]))
        )
    supplements = None
    if doc.get("supplements") is not None:
        supplements = tuple(
            _supplement(f"supplements[{i}]", item, kb)
            for i, item in enumerate(_list("supplements", doc["supplements"]))
        )
    if not supplements and medications:
        # Without supplements listed (none given, or an empty list), a magnesium product on the
        # medication list is one, as the FHIR reader reads it. A list that names supplements is
        # taken as it is, so that one product is never counted twice.
        derived = supplements_from_medications(kb, medications, lambda text: match_supplement(kb, text))
        if derived:
            supplements = derived
    allergies = None
    if doc.get("allergies") is not None:
        allergies = tuple(
            _allergy(f"allergies[{i}]", item, kb)
            for i, item in enumerate(_list("allergies", doc["allergies"]))
        )
    return PatientFacts(
        as_of=when,
        allergies=allergies,
        patient_id=fields["id"],
        birth_date=fields["birth_date"],
        age_years=fields["age"],
        sex=fields["sex"],
        pregnant=fields["pregnant"],
        lactating=fields["lactating"],
        medications=medications,
        conditions=conditions,
        signs=_signs(doc.get("signs"), kb) + _condition_signs(conditions, kb),
        labs=tuple(labs),
        chronic_stress=fields["chronic_stress"],
        high_metabolic_demand=fields["high_metabolic_demand"],
        diet_mg_per_day=None
        if diet.get("mg_per_day") is None
        else _number("diet.mg_per_day", diet["mg_per_day"], 0),
        food_frequency=tuple(ffq) if ffq is not None else None,
        supplements=supplements,
        loading_dose_mmol=None
        if loading.get("dose_mmol") is None
        else _number("loading_test.dose_mmol", loading["dose_mmol"]),
        loading_urine_mmol=None
        if loading.get("urine_mmol") is None
        else _number("loading_test.urine_mmol", loading["urine_mmol"]),
        loading_baseline_urine_mmol=None
        if loading.get("baseline_urine_mmol") is None
        else _number("loading_test.baseline_urine_mmol", loading["baseline_urine_mmol"]),
        deceased=_deceased(fields, when),
        deceased_date=fields["deceased_date"],
    )


def _or(value: object, default: object) -> object:
    """``default`` when ``value`` is null or absent (unknown), else ``value`` to be checked."""
    return default if value is None else value


def _deceased(doc: Mapping[str, Any], as_of: date) -> bool | None:
    """``deceased`` (true/false), or a ``deceased_date``: a date after ``as_of`` is not yet death."""
    died = _opt_date("deceased_date", doc.get("deceased_date"))
    flag = _bool("deceased", doc.get("deceased"))
    if died is not None:
        if flag is False:
            raise InvalidInputError("deceased", "false, but a deceased_date is given", value=False)
        return died <= as_of
    return flag


def _lab(where: str, item: object, kb: KnowledgeBase) -> Lab:
    data = _mapping(where, item)
    _keys(where, data, ("test", "loinc", "value", "unit", "date", "reference_range", "method", "comparator"))
    test_id = data.get("test")
    loinc = None if data.get("loinc") is None else _text(f"{where}.loinc", data["loinc"])
    if test_id is None and loinc is not None:
        found = match_test(kb, [("loinc", loinc)])
        if not found:
            raise InvalidInputError(
                f"{where}.loinc",
                "LOINC code not known to magstat",
                value=data["loinc"],
                allowed=", ".join(sorted({c.code for t in kb.tests.values() for c in t.loinc})),
            )
        test_id = found.ids[0]
    if not isinstance(test_id, str) or test_id not in kb.tests:
        raise InvalidInputError(
            f"{where}.test", "unknown test", value=test_id, allowed=", ".join(sorted(kb.tests))
        )
    test = kb.tests[test_id]
    unit = data.get("unit", test.canonical_unit)
    if not isinstance(unit, str):
        raise InvalidInputError(f"{where}.unit", "must be a text", value=unit)
    value = _number(f"{where}.value", data.get("value"))
    try:
        canonical = to_canonical(kb, test_id, value, unit)
    except InvalidInputError as exc:
        raise exc.at(where) from None
    low = high = None
    if data.get("reference_range") is not None:
        ref = _mapping(f"{where}.reference_range", data["reference_range"])
        _keys(f"{where}.reference_range", ref, ("low", "high"))
        if ref.get("low") is not None:
            low = to_canonical(kb, test_id, _number(f"{where}.reference_range.low", ref["low"]), unit)
        if ref.get("high") is not None:
            high = to_canonical(kb, test_id, _number(f"{where}.reference_range.high", ref["high"]), unit)
    if not test.plausible_low <= canonical <= test.plausible_high:
        raise InvalidInputError(
            f"{where}.value",
            "physiologically implausible value",
            value=f"{value:g} {unit}",
            allowed=f"{test.plausible_low:g} to {test.plausible_high:g} {test.canonical_unit}",
        )
    method = data.get("method")
    comparator = check_comparator(f"{where}.comparator", data.get("comparator"))
    return Lab(
        test=test_id,
        value=canonical,
        unit=test.canonical_unit,
        when=_opt_date(f"{where}.date", data.get("date")),
        reported_value=value,
        reported_unit=unit,
        ref_low=low,
        ref_high=high,
        method=None if method is None else _text(f"{where}.method", method),
        origin=Origin(where, "field"),
        comparator=comparator,
    )


_ROUTES = ("oral", "intravenous", "intramuscular", "subcutaneous", "transdermal")
"""Routes a medication entry may name (``route``); magnesium given IV or IM is treatment."""


def _medication(where: str, item: object, kb: KnowledgeBase) -> Medication:
    if isinstance(item, str):
        item = {"name": item}
    data = _mapping(where, item)
    _keys(where, data, ("name", "code", "start", "current", "dose", "route", "reason"))
    name = _text(f"{where}.name", data.get("name"))
    found = match_drug(kb, _codes(f"{where}.code", data.get("code")), name)
    current = _bool(f"{where}.current", data.get("current", True))
    if found.context != "current":
        current = False  # "omeprazole, discontinued", "previously on furosemide": not taken now
    dose = data.get("dose")
    if dose is not None and (isinstance(dose, bool) or not isinstance(dose, (str, int, float))):
        raise InvalidInputError(f"{where}.dose", "must be a text or a number", value=dose)
    route = data.get("route")
    if route is not None and route not in _ROUTES:
        raise InvalidInputError(f"{where}.route", "unknown route", value=route, allowed=", ".join(_ROUTES))
    reason = data.get("reason")
    return Medication(
        route=route,
        reason=None if reason is None else _text(f"{where}.reason", reason),
        text=name,
        drugs=found.ids,
        current=current,
        start=_opt_date(f"{where}.start", data.get("start")),
        dose=None if dose is None else str(dose),
        origin=Origin(where, found.matched_by),
    )


_ALLERGY_KINDS = ("allergy", "intolerance")


def _allergy(where: str, item: object, kb: KnowledgeBase) -> AllergyFact:
    if isinstance(item, str):
        item = {"name": item}
    data = _mapping(where, item)
    _keys(where, data, ("name", "code", "current", "reaction", "type"))
    name = _text(f"{where}.name", data.get("name"))
    found = match_drug(kb, _codes(f"{where}.code", data.get("code")), name)
    current = _bool(f"{where}.current", data.get("current", True))
    if found.context != "current":
        current = False  # "no allergy to magnesium"
    kind = data.get("type")
    if kind is not None and kind not in _ALLERGY_KINDS:
        raise InvalidInputError(
            f"{where}.type", "unknown type", value=kind, allowed=", ".join(_ALLERGY_KINDS)
        )
    reaction = data.get("reaction")
    return AllergyFact(
        text=name,
        drugs=found.ids,
        current=current,
        reaction=None if reaction is None else _text(f"{where}.reaction", reaction),
        kind=kind,
        origin=Origin(where, found.matched_by),
    )


def _condition(where: str, item: object, kb: KnowledgeBase) -> ConditionFact:
    if isinstance(item, str):
        item = {"name": item}
    data = _mapping(where, item)
    _keys(where, data, ("name", "code", "current", "onset"))
    name = _text(f"{where}.name", data.get("name"))
    found = match_condition(kb, _codes(f"{where}.code", data.get("code")), name)
    current = _bool(f"{where}.current", data.get("current", True))
    if found and found.context != "current":
        current = False  # "history of seizure", "no seizures": recognised, but not a current condition
    return ConditionFact(
        text=name,
        condition=found.ids[0] if found else None,
        current=current,
        onset=_opt_date(f"{where}.onset", data.get("onset")),
        origin=Origin(where, found.matched_by),
        context=found.context if found else "current",
        trigger=found.trigger if found else None,
        signs=tuple(m.ids[0] for m in find_signs(kb, (), name)) if not found else (),
    )


def _condition_signs(conditions: tuple[ConditionFact, ...] | None, kb: KnowledgeBase) -> tuple[SignFact, ...]:
    """Signs named in a problem-list entry that is not a known condition, each in its context."""
    out: list[SignFact] = []
    for c in conditions or ():
        if c.condition is not None or not c.signs:
            continue
        for match in find_signs(kb, (), c.text):
            context, trigger = match.context, match.trigger
            if context == "current" and c.current is not True:
                context, trigger = "resolved", "current: false"
            origin = Origin(c.origin.resource, match.matched_by)
            out.append(SignFact(match.ids[0], context != "negated", origin, context, trigger, c.onset))
    return tuple(out)


def _signs(value: object, kb: KnowledgeBase) -> tuple[SignFact, ...]:
    if value is None:
        return ()
    pairs: list[tuple[str, str, object]] = []
    if isinstance(value, list):
        pairs = [(f"signs[{i}]", _text(f"signs[{i}]", v), True) for i, v in enumerate(value)]
    else:
        pairs = [(f"signs.{k}", str(k), v) for k, v in _mapping("signs", value).items()]
    out = []
    for where, name, present in pairs:
        flag = _bool(where, present)
        if name in kb.signs:
            if flag is not None:
                out.append(SignFact(name, flag, Origin(where, "field")))
            continue
        # Free text: every sign named, each in its ConText context ("denies tetany, seizures").
        found = find_signs(kb, (), name.replace("_", " "))
        if not found:
            raise InvalidInputError(where, "unknown sign", value=name, allowed=", ".join(sorted(kb.signs)))
        if flag is None:
            continue
        for match in found:
            negated = match.context == "negated"
            out.append(
                SignFact(
                    match.ids[0],
                    flag and not negated,  # "no tetany" listed as a sign: reported absent
                    Origin(where, match.matched_by or "text"),
                    context=match.context if flag else "current",
                    trigger=match.trigger,
                )
            )
    return tuple(out)


def _supplement(where: str, item: object, kb: KnowledgeBase) -> SupplementFact:
    if isinstance(item, str):
        item = {"name": item}
    data = _mapping(where, item)
    _keys(where, data, ("name", "form", "elemental_mg_per_day", "product_mg_per_day"))
    form = data.get("form")
    name = None if data.get("name") is None else _text(f"{where}.name", data["name"])
    if name is None and form is None:
        raise InvalidInputError(where, "needs a name or a form", allowed="name, form or both")
    text = name or _text(f"{where}.form", form)
    if form is not None and form not in kb.supplements:
        raise InvalidInputError(
            f"{where}.form", "unknown supplement form", value=form, allowed=", ".join(sorted(kb.supplements))
        )
    if form is None:
        found = match_supplement(kb, text)
        form = found.ids[0] if found else None
    elemental = data.get("elemental_mg_per_day")
    product = data.get("product_mg_per_day")
    return SupplementFact(
        form=form,
        text=text,
        elemental_mg_per_day=None
        if elemental is None
        else _number(f"{where}.elemental_mg_per_day", elemental, 0),
        product_mg_per_day=None if product is None else _number(f"{where}.product_mg_per_day", product, 0),
        origin=Origin(where, "field"),
    )


_UNKNOWN: dict[str, Any] = {"type": "null"}
_TEXT: dict[str, Any] = {"type": "string", "pattern": "\\S", "description": "not empty"}
_ISO: dict[str, Any] = {
    "type": "string",
    "format": "date",
    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "description": "YYYY-MM-DD",
}
_TRI: dict[str, Any] = {"type": ["boolean", "null"], "description": "true, false, or null/absent for unknown"}


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema, or null (unknown)."""
    return {"anyOf": [schema, _UNKNOWN]}


def _number_schema(minimum: float | None = None, maximum: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "number"}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


def _field_schema(spec: Field) -> dict[str, Any]:
    """The JSON Schema of one :data:`FIELDS` entry (null allowed: unknown)."""
    if spec.kind == "tri":
        return {**_TRI, "description": spec.description}
    if spec.kind == "choice":
        return {"enum": [*spec.choices, None], "description": spec.description}
    by_kind: dict[str, dict[str, Any]] = {
        "text": _TEXT,
        "id": {"anyOf": [_TEXT, {"type": "integer"}]},
        "date": _ISO,
        "number": _number_schema(spec.minimum, spec.maximum),
        "integer": {**_number_schema(spec.minimum, spec.maximum), "type": "integer"},
    }
    return {**_or_null(by_kind[spec.kind]), "description": spec.description}


def _closed(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object with these properties and no others."""
    return {"type": "object", "additionalProperties": False, "properties": properties, **extra}


def _named(properties: dict[str, Any]) -> dict[str, Any]:
    """A list item given as a name, or as an object with a name and these further properties."""
    return {"oneOf": [_TEXT, _closed({"name": _TEXT, **properties}, required=["name"])]}


def json_schema(kb: KnowledgeBase) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the patient document, with the KB's vocabularies.

    The single-valued fields come from :data:`FIELDS`, as the reader's checks do; a property
    test (``tests/adapters/test_document_schema.py``) holds the rest of the two to the same
    answers. The schema cannot know two things the reader checks: that a unit is one the
    knowledge base converts and a value is physiologically plausible, and names of signs that the
    knowledge base recognises besides their ids (``muscle cramps`` for ``muscle_cramps``).
    """
    code = _closed(
        {
            "system": {**_TEXT, "description": "rxnorm, atc, snomed, icd10, loinc or a FHIR system URI"},
            "code": {"anyOf": [_TEXT, {"type": "integer"}]},
            "display": _or_null({"type": "string"}),
        },
        required=["system", "code"],
    )
    codes = {"anyOf": [code, {"type": "array", "items": code}, _UNKNOWN]}
    sign_ids = sorted(kb.signs)
    properties: dict[str, Any] = {name: _field_schema(spec) for name, spec in FIELDS.items()}
    properties.update(
        {
            "medications": _or_null(
                {
                    "type": "array",
                    "items": _named(
                        {
                            "code": codes,
                            "start": _or_null(_ISO),
                            "current": {**_TRI, "default": True},
                            "dose": _or_null({"type": ["string", "number"]}),
                            "route": {"enum": [*_ROUTES, None]},
                            "reason": _or_null(_TEXT),
                        }
                    ),
                }
            ),
            "allergies": _or_null(
                {
                    "type": "array",
                    "items": _named(
                        {
                            "code": codes,
                            "current": {**_TRI, "default": True},
                            "reaction": _or_null(_TEXT),
                            "type": {"enum": [*_ALLERGY_KINDS, None]},
                        }
                    ),
                }
            ),
            "conditions": _or_null(
                {
                    "type": "array",
                    "items": _named(
                        {"code": codes, "current": {**_TRI, "default": True}, "onset": _or_null(_ISO)}
                    ),
                }
            ),
            "signs": {
                "anyOf": [
                    {"type": "array", "items": {"enum": sign_ids}},
                    _closed(dict.fromkeys(sign_ids, _TRI)),
                    _UNKNOWN,
                ]
            },
            "labs": _or_null(
                {
                    "type": "array",
                    "items": _closed(
                        {
                            "test": {"enum": [*sorted(kb.tests), None]},
                            "loinc": _or_null(_TEXT),
                            "value": {"type": "number"},
                            "unit": {"type": "string", "description": "e.g. mmol/L, mg/dL, mEq/L, umol/L"},
                            "date": _or_null(_ISO),
                            "method": _or_null({**_TEXT, "description": "for eGFR: the equation"}),
                            "comparator": _or_null(
                                {
                                    "enum": sorted(COMPARATORS),
                                    "description": "the lab reported only a bound: '<' 0.2 means below 0.2",
                                }
                            ),
                            "reference_range": _or_null(
                                _closed(
                                    {
                                        "low": _or_null({"type": "number"}),
                                        "high": _or_null({"type": "number"}),
                                    }
                                )
                            ),
                        },
                        required=["value"],
                        anyOf=[
                            {"required": ["test"], "properties": {"test": {"enum": sorted(kb.tests)}}},
                            {"required": ["loinc"], "properties": {"loinc": _TEXT}},
                        ],
                    ),
                }
            ),
            "diet": _or_null(
                _closed(
                    {
                        "mg_per_day": _or_null(_number_schema(0)),
                        "food_frequency": _or_null(
                            _closed(
                                {f: _number_schema(0) for f in sorted(kb.foods)},
                                description="servings per week of each food",
                            )
                        ),
                    }
                )
            ),
            "supplements": _or_null(
                {
                    "type": "array",
                    "items": {
                        "oneOf": [
                            _TEXT,
                            _closed(
                                {
                                    "name": _or_null(_TEXT),
                                    "form": {"enum": [*sorted(kb.supplements), None]},
                                    "elemental_mg_per_day": _or_null(_number_schema(0)),
                                    "product_mg_per_day": _or_null(_number_schema(0)),
                                },
                                anyOf=[
                                    {"required": ["name"], "properties": {"name": _TEXT}},
                                    {
                                        "required": ["form"],
                                        "properties": {"form": {"enum": sorted(kb.supplements)}},
                                    },
                                ],
                            ),
                        ]
                    },
                }
            ),
            "loading_test": _or_null(
                _closed(
                    {
                        "retention_percent": _or_null({"type": "number"}),
                        "dose_mmol": _or_null({"type": "number"}),
                        "urine_mmol": _or_null({"type": "number"}),
                        "baseline_urine_mmol": _or_null({"type": "number"}),
                        "date": _or_null(_ISO),
                    }
                )
            ),
        }
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://magstat.invalid/schema/patient-document.json",
        "title": "magstat patient document",
        "description": (
            "What is known about one patient. Leave a key out (or give null) when it is unknown; "
            "an empty list means none. Units are given per lab; values are converted and checked."
        ),
        "type": "object",
        "additionalProperties": False,
        "properties": {key: properties[key] for key in _TOP_KEYS},
        # deceased: false contradicts a date of death.
        "not": {
            "required": ["deceased", "deceased_date"],
            "properties": {"deceased": {"const": False}, "deceased_date": {"type": "string"}},
        },
    }
