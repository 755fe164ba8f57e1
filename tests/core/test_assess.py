"""The assessment rules on labelled constructed cases, one or more per status."""

from __future__ import annotations

import datetime as dt

import pytest

from magstat.core import assess
from magstat.core.facts import ConditionFact, Lab, Medication, Origin, PatientFacts, SignFact, SupplementFact
from magstat.errors import InvalidInputError

AS_OF = dt.date(2024, 5, 1)


def mg(value: float, days_ago: int = 3, low: float | None = None, high: float | None = None) -> Lab:
    return Lab(
        "serum_mg",
        value,
        "mmol/L",
        AS_OF - dt.timedelta(days=days_ago),
        ref_low=low,
        ref_high=high,
        origin=Origin("Observation/mg"),
    )


def lab(test: str, value: float, unit: str, days_ago: int = 3, **kw) -> Lab:
    return Lab(
        test, value, unit, AS_OF - dt.timedelta(days=days_ago), origin=Origin(f"Observation/{test}"), **kw
    )


def med(drug: str, *, start: dt.date | None = None, current: bool | None = True) -> Medication:
    return Medication(drug, (drug,), current, start=start, origin=Origin(f"MedicationRequest/{drug}", "test"))


def cond(cond_id: str, current: bool | None = True) -> ConditionFact:
    return ConditionFact(cond_id, cond_id, current, origin=Origin(f"Condition/{cond_id}"))


def facts(**kw) -> PatientFacts:
    base = {
        "as_of": AS_OF,
        "age_years": 50.0,
        "sex": "female",
        "medications": (),
        "conditions": (),
        "supplements": (),
    }
    base.update(kw)
    return PatientFacts(**base)


def ids(result) -> set[str]:
    return {f.id for f in result.findings}


def test_severe_hypomagnesaemia_is_deficient_and_urgent(kb):
    """0.35 mmol/L is deficient, severe, CTCAE grade 3, with IV and ECG advice."""
    result = assess(facts(labs=(mg(0.35),)), kb)
    assert (result.status, result.severity) == ("deficient", "severe")
    assert result.serum_magnesium.ctcae_grade == 3
    assert result.serum_magnesium.band == "below_lab_range"
    assert "sf.severe_iv" in {a.id for a in result.safety}
    assert "ns.ecg" in {a.id for a in result.next_steps}
    assert result.safety[0].priority == "urgent"


def test_mild_hypomagnesaemia_is_oral(kb):
    """0.65 mmol/L without symptoms is mild: the oral route, FEMg or 24-h urine next."""
    result = assess(facts(labs=(mg(0.65),)), kb)
    assert (result.status, result.severity) == ("deficient", "mild")
    assert result.serum_magnesium.ctcae_grade == 1
    assert "sf.oral_mild" in {a.id for a in result.safety}
    assert "sf.severe_iv" not in {a.id for a in result.safety}
    assert "ns.femg_or_24h_urine" in {a.id for a in result.next_steps}


def test_tetany_makes_mild_deficit_symptomatic(kb):
    """A mild value with tetany is treated as symptomatic: IV advice, severity severe (S54)."""
    result = assess(facts(labs=(mg(0.6),), signs=(SignFact("tetany", True),)), kb)
    assert ("deficient", "severe") == (result.status, result.severity)
    assert "sf.severe_iv" in {a.id for a in result.safety}


def test_lab_interval_is_used_when_reported(kb):
    """0.72 mmol/L is below a lab interval of 0.75–0.95 but normal-range for 0.70–1.00 (grey zone)."""
    assert assess(facts(labs=(mg(0.72, low=0.75, high=0.95),)), kb).serum_magnesium.band == "below_lab_range"
    result = assess(facts(labs=(mg(0.72, low=0.70, high=1.00),)), kb)
    assert result.serum_magnesium.band == "low_normal"
    assert result.serum_magnesium.interval_from == "lab"


def test_default_interval_is_flagged(kb):
    """Without a reported range the default interval is used and said so in the limitations."""
    result = assess(facts(labs=(mg(0.9),)), kb)
    assert result.serum_magnesium.interval_from == "default"
    assert "lim.default_interval" in {a.id for a in result.limitations}


def test_hypermagnesaemia_is_excess(kb):
    """1.4 mmol/L is above the interval: excess, CTCAE grade 3, severe."""
    result = assess(facts(labs=(mg(1.4),)), kb)
    assert (result.status, result.severity) == ("excess", "severe")
    assert "sf.excess" in {a.id for a in result.safety}


def test_grey_zone_with_major_risk_is_likely_deficient(kb):
    """0.80 mmol/L with a current PPI is likely deficient."""
    result = assess(facts(labs=(mg(0.80),), medications=(med("omeprazole"),)), kb)
    assert result.status == "likely_deficient"
    assert "drug.ppi" in ids(result)


def test_grey_zone_alone_is_at_risk(kb):
    """0.80 mmol/L with nothing else is at risk, and a loading test or body-store test is suggested."""
    result = assess(facts(labs=(mg(0.80),)), kb)
    assert result.status == "at_risk"
    assert {"ns.loading_test_grey_zone", "ns.body_stores"} <= {a.id for a in result.next_steps}


def test_normal_serum_no_risk_is_unlikely(kb):
    """0.90 mmol/L with no risk factor: deficiency unlikely, with the 1%-in-serum limitation."""
    result = assess(facts(labs=(mg(0.90),)), kb)
    assert result.status == "unlikely"
    assert "lim.serum_partial" in {a.id for a in result.limitations}


def test_normal_serum_with_major_risk_is_at_risk(kb):
    """0.90 mmol/L on a loop diuretic stays at risk: serum can be normal despite depletion."""
    result = assess(facts(labs=(mg(0.90),), medications=(med("furosemide"),)), kb)
    assert result.status == "at_risk"
    assert "ns.body_stores" in {a.id for a in result.next_steps}


def test_nothing_known_is_indeterminate(kb):
    """Only an age: indeterminate, with the missing inputs listed."""
    result = assess(PatientFacts(as_of=AS_OF, age_years=45), kb)
    assert result.status == "indeterminate"
    assert {"serum_mg", "medications", "conditions", "sex"} <= set(result.missing_inputs)
    assert result.mds.score is None


def test_complete_low_mds_without_serum_is_unlikely(kb):
    """No Mg result but MDS complete at 0 with lists known and no risk: unlikely."""
    result = assess(
        facts(
            age_years=30,
            labs=(lab("egfr", 110, "mL/min/{1.73_m2}"), lab("alcohol_drinks_per_day", 0, "{drinks}/d")),
        ),
        kb,
    )
    assert (result.mds.score, result.mds.complete, result.mds.band) == (0, True, "low")
    assert result.status == "unlikely"
    assert "ns.measure_serum_mg" in {a.id for a in result.next_steps}


def test_unknown_medication_list_is_not_no(kb):
    """An unknown medication list leaves the diuretic and PPI items unknown, not zero."""
    result = assess(facts(medications=None, labs=(lab("egfr", 110, "mL/min/{1.73_m2}"),)), kb)
    assert result.mds.components["diuretic"] is None
    assert result.mds.components["ppi"] is None
    assert result.mds.complete is False


def test_mds_full_score(kb):
    """Diuretic + PPI + eGFR 45 + heavy drinking = 5, band high."""
    result = assess(
        facts(
            sex="male",
            medications=(med("hydrochlorothiazide"), med("pantoprazole")),
            labs=(lab("egfr", 45, "mL/min/{1.73_m2}"), lab("alcohol_drinks_per_day", 3, "{drinks}/d")),
        ),
        kb,
    )
    assert result.mds.components == {"diuretic": 1, "ppi": 1, "kidney": 2, "alcohol": 1}
    assert (result.mds.score, result.mds.complete, result.mds.band) == (5, True, "high")
    assert result.status == "at_risk"


def test_incomplete_mds_band_decided_when_unknowns_cannot_change_it(kb):
    """Score 3 known with alcohol unknown is already 'high'; score 1 with kidney unknown is undecided."""
    high = assess(
        facts(
            medications=(med("furosemide"), med("omeprazole")), labs=(lab("egfr", 70, "mL/min/{1.73_m2}"),)
        ),
        kb,
    )
    assert (high.mds.score, high.mds.complete, high.mds.band) == (3, False, "high")
    undecided = assess(facts(medications=(med("furosemide"),)), kb)
    assert (undecided.mds.score, undecided.mds.complete, undecided.mds.band) == (1, False, None)


def test_egfr_computed_from_creatinine(kb):
    """With no eGFR reported, CKD-EPI 2021 is computed from creatinine, age and sex."""
    result = assess(facts(age_years=55, labs=(lab("serum_creatinine", 0.9, "mg/dL"),)), kb)
    assert (result.egfr.equation, result.egfr.origin) == ("CKD-EPI 2021", "computed")
    assert pytest.approx(result.egfr.value, abs=0.5) == 75.5
    assert result.mds.components["kidney"] == 1


def test_mdrd_egfr_yields_to_computed_ckd_epi(kb):
    """A reported MDRD eGFR gives way to CKD-EPI 2021 computed from a current creatinine."""
    result = assess(
        facts(
            age_years=55,
            labs=(lab("egfr", 80, "mL/min/{1.73_m2}", method="MDRD"), lab("serum_creatinine", 0.9, "mg/dL")),
        ),
        kb,
    )
    assert "computed" == result.egfr.origin


def test_old_result_not_used(kb):
    """A serum Mg from three years ago is shown but not used for the status."""
    result = assess(facts(labs=(mg(0.4, days_ago=3 * 365),)), kb)
    assert result.serum_magnesium.current is False
    assert result.status != "deficient"
    assert "lim.old_result" in {a.id for a in result.limitations}


def test_future_result_ignored(kb):
    """A result dated after the as-of date is not known yet at that date."""
    result = assess(facts(labs=(mg(0.4, days_ago=-10),)), kb)
    assert result.serum_magnesium.mmol_l is None


def test_femg_renal(kb):
    """Low serum Mg with FEMg 8.9% reads as renal wasting."""
    result = assess(
        facts(
            labs=(
                mg(0.58),
                lab("serum_creatinine", 0.9, "mg/dL"),
                lab("urine_mg_spot", 3.2, "mmol/L"),
                lab("urine_creatinine", 80, "mg/dL"),
            )
        ),
        kb,
    )
    assert result.femg.interpretation == "renal"
    assert pytest.approx(result.femg.percent, abs=0.01) == 8.87
    assert "ns.femg_or_24h_urine" not in {a.id for a in result.next_steps}


def test_femg_extrarenal(kb):
    """Low serum Mg with FEMg under 2% reads as extrarenal loss."""
    result = assess(
        facts(
            labs=(
                mg(0.6),
                lab("serum_creatinine", 1.0, "mg/dL"),
                lab("urine_mg_spot", 0.5, "mmol/L"),
                lab("urine_creatinine", 100, "mg/dL"),
            )
        ),
        kb,
    )
    assert result.femg.interpretation == "extrarenal"


def test_loading_test_positive_is_likely_deficient(kb):
    """Retention of 40% with normal serum Mg and no diuretic: likely deficient."""
    result = assess(facts(labs=(mg(0.86), lab("loading_retention", 40, "%"))), kb)
    assert result.status == "likely_deficient"
    assert result.loading_test.valid is True


def test_loading_test_outside_validated_conditions(kb):
    """On a diuretic the loading test is flagged as outside its validated conditions, and still counts."""
    result = assess(
        facts(labs=(mg(0.9), lab("loading_retention", 40, "%")), medications=(med("furosemide"),)), kb
    )
    assert result.loading_test.valid is False
    assert "lim.loading_invalid" in {a.id for a in result.limitations}
    assert result.status == "likely_deficient"


def test_specific_sign_and_strong_risk_without_serum(kb):
    """Tetany on a PPI with no Mg result: likely deficient, measure serum Mg urgently."""
    result = assess(facts(medications=(med("omeprazole"),), signs=(SignFact("tetany", True),)), kb)
    assert result.status == "likely_deficient"
    step = next(a for a in result.next_steps if a.id == "ns.measure_serum_mg")
    assert step.priority == "urgent"


def test_sign_reported_absent_is_not_present(kb):
    """A sign reported absent adds nothing."""
    result = assess(facts(signs=(SignFact("tetany", False),)), kb)
    assert "sign.tetany" not in ids(result)


def test_renal_safety_for_supplements(kb):
    """Supplements with eGFR 25: oral magnesium is flagged as contraindicated."""
    result = assess(
        facts(
            labs=(mg(0.7), lab("egfr", 25, "mL/min/{1.73_m2}")),
            supplements=(SupplementFact("oxide", "magnesium oxide", product_mg_per_day=400),),
        ),
        kb,
    )
    assert "sf.renal_avoid_oral" in {a.id for a in result.safety}


def test_supplement_above_ul(kb):
    """800 mg of magnesium oxide is about 482 mg elemental, above the 350 mg UL."""
    result = assess(
        facts(supplements=(SupplementFact("oxide", "magnesium oxide", product_mg_per_day=800),)), kb
    )
    assert pytest.approx(result.supplements.elemental_mg_per_day, abs=1) == 482
    assert result.supplements.above_ul is True
    assert "sf.above_ul" in {a.id for a in result.safety}


def test_transdermal_not_counted(kb):
    """Magnesium oil is listed but not counted toward supplemental intake."""
    result = assess(
        facts(supplements=(SupplementFact("transdermal", "magnesium oil", elemental_mg_per_day=100),)), kb
    )
    assert result.supplements.elemental_mg_per_day == 0
    assert "sf.transdermal" in {a.id for a in result.safety}


def test_intake_below_ear(kb):
    """220 mg/day for a 40-year-old woman is below the EAR."""
    result = assess(facts(age_years=40, diet_mg_per_day=220), kb)
    assert result.intake.below_ear is True
    assert result.intake.rda_mg == 320


def test_relevance_follows_conditions(kb):
    """Hypertension makes the blood-pressure domain relevant, with its evidence."""
    result = assess(facts(conditions=(cond("hypertension"),)), kb)
    domains = {r.domain for r in result.relevance}
    assert "blood_pressure" in domains


def test_interactions_when_treating(kb):
    """A deficit with current levothyroxine lists the spacing advice."""
    result = assess(facts(labs=(mg(0.6),), medications=(med("levothyroxine"),)), kb)
    assert any(a.id.startswith("ix.") for a in result.safety)


def test_every_output_carries_kb_version(kb):
    """The knowledge-base version and hash are on the assessment."""
    result = assess(facts(), kb)
    data = result.to_dict()
    assert (kb.version, kb.sha256) == (data["knowledge_base"]["version"], data["knowledge_base"]["sha256"])


def test_every_cited_source_resolves(kb):
    """Every source id on a rich assessment is in the sources table."""
    result = assess(
        facts(
            labs=(mg(0.45), lab("potassium", 3.0, "mmol/L")),
            medications=(med("omeprazole"), med("digoxin")),
            signs=(SignFact("tetany", True),),
        ),
        kb,
    )
    assert set(result.sources) <= set(kb.sources)


def test_implausible_value_refused(kb):
    """A serum magnesium of 40 mmol/L is refused, naming the field."""
    with pytest.raises(InvalidInputError) as err:
        assess(facts(labs=(mg(40),)), kb)
    assert "labs[0]" in err.value.field


def test_birth_date_after_as_of_refused(kb):
    """A birth date after the as-of date is refused."""
    with pytest.raises(InvalidInputError) as err:
        assess(PatientFacts(as_of=AS_OF, birth_date=dt.date(2030, 1, 1)), kb)
    assert err.value.field == "birth_date"


def test_magnesium_product_is_an_excess_risk(kb):
    """A magnesium-containing product is shown as a risk of excess, not as protection."""
    result = assess(facts(labs=(mg(1.3),), medications=(med("magnesium_hydroxide"),)), kb)
    finding = next(f for f in result.findings if f.id == "drug.magnesium_product")
    assert "excess_risk" == finding.weight
    assert "excess" == result.status


def test_unrecognised_entries_listed_once(kb):
    """An unrecognised current medication is listed once, however often it was ordered."""
    meds = tuple(Medication("mystery tonic", (), True) for _ in range(3))
    result = assess(facts(medications=meds), kb)
    assert ("medication: mystery tonic",) == result.unrecognised


def test_magnesium_drug_with_poor_kidney_function(kb):
    """A current magnesium-containing drug with eGFR 22 raises the oral contraindication."""
    result = assess(
        facts(labs=(lab("egfr", 22, "mL/min/{1.73_m2}"),), medications=(med("magnesium_oxide"),)), kb
    )
    assert "sf.renal_avoid_oral" in {a.id for a in result.safety}
