"""Next steps: which tests and actions are worth doing now, and why."""

from __future__ import annotations

from typing import Literal

from magstat.core.result import EgfrResult, FemgResult, SerumMagnesium, Status
from magstat.core.rules.mds import mds_high
from magstat.core.rules.renal import (
    _kidney_reason,
    _kidney_reduced,
    _loading_test_exclusions,
    _on_dialysis,
)
from magstat.core.rules.signs import _ECG_SIGNS
from magstat.core.rules.work import _in_text, _sentence, _Work

_CANCER_THERAPY_CLASSES = ("platinum", "anti_egfr_antibody", "her2_agent", "calcineurin_inhibitor")


# --------------------------------------------------------------------------------------------
# Step 6: what to do next, what is safe, why it matters, what it cannot show


def _has_recent(w: _Work, *tests: str) -> bool:
    return any(t in w.latest for t in tests)


def _next_steps(
    w: _Work,
    status: Status,
    serum: SerumMagnesium,
    egfr: EgfrResult,
    femg: FemgResult,
    *,
    arrhythmia_risk: str | None,
) -> None:
    kb = w.kb
    band = serum.band if serum.current else None
    if band is None:
        priority: Literal["urgent", "high", "routine"] = (
            "high" if status in ("likely_deficient", "at_risk") else "routine"
        )
        if w.specific_signs:
            priority = "urgent"
        reason = (
            "No current serum magnesium result."
            if serum.mmol_l is None
            else "The last serum magnesium is not recent."
        )
        watched = [
            _in_text(kb.drug_classes[c].name)
            for c in ("cardiac_glycoside", "qt_prolonging")
            if c in w.current_classes
        ]
        if watched:
            # Digoxin and QT-prolonging drugs call for a magnesium check whatever the status.
            reason += f" Current {' and '.join(watched)}: low magnesium adds to their risk."
            if priority == "routine":
                priority = "high"
        w.step_fixed("ns.measure_serum_mg", reason, priority)  # texts of the rules and KB names
    if band in ("below_lab_range", "above_lab_range") and _on_dialysis(w):
        # Urine studies say nothing about the cause here: the dialysate sets the balance.
        w.step_fixed(
            "ns.dialysis_mg",
            f"Serum magnesium is {'low' if band == 'below_lab_range' else 'high'} in a patient on dialysis.",
            "high",
        )
    elif band == "below_lab_range" and femg.percent is None and not _has_recent(w, "urine_mg_24h"):
        if w.mg_therapy:
            # Urine collected during treatment measures the dose given, not the cause (S43, S41).
            w.step_fixed(
                "ns.urine_after_therapy",
                "Serum magnesium is low during magnesium treatment; the cause is not yet known.",
                "high",
            )
        elif _kidney_reduced(w, egfr):
            w.step(
                "ns.urine_24h_reduced_gfr",
                f"Serum magnesium is low with reduced kidney function ({_kidney_reason(w, egfr)}); "
                "the cause is not yet known.",
                "high",
            )
        else:
            w.step(
                "ns.femg_or_24h_urine",
                "Serum magnesium is low; the cause (renal or extrarenal) is not yet known.",
                "high",
            )
    if band == "low_normal":
        # Proposed only where the test is valid (its statement names what excludes it).
        if (
            not _loading_test_exclusions(w, egfr, femg)
            and not {"arrhythmia", "torsades_de_pointes"} & w.present_signs
        ):
            w.step("ns.loading_test_grey_zone", "Serum magnesium is in the grey zone.", "routine")
        w.step(
            "ns.body_stores", "Serum magnesium is in the grey zone, where serum alone cannot tell.", "routine"
        )
    if band == "normal" and status == "at_risk" and (w.major or mds_high(w)):
        w.step(
            "ns.body_stores",
            "Strong risk factors with a normal serum value: serum can stay normal despite depletion.",
        )
    if status in ("deficient", "likely_deficient") or w.supportive_signs or w.specific_signs:
        missing = [
            name
            for name, tests in (
                ("potassium", ("potassium",)),
                ("calcium", ("calcium_total", "calcium_ionised", "calcium_corrected")),
            )
            if not _has_recent(w, *tests)
        ]
        reason = "Magnesium deficiency causes hypokalaemia and hypocalcaemia."
        if missing:
            reason += f" No current {' or '.join(missing)} result."
        w.step("ns.check_k_ca", reason, "high" if status == "deficient" else "routine")
    ecg_reasons = [kb.signs[s].name for s in _ECG_SIGNS if s in w.present_signs] if w.present_signs else []
    if serum.current and serum.mmol_l is not None and serum.mmol_l < w.p.params["serum_mg.symptomatic_below"]:
        ecg_reasons.append("serum magnesium below 0.5 mmol/L")
    if arrhythmia_risk:
        ecg_reasons.append(arrhythmia_risk)
    if status == "excess" and (serum.ctcae_grade or 0) >= 3:
        ecg_reasons.append("hypermagnesaemia above 1.23 mmol/L")
    if "cardiac_glycoside" in w.current_classes and status in (
        "deficient",
        "likely_deficient",
        "at_risk",
        "excess",
    ):
        ecg_reasons.append("digoxin with a magnesium disturbance or risk")
    if ecg_reasons:
        # The ECG is for the same reasons either way, but what to look for differs: QT and
        # torsades with a low value, slowed conduction and heart block with a high one.
        w.step(
            "ns.ecg_high_mg" if status == "excess" else "ns.ecg",
            _sentence("; ".join(dict.fromkeys(ecg_reasons))),
            "urgent" if band == "below_lab_range" or status == "excess" else "high",
        )
    if egfr.value is None and status == "excess":
        # Not "before a supplement": a high value asks for the kidneys as its likely cause.
        w.step_fixed(
            "ns.kidney_function_high_mg", "Kidney function is unknown and serum magnesium is high.", "high"
        )
    elif egfr.value is None and (
        status in ("deficient", "likely_deficient") or w.facts.supplements or w.mg_therapy
    ):
        # Magnesium given as treatment is cleared by the kidneys as a supplement is (S58).
        w.step(
            "ns.kidney_function",
            "Kidney function is unknown and magnesium treatment or supplements are in question.",
            "high",
        )
    if "ppi" in w.current_classes:
        w.step_fixed("ns.ppi_baseline", "A proton-pump inhibitor is current.", "routine" if band else "high")
    lowering = (
        [
            kb.drug_classes[c].name
            for c in w.current_classes
            if kb.drug_classes[c].effect == "lowers" and kb.drug_classes[c].weight
        ]
        if status in ("deficient", "likely_deficient")
        else []
    )
    if lowering:
        w.step(
            "ns.review_culprit_drugs", f"Current drugs that lower magnesium: {', '.join(lowering)}.", "high"
        )
    if (
        w.facts.diet_mg_per_day is None
        and not w.facts.food_frequency
        and status in ("deficient", "likely_deficient", "at_risk")
    ):
        w.step_fixed("ns.diet_assessment", "Dietary magnesium intake is unknown.")
    if (
        egfr.value is not None
        and egfr.value < w.p.params["mds.egfr_reduced_below"]
        and status != "excess"  # an excess is told to stop them, not to recheck in months
        and (w.facts.supplements or _taken_not_as_therapy(w))
    ):
        w.step(
            "ns.recheck_on_supplement", "Magnesium products are taken with reduced kidney function.", "high"
        )
    cancer = [kb.drug_classes[c].name for c in _CANCER_THERAPY_CLASSES if c in w.current_classes]
    if cancer:
        w.step("ns.cancer_therapy_monitoring", f"Current {', '.join(_in_text(c) for c in cancer)}.", "high")
    if "refeeding_syndrome" in w.current_conditions:
        w.step("ns.refeeding_monitoring", "Refeeding syndrome is on the problem list.", "high")
    if "diabetic_ketoacidosis" in w.current_conditions:
        w.step("ns.dka_monitoring", "Diabetic ketoacidosis is on the problem list.", "high")


def _taken_not_as_therapy(w: _Work) -> bool:
    """Whether a current magnesium product is taken other than as treatment given in hospital.

    Magnesium given as therapy (an infusion, or a product recorded for eclampsia, torsades and
    the like) has its own monitoring notes; the three-to-six-monthly recheck is for products
    taken over months (the oral label's advice).
    """
    products = w.current_classes.get("magnesium_product")
    if not products:
        return False
    therapy = w.mg_therapy
    return any(all(m is not t for t in therapy) for m in products)
