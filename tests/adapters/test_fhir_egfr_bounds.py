"""An eGFR reported as a bound in FHIR: ``valueQuantity.comparator`` or a ``valueString`` (H365)."""

from __future__ import annotations

from magstat.adapters.fhir.extract import facts_from_fhir
from magstat.core import assess
from tests import safety_cases as cases
from tests.strategies import KB


def _bundle(value: dict) -> dict:
    case = cases.Case("egfr-bound", birth="1957-03-01", gender="male").mg(0.6)
    case._add(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": cases.LOINC, "code": "98979-8"}]},
            "effectiveDateTime": "2024-05-30T08:00:00Z",
            **value,
        }
    )
    return case.bundle()


def test_a_quantity_with_a_comparator_is_read_as_a_bound():
    quantity = {"value": 60, "comparator": ">", "unit": "mL/min/{1.73_m2}", "system": cases.UCUM}
    quantity["code"] = quantity["unit"]
    result = assess(facts_from_fhir(_bundle({"valueQuantity": quantity}), KB, as_of=cases.AS_OF), KB)
    assert (">", "reported", "CKD-EPI 2021") == (
        result.egfr.comparator,
        result.egfr.origin,
        result.egfr.equation,
    )
    assert "ns.kidney_function" not in {a.id for a in result.next_steps}


def test_a_value_string_bound_is_read_the_same_way():
    result = assess(facts_from_fhir(_bundle({"valueString": ">60 mL/min/1.73m2"}), KB, as_of=cases.AS_OF), KB)
    assert ">" == result.egfr.comparator
    assert 60 < result.egfr.value < 60.001
    assert result.mds.components["kidney"] is None
