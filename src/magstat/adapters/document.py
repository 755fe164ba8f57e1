"""magstat's own patient document (JSON or YAML) to :class:`PatientFacts`, and its JSON Schema.

The document is for people and for tools that do not speak FHIR. A key that is left out means
*unknown*; an empty list means *none*. Every refusal names the field, the value and what is
allowed. ``magstat schema`` prints :func:`json_schema`.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from magstat.core.facts import (
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
from magstat.errors import InvalidInputError
from magstat.kb.schema import KnowledgeBase

__all__ = ["facts_from_document", "json_schema"]

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


def _number(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(where, "must be a number", value=value)
    return float(value)


def _date(where: str, value: object) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise InvalidInputError(where, "not a date", value=value, allowed="YYYY-MM-DD")


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
        out.append(
            (
                _text(f"{spot}.system", data.get("system")),
                _text(f"{spot}.code", str(data.get("code", "")) or None),
            )
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
    when = as_of or _opt_date("as_of", doc.get("as_of"))
    if when is None:
        raise InvalidInputError("as_of", "is required (in the document or as --as-of)", allowed="YYYY-MM-DD")
    sex = doc.get("sex")
    if sex is not None and sex not in ("female", "male"):
        raise InvalidInputError(
            "sex", "unknown value", value=sex, allowed="female, male (or leave out if unknown)"
        )
    age = doc.get("age")
    labs = [_lab(f"labs[{i}]", item, kb) for i, item in enumerate(_list("labs", doc.get("labs") or []))]
    for key, test in (("alcohol_drinks_per_day", "alcohol_drinks_per_day"), ("audit_c", "audit_c")):
        if doc.get(key) is not None:
            labs.append(
                Lab(
                    test=test,
                    value=_number(key, doc[key]),
                    unit=kb.tests[test].canonical_unit,
                    origin=Origin(key, "field"),
                )
            )
    diet = _mapping("diet", doc.get("diet") or {})
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
            ffq.append(FoodServing(food, _number(f"diet.food_frequency.{food}", per_week) / 7.0))
    loading = _mapping("loading_test", doc.get("loading_test") or {})
    _keys(
        "loading_test",
        loading,
        ("retention_percent", "dose_mmol", "urine_mmol", "baseline_urine_mmol", "date"),
    )
    if loading.get("retention_percent") is not None:
        labs.append(
            Lab(
                test="loading_retention",
                value=_number("loading_test.retention_percent", loading["retention_percent"]),
                unit="%",
                when=_opt_date("loading_test.date", loading.get("date")),
                origin=Origin("loading_test", "field"),
            )
        )
    medications = None
    if "medications" in doc:
        medications = tuple(
            _medication(f"medications[{i}]", item, kb)
            for i, item in enumerate(_list("medications", doc["medications"]))
        )
    conditions = None
    if "conditions" in doc:
        conditions = tuple(
            _condition(f"conditions[{i}]", item, kb)
            for i, item in enumerate(_list("conditions", doc["conditions"]))
        )
    supplements = None
    if "supplements" in doc:
        supplements = tuple(
            _supplement(f"supplements[{i}]", item, kb)
            for i, item in enumerate(_list("supplements", doc["supplements"]))
        )
    return PatientFacts(
        as_of=when,
        patient_id=None if doc.get("id") is None else str(doc.get("id")),
        birth_date=_opt_date("birth_date", doc.get("birth_date")),
        age_years=None if age is None else _number("age", age),
        sex=sex,
        pregnant=_bool("pregnant", doc.get("pregnant")),
        lactating=_bool("lactating", doc.get("lactating")),
        medications=medications,
        conditions=conditions,
        signs=_signs(doc.get("signs"), kb) + _condition_signs(conditions, kb),
        labs=tuple(labs),
        chronic_stress=_bool("chronic_stress", doc.get("chronic_stress")),
        high_metabolic_demand=_bool("high_metabolic_demand", doc.get("high_metabolic_demand")),
        diet_mg_per_day=None
        if diet.get("mg_per_day") is None
        else _number("diet.mg_per_day", diet["mg_per_day"]),
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
        deceased=_deceased(doc, when),
        deceased_date=_opt_date("deceased_date", doc.get("deceased_date")),
    )


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
    _keys(where, data, ("test", "loinc", "value", "unit", "date", "reference_range", "method"))
    test_id = data.get("test")
    if test_id is None and data.get("loinc") is not None:
        found = match_test(kb, [("loinc", str(data["loinc"]))])
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
    dose = data.get("dose")
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
    name = data.get("name") or form
    text = _text(f"{where}.name", name)
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
        else _number(f"{where}.elemental_mg_per_day", elemental),
        product_mg_per_day=None if product is None else _number(f"{where}.product_mg_per_day", product),
        origin=Origin(where, "field"),
    )


def json_schema(kb: KnowledgeBase) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the patient document, with the KB's vocabularies."""
    tri = {"type": ["boolean", "null"], "description": "true, false, or null/absent for unknown"}
    code = {
        "type": "object",
        "additionalProperties": False,
        "required": ["system", "code"],
        "properties": {
            "system": {
                "type": "string",
                "description": "rxnorm, atc, snomed, icd10, loinc or a FHIR system URI",
            },
            "code": {"type": "string"},
            "display": {"type": "string"},
        },
    }
    codes = {"oneOf": [code, {"type": "array", "items": code}]}
    iso = {"type": "string", "format": "date", "description": "YYYY-MM-DD"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://magstat.invalid/schema/patient-document.json",
        "title": "magstat patient document",
        "description": (
            "What is known about one patient. Leave a key out when it is unknown; an empty list "
            "means none. Units are given per lab; values are converted and checked."
        ),
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "magstat": {"type": "string", "description": "document format version, e.g. '1'"},
            "id": {"type": ["string", "integer"]},
            "as_of": {**iso, "description": "date of the assessment (overridden by --as-of)"},
            "birth_date": iso,
            "deceased": {"type": "boolean", "description": "the patient has died (not assessed as living)"},
            "deceased_date": {
                **iso,
                "description": "date of death; on or before as_of: not assessed as living",
            },
            "age": {"type": "number", "minimum": 0, "maximum": 130},
            "sex": {"enum": ["female", "male"]},
            "pregnant": tri,
            "lactating": tri,
            "medications": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "code": codes,
                                "start": iso,
                                "current": {"type": "boolean", "default": True},
                                "dose": {"type": "string"},
                                "route": {"enum": list(_ROUTES)},
                                "reason": {"type": "string"},
                            },
                        },
                    ]
                },
            },
            "conditions": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "code": codes,
                                "current": {"type": "boolean", "default": True},
                                "onset": iso,
                            },
                        },
                    ]
                },
            },
            "alcohol_drinks_per_day": {"type": "number", "minimum": 0},
            "audit_c": {"type": "integer", "minimum": 0, "maximum": 12},
            "chronic_stress": tri,
            "high_metabolic_demand": tri,
            "signs": {
                "oneOf": [
                    {"type": "array", "items": {"enum": sorted(kb.signs)}},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": dict.fromkeys(sorted(kb.signs), tri),
                    },
                ]
            },
            "labs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["value"],
                    "properties": {
                        "test": {"enum": sorted(kb.tests)},
                        "loinc": {"type": "string"},
                        "value": {"type": "number"},
                        "unit": {"type": "string", "description": "e.g. mmol/L, mg/dL, mEq/L, umol/L"},
                        "date": iso,
                        "method": {"type": "string", "description": "for eGFR: the equation"},
                        "reference_range": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"low": {"type": "number"}, "high": {"type": "number"}},
                        },
                    },
                },
            },
            "diet": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "mg_per_day": {"type": "number", "minimum": 0},
                    "food_frequency": {
                        "type": "object",
                        "description": "servings per week of each food",
                        "additionalProperties": False,
                        "properties": {f: {"type": "number", "minimum": 0} for f in sorted(kb.foods)},
                    },
                },
            },
            "supplements": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "form": {"enum": sorted(kb.supplements)},
                                "elemental_mg_per_day": {"type": "number", "minimum": 0},
                                "product_mg_per_day": {"type": "number", "minimum": 0},
                            },
                        },
                    ]
                },
            },
            "loading_test": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "retention_percent": {"type": "number"},
                    "dose_mmol": {"type": "number"},
                    "urine_mmol": {"type": "number"},
                    "baseline_urine_mmol": {"type": "number"},
                    "date": iso,
                },
            },
        },
    }
