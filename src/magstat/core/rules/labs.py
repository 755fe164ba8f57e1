"""Current lab results (step 2) and the first calculators: serum magnesium and eGFR."""

from __future__ import annotations

import math
from datetime import date
from itertools import compress, count, repeat
from operator import attrgetter, is_
from typing import Literal

from magstat.core import calculators as calc
from magstat.core.facts import Lab
from magstat.core.result import (
    NO_EGFR,
    NO_SERUM_MG,
    EgfrResult,
    SerumMagnesium,
    new_egfr,
    new_finding,
    new_input,
)
from magstat.core.rules.work import _fmt, _lab_input, _Work
from magstat.core.validate import check_labs

# Tests for which the higher of two conflicting same-day results is the safer reading (it
# gives the lower kidney function); for the others the lower reading is the safer one.
_HIGHER_IS_SAFER = ("serum_creatinine",)


# --------------------------------------------------------------------------------------------
# Step 2: current results


def _select_labs(w: _Work) -> None:
    """Keep, per test, the most recent result at or before the as-of date.

    A result without a date counts as taken on the as-of date (patient documents often carry
    none). A dated result older than ``labs.recent_days`` is kept aside as stale: shown, not
    used for the status.

    The results are walked once, from the last to the first, each checked on the way (as
    :func:`magstat.core.validate.check_facts` would; a failure is named in record order). A
    long record is mostly in date order, so most results are older than the one already kept
    for their test and cost one look-up. A test with several results on its latest date is
    settled in record order by :func:`_same_date`.
    """
    facts = w.facts
    labs = facts.labs
    if not labs:
        return
    if not check_labs(facts, w.kb, w.p.lab_limits) and not _EXACT.issuperset(map(_COMPARATOR, labs)):
        labs = _usable(w, labs)  # a result reported as a bound ("<0.2") is used only where it decides
    as_of = facts.as_of
    best: dict[str, Lab] = {}
    # Every test starts at date.min, so each result costs one look-up and, when older than the
    # one kept for its test (most are), one comparison (the checks above let no unknown test by).
    best_when = w.p.no_dates.copy()
    tied: dict[str, list[Lab]] | None = None  # test -> its results on its latest date, last first
    for lab in reversed(labs):
        when = lab.when or as_of
        test = lab.test
        old_when = best_when[test]
        if when < old_when or when > as_of:
            continue  # older than the result kept for its test, or after the as-of date
        if when != old_when:
            best_when[test] = when
            best[test] = lab
            if tied and test in tied:
                del tied[test]  # a newer date: the results of the older one no longer matter
        else:
            if test not in best:  # a result dated date.min, the first of its test
                best[test] = lab
                continue
            if tied is None:
                tied = {}
            group = tied.get(test)
            if group is None:
                tied[test] = [best[test], lab]
            else:
                group.append(lab)
    if tied:
        _same_date(w, tied, best)
    if "serum_mg" in best:
        # Every serum magnesium at or before the as-of date, in record order.
        w.mg_labs = [lab for lab in labs if lab.test == "serum_mg" and (lab.when or as_of) <= as_of]
        w.mg_history = [(lab.when, lab.value) for lab in w.mg_labs if lab.comparator is None]
    recent_days = w.p.params["labs.recent_days"]
    latest = w.latest
    stale = w.stale
    for test, lab in best.items():
        if (as_of - best_when[test]).days > recent_days:
            stale[test] = lab
        else:
            latest[test] = lab


_EXACT = frozenset({None})
_COMPARATOR = attrgetter("comparator")


def _usable(w: _Work, labs: tuple[Lab, ...]) -> tuple[Lab, ...]:
    """The results the walk may pick: every exact one, and each bound that decides its result.

    A serum magnesium reported as below a value at or under the lower limit of its interval
    (``<0.4`` with an interval from 0.7) is below the interval whatever its exact value, and
    one above a value at or over the upper limit is above it: these are kept (:func:`_serum`
    reads them as bounds). So is a potassium or calcium below a value at or under its lower
    limit ("<2.5 mmol/L" potassium), which counts as hypokalaemia or hypocalcaemia. Any other
    bound cannot be placed, is not used and is named in a limitation. The results keep their
    record order.

    .. versionchanged:: 0.7.0 potassium and calcium bounds below their lower limit.
    """
    out: list[Lab] = []
    for lab in labs:
        if lab.comparator is None or _decides(w, lab):
            out.append(lab)
            continue
        name = w.kb.tests[lab.test].name
        w.limit(
            "lim.inexact_result",
            f"{name} reported as {lab.comparator}{_fmt(lab.value, 4)} {lab.unit}"
            f" ({lab.origin.resource or 'no source'}) was not used.",
        )
    return tuple(out)


# Tests read only as "below a lower limit" (to count hypokalaemia or hypocalcaemia), with the
# parameter that gives the limit when the laboratory gives none.
_READ_AS_LOW = {
    "potassium": "potassium.low_below",
    "calcium_ionised": "calcium_ionised.low_below",
    "calcium_corrected": "calcium_corrected.low_below",
    "calcium_total": "calcium.low_below",
}


# The cut-offs the rules compare an eGFR with (the MDS's cut-off of 90 aside: an undecided MDS
# kidney component is left unknown, see magstat.core.rules.mds).
_EGFR_CUTOFFS = ("egfr.supplement_avoid_below", "mds.egfr_reduced_below", "femg.reduced_gfr_below")


def _decides(w: _Work, lab: Lab) -> bool:
    """Whether a bound alone places a result where the rules read it.

    A serum magnesium below or above its interval; a potassium or calcium below its lower limit
    (those are read only for that, see :func:`magstat.core.rules.signs._other_markers`); an
    eGFR on one side of every cut-off the rules use: above (or at least) the highest, as the
    ">60" or ">90" many laboratories report, or below the lowest ("<15").

    .. versionchanged:: 0.9.0 eGFR bounds.
    """
    if lab.test == "egfr":
        params = w.p.params
        cutoffs = [params[name] for name in _EGFR_CUTOFFS]
        comparator = lab.comparator
        if comparator in (">", ">="):
            return lab.value >= max(cutoffs)
        lowest = min(cutoffs)
        return lab.value <= lowest if comparator == "<" else lab.value < lowest
    param = _READ_AS_LOW.get(lab.test)
    if param is not None:
        low = lab.ref_low
        if low is None and param in w.kb.parameters:
            low = w.p.params[param]
        if low is None:
            return False
        return lab.value <= low if lab.comparator == "<" else lab.comparator == "<=" and lab.value < low
    if lab.test != "serum_mg":
        return False
    test = w.kb.tests["serum_mg"]
    low = lab.ref_low if lab.ref_low is not None else test.default_low
    high = lab.ref_high if lab.ref_high is not None else test.default_high
    value = lab.value
    comparator = lab.comparator
    if comparator == "<":
        return low is not None and value <= low
    if comparator == "<=":
        return low is not None and value < low
    if comparator == ">":
        return high is not None and value >= high
    return high is not None and value > high  # ">="


def _bound_value(lab: Lab) -> float:
    """The value the rules read for a result: a strict bound is the nearest value inside it.

    "<0.4" is read as the largest number below 0.4, so every rule that asks "below 0.4?"
    answers yes and the grade is the least severe the bound allows (the true one may be worse);
    "<=0.4" is read as 0.4.
    """
    if lab.comparator == "<":
        return math.nextafter(lab.value, -math.inf)
    if lab.comparator == ">":
        return math.nextafter(lab.value, math.inf)
    return lab.value


def _same_date(w: _Work, ties: dict[str, list[Lab]], best: dict[str, Lab]) -> None:
    """Settle each test with several results on its latest date, in record order.

    ``ties`` holds each such test's results on that date, the last in the record first. A
    later undated result replaces the one kept (the record's order decides). Two dated results
    with different values are not silently one or the other: the reading that is safer for
    advice is kept, and the disagreement is flagged (see :func:`_conflict_finding`), in the
    order the record shows them.
    """
    labs = w.facts.labs
    flagged: list[tuple[int, str, list[Lab]]] = []
    for test, group in ties.items():
        group.reverse()
        chosen = group[0]
        seen: list[Lab] | None = None
        opened = 0  # where in the group the last disagreement was opened
        higher = test in _HIGHER_IS_SAFER
        for k in range(1, len(group)):
            lab = group[k]
            if lab.when is None or chosen.when is None:
                chosen = lab
                seen = None
            elif abs(lab.value - chosen.value) > 1e-9:
                if seen is None:
                    seen = [chosen]
                    opened = k
                seen.append(lab)
                if (lab.value > chosen.value) if higher else (lab.value < chosen.value):
                    chosen = lab
        best[test] = chosen
        if seen is not None:
            # Where the record opened the disagreement orders the findings (as first met).
            flagged.append((_position(labs, group, opened), test, seen))
    flagged.sort(key=lambda item: item[0])
    for _since, test, seen in flagged:
        if best[test] in seen:
            _conflict_finding(w, test, seen, best[test])


def _position(labs: tuple[Lab, ...], group: list[Lab], k: int) -> int:
    """The index in the record of ``group[k]`` (the same object may stand there more than once)."""
    target = group[k]
    nth = sum(1 for lab in group[: k + 1] if lab is target)
    # The indexes where the object stands, found without a step per result in Python.
    return list(compress(count(), map(is_, labs, repeat(target))))[nth - 1]


def _conflict_finding(w: _Work, test: str, labs: list[Lab], chosen: Lab) -> None:
    """Flag same-date results of one test that disagree, and show which one was used."""
    kb = w.kb
    name = kb.tests[test].name if test in kb.tests else test
    values = ", ".join(f"{lab.comparator or ''}{_fmt(lab.value, 2)} {lab.unit}" for lab in labs)
    direction = "higher" if test in _HIGHER_IS_SAFER else "lower"
    w.findings.append(
        new_finding(
            id=f"conflict.{test}",
            category="test",
            text=(
                f"Conflicting {name} results on {chosen.when.isoformat() if chosen.when else 'the same date'}: "
                f"{values}. The {direction} value ({chosen.comparator or ''}{_fmt(chosen.value, 2)} {chosen.unit}) was used, as the "
                "safer reading for advice; repeat the test to settle it."
            ),
            weight="info",
            rule=f"same test, same date, different values → flagged; the {direction} value is used (the safer reading)",
            inputs=tuple(_lab_input(name, lab) for lab in labs),
            sources=kb.statement("lim.conflicting_results").sources,
        )
    )
    w.limit("lim.conflicting_results", f"Conflicting {name} results on the same date.")


# --------------------------------------------------------------------------------------------
# Step 3: calculators

_SERUM_WEIGHTS = {
    "below_lab_range": "deficit",
    "low_normal": "supportive",
    "normal": "reassuring",
    "above_lab_range": "excess",
}


def _below_interval(w: _Work, lab: Lab) -> float | None:
    """The lower limit of a serum magnesium's interval (the lab's, else the default) when the result is below it."""
    if lab.comparator in (">", ">="):
        return None
    low = lab.ref_low if lab.ref_low is not None else w.kb.tests["serum_mg"].default_low
    return low if low is not None and _bound_value(lab) < low else None


def _previously_low(w: _Work, stale: Lab) -> None:
    """A last serum magnesium below its interval, too old to be current, is a major risk factor.

    Low magnesium has been found before, as with a recorded diagnosis of hypomagnesaemia (which
    counts the same way): the value is not used as the current one, but it asks for a new
    measurement with the weight of a strong risk.
    """
    low = _below_interval(w, stale)
    if low is None:
        return
    when = stale.when.isoformat() if stale.when else "an unknown date"
    w.findings.append(
        new_finding(
            id="serum_mg.previously_low",
            category="risk_factor",
            text=(
                f"Serum magnesium was below the laboratory interval when last measured "
                f"({stale.comparator or ''}{_fmt(stale.value, 2)} mmol/L on {when}, lower limit {_fmt(low, 2)}): "
                "low magnesium has been found before. The result is too old to stand for the current value."
            ),
            weight="major",
            rule=(
                "a last serum magnesium below the lab interval, older than labs.recent_days, counts as a major "
                "risk factor, as a recorded diagnosis of hypomagnesaemia does"
            ),
            inputs=(_lab_input("serum magnesium", stale),),
            sources=("MAGSTAT", *w.kb.conditions["hypomagnesaemia_diagnosed"].sources),
            strength="Earlier laboratory result.",
        )
    )
    w.major.append("serum_mg.previously_low")


def _recently_low(w: _Work, current: Lab, band: str) -> None:
    """A serum magnesium below its interval before the current, not low, one is a major risk factor.

    A deficit found within ``labs.recent_days`` is not undone by a value back in range since
    (after treatment or not): serum holds about 1% of body magnesium, and the cause of the low
    value still needs finding. It counts as the stale low value of :func:`_previously_low` and
    a recorded diagnosis of hypomagnesaemia do.
    """
    assert current.when is not None
    as_of = w.facts.as_of
    recent_days = w.p.params["labs.recent_days"]
    found: tuple[date, Lab, float] | None = None  # the latest low one: its date, result and lower limit
    for lab in w.mg_labs:
        when = lab.when
        if when is None or when >= current.when or (as_of - when).days > recent_days:
            continue
        low = _below_interval(w, lab)
        if low is not None and (found is None or when >= found[0]):
            found = (when, lab, low)
    if found is None:
        return
    found_when, found_lab, low_of_found = found
    now = "in the grey zone" if band == "low_normal" else "normal"
    w.findings.append(
        new_finding(
            id="serum_mg.recently_low",
            category="risk_factor",
            text=(
                f"Serum magnesium was below the laboratory interval on {found_when.isoformat()} "
                f"({found_lab.comparator or ''}{_fmt(found_lab.value, 2)} mmol/L, lower limit {_fmt(low_of_found, 2)}) "
                f"and is {now} on {current.when.isoformat()}: a value back in range, after treatment or not, "
                "does not show that body stores are replete, and the cause of the low value still needs finding."
            ),
            weight="major",
            rule=(
                "a serum magnesium below the lab interval within labs.recent_days, before the current one, counts "
                "as a major risk factor, as a recorded diagnosis of hypomagnesaemia does"
            ),
            inputs=(_lab_input("serum magnesium", found_lab), _lab_input("serum magnesium", current)),
            sources=tuple(
                dict.fromkeys(
                    (
                        "MAGSTAT",
                        *w.kb.tests["serum_mg"].sources,
                        *w.kb.conditions["hypomagnesaemia_diagnosed"].sources,
                    )
                )
            ),
            strength="Earlier laboratory result.",
        )
    )
    w.major.append("serum_mg.recently_low")


def _serum(w: _Work) -> SerumMagnesium:
    kb = w.kb
    test = kb.tests["serum_mg"]
    history = tuple(sorted(w.mg_history, key=lambda item: item[0] or w.facts.as_of)) if w.mg_history else ()
    lab = w.latest.get("serum_mg")
    stale = w.stale.get("serum_mg")
    if lab is None:
        if stale is not None:
            w.findings.append(
                new_finding(
                    id="serum_mg.not_recent",
                    category="serum_magnesium",
                    text=(
                        f"The last serum magnesium ({stale.comparator or ''}{_fmt(stale.value, 2)} mmol/L on "
                        f"{stale.when.isoformat() if stale.when else 'an unknown date'}) is older than "
                        f"{w.p.params['labs.recent_days']:.0f} days before the as-of date, so it is shown "
                        "but not used."
                    ),
                    weight="info",
                    rule=f"results older than labs.recent_days ({w.p.params['labs.recent_days']:.0f} days) are not current",
                    inputs=(_lab_input("serum magnesium", stale),),
                    sources=kb.parameters["labs.recent_days"].sources,
                )
            )
            w.limit("lim.old_result", "The most recent serum magnesium is not recent.")
            _previously_low(w, stale)
            return SerumMagnesium(
                mmol_l=stale.value,
                mg_dl=calc.mg_mmol_to_mg_dl(kb, stale.value),
                meq_l=calc.mg_mmol_to_meq(kb, stale.value),
                date=stale.when,
                current=False,
                source=stale.origin.resource,
                history=history,
                comparator=stale.comparator,
            )
        w.missing.append("serum_mg")
        return SerumMagnesium(mmol_l=None, history=history) if history else NO_SERUM_MG

    low = lab.ref_low if lab.ref_low is not None else test.default_low
    high = lab.ref_high if lab.ref_high is not None else test.default_high
    interval_from: Literal["lab", "default"] = (
        "lab" if lab.ref_low is not None and lab.ref_high is not None else "default"
    )
    evidence_lower = w.p.params["serum_mg.evidence_lower"]
    comparator = lab.comparator  # a bound that places the value (see _usable); None when exact
    value = lab.value if comparator is None else _bound_value(lab)
    band: Literal["below_lab_range", "low_normal", "normal", "above_lab_range"]
    grade: int | None = None
    if low is not None and value < low:
        band = "below_lab_range"
        grade = 1
        for g, key in (
            (2, "ctcae_hypo_grade2_below"),
            (3, "ctcae_hypo_grade3_below"),
            (4, "ctcae_hypo_grade4_below"),
        ):
            if value < w.p.params[f"serum_mg.{key}"]:
                grade = g
    elif high is not None and value > high:
        band = "above_lab_range"
        grade = 1
        for g, key in ((3, "ctcae_hyper_grade3_above"), (4, "ctcae_hyper_grade4_above")):
            if value > w.p.params[f"serum_mg.{key}"]:
                grade = g
    elif value < evidence_lower:
        band = "low_normal"
    else:
        band = "normal"
    interval = f"{_fmt(low or 0, 2)}–{_fmt(high or 0, 2)} mmol/L ({'reported by the lab' if interval_from == 'lab' else 'default interval: the lab reported none'})"
    mg_dl = calc.mg_mmol_to_mg_dl(kb, value)
    shown = f"{_fmt(value, 2)} mmol/L ({_fmt(mg_dl, 2)} mg/dL)"
    # Only the text of the band that holds is made.
    if comparator is not None:
        shown = f"reported as {comparator}{_fmt(lab.value, 4)} mmol/L ({comparator}{_fmt(mg_dl, 2)} mg/dL)"
        text = (
            f"Serum magnesium {shown} is {'below' if band == 'below_lab_range' else 'above'} the lab "
            f"interval {interval} whatever its exact value: "
            f"{'hypo' if band == 'below_lab_range' else 'hyper'}magnesaemia, CTCAE grade {grade} at least "
            "(the exact value, and so the grade, may be worse)."
        )
    elif band == "below_lab_range":
        text = f"Serum magnesium {shown} is below the lab interval {interval}: hypomagnesaemia, CTCAE grade {grade}."
    elif band == "low_normal":
        text = (
            f"Serum magnesium {shown} is within the lab interval {interval} but below the "
            f"evidence-based lower limit of {_fmt(evidence_lower)} mmol/L: the grey zone where a deficit "
            "is common when other markers are low."
        )
    elif band == "normal":
        text = f"Serum magnesium {shown} is within the lab interval {interval} and at or above {_fmt(evidence_lower)} mmol/L."
    else:
        text = f"Serum magnesium {shown} is above the lab interval {interval}: hypermagnesaemia, CTCAE grade {grade}."
    sources = [*test.sources, *kb.parameters["serum_mg.evidence_lower"].sources]
    if grade is not None:
        sources.extend(kb.parameters["serum_mg.ctcae_hypo_grade2_below"].sources)
    if band == "low_normal":
        sources.extend(kb.statement("ex.grey_zone").sources)
    w.findings.append(
        new_finding(
            id=f"serum_mg.{band}",
            category="serum_magnesium",
            text=text,
            weight=_SERUM_WEIGHTS[band],
            rule=(
                f"below the lab's lower limit → below_lab_range; lower limit to < {_fmt(evidence_lower)} mmol/L → "
                "low_normal; above the lab's upper limit → above_lab_range; grade by CTCAE v5.0"
            ),
            inputs=(_lab_input("serum magnesium", lab),),
            sources=tuple(dict.fromkeys(sources)),
            strength="laboratory measurement; interval population-derived, 0.85 mmol/L an expert proposal",
        )
    )
    if interval_from == "default":
        w.limit("lim.default_interval", f"No reference range came with the result; {interval} was used.")
    if band in ("normal", "low_normal") and lab.when is not None:
        _recently_low(w, lab, band)
    return SerumMagnesium(
        mmol_l=value,
        band=band,
        mg_dl=mg_dl,
        meq_l=calc.mg_mmol_to_meq(kb, value),
        date=lab.when,
        current=True,
        lab_low=low,
        lab_high=high,
        interval_from=interval_from,
        evidence_lower=evidence_lower,
        ctcae_grade=grade,
        source=lab.origin.resource,
        history=history,
        comparator=comparator,
    )


def _egfr(w: _Work) -> EgfrResult:
    """Kidney function: a reported CKD-EPI 2021 (or unlabelled) eGFR, else computed, else other."""
    kb = w.kb
    facts = w.facts
    reported = w.latest.get("egfr")
    creatinine = w.latest.get("serum_creatinine")
    sources = kb.parameters["ckd_epi.constant"].sources
    method = (reported.method or "") if reported else ""
    computable = (
        creatinine is not None
        and w.age is not None
        and facts.sex is not None
        and w.age >= w.p.params["ckd_epi.min_age"]
    )
    # A reported eGFR is preferred when it is CKD-EPI 2021 or unlabelled, unless a creatinine
    # taken later gives a newer estimate: kidney function can fall within weeks.
    newer_creatinine = (
        computable
        and reported is not None
        and creatinine is not None
        and (creatinine.when or facts.as_of) > (reported.when or facts.as_of)
    )
    # A bound (">60") gives way to an exact estimate from creatinine, of any date.
    reported_preferred = (
        reported is not None
        and (not method or method.upper().startswith("CKD-EPI 2021"))
        and not newer_creatinine
        and (reported.comparator is None or not computable)
    )
    # Computed once: the agreement check below compares it with a reported value.
    computed = (
        calc.ckd_epi_2021_from(w.p.params, creatinine.value, w.age, facts.sex)
        if computable and creatinine is not None and w.age is not None and facts.sex is not None
        else None
    )
    if creatinine is not None and w.age is not None and w.age < w.p.params["ckd_epi.min_age"]:
        w.limit("lim.ckd_epi_adults", "The patient is younger than the age the equation is valid for.")
    if reported is not None and (reported_preferred or not computable):
        equation = method or "as reported (equation not stated)"
        bound = reported.comparator
        # Positional: value, equation, origin, date, inputs, sources, comparator.
        result = new_egfr(
            reported.value if bound is None else _bound_value(reported),
            equation,
            "reported",
            reported.when,
            (_lab_input("eGFR", reported),),
            kb.tests["egfr"].sources,
            bound,
        )
        text = f"eGFR {bound or ''}{_fmt(reported.value, 0)} mL/min/1.73 m² as reported ({method or 'equation not stated'})."
        rule = "a reported eGFR is used when it is CKD-EPI 2021 or unlabelled, or when none can be computed"
        if bound is not None:
            text = text[:-1] + ": a bound, on one side of every kidney-function cut-off used here."
            rule += "; a reported bound is used only when it falls on one side of every cut-off of the rules"
    elif computed is not None:
        assert creatinine is not None and w.age is not None and facts.sex is not None
        value = computed
        inputs = (
            _lab_input("serum creatinine", creatinine),
            new_input("age", round(w.age, 1), "years"),
            new_input("sex", facts.sex),
        )
        result = new_egfr(value, "CKD-EPI 2021", "computed", creatinine.when, inputs, sources, None)
        text = (
            f"eGFR {_fmt(value, 0)} mL/min/1.73 m² computed by CKD-EPI 2021 from creatinine "
            f"{_fmt(creatinine.value, 2)} mg/dL, age {w.age:.0f}, {facts.sex}."
        )
        rule = "CKD-EPI 2021: 142 × min(Scr/κ,1)^α × max(Scr/κ,1)^−1.200 × 0.9938^age × 1.012 if female"
    else:
        w.missing.append("egfr_or_creatinine")
        return NO_EGFR
    chosen = _egfr_agreement(w, result, reported, creatinine, computed)
    if chosen is not result:
        result = chosen
        text = (
            f"eGFR {_fmt(result.value or 0.0, 0)} mL/min/1.73 m² "
            + (
                f"as reported ({result.equation})"
                if result.origin == "reported"
                else "computed by CKD-EPI 2021 from creatinine"
            )
            + ": the lower of two conflicting estimates (see egfr.discrepancy)."
        )
        rule = "when a reported and a computed eGFR conflict, the lower is used for dosing advice"
    w.findings.append(
        new_finding(
            id="egfr",
            category="calculator",
            text=text,
            weight="info",
            rule=rule,
            inputs=result.inputs,
            sources=result.sources or sources,
        )
    )
    return result


def _egfr_agreement(
    w: _Work, result: EgfrResult, reported: Lab | None, creatinine: Lab | None, computed: float | None
) -> EgfrResult:
    """Compare a reported eGFR with the one computed from creatinine; flag a large gap.

    When both exist and differ by more than ``egfr.discrepancy_fraction`` of the higher value,
    a finding shows both and the lower (safer for dosing) value is used.
    """
    kb = w.kb
    facts = w.facts
    if reported is None or reported.comparator is not None or creatinine is None:
        return result  # a bound is not compared: the exact estimate from creatinine was used
    if w.age is None or facts.sex is None:
        return result
    if w.age < w.p.params["ckd_epi.min_age"] or result.value is None or computed is None:
        return result
    high, low = max(computed, reported.value), min(computed, reported.value)
    if high <= 0 or (high - low) / high <= w.p.params["egfr.discrepancy_fraction"]:
        return result
    fraction = w.p.params["egfr.discrepancy_fraction"]
    when_r = reported.when.isoformat() if reported.when else "an unknown date"
    when_c = creatinine.when.isoformat() if creatinine.when else "an unknown date"
    w.findings.append(
        new_finding(
            id="egfr.discrepancy",
            category="calculator",
            text=(
                f"The reported eGFR {_fmt(reported.value, 0)} ({when_r}) and the eGFR {_fmt(computed, 0)} computed "
                f"by CKD-EPI 2021 from creatinine {_fmt(creatinine.value, 2)} mg/dL ({when_c}) differ by more than "
                f"{fraction * 100:.0f}%. The lower value, {_fmt(low, 0)} mL/min/1.73 m², is used for dosing advice as the "
                "safer reading; repeat creatinine to settle it."
            ),
            weight="info",
            rule=f"reported and computed eGFR more than {fraction * 100:.0f}% apart → flagged; the lower is used",
            inputs=(_lab_input("eGFR (reported)", reported), _lab_input("serum creatinine", creatinine)),
            sources=kb.parameters["egfr.discrepancy_fraction"].sources,
        )
    )
    w.limit("lim.conflicting_results", "A reported eGFR is far from the one computed from creatinine.")
    if low == result.value:
        return result
    if low == computed:
        inputs = (
            _lab_input("serum creatinine", creatinine),
            new_input("age", round(w.age, 1), "years"),
            new_input("sex", facts.sex),
        )
        return EgfrResult(
            computed,
            "CKD-EPI 2021",
            "computed",
            creatinine.when,
            inputs,
            kb.parameters["ckd_epi.constant"].sources,
        )
    return EgfrResult(
        reported.value,
        reported.method or "as reported (equation not stated)",
        "reported",
        reported.when,
        (_lab_input("eGFR", reported),),
        kb.tests["egfr"].sources,
    )
