"""Risk factors from medications (and magnesium given as treatment) and from conditions."""

from __future__ import annotations

from magstat.core.facts import ConditionFact, Medication
from magstat.core.match import match_supplement
from magstat.core.result import Finding, InputUsed
from magstat.core.rules.work import _in_text, _Work

# Routes and recorded indications that show magnesium is given as treatment (S56, S60, S61):
# parenteral magnesium sulfate for (pre-)eclampsia, tocolysis, torsades or severe asthma.
_PARENTERAL_ROUTES = ("intravenous", "intramuscular")
_MG_THERAPY_INDICATIONS = ("eclampsia", "tocoly", "preterm labo", "torsade", "asthma")


def _is_mg_therapy(w: _Work, med: Medication) -> bool:
    """Whether a current magnesium product is given as treatment (parenteral, or for a named indication)."""
    kb = w.kb
    is_product = not w.p.mg_product_drugs.isdisjoint(med.drugs)
    if not is_product and "magnesium" not in med.text.lower():
        return False  # the common case, decided without a name lookup
    form = match_supplement(kb, med.text)
    parenteral_form = bool(form) and kb.supplements[form.ids[0]].route == "parenteral"
    if not (is_product or parenteral_form):
        return False
    if parenteral_form or (med.route or "").lower() in _PARENTERAL_ROUTES:
        return True
    reason = (med.reason or "").lower()
    return any(word in reason for word in _MG_THERAPY_INDICATIONS)


def _medications(w: _Work) -> None:
    kb = w.kb
    meds = w.facts.medications
    if meds is None:
        w.missing.append("medications")
        return
    classes_of = w.p.drug_classes_of
    current_classes = w.current_classes
    unrecognised = w.unrecognised_medications
    current_drugs = w.current_drugs
    mg_products = w.p.mg_product_drugs
    for med in meds:
        if not med.current:
            if med.current is None and not med.drugs:
                unrecognised.append(med.text)
            continue
        if not med.drugs:
            unrecognised.append(med.text)
        current_drugs.update(med.drugs)
        for drug_id in med.drugs:
            for class_id in classes_of[drug_id]:
                taken = current_classes.get(class_id)
                if taken is None:
                    current_classes[class_id] = [med]
                else:
                    taken.append(med)
        # The common case (neither a magnesium product nor named magnesium) is decided here.
        if (not mg_products.isdisjoint(med.drugs) or "magnesium" in med.text.lower()) and _is_mg_therapy(
            w, med
        ):
            w.mg_therapy.append(med)
    if w.mg_therapy:
        w.find(
            Finding(
                id="drug.magnesium_therapy",
                category="treatment",
                text=(
                    "Magnesium is being given as treatment: "
                    + "; ".join(
                        m.text
                        + (f" ({m.route})" if m.route else "")
                        + (f", for {m.reason}" if m.reason else "")
                        for m in w.mg_therapy
                    )
                    + ". Serum magnesium is read against the therapeutic range of magnesium sulfate therapy."
                ),
                weight="info",
                rule="a current magnesium product given intravenously or intramuscularly, or recorded for eclampsia, "
                "tocolysis, torsades or asthma, is intended magnesium therapy",
                inputs=tuple(
                    InputUsed("medication", m.text, source=m.origin.resource, matched_by=m.origin.matched_by)
                    for m in w.mg_therapy
                ),
                sources=kb.statement("sf.mg_therapy").sources,
            )
        )
    scoring = w.p.scoring_classes
    for cls_id, taken in w.current_classes.items():
        if cls_id not in scoring:
            continue
        klass = kb.drug_classes[cls_id]
        assert klass.weight is not None
        names = ", ".join(
            dict.fromkeys(kb.drugs[d].name for m in taken for d in m.drugs if cls_id in kb.drugs[d].classes)
        )
        text = f"Current {_in_text(klass.name)} ({names}): {klass.mechanism}"
        rule = f"a current drug of a class that lowers magnesium counts as a {klass.weight} risk factor"
        sources = list(klass.sources)
        if cls_id == "ppi":
            long_term = w.p.params["ppi.long_term_days"]
            starts = [m.start for m in taken if m.start is not None]
            if starts:
                days = (w.facts.as_of - min(starts)).days
                if days >= long_term:
                    text += f" Taken for about {days // 30} months: the FDA saw most low-magnesium cases after more than a year of use."
                elif days < w.p.params["ppi.min_days"]:
                    text += (
                        f" Started {days} days ago: reported cases mostly follow at least 3 months of use."
                    )
                sources.extend(kb.parameters["ppi.long_term_days"].sources)
        (w.major if klass.weight == "major" else w.minor).append(f"drug.{cls_id}")
        w.find(
            Finding(
                id=f"drug.{cls_id}",
                category="risk_factor",
                text=text,
                weight=klass.weight,
                rule=rule,
                inputs=tuple(
                    InputUsed(
                        "medication",
                        m.text,
                        date=m.start,
                        source=m.origin.resource,
                        matched_by=m.origin.matched_by,
                    )
                    for m in taken
                ),
                sources=tuple(dict.fromkeys(sources)),
                strength=klass.evidence,
            )
        )
    if "qt_prolonging" in w.current_classes:
        klass = kb.drug_classes["qt_prolonging"]
        taken = w.current_classes["qt_prolonging"]
        names = ", ".join(
            dict.fromkeys(
                kb.drugs[d].name for m in taken for d in m.drugs if "qt_prolonging" in kb.drugs[d].classes
            )
        )
        w.find(
            Finding(
                id="drug.qt_prolonging",
                category="interaction",
                text=f"Current {_in_text(klass.name)} ({names}): {klass.mechanism}",
                weight="info",
                rule="a QT-prolonging drug does not lower magnesium; with a low or low-normal magnesium, low "
                "potassium or calcium it calls for an ECG and a safety note",
                inputs=tuple(
                    InputUsed("medication", m.text, source=m.origin.resource, matched_by=m.origin.matched_by)
                    for m in taken
                ),
                sources=klass.sources,
                strength=klass.evidence,
            )
        )
    for cls_id in sorted(w.current_classes):
        klass = kb.drug_classes[cls_id]
        if klass.effect == "raises":
            # Magnesium-containing products are a risk of excess; drugs that raise serum
            # magnesium as an effect (SGLT2 inhibitors) are shown for context.
            product = cls_id == "magnesium_product"
            w.find(
                Finding(
                    id=f"drug.{cls_id}",
                    category="risk_factor" if product else "protective",
                    text=f"Current {_in_text(klass.name)}: {klass.mechanism}",
                    weight="excess_risk" if product else "info",
                    rule="drugs that raise serum magnesium are shown; they never lower the deficit status",
                    inputs=tuple(
                        InputUsed("medication", m.text, source=m.origin.resource)
                        for m in w.current_classes[cls_id]
                    ),
                    sources=klass.sources,
                    strength=klass.evidence,
                )
            )


_FINDING_EFFECTS = ("lowers", "raises")


def _condition_input(c: ConditionFact) -> InputUsed:
    return InputUsed(
        "condition",
        c.text,
        date=c.onset,
        source=c.origin.resource,
        matched_by=c.origin.matched_by,
        # A provisional or differential diagnosis counts, and says so.
        context=c.verification if c.verification in ("provisional", "differential", "unconfirmed") else None,
    )


def _conditions(w: _Work) -> None:
    kb = w.kb
    conditions = w.facts.conditions
    if conditions is None:
        w.missing.append("conditions")
    # The inputs of a finding are built only for conditions that give one (that lower or raise).
    effect = w.p.condition_effect
    current = w.current_conditions
    recorded: dict[str, list[ConditionFact]] = {}
    unrecognised = w.unrecognised_conditions
    for c in conditions or ():
        cond_id = c.condition
        if cond_id is None:
            if c.current is not False and not c.signs:
                unrecognised.append(c.text)
            continue
        if c.current:
            current.add(cond_id)
            if effect[cond_id] in _FINDING_EFFECTS:
                taken = recorded.get(cond_id)
                if taken is None:
                    recorded[cond_id] = [c]
                else:
                    taken.append(c)
    # Patient-reported states count like the conditions they name.
    for flag, cond_id in (
        (w.facts.pregnant, "pregnancy"),
        (w.facts.lactating, "lactation"),
        (w.facts.chronic_stress, "chronic_stress"),
        (w.facts.high_metabolic_demand, "high_metabolic_demand"),
    ):
        if flag and cond_id in kb.conditions:
            w.current_conditions.add(cond_id)
    for cond_id in sorted(w.current_conditions):
        entry = kb.conditions[cond_id]
        used = tuple(_condition_input(c) for c in recorded.get(cond_id, ())) or (InputUsed(cond_id, True),)
        if entry.effect == "lowers":
            (w.major if entry.weight == "major" else w.minor).append(f"condition.{cond_id}")
            w.find(
                Finding(
                    id=f"condition.{cond_id}",
                    category="risk_factor",
                    text=f"{entry.name}: {entry.what_is_known}",
                    weight=entry.weight,
                    rule=f"a current condition that lowers magnesium counts as a {entry.weight} risk factor",
                    inputs=used,
                    sources=entry.sources,
                    strength=entry.evidence,
                )
            )
        elif entry.effect == "raises":
            w.find(
                Finding(
                    id=f"condition.{cond_id}",
                    category="risk_factor",
                    text=f"{entry.name}: {entry.what_is_known}",
                    weight="excess_risk",
                    rule="a current condition that raises magnesium is a risk for hypermagnesaemia, not a deficit",
                    inputs=used,
                    sources=entry.sources,
                    strength=entry.evidence,
                )
            )
