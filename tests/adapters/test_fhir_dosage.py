"""FHIR dosage, route and indication reading: dose x frequency, salts, parenteral therapy."""

from __future__ import annotations

import copy

import pytest

from magstat.adapters.fhir.extract import facts_from_fhir
from magstat.errors import InvalidInputError
from tests import safety_cases as cases
from tests.strategies import KB


def read(bundle):
    """Facts of a constructed bundle at the cases' as-of date."""
    return facts_from_fhir(bundle, KB, as_of=cases.AS_OF)


def test_statement_dosage_gives_mg_per_day_and_a_supplement():
    """MedicationStatement.dosage 100 mg twice a day is 200 mg/day, an elemental-magnesium supplement."""
    facts = read(cases.child_supplement())
    (medication,) = facts.medications
    assert 200 == medication.dose_mg_per_day
    assert "oral" == medication.route
    (supplement,) = facts.supplements
    assert (None, 200) == (supplement.form, supplement.elemental_mg_per_day)


def test_salt_is_read_from_the_name_and_converted():
    """Magnesium oxide 400 mg twice a day is product weight: 800 mg of the salt, 60.3% elemental."""
    facts = read(cases.child_supplement("magnesium oxide 400 MG Oral Tablet", 400))
    (supplement,) = facts.supplements
    assert ("oxide", 800, None) == (
        supplement.form,
        supplement.product_mg_per_day,
        supplement.elemental_mg_per_day,
    )


def test_request_route_and_reason_are_read():
    """dosageInstruction.route (SNOMED 47625008) and reasonCode text reach the medication fact."""
    facts = read(cases.mg_therapy(1.9))
    therapy = next(m for m in facts.medications if "magnesium sulfate" in m.text)
    assert ("intravenous", "Severe pre-eclampsia") == (therapy.route, therapy.reason)
    assert facts.supplements is None


def test_route_from_dose_text_and_period_units():
    """'IV' in the dose text gives the route; 1 g every 12 hours is 2,000 mg/day."""
    bundle = cases.mg_therapy(1.9)
    request = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationRequest"
    )
    request["dosageInstruction"] = [
        {
            "text": "1 g IV every 12 hours",
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "g", "system": cases.UCUM, "code": "g"}}],
            "timing": {"repeat": {"frequency": 1, "period": 12, "periodUnit": "h"}},
        }
    ]
    therapy = next(m for m in read(bundle).medications if "magnesium sulfate" in m.text)
    assert ("intravenous", 2000) == (therapy.route, therapy.dose_mg_per_day)


def test_dose_in_tablets_is_not_guessed():
    """A dose in tablets has no mass: the amount per day stays unknown and the supplement content is unknown."""
    bundle = cases.child_supplement()
    statement = bundle["entry"][1]["resource"]
    statement["dosage"][0]["doseAndRate"] = [{"doseQuantity": {"value": 1, "unit": "tablet"}}]
    facts = read(bundle)
    assert facts.medications[0].dose_mg_per_day is None
    assert facts.supplements[0].elemental_mg_per_day is None


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("doseAndRate", 0, "doseQuantity", "value"), -5, "dosage[0].doseAndRate[0].doseQuantity.value"),
        (("timing", "repeat", "periodUnit"), "fortnight", "dosage[0].timing.repeat.periodUnit"),
        (("timing", "repeat", "frequency"), 0, "dosage[0].timing.repeat"),
    ],
)
def test_bad_dosage_is_refused_naming_the_field(path, value, field):
    """A negative dose, an unknown period unit or a zero frequency is refused with the field named."""
    bundle = copy.deepcopy(cases.child_supplement())
    target = bundle["entry"][1]["resource"]["dosage"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InvalidInputError) as caught:
        facts_from_fhir(bundle, KB, as_of=cases.AS_OF, strict=True)
    assert field in str(caught.value)
