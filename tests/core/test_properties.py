"""Properties of assess: deterministic, monotone, unit-invariant, only InvalidInputError escapes."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from magstat.adapters.document import facts_from_document
from magstat.core import assess
from magstat.core.facts import ConditionFact, Lab, Medication, Origin, PatientFacts, SignFact
from magstat.core.result import DEFICIT_RANK
from magstat.errors import InvalidInputError
from tests.strategies import (
    AS_OF,
    KB,
    LOWERING_DRUGS,
    out_of_context_conditions,
    out_of_context_signs,
    patient_facts,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rank(status: str) -> int:
    return DEFICIT_RANK[status]


def with_serum(facts: PatientFacts, value: float) -> PatientFacts:
    others = tuple(lab for lab in facts.labs if lab.test != "serum_mg")
    return dataclasses.replace(
        facts, labs=(*others, Lab("serum_mg", value, "mmol/L", AS_OF, origin=Origin("Observation/mg")))
    )


@SETTINGS
@given(patient_facts())
def test_deterministic(facts):
    """The same facts give the same assessment, byte for byte."""
    assert json.dumps(assess(facts, KB).to_dict()) == json.dumps(assess(facts, KB).to_dict())


@SETTINGS
@given(patient_facts(), st.floats(0.2, 1.05), st.floats(0.2, 1.05))
def test_lower_serum_never_lowers_deficit(facts, a, b):
    """A lower serum magnesium never gives a status that points less to a deficit."""
    high, low = max(a, b), min(a, b)
    first = assess(with_serum(facts, high), KB).status
    second = assess(with_serum(facts, low), KB).status
    assume(first != "excess")
    assert second != "excess"
    assert rank(second) >= rank(first)


@SETTINGS
@given(patient_facts(), st.sampled_from(LOWERING_DRUGS))
def test_adding_a_lowering_drug_never_lowers_deficit(facts, drug):
    """Adding a current magnesium-lowering drug never gives a better status."""
    before = assess(facts, KB).status
    meds = (
        *(facts.medications or ()),
        Medication(drug, (drug,), True, origin=Origin("MedicationRequest/new")),
    )
    after = assess(dataclasses.replace(facts, medications=meds), KB).status
    if before == "excess":
        assert after == "excess"
    else:
        assert rank(after) >= rank(before)


@SETTINGS
@given(patient_facts(), st.floats(5, 140), st.floats(5, 140))
def test_lower_egfr_never_lowers_deficit(facts, a, b):
    """A lower eGFR never gives a better status (it can only raise the MDS)."""

    def with_egfr(value: float) -> PatientFacts:
        others = tuple(lab for lab in facts.labs if lab.test not in ("egfr", "serum_creatinine"))
        return dataclasses.replace(facts, labs=(*others, Lab("egfr", value, "mL/min/{1.73_m2}", AS_OF)))

    first = assess(with_egfr(max(a, b)), KB).status
    second = assess(with_egfr(min(a, b)), KB).status
    if first == "excess":
        assert second == "excess"
    else:
        assert rank(second) >= rank(first)


@SETTINGS
@given(st.floats(0.15, 2.5))
def test_unit_invariance(value):
    """The same serum magnesium in mmol/L, mg/dL or mEq/L gives the same assessment."""
    mg_dl = value * KB.analytes["magnesium"].molar_mass_g_mol / 10
    docs = [
        {"labs": [{"test": "serum_mg", "value": value, "unit": "mmol/L"}]},
        {"labs": [{"test": "serum_mg", "value": mg_dl, "unit": "mg/dL"}]},
        {"labs": [{"test": "serum_mg", "value": value * 2, "unit": "mEq/L"}]},
    ]
    results = [
        assess(facts_from_document({**d, "age": 60, "sex": "male"}, KB, as_of=AS_OF), KB) for d in docs
    ]
    assert len({r.status for r in results}) == 1
    assert len({r.serum_magnesium.band for r in results}) == 1
    assert all(abs(r.serum_magnesium.mmol_l - value) < 1e-9 for r in results)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
doc_keys = st.sampled_from(
    [
        "age",
        "sex",
        "labs",
        "medications",
        "conditions",
        "signs",
        "diet",
        "supplements",
        "birth_date",
        "loading_test",
        "audit_c",
        "alcohol_drinks_per_day",
        "pregnant",
    ]
)


@SETTINGS
@given(st.dictionaries(doc_keys, json_values, max_size=6))
def test_only_invalid_input_escapes_from_documents(doc):
    """Any document either assesses or raises InvalidInputError: nothing else escapes."""
    with contextlib.suppress(InvalidInputError):
        assess(facts_from_document(doc, KB, as_of=dt.date(2024, 5, 1)), KB)


@SETTINGS
@given(patient_facts(), st.floats(allow_nan=True, allow_infinity=True))
def test_only_invalid_input_escapes_from_facts(facts, value):
    """Any lab value, plausible or not, either assesses or raises InvalidInputError."""
    with contextlib.suppress(InvalidInputError):
        assess(with_serum(facts, value), KB)


LOWERING_CONDITIONS = sorted(c.id for c in KB.conditions.values() if c.effect == "lowers")


@SETTINGS
@given(patient_facts(), st.sampled_from(LOWERING_CONDITIONS), st.sampled_from(sorted(KB.signs)))
def test_adding_a_condition_or_sign_never_lowers_deficit(facts, condition, sign):
    """A new current condition that lowers magnesium, or a new sign, never gives a better status."""
    before = assess(facts, KB).status
    conditions = (*(facts.conditions or ()), ConditionFact(condition, condition, True))
    with_condition = assess(dataclasses.replace(facts, conditions=conditions), KB).status
    with_sign = assess(dataclasses.replace(facts, signs=(*facts.signs, SignFact(sign, True))), KB).status
    for after in (with_condition, with_sign):
        if before == "excess":
            assert "excess" == after
        else:
            assert rank(after) >= rank(before)


@SETTINGS
@given(patient_facts(), st.floats(0, 900), st.floats(0, 900))
def test_lower_intake_never_lowers_deficit(facts, a, b):
    """Less dietary magnesium never gives a better status."""
    first = assess(dataclasses.replace(facts, diet_mg_per_day=max(a, b)), KB).status
    second = assess(dataclasses.replace(facts, diet_mg_per_day=min(a, b)), KB).status
    if first == "excess":
        assert "excess" == second
    else:
        assert rank(second) >= rank(first)


@SETTINGS
@given(patient_facts(), st.lists(out_of_context_signs(), min_size=1, max_size=3), out_of_context_conditions())
def test_entries_out_of_context_never_worsen_status(facts, signs, condition):
    """Negated, historical, hypothetical, family, lifelong or old entries give the status of leaving them out."""
    before = assess(facts, KB)
    with_signs = assess(dataclasses.replace(facts, signs=(*facts.signs, *signs)), KB)
    # A problem list that holds an entry is a known list (possibly of nothing current): the
    # condition is compared with the same known list without it.
    known = dataclasses.replace(facts, conditions=facts.conditions or ())
    without_condition = assess(known, KB)
    with_condition = assess(dataclasses.replace(known, conditions=(*known.conditions, condition)), KB)
    for first, after in ((before, with_signs), (without_condition, with_condition)):
        assert (first.status, first.severity) == (after.status, after.severity)
        assert [a.id for a in first.next_steps] == [a.id for a in after.next_steps]


@SETTINGS
@given(patient_facts(), st.floats(3.0, 6.99), st.integers(0, 3))
def test_recent_hba1c_below_goal_never_adds_poor_control(facts, value, days):
    """Adding the most recent HbA1c, below the 7 % goal, never gives 'poor glycaemic control'."""
    assert value < KB.param("hba1c.goal_below")
    a1c = Lab("hba1c", value, "%", AS_OF - dt.timedelta(days=days), origin=Origin("Observation/a1c"))
    newer = tuple(lab for lab in facts.labs if lab.test != "hba1c" or lab.when is None or lab.when < a1c.when)
    after = {f.id for f in assess(dataclasses.replace(facts, labs=(*newer, a1c)), KB).findings}
    assert "sign.poor_glycaemic_control" not in after
