"""How knowledge-base names and amounts read inside findings."""

from __future__ import annotations

import datetime as dt

from magstat.core import assess
from magstat.core.facts import Medication, Origin, PatientFacts, SupplementFact
from magstat.core.rules.work import _in_text
from tests.strategies import KB

AS_OF = dt.date(2024, 6, 1)


def test_names_in_a_sentence_keep_acronyms():
    """Only a capital that merely starts a name is lowered; acronyms and symbols keep their case."""
    expected = [
        "proton-pump inhibitors",
        "QT-prolonging drugs",
        "SGLT2 inhibitors",
        "amphotericin B",
        "anti-EGFR",
    ]
    actual = [
        _in_text(n)
        for n in (
            "Proton-pump inhibitors",
            "QT-prolonging drugs",
            "SGLT2 inhibitors",
            "Amphotericin B",
            "Anti-EGFR",
        )
    ]
    assert expected == actual


def test_qt_drug_finding_says_qt_in_capitals():
    """A current QT-prolonging drug is named with its acronym intact in the finding."""
    meds = (Medication("methadone", ("methadone",), True, origin=Origin("MedicationRequest/1")),)
    result = assess(PatientFacts(as_of=AS_OF, age_years=50, medications=meds, conditions=()), KB)
    texts = [f.text for f in result.findings if "QT-prolonging" in f.text]
    assert 1 <= len(texts)
    assert all("qt-prolonging" not in t for t in (f.text for f in result.findings))


def test_supplement_input_states_its_elemental_amount():
    """Each counted supplement is an input with its elemental mg/day, not its name in the value."""
    items = (
        SupplementFact(
            "citrate", "magnesium citrate", elemental_mg_per_day=200, origin=Origin("supplements[0]")
        ),
        SupplementFact(None, "a tonic of unknown content", origin=Origin("supplements[1]")),
    )
    result = assess(PatientFacts(as_of=AS_OF, age_years=6, supplements=items), KB)
    [finding] = [f for f in result.findings if f.id.startswith("supplements.")]
    expected = [
        (200, "mg/day elemental", "supplements[0]"),
        ("a tonic of unknown content", None, "supplements[1]"),
    ]
    assert expected == [(i.value, i.unit, i.source) for i in finding.inputs]
    assert "supplements.above_ul" == finding.id


def test_ecg_advice_in_excess_speaks_of_conduction_not_low_magnesium():
    """A high serum Mg (CTCAE grade 3) asks for an ECG worded for hypermagnesaemia, never the low-Mg text."""
    from magstat.core.facts import Lab  # noqa: PLC0415

    high = Lab("serum_mg", 1.6, "mmol/L", AS_OF, ref_low=0.7, ref_high=1.0, origin=Origin("Observation/mg"))
    result = assess(PatientFacts(as_of=AS_OF, age_years=70, labs=(high,), medications=(), conditions=()), KB)
    steps = {a.id: a for a in result.next_steps}
    assert ("excess", True, False) == (result.status, "ns.ecg_high_mg" in steps, "ns.ecg" in steps)
    assert "heart block" in steps["ns.ecg_high_mg"].text
    assert "urgent" == steps["ns.ecg_high_mg"].priority
