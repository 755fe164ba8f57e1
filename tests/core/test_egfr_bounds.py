"""An eGFR reported only as a bound (">60", "<15"), as many laboratories do (H365).

A bound on one side of every cut-off the rules use is kidney function known for those rules:
">60" is not reduced, "<15" is below every cut-off. It must neither be dropped as unknown (which
asks for a kidney test the record already answers) nor be read as the number written (">60" as
exactly 60 would score an MDS kidney point it may not have).
"""

from __future__ import annotations

from magstat.core import assess
from magstat.core.facts import SupplementFact
from tests.core.test_assess import facts, lab, med, mg


def _egfr(value: float, comparator: str) -> object:
    return lab("egfr", value, "mL/min/{1.73_m2}", comparator=comparator)


def _steps(result) -> set[str]:
    return {a.id for a in result.next_steps}


def test_above_60_is_known_kidney_function_not_reduced(kb):
    result = assess(
        facts(labs=(mg(0.6, low=0.7, high=1.0), _egfr(60, ">")), medications=(med("omeprazole"),)), kb
    )
    assert result.egfr.comparator == ">"
    assert result.egfr.origin == "reported"
    assert 60 < result.egfr.value < 60.001
    assert "egfr_or_creatinine" not in result.missing_inputs
    assert "ns.kidney_function" not in _steps(result)
    # Low serum magnesium with normal kidney function: the urine study that tells the cause.
    assert "ns.femg_or_24h_urine" in _steps(result)
    assert "ns.urine_24h_reduced_gfr" not in _steps(result)
    finding = next(f for f in result.findings if f.id == "egfr")
    assert "eGFR >60 mL/min/1.73 m²" in finding.text
    assert [i.value for i in finding.inputs] == [">60"]
    # The MDS kidney component could be 0 (90 or more) or 1 (60-89): unknown, not 1.
    assert result.mds.components["kidney"] is None
    assert result.to_dict()["egfr"]["comparator"] == ">"
    assert result.to_dict()["egfr"]["value"] == 60.0


def test_at_least_60_is_not_reduced_either(kb):
    result = assess(facts(labs=(mg(0.6, low=0.7, high=1.0), _egfr(60, ">="))), kb)
    assert result.egfr.comparator == ">="
    assert "ns.kidney_function" not in _steps(result)
    assert "ns.urine_24h_reduced_gfr" not in _steps(result)


def test_above_90_scores_no_mds_kidney_point(kb):
    result = assess(facts(labs=(mg(0.8), _egfr(90, ">"))), kb)
    assert result.mds.components["kidney"] == 0
    mds = next(f for f in result.findings if f.id == "mds")
    assert ">90" in {i.value for i in mds.inputs}


def test_below_15_is_severe_and_stops_oral_magnesium(kb):
    supplement = SupplementFact("oxide", "magnesium oxide", product_mg_per_day=400)
    result = assess(facts(labs=(mg(0.6, low=0.7, high=1.0), _egfr(15, "<")), supplements=(supplement,)), kb)
    assert result.egfr.comparator == "<"
    assert result.egfr.value < 15
    assert result.mds.components["kidney"] == 2
    avoid = next(a for a in result.safety if a.id == "sf.renal_avoid_oral")
    assert avoid.priority == "urgent"
    assert "eGFR <15 mL/min/1.73 m²" in avoid.reason
    assert "ns.urine_24h_reduced_gfr" in _steps(result)


def test_a_bound_between_cut_offs_is_not_used(kb):
    # ">30" says nothing about the cut-off of 60: left out and named, as any undecided bound.
    result = assess(facts(labs=(mg(0.6, low=0.7, high=1.0), _egfr(30, ">"))), kb)
    assert result.egfr.value is None
    assert "egfr_or_creatinine" in result.missing_inputs
    assert any(a.id == "lim.inexact_result" and "reported as >30" in a.reason for a in result.limitations)
    # "<=30" might be 30 itself, which is not below 30.
    assert assess(facts(labs=(mg(0.8), _egfr(30, "<="))), kb).egfr.value is None


def test_an_exact_estimate_from_creatinine_is_preferred_to_a_bound(kb):
    labs = (mg(0.8), _egfr(60, ">"), lab("serum_creatinine", 0.8, "mg/dL"))
    result = assess(facts(labs=labs), kb)
    assert result.egfr.origin == "computed"
    assert result.egfr.comparator is None
    # No discrepancy is claimed between a bound and an exact value.
    assert "egfr.discrepancy" not in {f.id for f in result.findings}


def test_above_60_adds_at_most_one_point_so_the_band_can_be_decided(kb):
    # No diuretic, no PPI, no drinking: 0 points known; ">60" adds 0 or 1, so the score is 0-1,
    # the low band either way (an unknown kidney component would allow 2, the middle band).
    labs = (mg(0.8), _egfr(60, ">"), lab("alcohol_drinks_per_day", 0, "{drinks}/d"))
    result = assess(facts(labs=labs), kb)
    assert result.mds.possible_range == (0, 1)
    assert result.mds.band == "low"
    mds = next(f for f in result.findings if f.id == "mds")
    assert "kidney 0 or 1" in mds.text
    without = assess(facts(labs=(mg(0.8), lab("alcohol_drinks_per_day", 0, "{drinks}/d"))), kb)
    assert without.mds.possible_range == (0, 2)
    assert without.mds.band is None
