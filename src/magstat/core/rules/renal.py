"""Renal magnesium handling: FEMg, 24-hour urine magnesium and the magnesium loading test."""

from __future__ import annotations

import re
from typing import Literal

from magstat.core import calculators as calc
from magstat.core.facts import Lab
from magstat.core.result import (
    NO_FEMG,
    NO_LOADING,
    EgfrResult,
    FemgResult,
    InputUsed,
    LoadingResult,
    SerumMagnesium,
    new_finding,
    new_input,
)
from magstat.core.rules.work import _egfr_input, _egfr_shown, _fmt, _lab_input, _therapy_reached, _Work

_DIALYSIS = re.compile(r"dialys[ie]s|dialysed|dialyzed")
_NOT_ON_DIALYSIS = re.compile(
    r"(?:\bnot (?:yet )?on|\bno|\bpre-?|\bnon-?|\bbefore|\bawaiting|\bdeclined|\brefused|\bwithout)\s*"
    r"(?:renal |haemo|hemo|peritoneal )?dialy"
)


def _on_dialysis(w: _Work) -> bool:
    """Whether a current kidney-disease entry says the patient is on dialysis.

    The entry names dialysis ("ESRD on haemodialysis", "Dependence on renal dialysis"), and not as
    something not (yet) done ("not on dialysis", "pre-dialysis CKD"). Read from the entry's text: a coded entry counts through its display text.
    """
    for entry in w.recorded_conditions.get("chronic_kidney_disease", ()):
        text = entry.text.lower()
        if _DIALYSIS.search(text) and not _NOT_ON_DIALYSIS.search(text):
            return True
    return False


def _kidney_reduced(w: _Work, egfr: EgfrResult) -> bool:
    """Whether kidney function is reduced.

    That is, eGFR below ``femg.reduced_gfr_below``, or chronic kidney disease current on the list.
    """
    return (
        egfr.value is not None and egfr.value < w.p.params["femg.reduced_gfr_below"]
    ) or "chronic_kidney_disease" in w.current_conditions


def _kidney_reason(w: _Work, egfr: EgfrResult) -> str:
    """Why :func:`_kidney_reduced` holds, in words: the low eGFR, else the problem list."""
    if egfr.value is not None and egfr.value < w.p.params["femg.reduced_gfr_below"]:
        return f"eGFR {_egfr_shown(egfr)} mL/min/1.73 m²"
    return "chronic kidney disease on the problem list"


def _during_therapy(w: _Work, urine: Lab) -> bool:
    """Whether the urine sample may hold magnesium given as treatment (:func:`_therapy_reached`)."""
    return _therapy_reached(w, urine.when)


def _femg(w: _Work, serum: SerumMagnesium, egfr: EgfrResult) -> FemgResult:
    """FEMg from the latest spot urine and serum samples, read as renal, extrarenal or neither.

    With reduced kidney function (:func:`_kidney_reduced`) the remaining nephrons excrete a larger
    fraction of the filtered magnesium to keep balance, so an FEMg above the renal cut-off does not
    separate renal wasting from that adaptation: it is read as indeterminate and says why. So is
    one measured during magnesium therapy (:func:`_during_therapy`): the kidneys excrete most of
    the load. A low FEMg still shows conservation and is read as extrarenal.
    """
    latest = w.latest
    if "urine_mg_spot" not in latest or "urine_creatinine" not in latest:
        return NO_FEMG  # the common case, decided by two look-ups
    kb = w.kb
    needed = ("urine_mg_spot", "urine_creatinine", "serum_mg", "serum_creatinine")
    labs = [latest.get(t) for t in needed]
    if any(lab is None for lab in labs):
        return NO_FEMG
    u_mg, u_cr, s_mg, s_cr = labs
    assert u_mg is not None and u_cr is not None and s_mg is not None and s_cr is not None
    dates = [lab.when for lab in (u_mg, u_cr, s_mg, s_cr) if lab.when is not None]
    gap = w.p.params["femg.max_gap_days"]
    inputs = tuple(
        _lab_input(name, lab)
        for name, lab in zip(
            ("urine Mg", "urine creatinine", "serum Mg", "serum creatinine"), labs, strict=True
        )
        if lab
    )
    sources = tuple(
        dict.fromkeys(
            [
                *kb.parameters["femg.renal_above"].sources,
                *kb.parameters["femg.extrarenal_below"].sources,
                *kb.parameters["femg.ultrafilterable_fraction"].sources,
            ]
        )
    )
    if s_mg.comparator is not None:
        # FEMg divides by serum magnesium: a bound gives no value to divide by.
        w.limit("lim.femg_conditions", "FEMg not computed: the serum magnesium was reported only as a bound.")
        return FemgResult(None, None, inputs, "serum magnesium reported as a bound", sources)
    if dates and (max(dates) - min(dates)).days > gap:
        w.limit(
            "lim.femg_conditions",
            f"FEMg not computed: the urine and serum samples are more than {gap:.0f} days apart.",
        )
        return FemgResult(None, None, inputs, "samples too far apart", sources)
    # Magnesium: urine spot in mmol/L, serum in mmol/L; creatinine both in mg/dL.
    percent = calc.femg_percent(kb, u_mg.value, s_mg.value, u_cr.value, s_cr.value)
    interpretation: Literal["renal", "extrarenal", "indeterminate"]
    renal_above, extrarenal_below = w.p.params["femg.renal_above"], w.p.params["femg.extrarenal_below"]
    rule = (
        f"FEMg = (U_Mg × S_Cr) / (0.7 × S_Mg × U_Cr) × 100; > {_fmt(renal_above)}% renal, "
        f"< {_fmt(extrarenal_below)}% extrarenal"
    )
    if percent > renal_above:
        if _kidney_reduced(w, egfr):
            interpretation = "indeterminate"
            text = (
                f"FEMg {_fmt(percent, 1)}% (> {_fmt(renal_above)}%) with reduced kidney function "
                f"({_kidney_reason(w, egfr)}): a failing kidney excretes a larger fraction of filtered "
                "magnesium to keep balance, so a high FEMg here does not tell renal wasting from that adaptation."
            )
            rule += (
                f"; above {_fmt(renal_above)}% is not read as renal wasting when eGFR < "
                f"{_fmt(w.p.params['femg.reduced_gfr_below'])}"
                " or chronic kidney disease is current"
            )
            if egfr.value is not None:
                inputs = (*inputs, _egfr_input(egfr))
            sources = tuple(dict.fromkeys((*sources, *w.kb.parameters["femg.reduced_gfr_below"].sources)))
        elif _during_therapy(w, u_mg):
            # The kidney excretes most of a magnesium load (S43, S41): a high FEMg now is expected.
            interpretation = "indeterminate"
            therapy = "; ".join(m.text for m in w.mg_therapy)
            text = (
                f"FEMg {_fmt(percent, 1)}% (> {_fmt(renal_above)}%) measured during magnesium treatment "
                f"({therapy}): the kidneys excrete most of a magnesium load, so a high FEMg now does not "
                "show renal wasting. Repeat it once the course has ended."
            )
            rule += (
                f"; above {_fmt(renal_above)}% is not read as renal wasting when the urine was collected "
                "during magnesium therapy"
            )
            sources = tuple(dict.fromkeys((*sources, "S43", "S41")))
        else:
            interpretation = "renal"
            text = f"FEMg {_fmt(percent, 1)}% (> {_fmt(renal_above)}%): the kidneys are losing magnesium (renal wasting)."
    elif percent < extrarenal_below:
        interpretation = "extrarenal"
        text = f"FEMg {_fmt(percent, 1)}% (< {_fmt(extrarenal_below)}%): the kidneys are conserving magnesium; loss or low intake is outside the kidney."
    else:
        interpretation = "indeterminate"
        text = (
            f"FEMg {_fmt(percent, 1)}%: between the extrarenal (< {_fmt(extrarenal_below)}%) and renal "
            f"(> {_fmt(renal_above)}%) cut-offs; not decisive."
        )
    note = None
    if serum.band not in ("below_lab_range", "low_normal"):
        note = "read as renal vs extrarenal loss mainly when serum magnesium is low"
    w.findings.append(
        new_finding(
            id=f"femg.{interpretation}",
            category="test",
            text=text,
            weight="info",
            rule=rule,
            inputs=inputs,
            sources=sources,
            strength="cut-offs from a JAMA review (via secondary) and Elisaf's distributions",
        )
    )
    w.limit(
        "lim.femg_conditions", "FEMg is valid mainly with near-normal kidney function and in hypomagnesaemia."
    )
    return FemgResult(percent, interpretation, inputs, note, sources)


def _urine_24h(w: _Work, serum: SerumMagnesium) -> None:
    lab = w.latest.get("urine_mg_24h")
    if lab is None:
        return
    kb = w.kb
    cut = w.p.params["urine_mg_24h.renal_wasting_above"]
    param_sources = kb.parameters["urine_mg_24h.renal_wasting_above"].sources
    if serum.band == "below_lab_range":
        renal = lab.value > cut
        text = f"24-hour urine magnesium {_fmt(lab.value, 2)} mmol/day while serum is low: " + (
            "above 1 mmol/day, which points to renal wasting."
            if renal
            else "at or below 1 mmol/day, which points to loss outside the kidney or low intake."
        )
        finding_id = "urine_24h.renal_wasting" if renal else "urine_24h.extrarenal"
    else:
        text = f"24-hour urine magnesium {_fmt(lab.value, 2)} mmol/day: without hypomagnesaemia it mainly reflects recent intake."
        finding_id = "urine_24h.intake_marker"
        w.limit("lim.urine_reflects_intake", "Urine magnesium was measured without hypomagnesaemia.")
    w.findings.append(
        new_finding(
            id=finding_id,
            category="test",
            text=text,
            weight="info",
            rule="in hypomagnesaemia, > 1 mmol/day in 24-h urine indicates renal wasting",
            inputs=(_lab_input("24-h urine magnesium", lab),),
            sources=param_sources,
        )
    )


def _loading_test_exclusions(w: _Work, egfr: EgfrResult, femg: FemgResult) -> list[str]:
    """What here lies outside the conditions a magnesium loading test is valid in (S14, S43-S45).

    A current diuretic, reduced kidney function (eGFR below ``mds.egfr_reduced_below`` or chronic
    kidney disease on the problem list), renal magnesium wasting by FEMg, and atrial
    fibrillation on the problem list. Signs are read after this step; the next step that
    proposes the test also leaves it out with an arrhythmia reported present.
    """
    reasons = []
    if any(w.kb.drug_classes[c].mds_component == "diuretic" for c in w.current_classes):
        reasons.append("a current diuretic")
    if (
        egfr.value is not None and egfr.value < w.p.params["mds.egfr_reduced_below"]
    ) or "chronic_kidney_disease" in w.current_conditions:
        reasons.append("reduced kidney function")
    if femg.interpretation == "renal":
        reasons.append("renal magnesium wasting")
    if "atrial_fibrillation" in w.current_conditions:
        reasons.append("atrial fibrillation")
    return reasons


def _loading(w: _Work, egfr: EgfrResult, femg: FemgResult) -> LoadingResult:
    kb = w.kb
    facts = w.facts
    lab = w.latest.get("loading_retention")
    inputs: tuple[InputUsed, ...]
    if lab is not None:
        retention = lab.value
        inputs = (_lab_input("loading-test retention", lab),)
    elif facts.loading_dose_mmol is not None and facts.loading_urine_mmol is not None:
        baseline = facts.loading_baseline_urine_mmol or 0.0
        retention = calc.loading_retention_percent(
            facts.loading_dose_mmol, facts.loading_urine_mmol, baseline
        )
        inputs = (
            new_input("loading dose", facts.loading_dose_mmol, "mmol"),
            new_input("urine magnesium after load", facts.loading_urine_mmol, "mmol"),
            new_input("baseline urine magnesium", facts.loading_baseline_urine_mmol, "mmol"),
        )
    else:
        return NO_LOADING
    deficient_cut = w.p.params["loading.retention_deficient_above"]
    borderline_cut = w.p.params["loading.retention_borderline_above"]
    interpretation: Literal["deficient", "borderline", "normal"] = (
        "deficient" if retention > deficient_cut else "borderline" if retention > borderline_cut else "normal"
    )
    reasons = _loading_test_exclusions(w, egfr, femg)
    valid: bool | None = not reasons
    if not reasons and facts.medications is None:
        valid = None
    sources = tuple(
        dict.fromkeys(
            [
                *kb.parameters["loading.retention_deficient_above"].sources,
                *kb.parameters["loading.retention_borderline_above"].sources,
            ]
        )
    )
    note = None
    if reasons:
        note = "outside the conditions the test was validated for: " + ", ".join(reasons)
        w.limit("lim.loading_invalid", f"The loading test was done with {', '.join(reasons)}.")
    # A high retention still counts when the conditions are not met: dropping it would let a
    # worse input (a new diuretic, a lower eGFR) give a more reassuring status. The finding and
    # the limitation say that the test was not done under its validated conditions.
    if interpretation == "deficient":
        w.low_markers.append("loading_test")
    w.findings.append(
        new_finding(
            id=f"loading_test.{interpretation}",
            category="test",
            text=(
                f"Magnesium loading test: {_fmt(retention, 1)}% of the load retained ("
                + {
                    "deficient": f"> {_fmt(deficient_cut)}%, suggests deficiency",
                    "borderline": f"{_fmt(borderline_cut)}–{_fmt(deficient_cut)}%, borderline",
                    "normal": f"≤ {_fmt(borderline_cut)}%, normal retention",
                }[interpretation]
                + ")"
                + (f"; {note}." if note else ".")
            ),
            weight="supportive" if interpretation == "deficient" else "info",
            rule=(
                "retention > 25% suggests deficiency (> 20% borderline); the test is validated only without "
                "renal wasting, diuretics or reduced kidney function"
            ),
            inputs=inputs,
            sources=sources,
            strength="no single standard protocol; healthy 97.5th percentile 27.5%",
        )
    )
    return LoadingResult(retention, interpretation, valid, note, sources)
