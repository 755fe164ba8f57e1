"""The per-knowledge-base prepared tables, and the result classes' slot-storing constructors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil

import pytest

from magstat.adapters.read import facts_from_data
from magstat.core import assess
from magstat.core.calculators import ckd_epi_2021, ckd_epi_2021_from, dri_for
from magstat.core.facts import ConditionFact, Lab, Medication, Origin, PatientFacts, SignFact
from magstat.core.prepared import prepared
from magstat.core.result import Action, Assessment, Finding, InputUsed
from magstat.core.validate import check_facts
from magstat.demo import demo_patients
from magstat.errors import InvalidInputError, KnowledgeBaseError
from magstat.kb import load_dir
from tests.conftest import ROOT

KB_DIR = ROOT / "src" / "magstat" / "kb" / "data"


def test_prepared_once_per_knowledge_base_content(kb):
    """The same knowledge base gives the same prepared object; a changed one gets its own."""
    assert prepared(kb) is prepared(kb)


def test_a_changed_knowledge_base_is_prepared_anew(kb, tmp_path):
    """A knowledge base with a changed parameter is prepared from its own values."""
    folder = tmp_path / "kb"
    shutil.copytree(KB_DIR, folder)
    path = folder / "parameters.toml"
    text = path.read_text(encoding="utf-8")
    old = kb.parameters["labs.recent_days"].value
    changed, count = re.subn(
        r'(\[parameters\."labs\.recent_days"\]\nvalue = )[^\n]+', r"\g<1>12345", text, count=1
    )
    assert 1 == count
    path.write_text(changed, encoding="utf-8")
    other = load_dir(folder)
    assert old == prepared(kb).params["labs.recent_days"]
    assert 12345 == prepared(other).params["labs.recent_days"]


def test_prepared_tables_match_the_knowledge_base(kb):
    """Each prepared table says what the knowledge base's entries say."""
    p = prepared(kb)
    assert {k: v.value for k, v in kb.parameters.items()} == dict(p.params)
    for test in kb.tests.values():
        assert (test.canonical_unit, test.plausible_low, test.plausible_high) == p.lab_limits[test.id]
    for drug in kb.drugs.values():
        expected = {kb.drug_classes[c].mds_component for c in drug.classes} - {None}
        assert expected == set(p.mds_components_of[drug.id])
        assert ("magnesium_product" in drug.classes) == (drug.id in p.mg_product_drugs)
    assert [r for r in kb.interactions if r.check_mg] == list(p.check_mg_interactions)
    assert sorted(kb.dri, key=id) == sorted((r for rows in p.dri_by_state.values() for r in rows), key=id)
    for domain in p.domains:
        assert [
            {"text": e.text, "effect": e.effect, "strength": e.strength, "sources": None}
            for e in domain.domain.evidence
        ] == [form for form, _ in domain.evidence_forms]
        assert [e.sources for e in domain.domain.evidence] == [
            sources for _, sources in domain.evidence_forms
        ]
    for i, row in enumerate(kb.interactions):
        assert f"{row.name}: {row.effect} {row.advice}" == p.interaction_texts[i]
        for key in (*row.drugs, *row.classes):
            assert i in p.interactions_of[key]
    assert {i for rows in p.interactions_of.values() for i in rows} == set(range(len(kb.interactions)))
    for c in kb.conditions.values():
        if c.effect not in ("lowers", "raises"):
            assert c.id not in p.condition_findings
            continue
        effect, text, weight, rule, sources, strength = p.condition_findings[c.id]
        assert (c.effect, f"{c.name}: {c.what_is_known}", c.sources, c.evidence) == (
            effect,
            text,
            sources,
            strength,
        )
        assert (c.weight if c.effect == "lowers" else "excess_risk") == weight
        assert (f"counts as a {c.weight} risk factor" if c.effect == "lowers" else "hypermagnesaemia") in rule
    assert {d.id: d.name for d in kb.drugs.values()} == dict(p.drug_names)
    for i, domain in enumerate(p.domains):
        places = [*domain.condition_triggers, *domain.sign_triggers]
        for place, (trigger, name) in enumerate(places):
            table = p.condition_relevance if place < len(domain.condition_triggers) else p.sign_relevance
            assert (i, place, name) in table[trigger]
    assert sum(len(d.condition_triggers) for d in p.domains) == sum(map(len, p.condition_relevance.values()))
    assert sum(len(d.sign_triggers) for d in p.domains) == sum(map(len, p.sign_relevance.values()))
    assert [i for i, d in enumerate(p.domains) if d.domain.id == "cardiovascular"] == list(
        p.cardiovascular_domains
    )
    assert {c.id for c in kb.drug_classes.values() if c.effect == "lowers" and c.weight is not None} == set(
        p.class_rules
    )
    for cls_id, rule in p.class_rules.items():
        assert f"counts as a {kb.drug_classes[cls_id].weight} risk factor" in rule
    assert {c.id for c in kb.drug_classes.values() if c.effect == "raises"} == p.raising_classes


def test_an_undefined_parameter_is_a_knowledge_base_error(kb):
    """Reading a parameter the knowledge base lacks names it, as KnowledgeBase.param does."""
    with pytest.raises(KnowledgeBaseError, match=re.escape("no.such")):
        prepared(kb).params["no.such"]


@pytest.mark.parametrize("cls", [InputUsed, Finding, Action, Assessment])
def test_result_classes_stay_frozen_dataclasses(cls):
    """The result classes built through their slots are still frozen, slotted dataclasses."""
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen
    assert "__dict__" not in dir(cls)


def test_slot_built_results_keep_defaults_equality_and_immutability():
    """A result built with defaults equals one built with every field, hashes alike, refuses assignment."""
    day = dt.date(2024, 1, 2)
    short = InputUsed("age", 70.0, "years", day)
    full = InputUsed(
        name="age", value=70.0, unit="years", date=day, source=None, matched_by=None, context=None
    )
    assert full == short
    assert hash(full) == hash(short)
    assert "InputUsed(name='age', value=70.0, unit='years'" in repr(short)
    with pytest.raises(dataclasses.FrozenInstanceError):
        short.value = 1.0  # type: ignore[misc]
    assert dataclasses.replace(short, value=71.0) == InputUsed("age", 71.0, "years", day)


def test_slot_built_results_refuse_wrong_arguments():
    """A missing or unknown argument is a TypeError, as with the generated constructor."""
    with pytest.raises(TypeError):
        InputUsed("age")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        InputUsed("age", 1.0, colour="red")  # type: ignore[call-arg]


def _refusal(call) -> tuple[str, str, object, object]:
    with pytest.raises(InvalidInputError) as err:
        call()
    return (err.value.field, err.value.problem, err.value.value, err.value.allowed)


_AS_OF = dt.date(2024, 5, 1)


def _lab(test: str, value: float, unit: str, **kw) -> Lab:
    return Lab(test, value, unit, _AS_OF, origin=Origin(f"Observation/{test}"), **kw)


_WRONG = {
    "birth date": {"birth_date": dt.date(2030, 1, 1)},
    "unknown test": {"labs": (_lab("serum_mg", 0.8, "mmol/L"), _lab("no_such_test", 1.0, "mmol/L"))},
    "wrong unit": {"labs": (_lab("serum_mg", 0.8, "mg/dL"),)},
    "implausible value": {"labs": (_lab("serum_mg", 0.8, "mmol/L"), _lab("serum_mg", 40.0, "mmol/L"))},
    "reference range": {"labs": (_lab("serum_mg", 0.8, "mmol/L", ref_low=1.0, ref_high=0.7),)},
    "boolean value": {"labs": (_lab("serum_mg", True, "mmol/L"),)},  # type: ignore[arg-type]
    "unknown drug": {"medications": (Medication("x", ("no_such_drug",), True, origin=Origin("M/1")),)},
    "unknown condition": {
        "conditions": (ConditionFact("x", "no_such_condition", True, origin=Origin("C/1")),)
    },
    "unknown sign": {"signs": (SignFact("no_such_sign", True, origin=Origin("O/1")),)},
    "unknown drug, stopped": {
        "medications": (
            Medication("a", ("omeprazole",), True, origin=Origin("M/1")),
            Medication("b", (), None, origin=Origin("M/2")),
            Medication("c", ("omeprazole", "no_such_drug"), False, origin=Origin("M/3")),
        )
    },
    "unknown drug, current unknown": {
        "medications": (Medication("c", ("no_such_drug",), None, origin=Origin("M/3")),)
    },
    "unknown condition, resolved": {
        "conditions": (
            ConditionFact("a", None, True, origin=Origin("C/1")),
            ConditionFact("b", "no_such_condition", False, origin=Origin("C/2")),
        )
    },
    "unknown drug and condition": {
        "medications": (Medication("c", ("no_such_drug",), False, origin=Origin("M/3")),),
        "conditions": (ConditionFact("b", "no_such_condition", True, origin=Origin("C/2")),),
        "signs": (SignFact("no_such_sign", True, origin=Origin("O/1")),),
    },
    "unknown condition and sign": {
        "conditions": (ConditionFact("b", "no_such_condition", True, origin=Origin("C/2")),),
        "signs": (SignFact("no_such_sign", True, origin=Origin("O/1")),),
    },
}


@pytest.mark.parametrize("wrong", sorted(_WRONG))
def test_assess_refuses_as_check_facts_does(kb, wrong):
    """Checked in the pass that selects the results, assess refuses what check_facts refuses, with its error."""
    f = PatientFacts(as_of=_AS_OF, age_years=50.0, sex="female", **_WRONG[wrong])
    assert _refusal(lambda: check_facts(f, kb)) == _refusal(lambda: assess(f, kb))


def test_the_first_failing_check_names_the_error(kb):
    """With a bad result and a bad drug id, both refuse for the result first (check_facts's order)."""
    f = PatientFacts(
        as_of=_AS_OF,
        labs=(_lab("serum_mg", 0.8, "mmol/L"), _lab("serum_mg", 40.0, "mmol/L")),
        medications=(Medication("x", ("no_such_drug",), True, origin=Origin("M/1")),),
    )
    expected = _refusal(lambda: check_facts(f, kb))
    assert "labs[1] (Observation/serum_mg).value" == expected[0]
    assert expected == _refusal(lambda: assess(f, kb))


class _Float(float):
    """A number of a subclass of float, which the fast test leaves to the full check."""


def test_a_float_subclass_value_is_assessed_like_a_float(kb):
    """A plausible value of a float subclass is used, as check_facts accepts it."""
    plain = PatientFacts(as_of=_AS_OF, labs=(_lab("serum_mg", 0.6, "mmol/L"),))
    sub = PatientFacts(as_of=_AS_OF, labs=(_lab("serum_mg", _Float(0.6), "mmol/L"),))
    check_facts(sub, kb)
    assert assess(plain, kb).to_dict() == assess(sub, kb).to_dict()


def test_an_assessment_does_not_depend_on_what_was_assessed_before(kb):
    """With the shared texts made afresh, or filled by other patients first, a patient's assessment is the same."""
    patients = [facts_from_data(data, kb, as_of=as_of) for _, _, data, as_of in demo_patients()]
    p = prepared(kb)
    for patient in patients:
        for cache in (p.mds_texts, p.finding_inputs, p.fixed_actions, p.unknown_intake):
            cache.clear()
        first = assess(patient, kb).to_dict()
        for other in patients:
            assess(other, kb)
        assert first == assess(patient, kb).to_dict()


def _dri_linear(p, age, sex, pregnant, lactating):
    state = "pregnancy" if pregnant else "lactation" if lactating else "none"
    rows = [r for r in p.dri_by_state.get(state, ()) if r.age_min <= age < r.age_max]
    if not rows and state != "none":
        rows = [r for r in p.dri_by_state.get("none", ()) if r.age_min <= age < r.age_max]
    return next((r for r in rows if r.sex in ("any", sex)), None)


@pytest.mark.parametrize("banded", [True, False], ids=["age bands", "row by row"])
def test_dri_row_is_the_first_row_whose_age_and_sex_fit(kb, banded):
    """The DRI row found through the prepared age bands (or row by row) is the first that fits, with the fallback."""
    p = prepared(kb)
    saved = dict(p.dri_bands)
    if not banded:
        p.dri_bands.clear()  # type: ignore[attr-defined]
    try:
        ages = [x / 4 for x in range(0, 900)] + [0.5, 1.0, 14.0, 19.0, 51.0, 199.99, 200.0, 250.0]
        for age in ages:
            for sex in ("male", "female", None):
                for pregnant, lactating in ((True, None), (None, True), (False, False), (None, None)):
                    expected = _dri_linear(p, age, sex, pregnant, lactating)
                    assert expected is dri_for(kb, age, sex, pregnant, lactating)
    finally:
        p.dri_bands.update(saved)  # type: ignore[attr-defined]
    assert {"none", "pregnancy", "lactation"} == set(p.dri_bands)


def test_relevance_evidence_is_new_for_each_assessment(kb):
    """Changing one assessment's relevance evidence (a dict or its sources) leaves the next assessment as it was."""
    patient = next(
        facts
        for facts in (facts_from_data(data, kb, as_of=as_of) for _, _, data, as_of in demo_patients())
        if assess(facts, kb).relevance
    )
    first = assess(patient, kb)
    expected = assess(patient, kb).to_dict()
    for relevance in first.relevance:
        for row in relevance.evidence:
            row["sources"].append("changed")
            row["text"] = "changed"
    assert expected == assess(patient, kb).to_dict()


@pytest.mark.parametrize("creatinine", [0.4, 0.7, 0.9, 1.3, 4.0])
@pytest.mark.parametrize("sex", ["female", "male"])
def test_ckd_epi_from_the_prepared_parameters_is_the_same_number(kb, creatinine, sex):
    """CKD-EPI 2021 from the prepared parameter values equals the one read through the knowledge base."""
    for age in (18, 45.5, 90):
        assert ckd_epi_2021(kb, creatinine, age, sex) == ckd_epi_2021_from(
            prepared(kb).params, creatinine, age, sex
        )


def test_a_step_with_a_fixed_reason_is_the_step_made_afresh(kb):
    """step_fixed gives the action step gives, shares it between assessments, and raises its priority as step does."""
    from magstat.core.rules.work import _Work  # noqa: PLC0415 - the rules' private working state

    p = prepared(kb)
    plain, fixed, again = (_Work(PatientFacts(as_of=_AS_OF), kb, p) for _ in range(3))
    for add in (plain.step, fixed.step_fixed, again.step_fixed):
        add("ns.diet_assessment", "Dietary magnesium intake is unknown.", "routine")
        add("ns.diet_assessment", "Dietary magnesium intake is unknown.", "high")
        add("ns.measure_serum_mg", "No current serum magnesium result.", "high")
    assert plain.next_steps == fixed.next_steps
    assert fixed.next_steps["ns.measure_serum_mg"] is again.next_steps["ns.measure_serum_mg"]
    assert "high" == fixed.next_steps["ns.diet_assessment"].priority
