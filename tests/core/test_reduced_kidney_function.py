"""Urine studies with reduced kidney function and on dialysis (H358, H359).

With fewer working nephrons the kidney excretes a larger fraction of filtered magnesium as an
adaptation, so a high FEMg no longer separates renal wasting; on dialysis the dialysate sets the
balance and urine studies cannot show the cause.
"""

from __future__ import annotations

import pytest

from magstat.core import assess
from magstat.core.facts import ConditionFact, Origin
from tests.core.test_assess import facts, lab, mg


def _femg_labs(creatinine: float):
    # Urine magnesium 3.2 mmol/L, urine creatinine 80 mg/dL with serum 0.58 mmol/L.
    return (
        mg(0.58, low=0.7, high=1.0),
        lab("serum_creatinine", creatinine, "mg/dL"),
        lab("urine_mg_spot", 3.2, "mmol/L"),
        lab("urine_creatinine", 80, "mg/dL"),
    )


def _ckd(text: str) -> ConditionFact:
    return ConditionFact(text, "chronic_kidney_disease", True, origin=Origin("Condition/ckd"))


def _steps(result) -> set[str]:
    return {a.id for a in result.next_steps}


def test_high_femg_with_normal_kidney_function_reads_as_renal(kb):
    result = assess(facts(labs=_femg_labs(0.9)), kb)
    assert result.egfr.value > 60
    assert result.femg.interpretation == "renal"


def test_high_femg_with_reduced_egfr_is_not_read_as_renal_wasting(kb):
    result = assess(facts(labs=_femg_labs(2.0)), kb)
    assert result.egfr.value < 60
    assert result.femg.percent > 4
    assert result.femg.interpretation == "indeterminate"
    finding = next(f for f in result.findings if f.id == "femg.indeterminate")
    assert "adaptation" in finding.text and "eGFR" in finding.text
    assert "eGFR" in {i.name for i in finding.inputs}
    assert "S667" in finding.sources
    # Not counted as renal wasting anywhere else either: no renal-loss finding.
    assert "femg.renal" not in {f.id for f in result.findings}


def test_high_femg_with_ckd_on_the_problem_list_and_no_creatinine(kb):
    labs = tuple(x for x in _femg_labs(0.9) if x.test != "serum_creatinine")
    # Without serum creatinine there is no FEMg at all; with it and a normal eGFR but CKD listed,
    # the list decides.
    assert assess(facts(labs=labs, conditions=(_ckd("CKD stage 3"),)), kb).femg.percent is None
    result = assess(facts(labs=_femg_labs(0.9), conditions=(_ckd("CKD stage 3"),)), kb)
    assert result.femg.interpretation == "indeterminate"
    assert (
        "chronic kidney disease on the problem list"
        in next(f for f in result.findings if f.id == "femg.indeterminate").text
    )


def test_low_femg_with_reduced_egfr_still_reads_as_extrarenal(kb):
    result = assess(
        facts(
            labs=(
                mg(0.6, low=0.7, high=1.0),
                lab("serum_creatinine", 2.0, "mg/dL"),
                lab("urine_mg_spot", 0.3, "mmol/L"),
                lab("urine_creatinine", 100, "mg/dL"),
            )
        ),
        kb,
    )
    assert result.femg.percent < 2
    assert result.femg.interpretation == "extrarenal"


@pytest.mark.parametrize(
    ("creatinine", "step"),
    [(0.9, "ns.femg_or_24h_urine"), (2.0, "ns.urine_24h_reduced_gfr")],
)
def test_low_serum_proposes_the_urine_test_that_fits_kidney_function(kb, creatinine, step):
    result = assess(
        facts(labs=(mg(0.6, low=0.7, high=1.0), lab("serum_creatinine", creatinine, "mg/dL"))), kb
    )
    steps = _steps(result)
    assert step in steps
    other = ({"ns.femg_or_24h_urine", "ns.urine_24h_reduced_gfr"} - {step}).pop()
    assert other not in steps
    assert "ns.dialysis_mg" not in steps


@pytest.mark.parametrize(
    "text",
    ["End-stage renal disease on haemodialysis", "Dependence on renal dialysis", "ESRD, peritoneal dialysis"],
)
def test_on_dialysis_the_dialysate_is_reviewed_and_no_urine_test_is_proposed(kb, text):
    for value in (0.55, 1.4):
        result = assess(facts(labs=(mg(value, low=0.7, high=1.0),), conditions=(_ckd(text),)), kb)
        steps = _steps(result)
        assert "ns.dialysis_mg" in steps, (text, value)
        assert not {"ns.femg_or_24h_urine", "ns.urine_24h_reduced_gfr"} & steps
        action = next(a for a in result.next_steps if a.id == "ns.dialysis_mg")
        assert ("low" if value < 1 else "high") in action.reason


@pytest.mark.parametrize(
    "text", ["CKD stage 4, not on dialysis", "Pre-dialysis CKD", "CKD 5, declined dialysis"]
)
def test_kidney_disease_not_on_dialysis_gets_the_reduced_gfr_urine_step(kb, text):
    result = assess(facts(labs=(mg(0.55, low=0.7, high=1.0),), conditions=(_ckd(text),)), kb)
    steps = _steps(result)
    assert "ns.dialysis_mg" not in steps
    assert "ns.urine_24h_reduced_gfr" in steps


def test_dialysis_with_a_normal_serum_value_adds_no_dialysis_step(kb):
    result = assess(facts(labs=(mg(0.9, low=0.7, high=1.0),), conditions=(_ckd("on haemodialysis"),)), kb)
    assert "ns.dialysis_mg" not in _steps(result)
