"""The status (step 5): the precedence rule that turns findings into one status."""

from __future__ import annotations

from magstat.core.result import Finding, InputUsed, MdsResult, SerumMagnesium, Status, new_finding, new_input
from magstat.core.rules.signs import _REFRACTORY_SIGNS, _SYMPTOMATIC_SIGNS
from magstat.core.rules.work import _fmt, _in_text, _mg_shown, _therapy_reached, _Work

# --------------------------------------------------------------------------------------------
# Step 5: the status

_EVIDENCE_WEIGHTS = frozenset(("deficit", "excess", "major", "minor", "specific", "supportive"))


def _decide(w: _Work, serum: SerumMagnesium, mds: MdsResult) -> tuple[Status, str | None, Finding]:
    """Combine the evidence into a status, by precedence (first rule that holds wins).

    1. excess: current serum Mg above the lab's upper limit, unless magnesium is being given as
       treatment and the value is within the labelled therapeutic range (up to 2.5 mmol/L):
       that is a therapeutic finding and the status is indeterminate (a value raised by an
       infusion says nothing about body stores). Above the therapeutic range it is excess.
    2. deficient: current serum Mg below the lab's lower limit. Severity from the value
       (< 0.4 severe, < 0.5 moderate, else mild) and from what makes it dangerous: tetany,
       seizures or arrhythmia make it severe; refractory hypokalaemia or hypocalcaemia at
       least moderate. The reason is given with the grade.
    3. likely_deficient: a body-store marker is low (RBC or ionised Mg below interval, loading
       test retention > 25%); or serum is low-normal with a strong risk (a major risk factor,
       MDS high), a specific or supportive sign, or intake below the EAR; or, with no current
       serum value, a specific sign together with a strong risk.
    4. at_risk: any risk: a major risk factor, two minor ones, MDS middle or high, a specific
       or supportive sign, or a low-normal serum value.
    5. unlikely: serum at or above 0.85 mmol/L and no risk, unless magnesium is being given
       as treatment (the value then reflects the treatment: indeterminate); or, with no serum
       value, a complete MDS of 0–1 with medications and conditions known and no other risk.
    6. indeterminate: otherwise (too little is known).
    """
    kb = w.kb
    band = serum.band if serum.current else None
    strong = bool(w.major) or mds.band == "high" or bool(w.specific_signs)
    risk = strong or len(w.minor) >= 2 or bool(w.supportive_signs) or "mds" in w.minor
    evidence = [f.id for f in w.findings if f.weight in _EVIDENCE_WEIGHTS]
    severity: str | None = None
    therapeutic_high = w.p.params["mg_therapy.therapeutic_high"]
    # "Magnesium being given as treatment" (rules 1 and 5) means: it may have reached the sample.
    # A therapy started after the sample was taken did not, nor did a draft order not yet given;
    # the sample is then read as without treatment. (This docstring is the rule text every
    # assessment shows; the therapy's own finding says it.)
    treated = _therapy_reached(w, serum.date)
    if band == "above_lab_range" and treated and (serum.mmol_l or 0.0) <= therapeutic_high:
        status: Status = "indeterminate"
        rule = (
            f"serum magnesium above the lab's upper limit but at or below {_fmt(therapeutic_high)} mmol/L during "
            "intended magnesium therapy → within the therapeutic range, not excess; deficit status cannot be judged"
        )
        w.findings.append(
            new_finding(
                id="serum_mg.therapeutic",
                category="serum_magnesium",
                text=(
                    f"Serum magnesium {_mg_shown(serum)} mmol/L is raised as expected during magnesium "
                    f"therapy and is within the labelled therapeutic range "
                    f"({_fmt(w.p.params['mg_therapy.therapeutic_low'])}–{_fmt(therapeutic_high)} mmol/L, 2.5–5 mEq/L): "
                    "a therapeutic level, not magnesium excess."
                ),
                weight="info",
                rule=f"intended magnesium therapy and serum ≤ {_fmt(therapeutic_high)} mmol/L → therapeutic",
                inputs=(
                    new_input(
                        "serum magnesium",
                        serum.mmol_l if serum.comparator is None else _mg_shown(serum),
                        "mmol/L",
                        serum.date,
                        serum.source,
                    ),
                ),
                sources=kb.parameters["mg_therapy.therapeutic_high"].sources,
            )
        )
    elif band == "above_lab_range":
        status = "excess"
        grade = serum.ctcae_grade or 1
        severity = {1: "mild", 3: "severe", 4: "life-threatening"}.get(grade, "mild")
        rule = "serum magnesium above the lab's upper limit → excess (severity by CTCAE grade)"
        w.severity_reason = f"serum magnesium {_mg_shown(serum)} mmol/L, CTCAE grade {grade}"
        if treated:
            rule = (
                f"serum magnesium above the therapeutic range of magnesium therapy ({_fmt(therapeutic_high)} mmol/L) "
                "→ excess (toxicity; severity by CTCAE grade)"
            )
            w.severity_reason += (
                f", above the therapeutic range of {_fmt(therapeutic_high)} mmol/L during magnesium therapy"
            )
    elif band == "below_lab_range":
        status = "deficient"
        assert serum.mmol_l is not None
        order = {"mild": 0, "moderate": 1, "severe": 2}
        if serum.mmol_l < w.p.params["serum_mg.ctcae_hypo_grade3_below"]:
            severity = "severe"
        elif serum.mmol_l < w.p.params["serum_mg.symptomatic_below"]:
            severity = "moderate"
        else:
            severity = "mild"
        reasons = [f"serum magnesium {_mg_shown(serum)} mmol/L"]
        symptomatic = [s for s in _SYMPTOMATIC_SIGNS if s in w.present_signs]
        refractory = [s for s in _REFRACTORY_SIGNS if s in w.present_signs]
        if symptomatic:
            severity = "severe"
            reasons.append("with " + ", ".join(_in_text(kb.signs[s].name) for s in symptomatic))
        if refractory:
            if order[severity] < order["moderate"]:
                severity = "moderate"
            reasons.append("with " + ", ".join(_in_text(kb.signs[s].name) for s in refractory))
        if not symptomatic and not refractory:
            reasons.append(
                "no tetany, seizures, arrhythmia or refractory hypokalaemia/hypocalcaemia recorded"
            )
        w.severity_reason = "; ".join(reasons)
        rule = (
            "serum magnesium below the lab's lower limit → deficient (≥ 0.5 mild, 0.4–0.5 moderate, < 0.4 mmol/L "
            "severe; tetany, seizures or arrhythmia → severe; refractory hypokalaemia or hypocalcaemia → at least "
            f"moderate): {w.severity_reason}"
        )
    elif w.low_markers:
        status = "likely_deficient"
        rule = "a body-store marker is low (RBC or ionised magnesium below interval, or loading-test retention above 25%) → likely deficient"
    elif band == "low_normal" and (strong or w.supportive_signs or "diet.below_ear" in w.minor):
        status = "likely_deficient"
        rule = "serum in the grey zone (lab lower limit to 0.85 mmol/L) with a strong risk, a sign or low intake → likely deficient"
    elif band is None and w.specific_signs and (w.major or mds.band == "high"):
        status = "likely_deficient"
        rule = "no current serum value, a specific sign and a strong risk factor → likely deficient"
    elif risk or band == "low_normal":
        status = "at_risk"
        rule = (
            "a major risk factor, two minor ones, MDS 2 or more, a sign, or a grey-zone serum value → at risk"
        )
    elif band == "normal" and treated:
        status = "indeterminate"
        rule = (
            "serum magnesium normal while magnesium is given as treatment → indeterminate "
            "(the value reflects the treatment, not body stores)"
        )
    elif band == "normal":
        status = "unlikely"
        rule = "serum magnesium at or above 0.85 mmol/L and no risk factor → deficiency unlikely"
    elif (
        band is None
        and mds.complete
        and mds.score is not None
        and mds.score < w.p.params["mds.band_middle"]
        and w.facts.medications is not None
        and w.facts.conditions is not None
        and not w.major
        and not w.minor
    ):
        status = "unlikely"
        rule = "no serum value, but a complete MDS of 0–1 with medications and conditions known and no risk factor → deficiency unlikely"
    else:
        status = "indeterminate"
        rule = "too little is known to judge: no current serum magnesium and no risk factor or complete MDS"
    known = w.p.finding_inputs
    basis = new_finding(
        id="status",
        category="status",
        text=f"Status {status.replace('_', ' ')}" + (f" ({severity})" if severity else "") + f": {rule}.",
        weight="info",
        rule=_PRECEDENCE or rule,
        inputs=tuple([known.get(e) or _finding_input(known, e) for e in evidence]),
        sources=w.p.statement_sources["lim.decision_support"],
    )
    return status, severity, basis


def _finding_input(known: dict[str, InputUsed], finding_id: str) -> InputUsed:
    """The input naming a finding in the status finding, made once per id (frozen, so shared)."""
    made = known[finding_id] = new_input("finding", finding_id)
    return made


_PRECEDENCE = _decide.__doc__.split("\n\n", 1)[1].strip() if _decide.__doc__ else None
"""The precedence rule as the status finding states it (the numbered list of ``_decide``); without
docstrings (``python -OO``) the finding states the rule that held."""
