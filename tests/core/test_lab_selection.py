"""The walk that picks the current results gives what the straightforward record-order walk gives."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from magstat.core.facts import Lab, Origin, PatientFacts
from magstat.core.prepared import prepared
from magstat.core.rules.labs import _select_labs
from magstat.core.rules.work import _Work

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
