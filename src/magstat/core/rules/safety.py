"""Safety: route and monitoring of treatment, kidney function, the heart and interacting drugs."""

from __future__ import annotations

from magstat.core.result import EgfrResult, SerumMagnesium, Status, SupplementResult, new_action
from magstat.core.rules.signs import _ECG_SIGNS, _LOW_K_CA_SIGNS, _REFRACTORY_SIGNS, _SYMPTOMATIC_SIGNS
from magstat.core.rules.work import _egfr_shown, _in_text, _mg_shown, _sentence, _Work


def _arrhythmia_risk(w: _Work, serum: SerumMagnesium) -> str | None:
    """Why a low or low-normal magnesium is an arrhythmia risk here, or ``None``.

    Low or low-normal means a current serum value below ``serum_mg.evidence_lower``
    (0.85 mmol/L), or no current value while a QT-prolonging drug or digoxin meets low
    potassium or calcium (unknown is not normal). It counts with low potassium or calcium, a
    QT-prolonging drug, digoxin or a sign of arrhythmia (S341, S346).
    """
    kb = w.kb
    present = w.present_signs
    partners = [_in_text(kb.signs[s].name) for s in _LOW_K_CA_SIGNS if s in present] if present else []
    classes = w.current_classes
    drugs = (
        [
            kb.drugs[d].name
            for c in ("qt_prolonging", "cardiac_glycoside")
            for m in classes.get(c, ())
            for d in m.drugs
            if c in kb.drugs[d].classes
        ]
        if "qt_prolonging" in classes or "cardiac_glycoside" in classes
        else []
    )
    signs = [_in_text(kb.signs[s].name) for s in _ECG_SIGNS if s in present] if present else []
    low_mg = (
        serum.current and serum.mmol_l is not None and serum.mmol_l < w.p.params["serum_mg.evidence_lower"]
    )
    if low_mg and (partners or drugs or signs):
        with_what = ", ".join(dict.fromkeys([*partners, *drugs, *signs]))
        return f"serum magnesium {_mg_shown(serum)} mmol/L (below 0.85) with {with_what}"
    if not serum.current and drugs and partners:
        return f"no current serum magnesium, with {', '.join(dict.fromkeys([*partners, *drugs]))}"
    return None


def _safety(
    w: _Work,
    status: Status,
    serum: SerumMagnesium,
    egfr: EgfrResult,
    supplements: SupplementResult,
    *,
    arrhythmia_risk: str | None,
) -> None:
    kb = w.kb
    band = serum.band if serum.current else None
    symptomatic = sorted(w.present_signs.intersection(_SYMPTOMATIC_SIGNS)) if w.present_signs else []
    treating = status in ("deficient", "likely_deficient")
    # Below the label's GFR limit the oral route is contraindicated (sf.renal_avoid_oral says
    # so); the oral-repletion advice is then not offered.
    oral_ok = egfr.value is None or egfr.value >= w.p.params["egfr.supplement_avoid_below"]
    refractory = [s for s in _REFRACTORY_SIGNS if s in w.present_signs] if w.present_signs else []
    # A child gets the notes that quote no adult dose or adult figure (the "_child" statements).
    child = "_child" if w.age is not None and w.age < w.p.params["dosing.adult_from_age"] else ""
    # The note that treats the status itself comes first; cautions and checks follow (the order
    # is kept within a priority, so it decides which urgent action a reader meets first).
    if status == "excess":
        grade = serum.ctcae_grade or 1
        w.safe(
            "sf.excess",
            f"Serum magnesium {_mg_shown(serum)} mmol/L (CTCAE grade {grade}).",
            "urgent" if grade >= 3 else "high",
        )
    if status == "deficient":
        assert serum.mmol_l is not None
        if serum.mmol_l < w.p.params["serum_mg.symptomatic_below"] or symptomatic or refractory:
            why = (
                f"Serum magnesium {_mg_shown(serum)} mmol/L"
                + (
                    f" with {', '.join(_in_text(kb.signs[s].name) for s in [*symptomatic, *refractory])}"
                    if symptomatic or refractory
                    else ""
                )
                + "."
            )
            # With heart block (a labelled contraindication to parenteral magnesium) no dose is
            # quoted: the route is the cardiac team's decision.
            heart_block = "heart_block" in w.current_conditions
            if heart_block:
                w.safe("sf.severe_iv_heart_block", why, "urgent")
            elif w.mg_therapy:
                # Already given: the label's dose would not count what has been given (no dose).
                w.safe("sf.severe_during_therapy", why, "urgent")
            else:
                w.safe("sf.severe_iv" + child, why, "urgent")
            w.safe("sf.iv_monitoring" + child, "Intravenous magnesium is in question.", "high")
            if symptomatic or refractory:
                w.safe("sf.iv_route_reason", f"Severity {w.severity_reason}.", "high")
            if w.facts.pregnant:
                w.safe("sf.pregnancy_iv_duration", "The patient is pregnant.", "high")
        elif oral_ok and not w.mg_therapy:
            w.safe(
                "sf.oral_mild" + child,
                f"Serum magnesium {_mg_shown(serum)} mmol/L without tetany, seizures or arrhythmia.",
                "high",
            )
    elif status == "likely_deficient" and oral_ok and not w.mg_therapy:
        w.safe(
            "sf.oral_mild" + child,
            "If repletion is chosen after confirmation, the oral route fits a deficit without tetany, seizures or arrhythmia.",
        )
    if status in ("deficient", "likely_deficient") and w.mg_therapy:
        # The treatment under way is the repletion: no oral dose on top of it (S43, S41).
        w.safe(
            "sf.low_during_therapy",
            f"Serum magnesium {_mg_shown(serum)} mmol/L during magnesium therapy: "
            + "; ".join(m.text for m in w.mg_therapy)
            + ".",
            "high",
        )
    if treating and w.oral_magnesium:
        # Low although magnesium is already taken by mouth: check the product and the losses
        # before adding another (S20, S64-S66).
        w.safe(
            "sf.low_despite_oral",
            f"Oral magnesium taken: {', '.join(dict.fromkeys(w.oral_magnesium))}.",
            "high",
        )
    if "torsades_de_pointes" in w.present_signs and status == "excess":
        # The doses for torsades are for a normal (or low) value: with an excess, more magnesium
        # is a decision for the cardiac team, made with the toxicity signs watched.
        w.safe(
            "sf.torsades_high_mg",
            f"Torsades de pointes was reported with serum magnesium {_mg_shown(serum)} mmol/L, above its range.",
            "urgent",
        )
    elif "torsades_de_pointes" in w.present_signs:
        w.safe(
            "sf.torsades" + child,
            "Torsades de pointes was reported; IV magnesium is first-line even when serum magnesium is normal.",
            "urgent",
        )
    if arrhythmia_risk:
        w.safe("sf.qt_risk", _sentence(arrhythmia_risk), "urgent" if band == "below_lab_range" else "high")
    if w.mg_therapy:
        therapy = "; ".join(m.text for m in w.mg_therapy)
        above = (
            serum.current
            and serum.mmol_l is not None
            and serum.mmol_l > w.p.params["mg_therapy.therapeutic_high"]
        )
        if not above:
            # Above the therapeutic range sf.excess applies instead (toxicity: stop or reduce).
            w.safe("sf.mg_therapy", f"Magnesium therapy: {therapy}.", "high")
        w.safe(
            "sf.mg_infusion_monitoring" + child,
            f"Magnesium therapy: {therapy}."
            + (
                f" Serum magnesium {_mg_shown(serum)} mmol/L is above the therapeutic range." if above else ""
            ),
            "urgent" if above else "high",
        )
        if w.facts.pregnant:
            w.safe(
                "sf.pregnancy_iv_duration", "The patient is pregnant and receives magnesium sulfate.", "high"
            )
    # Magnesium given or taken: a deficit to treat, supplements, or a magnesium-containing drug.
    oral_products = [m for m in w.current_classes.get("magnesium_product", ()) if m not in w.mg_therapy]
    taking_mg = bool(w.facts.supplements) or bool(oral_products)
    if (treating or taking_mg or w.mg_therapy) and egfr.value is not None:
        if egfr.value < w.p.params["egfr.supplement_avoid_below"]:
            if treating or taking_mg:
                w.safe("sf.renal_avoid_oral", f"eGFR {_egfr_shown(egfr)} mL/min/1.73 m².", "urgent")
            if treating or w.mg_therapy:
                w.safe("sf.iv_renal_limit" + child, f"eGFR {_egfr_shown(egfr)} mL/min/1.73 m².", "high")
        elif egfr.value < w.p.params["mds.egfr_reduced_below"] and (treating or taking_mg):
            w.safe("sf.renal_reduce", f"eGFR {_egfr_shown(egfr)} mL/min/1.73 m².", "high")
    # Magnesium is, or is about to be, given intravenously (as treatment, for a severe deficit or
    # for torsades): the cautions below then apply whatever the status, and are urgent.
    intravenous = bool(w.mg_therapy) or any(
        a in w.safety for a in ("sf.severe_iv" + child, "sf.severe_iv_heart_block", "sf.torsades" + child)
    )
    if "heart_block" in w.current_conditions and (treating or taking_mg or intravenous):
        w.safe(
            "sf.heart_block",
            "Heart block is on the problem list"
            + (" and intravenous magnesium is given or in question." if intravenous else "."),
            "urgent",
        )
    if "myasthenia_gravis" in w.current_conditions and (treating or taking_mg or intravenous):
        w.safe(
            "sf.myasthenia",
            "Myasthenia gravis is on the problem list"
            + (" and intravenous magnesium is given or in question." if intravenous else "."),
            "urgent" if intravenous else "high",
        )
    if w.facts.allergies and (treating or taking_mg or intravenous):
        recorded = _magnesium_allergies(w)
        if recorded:
            w.safe(
                "sf.mg_allergy",
                f"Recorded: {'; '.join(recorded)}."
                + (" Intravenous magnesium is given or in question." if intravenous else ""),
                "urgent" if intravenous else "high",
            )
    if treating and (
        {"hypokalaemia", "hypocalcaemia", "refractory_hypokalaemia", "refractory_hypocalcaemia"}
        & w.present_signs
    ):
        w.safe("sf.correct_mg_first", "Low potassium or calcium is present.", "high")
    kidney_impaired = (
        egfr.value is not None and egfr.value < w.p.params["mds.egfr_reduced_below"]
    ) or "chronic_kidney_disease" in w.current_conditions
    if kidney_impaired and (
        "magnesium_product" in w.current_classes or w.facts.supplements or status == "excess"
    ):
        w.safe(
            "sf.ckd_mg_products",
            "Reduced kidney function with magnesium-containing products or a high value.",
            "high",
        )
    if supplements.above_ul:
        w.safe(
            "sf.above_ul",
            f"About {supplements.elemental_mg_per_day or 0:.0f} mg/day of supplemental magnesium, above the UL of {supplements.ul_mg or 0:.0f} mg/day.",
            "high",
        )
    if "cardiac_glycoside" in w.current_classes:
        # Whatever the status: low magnesium raises the risk of digoxin toxicity (S20).
        w.safe("sf.digoxin", "Digoxin is current.", "high")
    # Interactions matter when magnesium is, or may be, given; rows whose advice is a magnesium
    # check apply whenever the drug is current.
    giving_mg = treating or bool(w.facts.supplements) or "magnesium_product" in w.current_classes
    current_drugs = w.current_drugs
    current_classes = w.current_classes
    # Without a current drug no row applies (every row names drugs or their classes); only the
    # rows that name a current drug or class are looked at, in the knowledge base's order.
    if not current_drugs:
        return
    rows_of = w.p.interactions_of
    candidates = {i for key in (*current_drugs, *current_classes) for i in rows_of.get(key, ())}
    interactions = kb.interactions
    texts = w.p.interaction_texts
    for i in sorted(candidates):
        row = interactions[i]
        if not (giving_mg or row.check_mg):
            continue
        hit = sorted(current_drugs.intersection(row.drugs)) + sorted(
            c for c in row.classes if c in current_classes
        )
        if hit:
            names = ", ".join(kb.drugs[h].name if h in kb.drugs else kb.drug_classes[h].name for h in hit)
            w.safety[f"ix.{row.id}"] = new_action(
                f"ix.{row.id}", texts[i], f"Current: {names}.", row.sources, "routine"
            )


def _magnesium_allergies(w: _Work) -> list[str]:
    """The recorded allergies or intolerances to a magnesium product that may be current, as shown."""
    products = w.p.mg_product_drugs
    out = []
    for allergy in w.facts.allergies or ():
        if allergy.current is False or products.isdisjoint(allergy.drugs):
            continue
        shown = allergy.text
        details = [d for d in (allergy.kind, allergy.reaction and f"reaction: {allergy.reaction}") if d]
        if allergy.criticality:
            details.append(f"criticality {allergy.criticality}")
        if details:
            shown += f" ({', '.join(details)})"
        out.append(shown)
    return out
