"""Arrhythmia safety, magnesium therapy, severity and always-on checks, on the pure core."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from magstat.core import assess
from magstat.core.facts import (
    AllergyFact,
    ConditionFact,
    Lab,
    Medication,
    Origin,
    PatientFacts,
    SignFact,
    SupplementFact,
)
from magstat.core.match import match_condition, match_drug
from magstat.errors import InvalidInputError
from tests.strategies import KB, patient_facts

AS_OF = dt.date(2024, 6, 1)
DAY = dt.date(2024, 5, 30)


def mg(value: float, when: dt.date = DAY) -> Lab:
    """Serum magnesium with a 0.70-1.00 mmol/L laboratory interval."""
    return Lab(
        "serum_mg", value, "mmol/L", when, ref_low=0.70, ref_high=1.00, origin=Origin("Observation/mg")
    )


def k(value: float) -> Lab:
    """Serum potassium with a 3.5-5.1 mmol/L interval."""
    return Lab("potassium", value, "mmol/L", DAY, ref_low=3.5, ref_high=5.1, origin=Origin("Observation/k"))


def med(drug: str, text: str | None = None, **extra: object) -> Medication:
    """A current medication of a knowledge-base drug."""
    return Medication(text or drug, (drug,), True, origin=Origin(f"MedicationRequest/{drug}"), **extra)  # type: ignore[arg-type]


def facts(**fields: object) -> PatientFacts:
    """Facts of a 55-year-old woman with known (empty unless given) medications and conditions."""
    base: dict[str, object] = {
        "as_of": AS_OF,
        "age_years": 55,
        "sex": "female",
        "medications": (),
        "conditions": (),
    }
    base.update(fields)
    return PatientFacts(**base)  # type: ignore[arg-type]


def ids(actions: tuple) -> set[str]:
    """The ids of a tuple of actions or findings."""
    return {a.id for a in actions}


def action(result, table: str, action_id: str):
    """One action of a result by id."""
    return next(a for a in getattr(result, table) if a.id == action_id)


# --- Arrhythmia safety -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partner", "labs", "signs"),
    [
        ("methadone and citalopram with low K", (k(3.1),), ()),
        ("QT drug only", (), ()),
        ("digoxin", (), ()),
        ("arrhythmia sign", (), (SignFact("arrhythmia", True),)),
    ],
)
def test_low_normal_mg_with_a_partner_gets_ecg_and_qt_note(partner, labs, signs):
    """Low-normal Mg (below 0.85) with low K, a QT drug, digoxin or arrhythmia gives ns.ecg and sf.qt_risk (S341)."""
    meds = {
        "methadone and citalopram with low K": (med("methadone"), med("citalopram")),
        "QT drug only": (med("ondansetron"),),
        "digoxin": (med("digoxin"),),
        "arrhythmia sign": (),
    }[partner]
    result = assess(facts(labs=(mg(0.78), *labs), medications=meds, signs=signs), KB)
    assert {"ns.ecg"} <= ids(result.next_steps)
    assert {"sf.qt_risk"} <= ids(result.safety)
    assert "below 0.85" in action(result, "safety", "sf.qt_risk").reason


def test_qt_drug_with_normal_mg_and_normal_k_gets_no_qt_note():
    """Serum Mg 0.92 with a QT drug and normal K: no Mg-specific ECG rule fires."""
    result = assess(facts(labs=(mg(0.92), k(4.2)), medications=(med("methadone"),)), KB)
    assert "sf.qt_risk" not in ids(result.safety)
    assert "ns.ecg" not in ids(result.next_steps)
    assert "drug.qt_prolonging" in ids(result.findings)


def test_low_mg_with_low_k_without_any_drug_gets_ecg():
    """The KB's own ECG text names low magnesium with low potassium: that alone now asks for an ECG."""
    result = assess(facts(labs=(mg(0.66), k(3.0))), KB)
    assert "urgent" == action(result, "next_steps", "ns.ecg").priority
    assert "urgent" == action(result, "safety", "sf.qt_risk").priority


def test_qt_drug_members_have_rxnorm_and_atc_codes():
    """Every member of the QT-prolonging class has an RxNorm ingredient code and an ATC code."""
    members = [d for d in KB.drugs.values() if "qt_prolonging" in d.classes]
    names = {d.name for d in members}
    assert {
        "methadone",
        "citalopram",
        "escitalopram",
        "haloperidol",
        "ondansetron",
        "amiodarone",
        "sotalol",
    } <= names
    assert {
        "azithromycin",
        "clarithromycin",
        "levofloxacin",
        "moxifloxacin",
        "quinidine",
        "procainamide",
    } <= names
    assert all(d.rxnorm and d.atc for d in members)


def test_correct_magnesium_first_wording_for_refractory_hypokalaemia():
    """Refractory hypokalaemia with a deficit gives the 'correct magnesium (and potassium) first' note (S54, S63)."""
    result = assess(facts(labs=(mg(0.6),), signs=(SignFact("refractory_hypokalaemia", True),)), KB)
    assert action(result, "safety", "sf.correct_mg_first").text.startswith(
        "Correct magnesium (and potassium) first"
    )


# --- Severity ----------------------------------------------------------------------------------


def test_refractory_hypokalaemia_and_hypocalcaemia_are_not_mild_oral():
    """Mg 0.52 with hypocalcaemia and refractory hypokalaemia: moderate, IV with monitoring, reason shown (S54)."""
    signs = (SignFact("hypocalcaemia", True), SignFact("refractory_hypokalaemia", True))
    result = assess(facts(labs=(mg(0.52),), signs=signs), KB)
    assert ("deficient", "moderate") == (result.status, result.severity)
    assert "refractory" in (result.severity_reason or "") or "does not correct" in (
        result.severity_reason or ""
    )
    assert {"sf.severe_iv", "sf.iv_monitoring", "sf.iv_route_reason"} <= ids(result.safety)
    assert "sf.oral_mild" not in ids(result.safety)


@pytest.mark.parametrize("sign", ["tetany", "seizure", "arrhythmia"])
def test_neuromuscular_or_cardiac_irritability_is_severe(sign):
    """A mild value with tetany, seizures or arrhythmia is graded severe and gets IV advice (S54)."""
    result = assess(facts(labs=(mg(0.62),), signs=(SignFact(sign, True),)), KB)
    assert ("deficient", "severe") == (result.status, result.severity)
    assert KB.signs[sign].name.lower() in (result.severity_reason or "")
    assert "urgent" == action(result, "safety", "sf.severe_iv").priority


def test_mild_without_symptoms_says_so():
    """A mild deficit without severe signs keeps the oral route and its reason names the signs not recorded."""
    result = assess(facts(labs=(mg(0.62),)), KB)
    assert ("deficient", "mild") == (result.status, result.severity)
    assert "no tetany, seizures, arrhythmia" in (result.severity_reason or "")
    assert "sf.oral_mild" in ids(result.safety)


def test_mild_with_cramps_never_says_without_symptoms():
    """Cramps do not make the deficit severe, but no text then says the patient has no symptoms."""
    result = assess(facts(labs=(mg(0.62),), signs=(SignFact("muscle_cramps", True),)), KB)
    assert ("deficient", "mild") == (result.status, result.severity)
    texts = [result.severity_reason or "", *(a.reason for a in result.safety), result.summary]
    assert [] == [t for t in texts if "no symptoms" in t or "without symptoms" in t]


# --- Low although magnesium is taken by mouth ---------------------------------------------------

MG_OXIDE = SupplementFact("oxide", "magnesium oxide 400 mg twice daily", origin=Origin("medications[0]"))


@pytest.mark.parametrize(
    ("labs", "status"),
    [((mg(0.62),), "deficient"), ((mg(0.45),), "deficient")],
)
def test_low_although_oral_magnesium_is_taken_gets_the_check_before_more(labs, status):
    """A deficit while a magnesium product is taken by mouth names the product and what to check first."""
    result = assess(facts(labs=labs, supplements=(MG_OXIDE,)), KB)
    assert status == result.status
    note = action(result, "safety", "sf.low_despite_oral")
    assert ("high", "Oral magnesium taken: magnesium oxide 400 mg twice daily.") == (
        note.priority,
        note.reason,
    )
    assert {"S20", "S64"} <= set(note.sources)


def test_no_low_despite_oral_note_without_a_deficit_or_without_a_product():
    """A normal value with a product, or a deficit without one, gets no such note."""
    normal = assess(facts(labs=(mg(0.90),), supplements=(MG_OXIDE,)), KB)
    low_without = assess(facts(labs=(mg(0.62),), supplements=()), KB)
    assert "sf.low_despite_oral" not in ids(normal.safety) | ids(low_without.safety)


def test_a_transdermal_product_is_not_oral_magnesium():
    """Magnesium oil does not count as magnesium taken by mouth."""
    oil = SupplementFact("transdermal", "magnesium oil spray", origin=Origin("supplements[0]"))
    result = assess(facts(labs=(mg(0.62),), supplements=(oil,)), KB)
    assert "sf.low_despite_oral" not in ids(result.safety)


def test_a_product_without_a_dose_leaves_the_upper_level_unknown():
    """Content unknown: the total is a lower bound, the UL check is unknown, and the text says so."""
    result = assess(facts(labs=(mg(0.90),), supplements=(MG_OXIDE,)), KB)
    s = result.supplements
    assert (0.0, None, ("magnesium oxide 400 mg twice daily",)) == (
        s.elemental_mg_per_day,
        s.above_ul,
        s.unknown_content,
    )
    finding = next(f for f in result.findings if f.id == "supplements.total")
    assert finding.text.startswith("Supplemental elemental magnesium not known (UL 350 mg/day")


def test_a_known_part_above_the_upper_level_is_above_whatever_the_rest():
    """400 mg elemental known plus a product of unknown content is above the 350 mg/day UL."""
    known = SupplementFact(
        None, "magnesium 400 mg", elemental_mg_per_day=400, origin=Origin("supplements[1]")
    )
    result = assess(facts(labs=(mg(0.90),), supplements=(MG_OXIDE, known)), KB)
    assert (True, "sf.above_ul") == (result.supplements.above_ul, action(result, "safety", "sf.above_ul").id)
    finding = next(f for f in result.findings if f.id == "supplements.above_ul")
    assert "at least 400 mg/day" in finding.text


def test_insulin_is_not_a_risk_factor():
    """Insulin users had higher plasma Mg in the cited study (S89): no risk-factor finding, status unchanged."""
    without = assess(facts(labs=(mg(0.9),)), KB)
    with_insulin = assess(facts(labs=(mg(0.9),), medications=(med("insulin"),)), KB)
    assert "drug.insulin" not in ids(with_insulin.findings)
    assert without.status == with_insulin.status
    assert "interaction" == KB.drug_classes["insulin"].effect


# --- Intended magnesium therapy ----------------------------------------------------------------


def mgso4(route: str | None = "intravenous", reason: str | None = "pre-eclampsia") -> Medication:
    """Magnesium sulfate given as treatment."""
    return med("magnesium_sulfate", "magnesium sulfate injection 4 g", route=route, reason=reason)


def test_therapeutic_level_during_mgso4_is_not_excess():
    """Serum Mg 1.9 mmol/L on IV MgSO4 is within 1.25-2.5 mmol/L (S56): therapeutic, no 'stop magnesium'."""
    result = assess(facts(labs=(mg(1.9),), medications=(mgso4(),), pregnant=True), KB)
    assert "indeterminate" == result.status
    assert result.severity is None
    assert "serum_mg.therapeutic" in ids(result.findings)
    assert "sf.excess" not in ids(result.safety)
    monitoring = action(result, "safety", "sf.mg_infusion_monitoring").text
    for words in ("patellar reflex", "respiratory rate", "urine output", "calcium gluconate", "10 mEq/L"):
        assert words in monitoring
    assert {"sf.mg_therapy", "sf.pregnancy_iv_duration"} <= ids(result.safety)
    assert "therapeutic range" in result.summary


def test_above_therapeutic_range_is_excess_with_urgent_monitoring():
    """Serum Mg 3.0 mmol/L on IV MgSO4 is above 2.5 mmol/L: excess, urgent toxicity advice."""
    result = assess(facts(labs=(mg(3.0),), medications=(mgso4(),)), KB)
    assert "excess" == result.status
    assert "urgent" == action(result, "safety", "sf.mg_infusion_monitoring").priority
    assert "sf.excess" in ids(result.safety)
    assert "sf.mg_therapy" not in ids(result.safety)
    assert "therapeutic range" in (result.severity_reason or "")


def test_indication_alone_marks_therapy_and_oral_product_does_not():
    """MgSO4 recorded for eclampsia counts as therapy; an oral magnesium oxide with a high value stays excess."""
    by_reason = assess(facts(labs=(mg(1.6),), medications=(mgso4(route=None, reason="eclampsia"),)), KB)
    assert "indeterminate" == by_reason.status
    oral = assess(facts(labs=(mg(1.6),), medications=(med("magnesium_oxide", route="oral"),)), KB)
    assert "excess" == oral.status
    assert "sf.excess" in ids(oral.safety)
    assert "sf.mg_infusion_monitoring" not in ids(oral.safety)


@pytest.mark.parametrize(
    "text",
    [
        "Magnesium Sulfate 500 MG/ML Injectable Solution",
        "magnesium sulfate 4 g IV over 20 min then 1 g/h",
        "Magnesium sulphate 50% injection",
        "magnesium sulfate 2 g in 50 mL premixed bag",
        "MgSO4 4 g i.v. bolus",
        "Magnesium chloride 200 mg/mL for infusion",
    ],
)
def test_a_name_that_gives_a_parenteral_form_is_therapy(text):
    """A product named with an IV route or injectable form, no route recorded: therapy, not 'stop magnesium' (S56)."""
    drugs = match_drug(KB, (), text).ids
    result = assess(facts(labs=(mg(1.9),), medications=(Medication(text, drugs, True),)), KB)
    assert "indeterminate" == result.status
    assert "serum_mg.therapeutic" in ids(result.findings)
    assert "sf.excess" not in ids(result.safety)
    assert "sf.mg_infusion_monitoring" in ids(result.safety)


@pytest.mark.parametrize(
    ("text", "condition_current", "expected"),
    [
        ("magnesium sulfate 1 g/h", True, "indeterminate"),
        ("MgSO4 2 g/h", True, "indeterminate"),
        ("magnesium sulfate 1 g/h", False, "excess"),
        ("magnesium sulfate 1 g/h", None, "excess"),
        ("Epsom salt 10 g", True, "excess"),
        ("magnesium sulfate oral powder", True, "excess"),
        ("magnesium oxide 400 mg", True, "excess"),
    ],
)
def test_magnesium_sulfate_with_pre_eclampsia_on_the_problem_list_is_therapy(
    text, condition_current, expected
):
    """Magnesium sulfate, no route, with current pre-eclampsia: the anticonvulsant (S56, S60); not by mouth or in the past."""
    drugs = match_drug(KB, (), text).ids
    condition = ConditionFact("pre-eclampsia", "pre_eclampsia", condition_current)
    result = assess(
        facts(labs=(mg(1.9),), medications=(Medication(text, drugs, True),), conditions=(condition,)), KB
    )
    assert expected == result.status
    assert (expected == "excess") == ("sf.excess" in ids(result.safety))


def test_a_recorded_oral_route_is_not_therapy_whatever_the_reason():
    """Magnesium given by mouth 'for pre-eclampsia' cannot give a therapeutic serum level: a high value is excess."""
    oral = med("magnesium_sulfate", "magnesium sulfate 4 g", route="oral", reason="pre-eclampsia")
    result = assess(facts(labs=(mg(1.9),), medications=(oral,)), KB)
    assert "excess" == result.status
    assert "sf.mg_infusion_monitoring" not in ids(result.safety)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(patient_facts(), st.floats(1.01, 4.0))
def test_therapy_recognition_never_hides_toxicity(base, value):
    """With MgSO4 as therapy and a value above the lab range: excess above 2.5 mmol/L, never reassuring; monitoring listed."""
    labs = (*(lab for lab in base.labs if lab.test != "serum_mg"), mg(value, base.as_of))
    meds = (*(base.medications or ()), mgso4())
    result = assess(dataclasses.replace(base, labs=labs, medications=meds), KB)
    assert "sf.mg_infusion_monitoring" in ids(result.safety)
    if value > KB.param("mg_therapy.therapeutic_high"):
        assert "excess" == result.status
    assert result.status in ("excess", "indeterminate")


# --- Checks that do not wait for an abnormal status --------------------------------------------


def test_digoxin_without_mg_result_gets_the_check():
    """A digoxin user with no Mg result gets the digoxin note and a high-priority Mg measurement (S20)."""
    result = assess(facts(medications=(med("digoxin"),)), KB)
    assert "sf.digoxin" in ids(result.safety)
    assert "ix.ix.digoxin" in ids(result.safety)
    assert "high" == action(result, "next_steps", "ns.measure_serum_mg").priority


def test_child_supplement_above_ul():
    """A 6-year-old taking 200 mg/day of elemental Mg is above the 110 mg/day UL (S16)."""
    result = assess(
        facts(
            age_years=6.4, supplements=(SupplementFact(None, "magnesium 100 mg", elemental_mg_per_day=200),)
        ),
        KB,
    )
    assert 110 == result.supplements.ul_mg
    assert "sf.above_ul" in ids(result.safety)


def test_same_day_conflicting_creatinines_use_the_higher():
    """Two creatinines on one date are flagged and the higher (lower eGFR) is used for advice."""
    labs = (
        Lab("serum_creatinine", 1.0, "mg/dL", DAY, origin=Origin("Observation/a")),
        Lab("serum_creatinine", 1.55, "mg/dL", DAY, origin=Origin("Observation/b")),
    )
    result = assess(facts(age_years=60, labs=labs), KB)
    assert "conflict.serum_creatinine" in ids(result.findings)
    assert "lim.conflicting_results" in ids(result.limitations)
    assert result.egfr.value is not None and result.egfr.value < 45


def test_reported_egfr_far_from_newer_computed_is_flagged():
    """A reported eGFR 91 six weeks before a creatinine giving about 22: flagged, 22 used."""
    labs = (
        Lab("egfr", 91, "mL/min/{1.73_m2}", dt.date(2024, 4, 18), origin=Origin("Observation/e")),
        Lab("serum_creatinine", 2.95, "mg/dL", DAY, origin=Origin("Observation/c")),
    )
    result = assess(facts(age_years=74, sex="male", labs=labs), KB)
    assert "egfr.discrepancy" in ids(result.findings)
    assert "computed" == result.egfr.origin
    assert 22 == round(result.egfr.value or 0)


def test_renal_reduce_is_credited_as_the_label_says():
    """The renal note says the label needs no dose change in mild-moderate impairment; halving is the handbook's."""
    result = assess(
        facts(
            labs=(Lab("egfr", 45, "mL/min/{1.73_m2}", DAY),),
            supplements=(SupplementFact("citrate", "magnesium citrate", elemental_mg_per_day=200),),
        ),
        KB,
    )
    text = action(result, "safety", "sf.renal_reduce").text
    assert "no dose change in mild to moderate" in text
    assert "hospital handbook" in text


# --- Children: no adult dose ---------------------------------------------------------------------

_ADULT_DOSE_TEXTS = ("5 g in 1 L", "250 mg/kg", "150 mg/min", "10-20 mmol/day", "1-2 g", "20 g in 48 hours")


def _dose_texts(result) -> list[str]:
    """The adult dose figures that appear in any next step or safety note of a result."""
    return [d for a in (*result.safety, *result.next_steps) for d in _ADULT_DOSE_TEXTS if d in a.text]


@pytest.mark.parametrize("age", [0.25, 5, 12, 17.9])
def test_a_child_with_a_severe_deficit_gets_no_adult_dose(age):
    """Below 18 years the IV, torsades, renal and monitoring notes quote no adult dose or figure."""
    result = assess(
        facts(
            age_years=age,
            labs=(mg(0.35), Lab("egfr", 20, "mL/min/{1.73_m2}", DAY, origin=Origin("Observation/egfr"))),
            signs=(SignFact("torsades_de_pointes", True),),
            medications=(med("magnesium_sulfate", "magnesium sulfate IV", route="intravenous"),),
        ),
        KB,
    )
    assert [] == _dose_texts(result)
    children = {
        "sf.iv_monitoring_child",
        "sf.torsades_child",
        "sf.iv_renal_limit_child",
        "sf.mg_infusion_monitoring_child",
    }
    assert children <= ids(result.safety)
    assert set() == {c.removesuffix("_child") for c in children} & ids(result.safety)
    # The infusion under way: the severe-deficit note quotes no dose at any age (H367).
    assert {"sf.severe_during_therapy"} <= ids(result.safety)
    assert not {"sf.severe_iv", "sf.severe_iv_child"} & ids(result.safety)
    # Without it, the child's own severe-deficit note, not the adult one.
    untreated = assess(facts(age_years=age, labs=(mg(0.35),)), KB)
    assert [] == _dose_texts(untreated)
    assert "sf.severe_iv_child" in ids(untreated.safety)
    assert "sf.severe_iv" not in ids(untreated.safety)


def test_a_child_with_a_mild_deficit_gets_the_oral_note_without_the_adult_dose():
    """A 5-year-old with a mild deficit is sent to paediatric dosing; the note keeps the age's upper level."""
    result = assess(facts(age_years=5, labs=(mg(0.6),)), KB)
    note = action(result, "safety", "sf.oral_mild_child")
    assert "110 mg/day at 4-8 years" in note.text
    assert [] == _dose_texts(result)


@pytest.mark.parametrize("age", [18, 55, None])
def test_an_adult_or_unknown_age_keeps_the_labelled_doses(age):
    """From 18 years, and when the age is unknown, the labelled adult doses are quoted as before."""
    result = assess(facts(age_years=age, labs=(mg(0.35),)), KB)
    assert "5 g in 1 L" in action(result, "safety", "sf.severe_iv").text
    assert "sf.severe_iv_child" not in ids(result.safety)


# --- Myasthenia gravis -------------------------------------------------------------------------


def _myasthenia():
    """Myasthenia gravis on the problem list, current."""
    return ConditionFact("Myasthenia gravis", "myasthenia_gravis", True, origin=Origin("Condition/mg"))


def test_myasthenia_with_a_severe_deficit_gets_an_urgent_caution():
    """IV magnesium in question with myasthenia gravis: an urgent caution naming the neuromuscular risk."""
    result = assess(facts(labs=(mg(0.35),), conditions=(_myasthenia(),)), KB)
    note = action(result, "safety", "sf.myasthenia")
    assert "urgent" == note.priority
    assert "acetylcholine" in note.text
    assert "S660" in note.sources


def test_myasthenia_with_a_mild_deficit_gets_a_caution():
    """Oral repletion with myasthenia gravis: the caution is given, not urgent."""
    result = assess(facts(labs=(mg(0.6),), conditions=(_myasthenia(),)), KB)
    assert "high" == action(result, "safety", "sf.myasthenia").priority


def test_myasthenia_without_magnesium_in_question_gets_no_caution():
    """A normal serum magnesium, no magnesium product: nothing to caution about."""
    result = assess(facts(labs=(mg(0.9),), conditions=(_myasthenia(),)), KB)
    assert "sf.myasthenia" not in ids(result.safety)


# --- Results reported as a bound ("<0.4") ---------------------------------------------------------


def bound(value: float, comparator: str, test: str = "serum_mg", unit: str = "mmol/L") -> Lab:
    """A result the laboratory reported only as a bound, with a 0.70-1.00 mmol/L interval for Mg."""
    limits = {"ref_low": 0.70, "ref_high": 1.00} if test == "serum_mg" else {}
    return Lab(test, value, unit, DAY, origin=Origin(f"Observation/{test}"), comparator=comparator, **limits)  # type: ignore[arg-type]


def test_a_serum_mg_below_a_bound_under_the_interval_is_a_severe_deficit():
    """'<0.4 mmol/L' is below the interval whatever its value: deficient, severe, urgent IV, shown as "<0.4"."""
    result = assess(facts(labs=(bound(0.4, "<"),)), KB)
    assert ("deficient", "severe") == (result.status, result.severity)
    assert "<" == result.serum_magnesium.comparator
    assert 0.4 == round(result.serum_magnesium.mmol_l, 3)
    assert "urgent" == action(result, "safety", "sf.severe_iv").priority
    assert "serum Mg <0.4 mmol/L" in result.summary
    finding = next(f for f in result.findings if f.id == "serum_mg.below_lab_range")
    assert "whatever its exact value" in finding.text
    assert "<0.4" == finding.inputs[0].value


@pytest.mark.parametrize(
    ("value", "comparator", "used"),
    [
        (0.7, "<", True),  # below the lower limit 0.70 whatever the value
        (0.7, "<=", False),  # could be 0.70 itself, inside the interval
        (0.69, "<=", True),
        (0.9, "<", False),  # could be normal or low
        (1.0, ">", True),
        (1.0, ">=", False),
        (0.8, ">", False),
    ],
)
def test_a_bound_is_used_only_where_it_decides_the_band(value, comparator, used):
    """A serum magnesium bound is read only when it places the value outside the interval."""
    result = assess(facts(labs=(bound(value, comparator),)), KB)
    assert used == (result.serum_magnesium.mmol_l is not None)
    assert (not used) == ("lim.inexact_result" in ids(result.limitations))


def test_a_bound_above_the_interval_is_an_excess():
    """'>2.5 mmol/L' is above the interval: excess, graded at least as the bound allows."""
    result = assess(facts(labs=(bound(2.5, ">"),)), KB)
    assert "excess" == result.status
    assert ">" == result.serum_magnesium.comparator


def test_a_bound_of_another_test_is_named_and_not_used():
    """A creatinine '<0.3 mg/dL' gives no eGFR and is named in a limitation."""
    result = assess(
        facts(
            labs=(mg(0.9), bound(0.3, "<", "serum_creatinine", "mg/dL")),
        ),
        KB,
    )
    assert result.egfr.value is None
    note = next(a for a in result.limitations if a.id == "lim.inexact_result")
    assert "Serum creatinine reported as <0.3 mg/dL (Observation/serum_creatinine)" in note.reason


def test_an_exact_result_after_a_bound_is_the_one_used():
    """A later exact result replaces an older bound; the bound stays out of the trend."""
    older = dataclasses.replace(bound(0.4, "<"), when=dt.date(2024, 5, 1))
    result = assess(facts(labs=(older, mg(0.8))), KB)
    assert (0.8, None) == (result.serum_magnesium.mmol_l, result.serum_magnesium.comparator)
    assert ((DAY, 0.8),) == result.serum_magnesium.history


def test_an_unknown_comparator_is_refused():
    """A comparator other than <, <=, > or >= is refused with the field named."""
    with pytest.raises(InvalidInputError) as caught:
        assess(facts(labs=(bound(0.4, "~"),)), KB)
    assert "labs[0] (Observation/serum_mg).comparator" == caught.value.field


def test_femg_is_not_computed_from_a_bound():
    """FEMg divides by serum magnesium: with '<0.4' it is not computed, and the limitation says why."""
    day = {"when": DAY, "origin": Origin("Observation/u")}
    urine = (
        Lab("urine_mg_spot", 2.0, "mmol/L", **day),  # type: ignore[arg-type]
        Lab("urine_creatinine", 100.0, "mg/dL", **day),  # type: ignore[arg-type]
        Lab("serum_creatinine", 1.0, "mg/dL", **day),  # type: ignore[arg-type]
    )
    result = assess(facts(labs=(bound(0.4, "<"), *urine)), KB)
    assert (None, "serum magnesium reported as a bound") == (result.femg.percent, result.femg.note)
    note = next(a for a in result.limitations if a.id == "lim.femg_conditions")
    assert "reported only as a bound" in note.reason
    exact = assess(facts(labs=(mg(0.4), *urine)), KB)
    assert exact.femg.percent is not None


def test_a_high_value_with_unknown_kidney_function_asks_for_the_kidneys_as_its_cause():
    """Excess without an eGFR: kidney function is checked as the likely cause, never 'before a supplement'."""
    result = assess(facts(labs=(mg(1.9),)), KB)
    assert "excess" == result.status
    step = action(result, "next_steps", "ns.kidney_function_high_mg")
    assert ("high", False) == (step.priority, "ns.kidney_function" in ids(result.next_steps))
    assert "supplement" not in step.text


def creatinine(value: float) -> Lab:
    """Serum creatinine in mg/dL."""
    return Lab("serum_creatinine", value, "mg/dL", DAY, origin=Origin("Observation/cr"))


@pytest.mark.parametrize(
    ("medications", "recheck"),
    [
        ((mgso4(),), False),  # an infusion given as treatment: its own monitoring notes
        ((med("magnesium_hydroxide", "milk of magnesia"),), True),
        ((mgso4(), med("magnesium_hydroxide", "milk of magnesia")), True),
    ],
)
def test_the_months_long_recheck_is_for_products_taken_not_for_an_infusion(medications, recheck):
    """With eGFR about 50, the 3-6-monthly recheck of the oral label is given for a laxative, not for an infusion alone."""
    result = assess(facts(labs=(mg(0.9), creatinine(1.3)), medications=medications, pregnant=True), KB)
    assert result.egfr.value is not None and result.egfr.value < 60
    assert recheck == ("ns.recheck_on_supplement" in ids(result.next_steps))


def test_an_excess_on_a_laxative_is_told_to_stop_not_to_recheck_in_months():
    """Milk of magnesia, eGFR about 50 and serum Mg 1.6: 'stop magnesium products', no 3-6-monthly recheck beside it."""
    laxative = med("magnesium_hydroxide", "milk of magnesia")
    result = assess(facts(labs=(mg(1.6), creatinine(1.3)), medications=(laxative,)), KB)
    assert "excess" == result.status
    assert "sf.excess" in ids(result.safety)
    assert "ns.recheck_on_supplement" not in ids(result.next_steps)


OLD_DAY = dt.date(2022, 1, 10)


@pytest.mark.parametrize(
    ("labs", "expected"),
    [
        ((mg(0.45, OLD_DAY),), ("at_risk", True)),  # below 0.70, older than a year
        ((mg(0.80, OLD_DAY),), ("indeterminate", False)),  # within the interval
        ((mg(0.45, OLD_DAY), mg(0.90)), ("unlikely", False)),  # a current value decides
        (
            (dataclasses.replace(mg(0.40, OLD_DAY), comparator="<"),),
            ("at_risk", True),
        ),  # a bound below the interval
    ],
)
def test_a_low_value_too_old_to_use_is_a_major_risk_factor(labs, expected):
    """A last serum magnesium below its interval but not recent is not the current value, and it counts as low found before."""
    result = assess(facts(labs=labs), KB)
    found = "serum_mg.previously_low" in ids(result.findings)
    assert expected == (result.status, found)
    if found:
        finding = next(f for f in result.findings if f.id == "serum_mg.previously_low")
        assert ("major", "risk_factor") == (finding.weight, finding.category)
        assert "high" == action(result, "next_steps", "ns.measure_serum_mg").priority


@pytest.mark.parametrize(
    ("value", "note", "absent"),
    [
        (1.40, "sf.torsades_high_mg", "sf.torsades"),  # above the interval: no doses for more magnesium
        (0.90, "sf.torsades", "sf.torsades_high_mg"),  # normal: IV magnesium with its doses
        (0.55, "sf.torsades", "sf.torsades_high_mg"),
    ],
)
def test_torsades_with_a_high_magnesium_gets_no_dose_for_more(value, note, absent):
    """Torsades with serum magnesium above its range gets the cardiac-team note, not the torsades doses."""
    result = assess(facts(labs=(mg(value),), signs=(SignFact("torsades_de_pointes", True),)), KB)
    ids_ = ids(result.safety)
    assert (True, False) == (note in ids_, absent in ids_)
    assert "urgent" == action(result, "safety", note).priority


def ca(test: str, value: float, low: float | None = 2.10) -> Lab:
    """A calcium (or albumin, in g/L) result with the laboratory's lower limit."""
    unit = "g/L" if test == "albumin" else "mmol/L"
    high = None if low is None else low * 1.3
    return Lab(test, value, unit, DAY, ref_low=low, ref_high=high, origin=Origin(f"Observation/{test}"))


@pytest.mark.parametrize(
    ("labs", "hypocalcaemia", "limitation"),
    [
        ((ca("calcium_total", 1.95),), True, False),  # total low, albumin unknown
        ((ca("calcium_total", 1.95), ca("albumin", 25, 35)), False, True),  # low albumin explains it
        ((ca("calcium_total", 1.95), ca("albumin", 40, 35)), True, False),  # albumin normal
        (
            (ca("calcium_total", 1.95), ca("calcium_ionised", 1.20, 1.12)),
            False,
            False,
        ),  # ionised normal decides
        ((ca("calcium_total", 2.30), ca("calcium_ionised", 1.00, 1.12)), True, False),  # ionised low decides
        (
            (ca("calcium_total", 1.95), ca("calcium_corrected", 2.25)),
            False,
            False,
        ),  # corrected normal decides
        ((ca("calcium_corrected", 2.00),), True, False),  # corrected low counts
        (
            (ca("calcium_total", 1.95), ca("calcium_ionised", 1.00, None)),
            True,
            False,
        ),  # ionised without a limit
    ],
)
def test_calcium_is_read_from_its_most_direct_measure(labs, hypocalcaemia, limitation):
    """Ionised, then albumin-corrected, then total calcium decides; a low total with a low albumin does not count."""
    result = assess(facts(labs=(mg(0.78), *labs)), KB)
    assert (hypocalcaemia, limitation) == (
        "sign.hypocalcaemia" in ids(result.findings),
        "lim.total_calcium_low_albumin" in ids(result.limitations),
    )


@pytest.mark.parametrize(
    ("value", "albumin", "named"),
    [(0.62, 25, True), (0.78, 25, True), (0.62, 40, False), (0.95, 25, False)],
)
def test_a_low_serum_magnesium_with_a_low_albumin_names_the_bound_fraction(value, albumin, named):
    """A low or low-normal serum magnesium with a low albumin gets the limitation; the status is unchanged."""
    with_albumin = assess(facts(labs=(mg(value), ca("albumin", albumin, 35))), KB)
    without = assess(facts(labs=(mg(value),)), KB)
    assert named == ("lim.mg_low_albumin" in ids(with_albumin.limitations))
    assert without.status == with_albumin.status


@pytest.mark.parametrize("text", ["trastuzumab 420 mg IV", "Herceptin", "pertuzumab", "Perjeta 840 mg"])
def test_a_her2_antibody_is_a_minor_risk_with_the_cancer_therapy_check(text):
    """A HER2-directed antibody (named in S25 with platinum and anti-EGFR drugs) asks for magnesium checks during treatment."""
    found = match_drug(KB, (), text)
    assert 1 == len(found.ids) and "her2_agent" in KB.drugs[found.ids[0]].classes
    result = assess(facts(medications=(med(found.ids[0], text),)), KB)
    assert "minor" == next(f.weight for f in result.findings if f.id == "drug.her2_agent")
    assert "ns.cancer_therapy_monitoring" in ids(result.next_steps)


@pytest.mark.parametrize(
    ("comparator", "value", "counted"),
    [
        ("<", 2.5, True),  # below 3.5 whatever its exact value
        ("<=", 3.4, True),
        ("<", 3.5, True),  # below 3.5 itself
        ("<=", 3.5, False),  # may be exactly 3.5: cannot be placed
        ("<", 4.0, False),  # may be normal
        (">", 6.0, False),  # potassium is read only as low
    ],
)
def test_a_potassium_bound_below_its_limit_counts_as_hypokalaemia(comparator, value, counted):
    """'<2.5 mmol/L' potassium is hypokalaemia (and an arrhythmia partner); a bound that cannot be placed is named, not used."""
    bound = dataclasses.replace(k(value), comparator=comparator)
    result = assess(facts(labs=(mg(0.78), bound)), KB)
    assert (counted, not counted) == (
        "sign.hypokalaemia" in ids(result.findings),
        "lim.inexact_result" in ids(result.limitations),
    )
    if counted:
        assert "sf.qt_risk" in ids(result.safety)
        finding = next(f for f in result.findings if f.id == "sign.hypokalaemia")
        assert f"{comparator}{value:g}" == finding.inputs[0].value
        assert f"potassium {comparator}{value:g} mmol/L is below 3.5" in finding.text


@pytest.mark.parametrize("age", [8, 72])
def test_a_severe_deficit_with_heart_block_quotes_no_infusion_dose(age):
    """Mg 0.45 with tetany and AV block on the problem list: no label infusion dose; the route goes to the cardiac team (S58)."""
    block = ConditionFact("second degree atrioventricular block", "heart_block", True)
    result = assess(
        facts(age_years=age, labs=(mg(0.45),), signs=(SignFact("tetany", True),), conditions=(block,)), KB
    )
    assert "deficient" == result.status
    severe = action(result, "safety", "sf.severe_iv_heart_block")
    assert "urgent" == severe.priority
    assert "cardiac team" in severe.text
    assert "5 g" not in severe.text
    assert not {"sf.severe_iv", "sf.severe_iv_child"} & ids(result.safety)
    assert {"sf.heart_block", "sf.iv_monitoring" + ("_child" if age < 18 else "")} <= ids(result.safety)
    without = assess(facts(age_years=age, labs=(mg(0.45),), signs=(SignFact("tetany", True),)), KB)
    assert "sf.severe_iv_heart_block" not in ids(without.safety)


def test_diabetic_ketoacidosis_is_read_and_monitored_under_insulin():
    """DKA by name or code is a minor risk factor, with magnesium monitoring during insulin (S98, S94)."""
    for text in ("diabetic ketoacidosis", "DKA"):
        fact = ConditionFact(text, match_condition(KB, (), text).ids[0], True)
        result = assess(facts(labs=(mg(0.62),), conditions=(fact,)), KB)
        finding = next(f for f in result.findings if f.id == "condition.diabetic_ketoacidosis")
        assert "minor" == finding.weight
        assert "high" == action(result, "next_steps", "ns.dka_monitoring").priority
    for code in (("http://snomed.info/sct", "420422005"), ("http://hl7.org/fhir/sid/icd-10-cm", "E11.10")):
        assert ("diabetic_ketoacidosis",) == match_condition(KB, (code,), None).ids
    past = ConditionFact("diabetic ketoacidosis", "diabetic_ketoacidosis", False)
    assert "ns.dka_monitoring" not in ids(assess(facts(labs=(mg(0.62),), conditions=(past,)), KB).next_steps)


@pytest.mark.parametrize("value", [0.78, 0.82])
def test_the_body_stores_step_claims_no_risk_the_patient_does_not_have(value):
    """A grey-zone value without risk factors gets the body-stores step without the words 'risk of depletion is high'."""
    result = assess(facts(labs=(mg(value),)), KB)
    step = action(result, "next_steps", "ns.body_stores")
    assert "risk of depletion is high" not in step.text.lower()
    assert "grey zone" in step.reason


def test_torsades_with_heart_block_or_a_magnesium_allergy_gets_the_urgent_caution():
    """Torsades with a normal Mg: IV magnesium is advised, so heart block and a Mg allergy are named, urgent (S58, S61)."""
    torsades = (SignFact("torsades_de_pointes", True),)
    block = ConditionFact("complete heart block", "heart_block", True)
    result = assess(facts(labs=(mg(0.9),), signs=torsades, conditions=(block,)), KB)
    assert "sf.torsades" in ids(result.safety)
    caution = action(result, "safety", "sf.heart_block")
    assert ("urgent", True) == (caution.priority, "intravenous magnesium" in caution.reason)
    allergy = AllergyFact("magnesium sulfate", ("magnesium_sulfate",), True, reaction="anaphylaxis")
    result = assess(facts(labs=(mg(0.9),), signs=torsades, allergies=(allergy,)), KB)
    assert "urgent" == action(result, "safety", "sf.mg_allergy").priority
    quiet = assess(facts(labs=(mg(0.9),), conditions=(block,)), KB)
    assert "sf.heart_block" not in ids(quiet.safety)


@pytest.mark.parametrize(
    ("started", "draft", "reached"),
    [
        (None, False, True),  # no start date: it may have reached the sample
        (dt.date(2024, 5, 28), False, True),  # started before the sample
        (DAY, False, True),  # the same day: it may have
        (dt.date(2024, 5, 31), False, False),  # started after the sample
        (None, True, False),  # a draft order (CDS Hooks): not given yet
    ],
)
def test_a_serum_value_taken_before_magnesium_therapy_is_read_without_it(started, draft, reached):
    """A high serum Mg is excess unless the therapy may have reached the sample; a normal one is judged."""
    therapy = dataclasses.replace(mgso4(), start=started, draft=draft)
    high = assess(facts(labs=(mg(1.9),), medications=(therapy,), as_of=dt.date(2024, 6, 1)), KB)
    assert ("indeterminate" if reached else "excess") == high.status
    assert ("serum_mg.therapeutic" in ids(high.findings)) is reached
    assert ("sf.excess" in ids(high.safety)) is not reached
    # The therapy is still current: its own safety advice stays, whatever the sample.
    assert "sf.mg_infusion_monitoring" in ids(high.safety)
    normal = assess(facts(labs=(mg(0.95),), medications=(therapy,), as_of=dt.date(2024, 6, 1)), KB)
    assert ("indeterminate" if reached else "unlikely") == normal.status
    assert ("lim.serum_during_therapy" in ids(normal.limitations)) is reached


def test_a_normal_serum_during_magnesium_therapy_does_not_make_deficiency_unlikely():
    """IV MgSO4 current, serum Mg 0.95, no risk factor: indeterminate with the limitation, not 'unlikely'."""
    during = assess(facts(labs=(mg(0.95),), medications=(mgso4(reason=None),)), KB)
    assert "indeterminate" == during.status
    limitation = next(a for a in during.limitations if a.id == "lim.serum_during_therapy")
    assert "magnesium sulfate injection 4 g" in limitation.reason
    without = assess(facts(labs=(mg(0.95),)), KB)
    assert ("unlikely", False) == (
        without.status,
        "lim.serum_during_therapy" in ids(without.limitations),
    )


def test_a_low_serum_magnesium_before_a_normal_one_is_a_major_risk_factor():
    """0.50 mmol/L two days before 0.88 (after IV magnesium): at risk with the earlier low named, never 'unlikely'."""
    low, now = mg(0.50, dt.date(2024, 5, 28)), mg(0.88, DAY)
    result = assess(facts(labs=(low, now)), KB)
    assert "at_risk" == result.status
    finding = next(f for f in result.findings if f.id == "serum_mg.recently_low")
    assert ("major", "2024-05-28") == (finding.weight, str(finding.inputs[0].date))
    assert "recently low" in result.summary
    # Older than labs.recent_days before the as-of date, after the current value, or not low: no finding.
    for earlier in (
        mg(0.50, dt.date(2022, 1, 1)),
        mg(0.50, dt.date(2024, 5, 31)),
        mg(0.74, dt.date(2024, 5, 28)),
    ):
        other = assess(facts(labs=(earlier, now)), KB)
        assert "serum_mg.recently_low" not in ids(other.findings)
    assert "unlikely" == assess(facts(labs=(mg(0.74, dt.date(2024, 5, 28)), now)), KB).status


@pytest.mark.parametrize(
    ("extra", "proposed"),
    [
        ({}, True),
        ({"medications": (med("furosemide"),)}, False),
        ({"conditions": (ConditionFact("CKD stage 3", "chronic_kidney_disease", True),)}, False),
        ({"conditions": (ConditionFact("atrial fibrillation", "atrial_fibrillation", True),)}, False),
        ({"signs": (SignFact("arrhythmia", True),)}, False),
    ],
)
def test_the_loading_test_is_proposed_only_where_it_is_valid(extra, proposed):
    """Grey-zone serum Mg: the loading test is proposed unless a diuretic, CKD or an arrhythmia makes it invalid (S14, S43)."""
    result = assess(facts(labs=(mg(0.78),), **extra), KB)
    assert proposed == ("ns.loading_test_grey_zone" in ids(result.next_steps))
    assert "ns.body_stores" in ids(result.next_steps)


def test_a_loading_test_done_with_chronic_kidney_disease_is_marked_outside_its_conditions():
    """A retention of 40% with CKD on the problem list (no eGFR): still a low marker, but the limitation says why it may mislead."""
    retention = Lab("loading_retention", 40.0, "%", DAY, origin=Origin("Observation/mtt"))
    ckd = ConditionFact("CKD stage 3", "chronic_kidney_disease", True)
    result = assess(facts(labs=(mg(0.8), retention), conditions=(ckd,)), KB)
    assert "reduced kidney function" in action(result, "limitations", "lim.loading_invalid").reason
    assert "likely_deficient" == result.status
