"""Outcome-domain relevance found from the patient's conditions and signs equals the walk over every domain."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from magstat.core import assess
from magstat.core.facts import ConditionFact, Lab, PatientFacts
from magstat.core.prepared import prepared
from magstat.core.result import MdsResult
from magstat.core.rules.report import _relevance
from magstat.core.rules.work import _Work


def _reference(p, conditions, signs, high_mds):
    """Every domain in order; why: its condition triggers the patient has, then its sign triggers."""
    out = []
    for prepared_domain in p.domains:
        domain = prepared_domain.domain
        why = [name for c, name in prepared_domain.condition_triggers if c in conditions]
        why += [name for s, name in prepared_domain.sign_triggers if s in signs]
        if high_mds and domain.id == "cardiovascular":
            why.append("MDS in the high band (associated with cardiovascular mortality in cohorts)")
        if why:
            out.append((domain.id, "; ".join(dict.fromkeys(why)), len(domain.evidence)))
    return out


@pytest.mark.parametrize("seed", range(200))
def test_relevance_matches_the_walk_over_every_domain(kb, seed):
    """The same domains, in the same order, with the same reasons and evidence rows."""
    rng = random.Random(seed)
    p = prepared(kb)
    w = _Work(PatientFacts(as_of=dt.date(2024, 5, 1)), kb, p)
    w.current_conditions = set(rng.sample(sorted(kb.conditions), rng.randint(0, 6)))
    w.present_signs = set(rng.sample(sorted(kb.signs), rng.randint(0, 3)))
    band = rng.choice(["high", "middle", "low", None])
    mds = MdsResult(None, False, band, {}, None, ())
    expected = _reference(p, w.current_conditions, w.present_signs, band == "high")
    assert expected == [(r.domain, r.why, len(r.evidence)) for r in _relevance(w, mds, "at_risk")]


@pytest.mark.parametrize(("value", "shown"), [(2.6, False), (0.9, True)])
def test_no_outcome_evidence_for_more_magnesium_while_it_is_in_excess(kb, value, shown):
    """Heart failure makes the cardiovascular domain relevant, except while serum magnesium is too high."""
    facts = PatientFacts(
        as_of=dt.date(2024, 5, 1),
        age_years=70,
        sex="male",
        conditions=(ConditionFact("heart failure", "heart_failure", True),),
        labs=(Lab("serum_mg", value, "mmol/L", dt.date(2024, 4, 30)),),
    )
    result = assess(facts, kb)
    assert (shown, not shown) == (
        "cardiovascular" in [r.domain for r in result.relevance],
        "lim.relevance_excess" in [a.id for a in result.limitations],
    )
    assert ("excess" == result.status) is not shown
