"""The pass over the medication list finds the magnesium given as treatment that a per-entry check finds."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from magstat.core.facts import Medication, PatientFacts
from magstat.core.prepared import prepared
from magstat.core.rules.medications import _is_mg_therapy, _medication_pass
from magstat.core.rules.work import _Work

_TEXTS = [
    ("Magnesium sulfate 50% injection", ("magnesium_sulfate",)),
    ("magnesium sulfate 4 g IV", ()),
    ("MAGNESIUM citrate oral solution", ()),
    ("Magnesium oxide 400 MG Oral Tablet", ("magnesium_oxide",)),
    ("furosemide 40 MG Oral Tablet", ("furosemide",)),
    ("sumatriptan 50 MG Oral Tablet", ()),
    ("Lisinopril 10 MG Oral Tablet", ()),
    ("omeprazole 20 MG", ("omeprazole",)),
]


@pytest.mark.parametrize("seed", range(200))
def test_magnesium_therapy_matches_the_check_of_each_entry(kb, seed):
    """The same medications, in record order, as checking every current entry one by one."""
    rng = random.Random(seed)
    meds = []
    for _ in range(rng.randint(0, 8)):
        text, drugs = rng.choice(_TEXTS)
        meds.append(
            Medication(
                text,
                tuple(d for d in drugs if d in kb.drugs),
                rng.choice([True, True, False, None]),
                route=rng.choice([None, "intravenous", "oral"]),
                reason=rng.choice([None, "severe pre-eclampsia", "constipation"]),
            )
        )
    w = _Work(PatientFacts(as_of=dt.date(2024, 5, 1), medications=tuple(meds)), kb, prepared(kb))
    _medication_pass(w)
    products = prepared(kb).mg_product_drugs
    expected = [
        m
        for m in meds
        if m.current
        and (not products.isdisjoint(m.drugs) or "magnesium" in m.text.lower())
        and _is_mg_therapy(w, m)
    ]
    assert [id(m) for m in expected] == [id(m) for m in w.mg_therapy]
    unrecognised = [m.text for m in meds if not m.drugs and m.current is not False]
    assert list(dict.fromkeys(unrecognised)) == list(w.unrecognised_medications)
