"""Other markers (RBC and ionised magnesium, potassium, calcium, glycaemia) and clinical signs."""

from __future__ import annotations

from magstat.core.facts import SignFact
from magstat.core.result import InputUsed, new_finding, new_input
from magstat.core.rules.labs import _READ_AS_LOW, _bound_value
from magstat.core.rules.work import _fmt, _in_text, _lab_input, _low_albumin, _Work

# Signs whose presence means a deficit is symptomatic (route: IV), per S54.
_SYMPTOMATIC_SIGNS = ("tetany", "seizure", "arrhythmia", "torsades_de_pointes")
_ECG_SIGNS = ("arrhythmia", "qt_prolongation", "torsades_de_pointes")
# Low potassium or calcium: with a low or low-normal magnesium they add to the risk of
# torsades de pointes (S341, S346); refractory forms point to the IV route (S54, S63).
_LOW_K_CA_SIGNS = ("hypokalaemia", "hypocalcaemia", "refractory_hypokalaemia", "refractory_hypocalcaemia")
_REFRACTORY_SIGNS = ("refractory_hypokalaemia", "refractory_hypocalcaemia")


def _other_markers(w: _Work) -> None:
    """RBC and ionised magnesium below their interval; low potassium and calcium."""
    kb = w.kb
    for test_id, limitation in (("rbc_mg", "lim.rbc_no_standard"), ("ionised_mg", "lim.ionised_method")):
        lab = w.latest.get(test_id)
        if lab is None:
            continue
        test = kb.tests[test_id]
        low = lab.ref_low if lab.ref_low is not None else test.default_low
        w.limit(limitation, f"{test.name} was used.")
        if low is not None and lab.value < low:
            w.low_markers.append(test_id)
            w.findings.append(
                new_finding(
                    id=f"{test_id}.low",
                    category="test",
                    text=f"{test.name} {_fmt(lab.value, 2)} mmol/L is below its interval (lower limit {_fmt(low, 2)} mmol/L, {'lab' if lab.ref_low is not None else 'default'}).",
                    weight="supportive",
                    rule="a body-store marker below its interval supports a deficit",
                    inputs=(_lab_input(test.name, lab),),
                    sources=test.sources,
                )
            )
    latest = w.latest
    # Calcium is read from its most direct measure: ionised, else albumin-corrected, else total.
    # A low total calcium with a low albumin is not counted (total calcium falls with albumin).
    checks = [_POTASSIUM_CHECK]
    for test_id in _CALCIUM_TESTS:
        lab = latest.get(test_id)
        param = _READ_AS_LOW[test_id]
        if lab is not None and (lab.ref_low is not None or param in kb.parameters):
            if test_id != "calcium_total" or not _total_calcium_from_albumin(w):
                checks.append((test_id, "hypocalcaemia", param))
            break
    for test_id, sign_id, param in checks:
        lab = latest.get(test_id)
        if lab is None or sign_id not in kb.signs or sign_id in w.present_signs:
            continue
        low = lab.ref_low
        from_kb = low is None and param in kb.parameters
        if from_kb:
            low = w.p.params[param]
        if low is None or _bound_value(lab) >= low:
            continue  # (the sources are gathered only for a finding)
        sources = list(kb.tests[test_id].sources)
        if from_kb:
            sources.extend(kb.parameters[param].sources)
        sign = kb.signs[sign_id]
        _count_sign(
            w,
            sign_id,
            text=f"{sign.name}: {kb.tests[test_id].name} {lab.comparator or ''}{_fmt(lab.value, 2)} {lab.unit} is below {_fmt(low, 2)}. {sign.text}",
            rule=f"{kb.tests[test_id].name} below the lab's lower limit (or the knowledge base's) counts as {_in_text(sign.name)}",
            inputs=(_lab_input(kb.tests[test_id].name, lab),),
            sources=sources,
        )
    _glycaemia(w)


_POTASSIUM_CHECK = ("potassium", "hypokalaemia", _READ_AS_LOW["potassium"])
_CALCIUM_TESTS = ("calcium_ionised", "calcium_corrected", "calcium_total")
"""The calcium tests, most direct first (each with its lower-limit parameter in ``_READ_AS_LOW``)."""


def _total_calcium_from_albumin(w: _Work) -> bool:
    """Whether a low total calcium may only reflect a low albumin (then named in a limitation)."""
    total = w.latest["calcium_total"]
    albumin = _low_albumin(w)
    if albumin is None or albumin.ref_low is None:
        return False
    if total.ref_low is None or total.value >= total.ref_low:
        return False
    w.limit(
        "lim.total_calcium_low_albumin",
        f"Total calcium {_fmt(total.value, 2)} mmol/L with albumin {_fmt(albumin.value, 0)} g/L "
        f"(below {_fmt(albumin.ref_low, 0)}).",
    )
    return True


def _glycaemia(w: _Work) -> None:
    """Poor glycaemic control from a recent HbA1c against the ADA goal, never from diabetes alone.

    HbA1c at or above ``hba1c.goal_below`` (taken within ``hba1c.recent_days``) is the sign
    "poor glycaemic control"; a recent result below it sets aside any record of poor control
    or hyperglycaemia. Without a recent result, only a current, recent record of the sign counts.
    """
    kb = w.kb
    sign_id = "poor_glycaemic_control"
    lab = w.latest.get("hba1c")
    if sign_id not in kb.signs or "hba1c.goal_below" not in kb.parameters:
        return
    if lab is None or (w.facts.as_of - (lab.when or w.facts.as_of)).days > w.p.params["hba1c.recent_days"]:
        _glucose(w)
        return
    goal = w.p.params["hba1c.goal_below"]
    test = kb.tests["hba1c"]
    if lab.value < goal:
        if w.facts.signs:  # read only for the signs of the record (_set_aside)
            w.refuted_signs[sign_id] = (
                f"contradicted by a recent HbA1c of {_fmt(lab.value, 1)}% (below the goal of {_fmt(goal, 1)}%)"
            )
        return
    if sign_id in w.present_signs:
        return
    sign = kb.signs[sign_id]
    _count_sign(
        w,
        sign_id,
        text=f"{sign.name}: {test.name} {_fmt(lab.value, 1)}% is at or above the goal of below {_fmt(goal, 1)}%. {sign.text}",
        rule=f"{test.name} at or above {_fmt(goal, 1)}% within {_fmt(w.p.params['hba1c.recent_days'], 0)} days counts as poor glycaemic control",
        inputs=(_lab_input(test.name, lab),),
        sources=[*kb.parameters["hba1c.goal_below"].sources, *test.sources],
    )


def _glucose(w: _Work) -> None:
    """Without a recent HbA1c: a recent glucose at or above the ADA hyperglycaemia threshold."""
    kb = w.kb
    sign_id = "poor_glycaemic_control"
    lab = w.latest.get("glucose")
    param = "glucose.hyperglycaemia_at_least"
    if lab is None or param not in kb.parameters or sign_id in w.present_signs:
        return
    if (w.facts.as_of - (lab.when or w.facts.as_of)).days > w.p.params["signs.recent_days"]:
        return
    threshold = kb.param(param)
    if lab.value < threshold:
        return
    sign = kb.signs[sign_id]
    test = kb.tests["glucose"]
    _count_sign(
        w,
        sign_id,
        text=f"{sign.name}: glucose {_fmt(lab.value, 1)} mmol/L is at or above {_fmt(threshold, 1)} mmol/L (marked hyperglycaemia); no recent HbA1c. {sign.text}",
        rule=f"without an HbA1c within {_fmt(w.p.params['hba1c.recent_days'], 0)} days, a glucose of {_fmt(threshold, 1)} mmol/L or more within {_fmt(w.p.params['signs.recent_days'], 0)} days counts as poor glycaemic control",
        inputs=(_lab_input(test.name, lab),),
        sources=[*kb.parameters[param].sources, *test.sources],
    )


def _count_sign(
    w: _Work, sign_id: str, *, text: str, rule: str, inputs: tuple[InputUsed, ...], sources: list[str]
) -> None:
    """Count a sign as present now: its finding (sources, then the sign's own) and its weight."""
    sign = w.kb.signs[sign_id]
    w.present_signs.add(sign_id)
    w.findings.append(
        new_finding(
            id=f"sign.{sign_id}",
            category="sign",
            text=text,
            weight=sign.specificity,
            rule=rule,
            inputs=inputs,
            sources=tuple(dict.fromkeys([*sources, *sign.sources])),
        )
    )
    {"specific": w.specific_signs, "supportive": w.supportive_signs}.get(sign.specificity, []).append(sign_id)


def _sign_input(w: _Work, fact: SignFact, context: str | None) -> InputUsed:
    return new_input(
        w.kb.signs[fact.sign].name,
        fact.present,
        date=fact.when,
        source=fact.origin.resource,
        matched_by=fact.origin.matched_by,
        context=context,
    )


def _set_aside(w: _Work, fact: SignFact) -> str | None:
    """Why a sign reported present does not count as current now (``None`` when it does).

    Context from the record (ConText or FHIR status), a lifelong diagnosis, an old record
    (``signs.recent_days``), or a recent result that contradicts it (HbA1c at goal).
    """
    trigger = f' by "{fact.trigger}"' if fact.trigger else ""
    if fact.context != "current":
        return f"{fact.context}{trigger}"
    window = w.p.params["signs.recent_days"]
    if fact.when is not None and (w.facts.as_of - fact.when).days > window:
        return f"not_recent (recorded {fact.when.isoformat()}, more than {_fmt(window, 0)} days before)"
    return w.refuted_signs.get(fact.sign)


def _signs(w: _Work) -> None:
    """Signs reported present and current count; the others are shown with their context."""
    kb = w.kb
    reported: dict[str, list[InputUsed]] = {}
    aside: dict[str, list[InputUsed]] = {}
    for fact in w.facts.signs:
        if not fact.present:
            if fact.context != "current":
                aside.setdefault(fact.sign, []).append(_sign_input(w, fact, _set_aside(w, fact)))
            continue
        reason = _set_aside(w, fact)
        if reason is not None:
            aside.setdefault(fact.sign, []).append(_sign_input(w, fact, reason))
        else:
            reported.setdefault(fact.sign, []).append(
                _sign_input(w, fact, "current" if fact.when or fact.trigger else None)
            )
    for sign_id in sorted(reported):
        if sign_id in w.present_signs:
            continue
        sign = kb.signs[sign_id]
        _count_sign(
            w,
            sign_id,
            text=f"{sign.name}: {sign.text}",
            rule={
                "specific": "a specific sign raises the likelihood of a deficit, most with a risk factor or a low-normal serum value",
                "supportive": "a supportive sign raises the likelihood of a deficit together with a major risk factor or a low-normal serum value",
                "nonspecific": "a nonspecific sign is listed but does not change the status on its own",
            }[sign.specificity],
            inputs=tuple(reported[sign_id]),
            sources=[],
        )
    for sign_id in sorted(aside):
        if sign_id in w.present_signs:
            continue
        sign = kb.signs[sign_id]
        reasons = "; ".join(dict.fromkeys((i.context or "").replace("_", " ", 1) for i in aside[sign_id]))
        w.findings.append(
            new_finding(
                id=f"context.sign.{sign_id}",
                category="context",
                text=f"{sign.name}: named in the record, but not a current sign ({reasons}); not counted.",
                weight="info",
                rule=(
                    "a sign counts only when reported present now: ConText triggers mark it negated, "
                    "historical, hypothetical or about a relative; a lifelong diagnosis named after it "
                    f"(epilepsy for seizure) is not the acute sign; a record older than {_fmt(w.p.params['signs.recent_days'], 0)} "
                    "days is history; a recent HbA1c below goal outweighs a record of poor control"
                ),
                inputs=tuple(aside[sign_id]),
                sources=tuple(
                    dict.fromkeys(["S300", "S301", *kb.parameters["signs.recent_days"].sources, "S303"])
                ),
            )
        )
    if "muscle_cramps" in w.present_signs and "lim.cramps" in kb.statements:
        w.limit("lim.cramps", "Muscle cramps were reported.")
