"""The walk that picks the current results gives what the straightforward record-order walk gives."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from magstat.core.facts import Lab, Origin, PatientFacts
from magstat.core.prepared import prepared
from magstat.core.rules.labs import _position, _select_labs
from magstat.core.rules.work import _Work
from magstat.core.validate import all_plausible, lab_plausible

_AS_OF = dt.date(2024, 5, 1)
_TESTS = ("serum_mg", "serum_creatinine", "potassium", "egfr")


def _reference(labs, as_of, recent_days):
    """Results in record order: the newest per test; same-date ties by the record's order."""
    best: dict[str, Lab] = {}
    best_when: dict[str, dt.date] = {}
    conflicts: dict[str, list[Lab]] = {}
    history = []
    for lab in labs:
        when = lab.when or as_of
        if when > as_of:
            continue
        test = lab.test
        if test == "serum_mg":
            history.append((lab.when, lab.value))
        old_when = best_when.get(test)
        if old_when is None or when > old_when:
            best_when[test] = when
            best[test] = lab
            conflicts.pop(test, None)
            continue
        if when < old_when:
            continue
        old = best[test]
        if lab.when is None or old.when is None:
            best[test] = lab
            conflicts.pop(test, None)
        elif abs(lab.value - old.value) > 1e-9:
            conflicts.setdefault(test, [old]).append(lab)
            higher = test == "serum_creatinine"
            if (lab.value > old.value) if higher else (lab.value < old.value):
                best[test] = lab
    flagged = [(t, seen) for t, seen in conflicts.items() if best[t] in seen]
    latest = {t: lab for t, lab in best.items() if (as_of - best_when[t]).days <= recent_days}
    stale = {t: lab for t, lab in best.items() if (as_of - best_when[t]).days > recent_days}
    return latest, stale, flagged, history


def _record(kb, rng: random.Random) -> tuple[Lab, ...]:
    days = [_AS_OF - dt.timedelta(days=d) for d in (0, 0, 3, 3, 40, 200, 400)] + [
        _AS_OF + dt.timedelta(days=2)
    ]
    labs: list[Lab] = []
    for i in range(rng.randint(0, 30)):
        if labs and rng.random() < 0.1:
            labs.append(rng.choice(labs))  # the same object twice
            continue
        test = rng.choice(_TESTS)
        spec = kb.tests[test]
        low, high = max(spec.plausible_low, 0.1), min(spec.plausible_high, 5.0)
        value = rng.choice([low, (low + high) / 2, high, (low + high) / 3])
        when = None if rng.random() < 0.3 else rng.choice(days)
        labs.append(Lab(test, value, spec.canonical_unit, when, origin=Origin(f"Observation/{i}")))
    return tuple(labs)


@pytest.mark.parametrize("seed", range(400))
def test_current_results_match_the_record_order_walk(kb, seed):
    """Kept results (the same objects), stale ones, conflict findings in order and the magnesium history agree."""
    rng = random.Random(seed)
    labs = _record(kb, rng)
    p = prepared(kb)
    w = _Work(PatientFacts(as_of=_AS_OF, labs=labs), kb, p)
    _select_labs(w)
    latest, stale, flagged, history = _reference(labs, _AS_OF, p.params["labs.recent_days"])
    assert {t: id(lab) for t, lab in latest.items()} == {t: id(lab) for t, lab in w.latest.items()}
    assert {t: id(lab) for t, lab in stale.items()} == {t: id(lab) for t, lab in w.stale.items()}
    assert [(f"conflict.{t}", len(seen)) for t, seen in flagged] == [
        (f.id, len(f.inputs)) for f in w.findings if f.id.startswith("conflict.")
    ]
    assert history == w.mg_history


def _odd_record(kb, rng: random.Random) -> tuple[Lab, ...]:
    """Results of known and unknown tests, with values, units and reference limits good and bad."""
    labs = []
    for _ in range(rng.randint(0, 8)):
        test = rng.choice([*_TESTS, "no_such_test"])
        spec = kb.tests.get(test) or kb.tests["serum_mg"]
        low, high = spec.plausible_low, spec.plausible_high
        value = rng.choice([low, high, (low + high) / 2, high + 1, low - 1, float("nan"), True, 1])
        unit = rng.choice([spec.canonical_unit, spec.canonical_unit, "mg/dL", "mmol/L"])
        ref_low = rng.choice([None, None, low, (low + high) / 3, high + 1])
        ref_high = rng.choice([None, None, high, (low + high) / 2, low - 1])
        labs.append(Lab(test, value, unit, ref_low=ref_low, ref_high=ref_high))
    return tuple(labs)


@pytest.mark.parametrize("seed", range(300))
def test_the_whole_record_check_agrees_with_the_check_of_each_result(kb, seed):
    """all_plausible is true exactly when every (exact) result passes lab_plausible."""
    rng = random.Random(seed)
    labs = _odd_record(kb, rng)
    limits = prepared(kb).lab_limits
    assert all(lab_plausible(lab, limits) for lab in labs) == all_plausible(labs, limits)


@pytest.mark.parametrize("comparator", ["<", "<=", ">", ">="])
def test_a_bound_is_plausible_but_fails_the_fast_test(kb, comparator):
    """A result reported as a bound passes lab_plausible; the whole-record test sends it to the full check."""
    limits = prepared(kb).lab_limits
    lab = Lab("serum_mg", 0.4, "mmol/L", comparator=comparator)
    assert (True, False) == (lab_plausible(lab, limits), all_plausible((lab,), limits))
    assert lab_plausible(Lab("serum_mg", 0.4, "mmol/L"), limits)
    assert not lab_plausible(Lab("serum_mg", 0.4, "mmol/L", comparator="~"), limits)
    assert not lab_plausible(Lab("serum_mg", 0.4, "mmol/L", comparator=["<"]), limits)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(100))
def test_a_conflict_is_ordered_by_where_the_record_shows_it(seed):
    """_position gives the index of the k-th element's occurrence in the record, as a plain scan does."""
    rng = random.Random(seed)
    pool = [Lab("serum_mg", 0.5 + i / 10, "mmol/L") for i in range(4)]
    labs = tuple(rng.choice(pool) for _ in range(rng.randint(1, 12)))
    target = rng.choice(labs)
    group = [lab for lab in labs if lab is target or rng.random() < 0.3]
    k = max(i for i, lab in enumerate(group) if lab is target)
    nth = sum(1 for lab in group[: k + 1] if lab is target)
    expected = [i for i, lab in enumerate(labs) if lab is target][nth - 1]
    assert expected == _position(labs, group, k)
