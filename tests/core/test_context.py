"""The ConText implementation: triggers, scope, pseudo-triggers, terminators, lifelong diagnoses."""

from __future__ import annotations

import datetime as dt

import pytest

from magstat.adapters.read import facts_from_data
from magstat.core import assess
from magstat.core.context import sentences
from magstat.core.facts import Lab, Medication, Origin, PatientFacts, SignFact
from magstat.core.match import find_signs, match_condition, match_drug, match_sign
from magstat.errors import KnowledgeBaseError
from magstat.kb import load_dir
from magstat.kb.schema import FILES
from tests.conftest import ROOT

AS_OF = dt.date(2024, 5, 1)


def contexts(kb, text):
    """(sign id, context) of every sign named in the text."""
    return [(m.ids[0], m.context) for m in find_signs(kb, (), text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Patient denies tetany, seizures or muscle cramps",
            [("tetany", "negated"), ("seizure", "negated"), ("muscle_cramps", "negated")],
        ),
        ("No seizures, but tetany present", [("seizure", "negated"), ("tetany", "current")]),
        ("Seizures ruled out. Tetany noted today.", [("seizure", "negated"), ("tetany", "current")]),
        ("tetany was ruled out", [("tetany", "negated")]),
        ("No increase in seizures", [("seizure", "current")]),
        ("Not only tetany but also seizures", [("tetany", "current"), ("seizure", "current")]),
        ("History of single seizure (situation)", [("seizure", "historical")]),
        ("Tremor in the past, palpitations now", [("tremor", "historical"), ("arrhythmia", "current")]),
        ("Return if seizures occur", [("seizure", "hypothetical")]),
        ("Rule out arrhythmia", [("arrhythmia", "hypothetical")]),
        ("Mother has tremor", [("tremor", "family")]),
        (
            "Family history of seizures; patient reports tetany",
            [("seizure", "family"), ("tetany", "current")],
        ),
        ("Tetany", [("tetany", "current")]),
        ("Potassium does not correct: refractory hypokalaemia", [("refractory_hypokalaemia", "current")]),
        # A phrase that is a pseudo-trigger of one category and a trigger of another acts in the
        # other: "no history of" negates, "cannot be ruled out" leaves the finding hypothetical.
        ("No history of seizures", [("seizure", "negated")]),
        ("No history of seizures; tetany today", [("seizure", "negated"), ("tetany", "current")]),
        ("Seizures cannot be ruled out", [("seizure", "hypothetical")]),
        ("Arrhythmia not ruled out", [("arrhythmia", "hypothetical")]),
        ("Seizures have not been ruled out", [("seizure", "hypothetical")]),
        ("Family history: seizures", [("seizure", "family")]),
        ("Seizures excluded", [("seizure", "negated")]),
        ("Arrhythmia not excluded", [("arrhythmia", "hypothetical")]),
        ("Seizure disorder", [("seizure", "chronic")]),
        ("Epilepsy", [("seizure", "chronic")]),
    ],
)
def test_context_of_signs_in_text(kb, text, expected):
    """Each sign named in a text gets the context its triggers give it (ConText rules)."""
    assert expected == contexts(kb, text)


def test_scope_stops_at_the_word_limit(kb):
    """A negation reaches no further than scope_words words."""
    limit = kb.context.scope_words
    filler = " ".join(["word"] * limit)
    assert [("tetany", "current")] == contexts(kb, f"no {filler} tetany")
    assert [("tetany", "negated")] == contexts(kb, "no " + " ".join(["word"] * (limit - 1)) + " tetany")


def test_decimal_point_is_not_a_sentence_end():
    """'Mg 0.5 mmol/L. No tetany' splits after the unit, not inside 0.5."""
    text = "mg 0.5 mmol/l. no tetany"
    assert [(0, 13), (14, len(text))] == sentences(text)


def test_trigger_and_trigger_phrase_are_shown(kb):
    """The match says which trigger set its context."""
    found = match_sign(kb, (), "Patient denies tetany")
    assert ("negated", "denies") == (found.context, found.trigger)


def test_lifelong_code_is_chronic(kb):
    """Epilepsy by SNOMED CT code (84757009) is the seizure sign in context 'chronic', never current."""
    found = match_sign(kb, (("http://snomed.info/sct", "84757009"),), None)
    assert (("seizure",), "chronic") == (found.ids, found.context)
    icd = match_sign(kb, (("icd10", "G40.909"),), None)
    assert "chronic" == icd.context


def test_condition_text_context(kb):
    """A condition named in text after 'no' or 'history of' is not current."""
    assert "negated" == match_condition(kb, (), "No alcohol use disorder").context
    assert "historical" == match_condition(kb, (), "History of alcohol use disorder").context
    assert "current" == match_condition(kb, (), "Alcohol use disorder").context
    assert "negated" == match_condition(kb, (), "No history of alcohol use disorder").context
    assert "hypothetical" == match_condition(kb, (), "Crohn disease cannot be ruled out").context
    assert "negated" == match_condition(kb, (), "Ruled out for alcohol use disorder").context
    assert "negated" == match_condition(kb, (), "Chronic kidney disease has been excluded").context
    remission = match_condition(kb, (), "Alcohol use disorder, in sustained remission")
    assert ("historical", "in sustained remission") == (remission.context, remission.trigger)


def test_denied_history_is_not_a_risk_factor(kb):
    """'No history of alcohol use disorder' on the problem list gives no risk finding and no MDS point."""
    data = {
        "magstat": "1",
        "as_of": "2024-05-01",
        "age": 45,
        "sex": "male",
        "conditions": ["No history of alcohol use disorder"],
    }
    result = assess(facts_from_data(data, kb, as_of=None), kb)
    assert [] == [f.id for f in result.findings if f.id == "condition.alcohol_use_disorder"]
    assert result.mds.components["alcohol"] != 1


def test_lexicon_is_compiled_once(kb):
    """The trigger table is built once per knowledge base (the per-KB cache)."""
    from magstat.core import context  # noqa: PLC0415

    assert context._lexicon(kb) is context._lexicon(kb)


def facts(*signs: SignFact, labs: tuple[Lab, ...] = ()) -> PatientFacts:
    """A patient on a thiazide with the given signs."""
    thiazide = Medication("hydrochlorothiazide", ("hydrochlorothiazide",), True, origin=Origin("m"))
    return PatientFacts(
        as_of=AS_OF, age_years=60, sex="female", medications=(thiazide,), signs=signs, labs=labs
    )


@pytest.mark.parametrize("context", ["negated", "historical", "hypothetical", "family", "chronic"])
def test_sign_out_of_context_does_not_count(kb, context):
    """A tetany record that is not current gives the status of no record at all, and says why."""
    alone = assess(facts(), kb)
    result = assess(facts(SignFact("tetany", context != "negated", context=context, trigger="x")), kb)
    assert alone.status == result.status
    aside = next(f for f in result.findings if f.id == "context.sign.tetany")
    assert aside.inputs[0].context == f'{context} by "x"'
    assert "sign.tetany" not in [f.id for f in result.findings]


def test_old_sign_does_not_count(kb):
    """A sign dated more than signs.recent_days before the as-of date is history."""
    window = int(kb.param("signs.recent_days"))
    old = SignFact("tetany", True, when=AS_OF - dt.timedelta(days=window + 1))
    recent = SignFact("tetany", True, when=AS_OF - dt.timedelta(days=window))
    assert "sign.tetany" not in [f.id for f in assess(facts(old), kb).findings]
    assert "sign.tetany" in [f.id for f in assess(facts(recent), kb).findings]


def test_recent_hba1c_at_goal_outweighs_a_record_of_poor_control(kb):
    """HbA1c 6.1 % last month sets aside a current record of poor glycaemic control."""
    a1c = Lab("hba1c", 6.1, "%", when=AS_OF - dt.timedelta(days=30))
    result = assess(facts(SignFact("poor_glycaemic_control", True), labs=(a1c,)), kb)
    ids = [f.id for f in result.findings]
    assert "sign.poor_glycaemic_control" not in ids
    assert "context.sign.poor_glycaemic_control" in ids
    high = Lab("hba1c", 9.2, "%", when=AS_OF - dt.timedelta(days=30))
    assert "sign.poor_glycaemic_control" in [f.id for f in assess(facts(labs=(high,)), kb).findings]
    stale = Lab("hba1c", 9.2, "%", when=AS_OF - dt.timedelta(days=int(kb.param("hba1c.recent_days")) + 1))
    assert "sign.poor_glycaemic_control" not in [f.id for f in assess(facts(labs=(stale,)), kb).findings]


def test_deceased_facts_are_not_assessed(kb):
    """PatientFacts with a death on or before as_of: indeterminate, one finding, no actions."""
    dead = PatientFacts(as_of=AS_OF, age_years=70, deceased=True, deceased_date=AS_OF, medications=())
    result = assess(dead, kb)
    assert ("indeterminate", True, ("patient.deceased",)) == (
        result.status,
        result.deceased,
        tuple(f.id for f in result.findings),
    )
    assert ((), (), ()) == (result.next_steps, result.safety, result.limitations)
    later = PatientFacts(as_of=AS_OF, age_years=70, deceased=True, deceased_date=AS_OF + dt.timedelta(days=1))
    assert False is assess(later, kb).deceased


def test_age_stops_at_death(kb):
    """The age shown for a deceased patient is the age at death, not at the as-of date."""
    dead = PatientFacts(
        as_of=AS_OF, birth_date=dt.date(1900, 1, 1), deceased=True, deceased_date=dt.date(1980, 1, 1)
    )
    assert 80 == int(assess(dead, kb).age_years or 0)


def test_context_file_must_define_every_category(tmp_path):
    """A context.toml without one of the four categories is refused by the loader."""
    folder = tmp_path / "kb"
    folder.mkdir()
    data = ROOT / "src" / "magstat" / "kb" / "data"
    for name in FILES:
        text = (data / name).read_text()
        if name == "context.toml":
            text = text.replace("[categories.family]", "[categories.relatives]")
        (folder / name).write_text(text)
    with pytest.raises(KnowledgeBaseError, match="categories must be"):
        load_dir(folder)


def test_unknown_context_is_refused(kb):
    """A sign fact with a context magstat does not know is refused, naming the field."""
    from magstat.errors import InvalidInputError  # noqa: PLC0415

    with pytest.raises(InvalidInputError, match=r"signs\[0\]\.context"):
        assess(facts(SignFact("tetany", True, context="maybe")), kb)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("omeprazole 20 mg - discontinued", ("historical", "discontinued")),
        ("furosemide (stopped 2019)", ("historical", "stopped")),
        ("previously on furosemide", ("historical", "previously")),
        ("no longer taking omeprazole", ("historical", "no longer taking")),
        ("not taking omeprazole", ("negated", "not taking")),
        ("omeprazole not taken", ("negated", "not taken")),
        ("never stopped omeprazole", ("current", None)),
        ("omeprazole, resumed 2024", ("current", None)),
        ("omeprazole 20 MG Delayed Release Oral Capsule", ("current", None)),
        ("omeprazole as needed", ("current", None)),
        # One drug named current keeps the entry current.
        ("stopped omeprazole, started pantoprazole", ("current", None)),
    ],
)
def test_context_of_a_medication_name(kb, text, expected):
    """A drug named as stopped, not taken or in the past carries that context; a current one none."""
    found = match_drug(kb, (), text)
    assert found
    assert expected == (found.context, found.trigger)


def test_a_drug_named_as_stopped_is_not_a_current_medication(kb):
    """'Omeprazole, discontinued' on the list gives no PPI finding and no MDS point."""
    data = {
        "magstat": "1",
        "as_of": "2024-05-01",
        "age": 60,
        "sex": "female",
        "medications": ["omeprazole 20 mg - discontinued", "furosemide (stopped 2019)", "digoxin 0.125 mg"],
        "conditions": [],
    }
    facts = facts_from_data(data, kb, as_of=None)
    assert [False, False, True] == [m.current for m in facts.medications]
    result = assess(facts, kb)
    assert [] == [f.id for f in result.findings if f.id in ("drug.ppi", "drug.loop_diuretic")]
    assert {"diuretic": 0, "ppi": 0} == {k: result.mds.components[k] for k in ("diuretic", "ppi")}
