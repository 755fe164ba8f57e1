"""The clinician's form: its fields (from the knowledge base) and the patient document it makes.

The form holds every input of design.md section 3. It does not judge any value: it turns what
was typed into a magstat patient document (numbers that do not parse are passed on as typed)
and lets the document adapter and the core refuse what they cannot read. Each refusal names a
field path (``labs[2].unit``); :func:`control_for` maps it back to the control that was filled.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from magstat.core.units import allowed_units, convert, parse_unit
from magstat.errors import InvalidInputError
from magstat.kb.cache import per_kb
from magstat.kb.schema import Condition, KnowledgeBase
from magstat.render.model import fmt

__all__ = [
    "FORMAT_VERSION",
    "Built",
    "FormSpec",
    "LabRow",
    "document_from_form",
    "error_message",
    "form_spec",
    "number_or_text",
    "rows",
]

FORMAT_VERSION = "1"
"""The patient-document format the form writes (``magstat`` key of the document)."""

# Tests asked elsewhere on the form: the loading test has its own section, alcohol and AUDIT-C
# are questions, not laboratory results.
_NOT_LAB_ROWS = ("loading_retention", "alcohol_drinks_per_day", "audit_c")
# Serum magnesium gets the current result and earlier ones, for the trend.
_SERUM_ROWS = 4
# Conditions asked as their own questions (pregnant, chronic stress, training load).
_ASKED_APART = ("pregnancy", "chronic_stress", "high_metabolic_demand")
MEDICATION_ROWS = 6
SUPPLEMENT_ROWS = 3
ALLERGY_ROWS = 2
OTHER_CONDITION_ROWS = 3
_MAX_ROWS = 100  # more rows than anyone types; bounds the work a crafted post can cause

_CATEGORY_NAMES = {
    "gi_malabsorption": "Gut and absorption",
    "gi_inflammation": "Inflammatory bowel disease",
    "alcohol": "Alcohol",
    "metabolic": "Metabolic",
    "nutrition": "Nutrition",
    "pregnancy": "Pregnancy",
    "endocrine": "Endocrine",
    "renal_tubular": "Inherited renal tubular disorders",
    "bone": "Bone",
    "critical_illness": "Critical illness",
    "cancer_therapy": "Cancer therapy",
    "kidney": "Kidney",
    "cardiac": "Heart and circulation",
    "neuro": "Neurological and mental health",
    "magnesium": "Magnesium disorders already diagnosed",
}
_DOMAIN_NAMES = {
    "neuromuscular": "Neuromuscular",
    "cardiac": "Heart",
    "metabolic": "Electrolytes and metabolism",
    "general": "General",
    "neuropsychiatric": "Mood and thinking",
}


@dataclass(frozen=True, slots=True)
class LabRow:
    """One row of the laboratory table: a test, a row number and its suggested units."""

    test: str
    name: str
    index: int
    units: tuple[str, ...]
    canonical_unit: str
    default_low: float | None
    default_high: float | None

    @property
    def key(self) -> str:
        """The prefix of this row's control names (``lab-serum_mg-0``)."""
        return f"lab-{self.test}-{self.index}"

    @property
    def label(self) -> str:
        """What a person reads for this row."""
        if self.index == 0:
            return self.name
        return f"{self.name}, earlier result {self.index}"


@dataclass(frozen=True, slots=True)
class Choice:
    """A knowledge-base entry offered as a choice (id, name, grouping)."""

    id: str
    name: str
    group: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class FormSpec:
    """Everything the form offers, taken from the knowledge base."""

    labs: tuple[LabRow, ...]
    signs: tuple[tuple[str, tuple[Choice, ...]], ...]
    conditions: tuple[tuple[str, tuple[Choice, ...]], ...]
    drug_names: tuple[str, ...]
    supplements: tuple[Choice, ...]
    foods: tuple[Choice, ...]
    unit_lists: tuple[tuple[str, tuple[str, ...]], ...]
    labels: Mapping[str, str]


def _grouped(items: list[Choice], names: Mapping[str, str]) -> tuple[tuple[str, tuple[Choice, ...]], ...]:
    groups: dict[str, list[Choice]] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    return tuple((names.get(g, g.replace("_", " ").capitalize()), tuple(v)) for g, v in groups.items())


@per_kb
def form_spec(kb: KnowledgeBase) -> FormSpec:
    """The form's fields, taken from the knowledge base (built once per knowledge base)."""
    labs = []
    for test in kb.tests.values():
        if test.id in _NOT_LAB_ROWS:
            continue
        units = tuple(dict.fromkeys([test.canonical_unit, *allowed_units(kb, test)]))
        for index in range(_SERUM_ROWS if test.id == "serum_mg" else 1):
            labs.append(
                LabRow(
                    test.id, test.name, index, units, test.canonical_unit, test.default_low, test.default_high
                )
            )
    signs = [Choice(s.id, s.name, s.domain, s.plain_name) for s in kb.signs.values()]
    conditions = [
        Choice(c.id, c.name, c.category) for c in kb.conditions.values() if c.id not in _ASKED_APART
    ]
    drug_names = sorted(
        {d.name for d in kb.drugs.values()} | {s for d in kb.drugs.values() for s in d.synonyms}
    )
    supplements = tuple(
        Choice(s.id, s.name, s.route, "not counted toward intake" if not s.counts_toward_intake else "")
        for s in kb.supplements.values()
    )
    foods = tuple(Choice(f.id, f.name, "food", f.serving) for f in kb.foods.values())
    unit_lists = tuple(dict.fromkeys((row.test, row.units) for row in labs))
    labels: dict[str, str] = {
        "id": "Patient label",
        "as_of": "Date of the assessment",
        "birth_date": "Date of birth",
        "age": "Age",
        "sex": "Sex",
        "pregnant": "Pregnant",
        "lactating": "Breastfeeding",
        "alcohol_drinks_per_day": "Alcoholic drinks per day",
        "audit_c": "AUDIT-C score",
        "chronic_stress": "Chronic psychological stress",
        "high_metabolic_demand": "Strenuous training or high physical demand",
        "diet_mg_per_day": "Dietary magnesium",
        "loading_retention_percent": "Loading test: retention",
        "loading_dose_mmol": "Loading test: dose given",
        "loading_urine_mmol": "Loading test: urine magnesium after the dose",
        "loading_baseline_urine_mmol": "Loading test: baseline urine magnesium",
        "loading_date": "Loading test: date",
    }
    for row in labs:
        for part, word in (
            ("value", "value"),
            ("unit", "unit"),
            ("date", "date"),
            ("low", "lab range low"),
            ("high", "lab range high"),
        ):
            labels[f"{row.key}-{part}"] = f"{row.label}: {word}"
    for sign in signs:
        labels[f"sign-{sign.id}"] = sign.name
    for food in foods:
        labels[f"food-{food.id}"] = f"{food.name}: servings per week"
    return FormSpec(
        labs=tuple(labs),
        signs=_grouped(signs, _DOMAIN_NAMES),
        conditions=_grouped(conditions, _CATEGORY_NAMES),
        drug_names=tuple(drug_names),
        supplements=supplements,
        foods=foods,
        unit_lists=unit_lists,
        labels=labels,
    )


def label_for(spec: FormSpec, control: str) -> str:
    """The human name of a control, for the list of problems at the top of the form."""
    if control in spec.labels:
        return spec.labels[control]
    match = re.fullmatch(r"(med|supp|condother|allergy)-(\d+)-(\w+)", control)
    if match:
        kind = {
            "med": "Medication",
            "supp": "Supplement",
            "condother": "Other condition",
            "allergy": "Allergy",
        }[match[1]]
        return f"{kind} {int(match[2]) + 1}: {match[3]}"
    return control


# --------------------------------------------------------------------------------------------
# Form values -> patient document


@dataclass
class Built:
    """A patient document built from the form, and where each of its fields came from.

    Attributes:
        document: the patient document (JSON-ready).
        controls: document path (``labs[0].unit``) -> name of the form control it came from.

    """

    document: dict[str, Any] = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=dict)

    def put(self, path: str, control: str) -> None:
        """Record that document field ``path`` came from form control ``control``."""
        self.controls[path] = control


def number_or_text(text: str) -> float | int | str:
    """A typed number as a number; anything else unchanged, for the core to refuse by name."""
    cleaned = text.strip()
    try:
        value = float(cleaned)
    except ValueError:
        return cleaned
    if not math.isfinite(value):
        return cleaned
    return int(value) if value.is_integer() and "." not in cleaned and "e" not in cleaned.lower() else value


def rows(values: Mapping[str, str], prefix: str) -> list[int]:
    """The row numbers of repeated controls ``{prefix}-{n}-...`` that were posted, in order."""
    found = set()
    pattern = re.compile(rf"{re.escape(prefix)}-(\d{{1,3}})-")
    for key in values:
        match = pattern.match(key)
        if match:
            found.add(int(match[1]))
    return sorted(found)[:_MAX_ROWS]


def field_text(values: Mapping[str, str], key: str) -> str:
    """The posted text of control ``key``, stripped; empty when it was not posted."""
    return (values.get(key) or "").strip()


def food_answers(values: Mapping[str, str], foods: Iterable[Choice], out: Built) -> dict[str, Any]:
    """Servings per week typed for each food, each recorded against its control for errors."""
    answers: dict[str, Any] = {}
    for food in foods:
        text = field_text(values, f"food-{food.id}")
        if text:
            out.put(f"diet.food_frequency.{food.id}", f"food-{food.id}")
            out.put(f"food_frequency[{len(answers)}]", f"food-{food.id}")
            answers[food.id] = number_or_text(text)
    return answers


def _tri(text: str) -> bool | None:
    return {"yes": True, "no": False}.get(text)


def condition_item(condition: Condition) -> dict[str, Any]:
    """The document entry for a ticked knowledge-base condition: its name and, if any, a code."""
    if condition.snomed:
        return {"name": condition.name, "code": {"system": "snomed", "code": condition.snomed[0]}}
    if condition.icd10:
        return {"name": condition.name, "code": {"system": "icd10", "code": condition.icd10[0]}}
    # No code: name it by its first synonym, the phrase the knowledge base recognises it by.
    return {"name": condition.synonyms[0] if condition.synonyms else condition.name}


SIGNS_REST = "signs_rest"
"""The control that marks every sign left "not known" as absent (the form's shortcut)."""

_TOP_LEVEL = (
    "id",
    "as_of",
    "birth_date",
    "age",
    "sex",
    "pregnant",
    "lactating",
    "chronic_stress",
    "high_metabolic_demand",
    "alcohol_drinks_per_day",
    "audit_c",
)


def document_from_form(values: Mapping[str, str], kb: KnowledgeBase) -> Built:
    """Build a magstat patient document from the posted form values.

    A control left empty is left out (unknown). A list (medications, allergies, conditions,
    supplements) is included when something is entered in it or it is marked as known: an
    empty known list means none. Signs left "not known" become absent only when the form's
    "everything else absent" box (:data:`SIGNS_REST`) is ticked.

    Returns:
        The document and the map from its field paths to the form's controls.

    """
    spec = form_spec(kb)
    out = Built()
    out.document["magstat"] = FORMAT_VERSION
    _scalars(values, out)
    _medications(values, out)
    _allergies(values, out)
    _conditions(values, spec, kb, out)
    _signs(values, spec, out)
    _labs(values, spec, out)
    _diet(values, spec, out)
    _supplements(values, kb, out)
    _loading(values, out)
    out.put("age_years", "age")  # the core's name for the age it converts
    return out


def _scalars(values: Mapping[str, str], out: Built) -> None:
    """Identity, dates, age, sex, the yes/no questions, alcohol and AUDIT-C."""
    doc = out.document
    # Top-level fields map to their controls even when empty: "as_of is required" names one.
    for key in _TOP_LEVEL:
        out.put(key, key)
    for key in ("id", "as_of", "birth_date", "sex"):
        if field_text(values, key):
            doc[key] = field_text(values, key)
    for key in ("age", "alcohol_drinks_per_day", "audit_c"):
        if field_text(values, key):
            doc[key] = number_or_text(field_text(values, key))
    for key in ("pregnant", "lactating", "chronic_stress", "high_metabolic_demand"):
        flag = _tri(field_text(values, key))
        if flag is not None:
            doc[key] = flag


def _medications(values: Mapping[str, str], out: Built) -> None:
    """The medication rows; an empty list when marked as known with no row filled."""
    meds: list[dict[str, Any]] = []
    for n in rows(values, "med"):
        row = {k: field_text(values, f"med-{n}-{k}") for k in ("name", "dose", "start")}
        if not any(row.values()) and not field_text(values, f"med-{n}-code"):
            continue
        where = f"medications[{len(meds)}]"
        item: dict[str, Any] = {}
        for k, v in row.items():
            out.put(f"{where}.{k}", f"med-{n}-{k}")
            if v:
                item[k] = v
        code = field_text(values, f"med-{n}-code")
        if code:
            system = field_text(values, f"med-{n}-codesystem") or "rxnorm"
            item["code"] = {"system": system, "code": code}
        for path in (".code", ".code.system", ".code.code"):
            out.put(f"{where}{path}", f"med-{n}-code")
        if field_text(values, f"med-{n}-stopped"):
            item["current"] = False
        out.put(where, f"med-{n}-name")
        meds.append(item)
    if meds or field_text(values, "meds_known") == "known":
        out.document["medications"] = meds


ALLERGY_TYPES = (("", "Not stated"), ("allergy", "Allergy"), ("intolerance", "Intolerance"))
"""The allergy rows' type choices (the document's ``type``; empty: not stated)."""


def _allergies(values: Mapping[str, str], out: Built) -> None:
    """The allergy and intolerance rows; an empty list when marked as known with no row filled."""
    allergies: list[dict[str, Any]] = []
    for n in rows(values, "allergy"):
        name = field_text(values, f"allergy-{n}-name")
        reaction = field_text(values, f"allergy-{n}-reaction")
        kind = field_text(values, f"allergy-{n}-type")
        if not name and not reaction:
            continue  # a type alone is the row's default, not an entry
        where = f"allergies[{len(allergies)}]"
        item: dict[str, Any] = {"name": name} if name else {}
        if reaction:
            item["reaction"] = reaction
        if kind:
            item["type"] = kind
        for key, control in (("", "name"), (".name", "name"), (".reaction", "reaction"), (".type", "type")):
            out.put(f"{where}{key}", f"allergy-{n}-{control}")
        allergies.append(item)
    if allergies or field_text(values, "allergies_known") == "known":
        out.document["allergies"] = allergies


def _conditions(values: Mapping[str, str], spec: FormSpec, kb: KnowledgeBase, out: Built) -> None:
    """Ticked knowledge-base conditions, then any others typed in."""
    conditions: list[Any] = []
    for group in spec.conditions:
        for choice in group[1]:
            if field_text(values, f"cond-{choice.id}"):
                out.put(f"conditions[{len(conditions)}]", f"cond-{choice.id}")
                conditions.append(condition_item(kb.conditions[choice.id]))
    for n in rows(values, "condother"):
        name = field_text(values, f"condother-{n}-name")
        if name:
            out.put(f"conditions[{len(conditions)}]", f"condother-{n}-name")
            conditions.append({"name": name})
    if conditions or field_text(values, "conds_known") == "known":
        out.document["conditions"] = conditions


def _signs(values: Mapping[str, str], spec: FormSpec, out: Built) -> None:
    """Signs present, absent or (left out) unknown; the shortcut makes the unknown ones absent."""
    rest_absent = bool(field_text(values, SIGNS_REST))
    signs: dict[str, bool] = {}
    for group in spec.signs:
        for choice in group[1]:
            flag = _tri(field_text(values, f"sign-{choice.id}"))
            if flag is None and rest_absent:
                flag = False
            if flag is not None:
                signs[choice.id] = flag
                out.put(f"signs.{choice.id}", f"sign-{choice.id}")
    if signs:
        out.document["signs"] = signs


_LAB_PATHS = (
    ("", "value"),
    (".value", "value"),
    (".test", "value"),
    (".unit", "unit"),
    (".date", "date"),
    (".reference_range", "low"),
    (".reference_range.low", "low"),
    (".reference_range.high", "high"),
    # Names the core uses for the same fields after conversion.
    (".ref_low", "low"),
    (".ref_high", "high"),
)


def _labs(values: Mapping[str, str], spec: FormSpec, out: Built) -> None:
    """One entry per laboratory row with a value, a date or a range."""
    labs: list[dict[str, Any]] = []
    for lab in spec.labs:
        parts = {k: field_text(values, f"{lab.key}-{k}") for k in ("value", "unit", "date", "low", "high")}
        if not any(parts[k] for k in ("value", "date", "low", "high")):
            continue
        where = f"labs[{len(labs)}]"
        entry: dict[str, Any] = {
            "test": lab.test,
            "value": number_or_text(parts["value"]) if parts["value"] else None,
            "unit": parts["unit"] or lab.canonical_unit,
        }
        if parts["date"]:
            entry["date"] = parts["date"]
        if parts["low"] or parts["high"]:
            entry["reference_range"] = {k: number_or_text(parts[k]) for k in ("low", "high") if parts[k]}
        for path, part in _LAB_PATHS:
            out.put(f"{where}{path}", f"{lab.key}-{part}")
        labs.append(entry)
    if labs:
        out.document["labs"] = labs


def _diet(values: Mapping[str, str], spec: FormSpec, out: Built) -> None:
    """Reported intake, or a food-frequency answer set."""
    diet: dict[str, Any] = {}
    if field_text(values, "diet_mg_per_day"):
        diet["mg_per_day"] = number_or_text(field_text(values, "diet_mg_per_day"))
        out.put("diet.mg_per_day", "diet_mg_per_day")
        out.put("diet_mg_per_day", "diet_mg_per_day")
    ffq = food_answers(values, spec.foods, out)
    if ffq:
        diet["food_frequency"] = ffq
    if diet:
        out.document["diet"] = diet


def _supplements(values: Mapping[str, str], kb: KnowledgeBase, out: Built) -> None:
    """The supplement rows, with the amount as elemental or product magnesium."""
    supplements: list[dict[str, Any]] = []
    for n in rows(values, "supp"):
        form, name, amount = (field_text(values, f"supp-{n}-{k}") for k in ("form", "name", "amount"))
        if not (form or name or amount):
            continue
        where = f"supplements[{len(supplements)}]"
        supplement: dict[str, Any] = {}
        if name:
            supplement["name"] = name
        elif form:
            supplement["name"] = kb.supplements[form].name if form in kb.supplements else form
        if form:
            supplement["form"] = form
        product = field_text(values, f"supp-{n}-basis") == "product"
        if amount:
            supplement["product_mg_per_day" if product else "elemental_mg_per_day"] = number_or_text(amount)
        out.put(where, f"supp-{n}-name" if name else f"supp-{n}-form")
        out.put(f"{where}.name", f"supp-{n}-name")
        out.put(f"{where}.form", f"supp-{n}-form")
        out.put(f"{where}.elemental_mg_per_day", f"supp-{n}-amount")
        out.put(f"{where}.product_mg_per_day", f"supp-{n}-amount")
        supplements.append(supplement)
    if supplements or field_text(values, "supps_known") == "known":
        out.document["supplements"] = supplements


def _loading(values: Mapping[str, str], out: Built) -> None:
    """The magnesium loading test's fields, when any is given."""
    loading: dict[str, Any] = {}
    for key in ("retention_percent", "dose_mmol", "urine_mmol", "baseline_urine_mmol", "date"):
        text = field_text(values, f"loading_{key}")
        if text:
            loading[key] = text if key == "date" else number_or_text(text)
            out.put(f"loading_test.{key}", f"loading_{key}")
            out.put(f"loading_{key}", f"loading_{key}")  # the core's names for the same fields
    if loading:
        out.document["loading_test"] = loading


def control_for(error: InvalidInputError, controls: Mapping[str, str]) -> str | None:
    """The form control an error's field path points at, or ``None`` if none does.

    The adapter names document paths (``labs[1].unit``); the core, which checks the facts
    again, may name them as ``labs[3] (alcohol_drinks_per_day).value``: the part in brackets
    is where the fact came from, so it is tried first.
    """
    path = error.field
    match = re.fullmatch(r"[\w.]+\[\d+\] \(([^)]+)\)(.*)", path)
    candidates = [match[1] + match[2], match[1]] if match else []
    candidates.append(path)
    for candidate in candidates:
        probe = candidate
        while probe:
            if probe in controls:
                return controls[probe]
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
    return None


def error_message(
    error: InvalidInputError, kb: KnowledgeBase | None = None, control: str | None = None
) -> str:
    """The error in words for the person at the form, without the machine field path.

    A laboratory value refused in another unit than the knowledge base's gets the allowed
    range in the unit that was entered too ("Allowed: 0.024 to 48.6 mg/dL (0.01 to 20
    mmol/L)"), so that nobody has to convert it in their head.
    """
    text = error.problem[:1].upper() + error.problem[1:]
    if error.value is not None:
        text += f" (you entered “{error.value}”)"
    text += "."
    if error.allowed:
        text += f" Allowed: {_allowed_in_entered_unit(error, kb, control) or error.allowed}."
    return text


_RANGE = re.compile(r"(?P<low>[-\d.]+) to (?P<high>[-\d.]+) (?P<unit>\S+)")
_ENTERED = re.compile(r"[-\d.eE+]+ (?P<unit>\S.*)")


def _allowed_in_entered_unit(error: InvalidInputError, kb: KnowledgeBase | None, control: str | None) -> str:
    """The allowed range converted to the unit entered, followed by the original; else empty."""
    match = re.fullmatch(r"lab-(?P<test>\w+)-\d+-\w+", control or "")
    allowed = _RANGE.fullmatch(error.allowed or "")
    entered = _ENTERED.fullmatch(str(error.value or ""))
    if kb is None or match is None or allowed is None or entered is None or match["test"] not in kb.tests:
        return ""
    test = kb.tests[match["test"]]
    source, target = parse_unit(allowed["unit"]), parse_unit(entered["unit"])
    if source is None or target is None or source == target:
        return ""
    try:
        low, high = (convert(kb, test, float(allowed[k]), source, target) for k in ("low", "high"))
    except ValueError:  # no analyte to convert through: keep the range as the KB states it
        return ""
    return f"{fmt(low)} to {fmt(high)} {entered['unit']} ({error.allowed})"
