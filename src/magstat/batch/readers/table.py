"""Table input: CSV or Parquet with one row per patient, as other tools flatten records.

Each row is magstat's patient document (``magstat schema``) laid out as columns, and is read
by the same document adapter as ``magstat assess``. The columns (every one optional except
``patient_id``; an empty cell means *unknown*):

===========================  ======================================================================
column                       meaning
===========================  ======================================================================
``patient_id``               the patient's identifier (text), echoed in the results
``as_of``                    date of the assessment (YYYY-MM-DD); default ``--as-of``
``birth_date`` / ``age``     date of birth, or age in years
``sex``                      ``female`` or ``male``
``pregnant``, ``lactating``  ``true``/``false`` (also ``1``/``0``, ``yes``/``no``)
``medications``              current medications, separated by ``;`` (a list in Parquet); an
                             item may carry a code: ``omeprazole 20 mg [rxnorm:7646]``. ``none``
                             (or an empty Parquet list) says the list is known to be empty; an
                             empty cell, a null or no column means unknown
``conditions``               current conditions, the same way (``[icd10:N18.3]``, ``[snomed:...]``)
``alcohol_drinks_per_day``   average standard drinks per day
``audit_c``                  AUDIT-C score (0-12)
``chronic_stress``,          ``true``/``false``
``high_metabolic_demand``
``diet_mg_per_day``          dietary magnesium, mg/day
``<test>``                   a lab value, for each knowledge-base test id (``serum_mg``,
                             ``serum_creatinine``, ``egfr``, ``urine_mg_24h`` ...)
``<test>_unit``              its unit (``mmol/L``, ``mg/dL``, ``umol/L`` ...): required with the value
``<test>_date``              the date of the specimen (optional)
===========================  ======================================================================

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from magstat.batch.rows import Job, PatientResult, assess_facts, error_row
from magstat.errors import InvalidInputError
from magstat.kb import KnowledgeBase, load

__all__ = ["FIELDS", "allowed_columns", "assess_row", "check_columns", "is_parquet", "to_document"]

FIELDS: dict[str, str] = {
    "patient_id": "text",
    "as_of": "date",
    "birth_date": "date",
    "age": "number",
    "sex": "text",
    "pregnant": "bool",
    "lactating": "bool",
    "medications": "list",
    "conditions": "list",
    "alcohol_drinks_per_day": "number",
    "audit_c": "number",
    "chronic_stress": "bool",
    "high_metabolic_demand": "bool",
    "diet_mg_per_day": "number",
}
"""Columns other than the lab columns, with their kind."""

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
_CODED = re.compile(r"^(?P<name>.*?)\s*\[(?P<system>[A-Za-z][\w.\-]*):(?P<code>[^\]]+)\]\s*$")


def is_parquet(path: Path) -> bool:
    """Whether a file is Parquet (by its magic bytes, so the extension does not matter)."""
    with path.open("rb") as handle:
        return handle.read(4) == b"PAR1"


def lab_tests(kb: KnowledgeBase) -> list[str]:
    """Tests given as ``<test>``/``<test>_unit`` columns (those that are not plain fields)."""
    return [test for test in sorted(kb.tests) if test not in FIELDS]


def allowed_columns(kb: KnowledgeBase) -> list[str]:
    """Every column a table may have."""
    labs = [f"{test}{suffix}" for test in lab_tests(kb) for suffix in ("", "_unit", "_date")]
    return [*FIELDS, *labs]


def check_columns(columns: Iterable[str], kb: KnowledgeBase | None = None) -> None:
    """Refuse a table with unknown columns, without ``patient_id``, or a lab without its unit.

    Raises:
        InvalidInputError: naming the column and what is allowed.

    """
    kb = kb or load()
    names = list(columns)
    allowed = set(allowed_columns(kb))
    if "patient_id" not in names:
        raise InvalidInputError("patient_id", "column missing", allowed="a patient_id column")
    for name in names:
        if name not in allowed:
            raise InvalidInputError(
                name,
                "unknown column (a misspelt column would silently be unknown data)",
                allowed="the columns listed in docs/screening.md: " + ", ".join(sorted(allowed)),
            )
    for test in lab_tests(kb):
        if test in names and f"{test}_unit" not in names:
            raise InvalidInputError(test, f"needs a {test}_unit column", allowed="mmol/L, mg/dL, umol/L ...")


def _empty(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, float) and math.isnan(value))
    )


def _cell(column: str, kind: str, value: Any) -> Any:
    if _empty(value):
        return None
    if kind == "number":
        if isinstance(value, bool):
            raise InvalidInputError(column, "must be a number", value=value)
        if isinstance(value, int | float):
            return value
        try:
            return float(str(value).strip())
        except ValueError:
            raise InvalidInputError(column, "must be a number", value=value) from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise InvalidInputError(
            column, "must be true or false", value=value, allowed="true/false, 1/0, yes/no"
        )
    if kind == "date":
        if isinstance(value, dt.datetime):
            return value.date().isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        return str(value).strip()
    if kind == "text":
        return str(value).strip()
    return value


def _items(column: str, value: Any) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ("none", "[]"):
        return []
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(";")]
    elif isinstance(value, list | tuple):
        parts = [str(p).strip() for p in value if p is not None]
    else:
        raise InvalidInputError(column, "must be a list or ';'-separated text", value=value)
    items: list[Any] = []
    for part in parts:
        if not part:
            continue
        found = _CODED.match(part)
        if found:
            name = found.group("name") or found.group("code")
            items.append(
                {"name": name, "code": {"system": found.group("system"), "code": found.group("code").strip()}}
            )
        else:
            items.append(part)
    return items


def to_document(record: dict[str, Any], kb: KnowledgeBase) -> dict[str, Any]:
    """The patient document of one table row (empty cells left out: unknown).

    Raises:
        InvalidInputError: a cell cannot be read as its column's kind.

    """
    doc: dict[str, Any] = {}
    for column, kind in FIELDS.items():
        if column not in record:
            continue
        raw = record[column]
        if kind == "list":
            if _empty(raw):
                continue  # unknown list
            doc[column] = _items(column, raw)
            continue
        value = _cell(column, kind, raw)
        if value is None:
            continue
        if column == "patient_id":
            doc["id"] = value
        elif column == "diet_mg_per_day":
            doc["diet"] = {"mg_per_day": value}
        else:
            doc[column] = value
    labs = []
    for test in lab_tests(kb):
        value = _cell(test, "number", record.get(test))
        if value is None:
            continue
        unit = _cell(f"{test}_unit", "text", record.get(f"{test}_unit"))
        if unit is None:
            raise InvalidInputError(f"{test}_unit", "missing for a value", value=value)
        lab: dict[str, Any] = {"test": test, "value": value, "unit": unit}
        when = _cell(f"{test}_date", "date", record.get(f"{test}_date"))
        if when is not None:
            lab["date"] = when
        labs.append(lab)
    if labs:
        doc["labs"] = labs
    return doc


def assess_row(record: dict[str, Any], job: Job, kb: KnowledgeBase) -> PatientResult:
    """Assess one table row through the patient-document adapter.

    Raises:
        InvalidInputError: ``job.strict`` and the row cannot be read (the field names the row).

    """
    from magstat.adapters.document import facts_from_document  # noqa: PLC0415 - keeps imports light

    patient_id = str(record.get("patient_id") or "")
    try:
        doc = to_document(record, kb)
        as_of = dt.date.fromisoformat(doc.pop("as_of")) if doc.get("as_of") else job.as_of
        facts = facts_from_document(doc, kb, as_of=as_of)
        return assess_facts(facts, kb, job)
    except (InvalidInputError, ValueError) as err:
        message = err.message if isinstance(err, InvalidInputError) else f"as_of: {err}"
        if job.strict:
            raise InvalidInputError(f"patient_id {patient_id}", message) from None
        return PatientResult(error_row(patient_id, job.as_of, kb, message))
