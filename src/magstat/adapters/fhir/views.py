"""The SQL on FHIR v2 ViewDefinitions of what magstat reads from FHIR, generated from the KB.

magstat flattens FHIR with eight views, one per resource type it reads. They ship with the
knowledge base (``magstat/kb/data/views/*.json``), so they are versioned and hashed with it
(``KnowledgeBase.sha256`` covers their bytes), and this module writes them: run
``python -m magstat.adapters.fhir.views`` after a change to the code lists, and the test
``tests/adapters/test_fhir_views.py`` fails while the shipped files differ from what this
module generates.

Each view has one row per resource and one column per element the FHIR adapter reads, named
as in FHIR JSON (``valueQuantity``, ``onsetPeriod``), so the rows are the resource cut down to
what the clinical reading needs. Complex elements (a CodeableConcept, a Quantity, a Dosage)
are kept whole (JSON in a table): the reading checks each element's shape and names the
element in its errors, which it can only do on the element as written. Choice elements are
read the portable way (``value.ofType(Quantity)``).

After them come columns for analysts (:data:`ANALYST_COLUMNS`, never read by magstat, so the
service and screening do not compute them): the patient key, codes, value and unit, reference
range, statuses as plain values; and, on Observation, ``kb_loinc``: the result's LOINC codes
that the knowledge base's lab tests list (generated from ``tests.toml``), so a
``len(kb_loinc) > 0`` filter keeps the results magstat reads by code.

The same views run everywhere: in process on a bundle (the CLI, the CDS Hooks service), in
DuckDB and in Spark (``magstat screen``), and ``magstat views run magstat_observation ...``
gives analysts the same table.

.. versionadded:: 0.3.0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from magstat.kb.schema import KnowledgeBase

__all__ = ["ANALYST_COLUMNS", "VIEW_FILES", "generate_views", "render_view", "write_views"]

_PATIENT = ("patient", "subject.getReferenceKey(Patient)", False)
_ANALYST: dict[str, list[tuple[str, str, bool]]] = {
    "Observation": [
        _PATIENT,
        ("loinc", "code.coding.where(system = 'http://loinc.org').code", True),
        ("value", "value.ofType(Quantity).value", False),
        ("unit", "value.ofType(Quantity).code", False),
        ("ref_low", "referenceRange.first().low.value", False),
        ("ref_high", "referenceRange.first().high.value", False),
        ("interpretation_code", "interpretation.coding.code", True),
    ],
    "Condition": [
        _PATIENT,
        ("code_code", "code.coding.code", True),
        ("code_text", "code.text", False),
        ("clinical_status", "clinicalStatus.coding.code.first()", False),
        ("verification_status", "verificationStatus.coding.code.first()", False),
    ],
    "MedicationRequest": [
        _PATIENT,
        ("medication_code", "medication.ofType(CodeableConcept).coding.code", True),
        ("medication_text", "medication.ofType(CodeableConcept).text", False),
        ("medication_key", "medication.ofType(Reference).getReferenceKey(Medication)", False),
    ],
    "MedicationStatement": [
        _PATIENT,
        ("medication_code", "medication.ofType(CodeableConcept).coding.code", True),
        ("medication_text", "medication.ofType(CodeableConcept).text", False),
        ("medication_key", "medication.ofType(Reference).getReferenceKey(Medication)", False),
    ],
    "MedicationAdministration": [
        _PATIENT,
        ("medication_code", "medication.ofType(CodeableConcept).coding.code", True),
        ("medication_text", "medication.ofType(CodeableConcept).text", False),
        ("medication_key", "medication.ofType(Reference).getReferenceKey(Medication)", False),
    ],
    "AllergyIntolerance": [
        ("patient", "patient.getReferenceKey(Patient)", False),
        ("code_code", "code.coding.code", True),
        ("code_text", "code.text", False),
        ("clinical_status", "clinicalStatus.coding.code.first()", False),
        ("verification_status", "verificationStatus.coding.code.first()", False),
    ],
    "Medication": [("code_code", "code.coding.code", True), ("code_text", "code.text", False)],
}

_TYPES = {"value": "decimal", "ref_low": "decimal", "ref_high": "decimal"}

ANALYST_COLUMNS = frozenset(
    {"kb_loinc", "interpretation"} | {name for columns in _ANALYST.values() for name, _, _ in columns}
)
"""Columns for analysts (plain values to filter and join on) that the clinical reading does not
use: the in-process reading and screening leave them out."""

_LOINC = "http://loinc.org"

# (resource type, view name, columns: (column name, FHIRPath, collection)).
_Column = tuple[str, str, bool]


def _choice(element: str, types: tuple[str, ...]) -> list[_Column]:
    """Columns for the types of a choice element, named as in JSON (``valueQuantity``)."""
    return [(element + t[:1].upper() + t[1:], f"{element}.ofType({t})", False) for t in types]


_OBSERVATION_VALUES = (
    "Quantity",
    "CodeableConcept",
    "string",
    "boolean",
    "integer",
    "Range",
    "Ratio",
    "SampledData",
    "time",
    "dateTime",
    "Period",
)

_VIEWS: tuple[tuple[str, str, str, list[_Column]], ...] = (
    (
        "Patient",
        "magstat_patient",
        "Demographics magstat reads: birth date, administrative gender, death.",
        [
            ("id", "id", False),
            ("birthDate", "birthDate", False),
            ("gender", "gender", False),
            *_choice("deceased", ("boolean", "dateTime")),
        ],
    ),
    (
        "Observation",
        "magstat_observation",
        "Observations (lab results, signs) with their code, value, unit, reference range, dates and status.",
        [
            ("id", "id", False),
            ("status", "status", False),
            ("code", "code", False),
            ("subject", "subject", False),
            *_choice("effective", ("dateTime", "Period", "instant")),
            ("issued", "issued", False),
            *_choice("value", _OBSERVATION_VALUES),
            ("dataAbsentReason", "dataAbsentReason", False),
            ("referenceRange", "referenceRange", True),
            ("method", "method", False),
            ("interpretation", "interpretation", True),
        ],
    ),
    (
        "Condition",
        "magstat_condition",
        "Conditions with codes, text, clinical and verification status, category, onset and abatement.",
        [
            ("id", "id", False),
            ("code", "code", False),
            ("subject", "subject", False),
            ("clinicalStatus", "clinicalStatus", False),
            ("verificationStatus", "verificationStatus", False),
            ("category", "category", True),
            *_choice("onset", ("dateTime", "Age", "Period", "Range", "string")),
            ("recordedDate", "recordedDate", False),
            *_choice("abatement", ("dateTime", "Age", "Period", "Range", "string", "boolean")),
        ],
    ),
    (
        "MedicationRequest",
        "magstat_medication_request",
        "Medication orders with the drug, status, intent, date, dosage, route and reasons.",
        [
            ("id", "id", False),
            ("status", "status", False),
            ("intent", "intent", False),
            ("subject", "subject", False),
            *_choice("medication", ("CodeableConcept", "Reference")),
            ("authoredOn", "authoredOn", False),
            ("dosageInstruction", "dosageInstruction", True),
            ("reasonCode", "reasonCode", True),
            ("reasonReference", "reasonReference", True),
            ("contained", "contained", True),
        ],
    ),
    (
        "MedicationStatement",
        "magstat_medication_statement",
        "Medications taken, with the drug, status, period, dosage, route and reasons.",
        [
            ("id", "id", False),
            ("status", "status", False),
            ("subject", "subject", False),
            *_choice("medication", ("CodeableConcept", "Reference")),
            *_choice("effective", ("dateTime", "Period")),
            ("dosage", "dosage", True),
            ("reasonCode", "reasonCode", True),
            ("reasonReference", "reasonReference", True),
            ("contained", "contained", True),
        ],
    ),
    (
        "MedicationAdministration",
        "magstat_medication_administration",
        "Medications given (an infusion, a dose on the ward), with the drug, status, time given, "
        "dosage (route, dose, rate) and reasons.",
        [
            ("id", "id", False),
            ("status", "status", False),
            ("subject", "subject", False),
            *_choice("medication", ("CodeableConcept", "Reference")),
            *_choice("effective", ("dateTime", "Period")),
            ("dosage", "dosage", False),
            ("reasonCode", "reasonCode", True),
            ("reasonReference", "reasonReference", True),
            ("contained", "contained", True),
        ],
    ),
    (
        "AllergyIntolerance",
        "magstat_allergy_intolerance",
        "Allergies and intolerances with the substance, clinical and verification status, type, "
        "criticality and reactions; the patient column is named subject, as in the other views.",
        [
            ("id", "id", False),
            ("code", "code", False),
            ("subject", "patient", False),
            ("clinicalStatus", "clinicalStatus", False),
            ("verificationStatus", "verificationStatus", False),
            ("type", "type", False),
            ("criticality", "criticality", False),
            ("reaction", "reaction", True),
        ],
    ),
    (
        "Medication",
        "magstat_medication",
        "Medications referenced by orders, statements and administrations: code and ingredients.",
        [
            ("id", "id", False),
            ("code", "code", False),
            ("ingredient", "ingredient", True),
        ],
    ),
)

VIEW_FILES: tuple[str, ...] = tuple(f"{name}.json" for _, name, _, _ in _VIEWS)
"""The file names of the shipped views, in the order of :func:`generate_views`."""


def _kb_loinc_path(kb: KnowledgeBase) -> str:
    codes = sorted({code.code for test in kb.tests.values() for code in test.loinc})
    listed = " | ".join(f"'{c}'" for c in codes)
    return f"code.coding.where(system = '{_LOINC}' and code in ({listed})).code"


def generate_views(kb: KnowledgeBase) -> dict[str, dict[str, Any]]:
    """The ViewDefinitions of magstat's flattening, generated from the knowledge base.

    Args:
        kb: the knowledge base whose code lists go into the views.

    Returns:
        View name -> the ViewDefinition (JSON-ready), in a fixed order.

    .. versionadded:: 0.3.0

    """
    out: dict[str, dict[str, Any]] = {}
    for resource, name, description, columns in _VIEWS:
        cols = list(columns) + _ANALYST.get(resource, [])
        if resource == "Observation":
            cols.insert(3, ("kb_loinc", _kb_loinc_path(kb), True))
        out[name] = {
            "resourceType": "ViewDefinition",
            "name": name,
            "title": description,
            "status": "active",
            "resource": resource,
            "select": [
                {
                    "column": [
                        {
                            "name": col,
                            "path": path,
                            **({"type": _TYPES[col]} if col in _TYPES else {}),
                            **({"collection": True} if many else {}),
                        }
                        for col, path, many in cols
                    ]
                }
            ],
        }
    return out


def render_view(view: dict[str, Any]) -> str:
    """The text of a view file: indented JSON, keys in order, one final newline.

    .. versionadded:: 0.3.0
    """
    return json.dumps(view, indent=2, ensure_ascii=False) + "\n"


def write_views(folder: Path, kb: KnowledgeBase) -> list[Path]:
    """Write every generated view to ``folder`` as ``<name>.json``.

    Returns:
        The files written.

    .. versionadded:: 0.3.0

    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, view in generate_views(kb).items():
        path = folder / f"{name}.json"
        path.write_text(render_view(view), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    from magstat.kb import load

    target = Path(__file__).resolve().parents[2] / "kb" / "data" / "views"
    for written_path in write_views(target, load()):
        sys.stdout.write(f"{written_path}\n")
