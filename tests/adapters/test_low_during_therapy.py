"""Low serum magnesium while magnesium is being given as treatment (H366).

The course under way is the repletion: no oral dose is proposed on top of it, and a urine
magnesium collected during it mostly shows the dose given (people who are not depleted excrete
most of an intravenous load within a day, S43, S41), so it is not read as renal wasting and not
proposed until the course has ended.
"""

from __future__ import annotations

from magstat.adapters.fhir.extract import facts_from_fhir
from magstat.core import assess
from tests import safety_cases as cases
from tests.strategies import KB


def _assess(case: cases.Case):
    return assess(facts_from_fhir(case.bundle(), KB, as_of=cases.AS_OF), KB)


def _ids(actions) -> list[str]:
    return [a.id for a in actions]


def test_low_after_an_infusion_gets_no_oral_dose_and_no_urine_study_now():
    result = _assess(cases.iv_magnesium_given())
    assert result.status == "deficient"
    safety = _ids(result.safety)
    assert "sf.oral_mild" not in safety
    during = next(a for a in result.safety if a.id == "sf.low_during_therapy")
    assert during.priority == "high"
    assert "0.55 mmol/L" in during.reason and cases.MG_IV in during.reason
    steps = _ids(result.next_steps)
    assert "ns.urine_after_therapy" in steps
    assert "ns.femg_or_24h_urine" not in steps


def test_the_same_low_value_without_therapy_gets_the_oral_dose_and_the_urine_study():
    case = cases.Case("no-therapy", birth="1958-03-03").mg(0.55, when="2024-06-01T08:00:00Z")
    result = _assess(case)
    assert "sf.oral_mild" in _ids(result.safety)
    assert "sf.low_during_therapy" not in _ids(result.safety)
    assert "ns.femg_or_24h_urine" in _ids(result.next_steps)


def _with_urine(case: cases.Case, when: str) -> cases.Case:
    # Spot urine magnesium 3.2 mmol/L and creatinine 80 mg/dL with serum creatinine 0.9 mg/dL:
    # FEMg about 7.4% with serum magnesium 0.55 mmol/L.
    return (
        case.lab("2160-0", 0.9, "mg/dL", when)
        .lab("19124-7", 3.2, "mmol/L", when)
        .lab("2161-8", 80, "mg/dL", when)
    )


def test_a_high_femg_during_therapy_is_not_read_as_renal_wasting():
    result = _assess(_with_urine(cases.iv_magnesium_given(), "2024-06-01T08:00:00Z"))
    assert result.femg.percent is not None and result.femg.percent > 4
    assert result.femg.interpretation == "indeterminate"
    finding = next(f for f in result.findings if f.id.startswith("femg"))
    assert "during magnesium treatment" in finding.text
    assert {"S43", "S41"} <= set(finding.sources)


def test_a_urine_sample_taken_before_the_therapy_started_is_read_as_usual():
    case = cases.Case("before", birth="1958-03-03").given(
        cases.MG_IV, route=cases.IV, dose=(4, "g"), start="2024-06-01T10:00:00Z", end="2024-06-01T12:00:00Z"
    )
    case.mg(0.55, when="2024-05-31T08:00:00Z")
    result = _assess(_with_urine(case, "2024-05-31T08:00:00Z"))
    assert result.femg.interpretation == "renal"


def test_a_severe_deficit_during_an_infusion_quotes_no_label_dose():
    # 0.35 mmol/L two hours after 4 g of IV magnesium sulfate: the label's 5 g over 3 hours would
    # not count what has been given; the urgent note asks to review the course and the total.
    case = (
        cases.Case("severe-iv", birth="1958-03-03")
        .given(cases.MG_IV, route=cases.IV, dose=(4, "g"), reason="Hypomagnesemia")
        .mg(0.35, when="2024-06-01T08:00:00Z")
    )
    result = _assess(case)
    assert result.status == "deficient" and result.severity == "severe"
    safety = _ids(result.safety)
    assert "sf.severe_iv" not in safety
    severe = next(a for a in result.safety if a.id == "sf.severe_during_therapy")
    assert severe.priority == "urgent"
    assert "5 g" not in severe.text and "total given" in severe.text
    assert safety.index("sf.severe_during_therapy") < safety.index("sf.low_during_therapy")
    # Without the infusion the label's dose is quoted, as before.
    untreated = _assess(cases.Case("severe", birth="1958-03-03").mg(0.35, when="2024-06-01T08:00:00Z"))
    assert "sf.severe_iv" in _ids(untreated.safety)
    assert "sf.severe_during_therapy" not in _ids(untreated.safety)
