"""``assess(facts, kb) -> Assessment``: the one implementation of magstat's rules.

The assessment runs in fixed steps, each leaving findings that show its basis:

1. check the facts (implausible input is refused, never interpreted);
2. pick the current results (the most recent at or before the as-of date, and recent);
3. calculators: serum Mg bands and CTCAE grade, eGFR, MDS, FEMg, loading test, intake, UL;
4. risk factors and signs from medications, conditions, alcohol, age, diet and labs;
5. the status, by the precedence rule in :func:`magstat.core.rules.decide._decide`
   (monotone: a worse input never gives a status that points less to a deficit);
6. next steps, safety, outcome-domain relevance and limitations.

Each step is a function in a module of :mod:`magstat.core.rules` (one module per rule area);
this module runs them in order and gathers the answer.

Pure: no I/O, no clock, no environment. The same facts and knowledge base give the same
assessment, byte for byte.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter

from magstat.core.facts import PatientFacts
from magstat.core.prepared import prepared
from magstat.core.result import Action, Assessment, new_assessment
from magstat.core.rules.decide import _decide
from magstat.core.rules.intake import _intake, _supplements
from magstat.core.rules.labs import _egfr, _select_labs, _serum
from magstat.core.rules.lifestyle import _alcohol_and_lifestyle
from magstat.core.rules.mds import _mds
from magstat.core.rules.medications import (
    _condition_pass,
    _conditions,
    _medication_pass,
    _medications,
    _therapy_by_indication,
)
from magstat.core.rules.next_steps import _next_steps
from magstat.core.rules.patient import _age, _deceased, _died
from magstat.core.rules.renal import _femg, _loading, _urine_24h
from magstat.core.rules.report import _limitations, _relevance, _summary
from magstat.core.rules.safety import _arrhythmia_risk, _safety
from magstat.core.rules.signs import _other_markers, _signs
from magstat.core.rules.work import _Work
from magstat.core.validate import check_facts, check_other_entries, check_person
from magstat.kb.schema import KnowledgeBase

__all__ = ["assess"]


def assess(facts: PatientFacts, kb: KnowledgeBase) -> Assessment:
    """Assess a patient's magnesium status from what is known.

    Args:
        facts: what is known about the patient, in canonical units (see
            :class:`magstat.core.facts.PatientFacts`).
        kb: the knowledge base (``magstat.kb.load()``).

    Returns:
        The explained assessment. Its status is one of ``excess``, ``deficient``,
        ``likely_deficient``, ``at_risk``, ``unlikely``, ``indeterminate``.

    Raises:
        InvalidInputError: the facts contain a value that must not be interpreted
            (implausible, wrong unit, unknown id, birth date after the as-of date).

    .. versionadded:: 0.1.0

    """
    p = prepared(kb)
    # The checks of check_facts, in its order; each result is checked in the pass that selects
    # the current ones, so a long record's results are walked once.
    check_person(facts)
    w = _Work(facts, kb, p)
    w.age = _age(facts)
    if _died(facts):
        check_facts(facts, kb, p)
        return _deceased(facts, kb, w.age)
    _select_labs(w)
    # Then the drug and condition ids, each checked in the one pass that gathers what the rules
    # read from its list; then the other entries.
    _medication_pass(w)
    _condition_pass(w)
    _therapy_by_indication(w)
    check_other_entries(facts, kb)
    serum = _serum(w)
    egfr = _egfr(w)
    _medications(w)
    _conditions(w)
    mds = _mds(w, egfr)
    femg = _femg(w, serum, egfr)
    _urine_24h(w, serum)
    loading = _loading(w, egfr, femg)
    _other_markers(w)
    _signs(w)
    _alcohol_and_lifestyle(w)
    intake = _intake(w)
    supplements = _supplements(w)
    status, severity, basis = _decide(w, serum, mds)
    w.findings.append(basis)
    arrhythmia_risk = _arrhythmia_risk(w, serum)
    _next_steps(w, status, serum, egfr, femg, arrhythmia_risk=arrhythmia_risk)
    _safety(w, status, serum, egfr, supplements, arrhythmia_risk=arrhythmia_risk)
    relevance = _relevance(w, mds, status)
    _limitations(w, serum, mds, egfr, status)
    summary = _summary(status, severity, serum, mds, w)
    # One pass over every cited item's sources (a chain is cheaper than unpacking them all as
    # arguments of one union).
    cited_items = chain(
        w.findings, w.next_steps.values(), w.safety.values(), w.limitations.values(), relevance
    )
    cited = set(chain.from_iterable(map(_SOURCES, cited_items)))
    cited.update(
        mds.sources, egfr.sources, femg.sources, loading.sources, intake.sources, supplements.sources
    )
    # Positionally, in the order of Assessment's fields (a call with 26 keywords was a measurable
    # share of the time; tests/core/test_golden_outputs.py shows every field).
    return new_assessment(
        status,
        severity,
        summary,
        facts.as_of,
        facts.patient_id,
        w.age,  # age_years
        facts.sex,
        mds,
        egfr,
        serum,  # serum_magnesium
        femg,
        loading,  # loading_test
        intake,
        supplements,
        tuple(w.findings),
        _ordered(w.next_steps),
        _ordered(w.safety),
        relevance,
        tuple(w.limitations.values()),
        tuple(w.missing),  # missing_inputs
        _unrecognised(w),
        facts.excluded,
        kb.version,
        kb.sha256,
        tuple(sorted(cited)),  # sources
        False,  # deceased
        None,  # deceased_date
        w.severity_reason,
    )


_RANK = {"urgent": 0, "high": 1, "routine": 2}
_SOURCES = attrgetter("sources")


def _ordered(table: dict[str, Action]) -> tuple[Action, ...]:
    """The actions by priority (urgent, high, routine), in the order they were given within each."""
    actions = tuple(table.values())
    if len(actions) < 2:
        return actions
    return tuple(sorted(actions, key=_rank))


def _rank(action: Action) -> int:
    return _RANK[action.priority]


def _unrecognised(w: _Work) -> tuple[str, ...]:
    """Unrecognised entries that may be current (not those known to be stopped or resolved).

    Each text once: a clinician should see what magstat could not read. A medication read as
    a supplement is not listed.
    """
    texts = w.unrecognised_medications
    supplements = w.facts.supplements
    if texts and supplements:
        supplement_texts = {s.text for s in supplements}
        texts = {t: None for t in texts if t not in supplement_texts}
    return (
        *map("medication: ".__add__, texts),
        *map("condition: ".__add__, w.unrecognised_conditions),
    )
