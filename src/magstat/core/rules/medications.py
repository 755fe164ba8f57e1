"""Risk factors from medications (and magnesium given as treatment) and from conditions."""

from __future__ import annotations

import re

from magstat.core.facts import ConditionFact, Medication
from magstat.core.match import gives_parenteral_route, match_supplement
from magstat.core.result import InputUsed, new_finding, new_input
from magstat.core.rules.work import _in_text, _Work
from magstat.core.validate import check_conditions, check_medications

# Routes and recorded indications that show magnesium is given as treatment (S56, S60, S61):
# parenteral magnesium sulfate for (pre-)eclampsia, tocolysis, torsades or severe asthma.
_PARENTERAL_ROUTES = ("intravenous", "intramuscular")
_MG_THERAPY_INDICATIONS = ("eclampsia", "tocoly", "preterm labo", "torsade", "asthma")
_ORAL_WORDS = re.compile(r"(?<![a-z])(?:oral|orally|po|p\.o\.|by mouth|tablets?|capsules?|epsom)(?![a-z])")
# Current conditions for which magnesium sulfate is the treatment given in hospital: on the
# problem list, they name the indication that a prescription may leave out (S56, S60).
_MG_THERAPY_CONDITIONS = ("pre_eclampsia",)
_SULFATE_FORMS = ("sulfate_heptahydrate", "sulfate_iv")


def _is_mg_therapy(w: _Work, med: Medication) -> bool:
    """Whether a current magnesium product is given as treatment.

    Parenteral (by its recorded route, its form or the route or dose form its name gives), or
    recorded for a named indication, or magnesium sulfate not given by mouth while the problem
    list holds a condition it treats (pre-eclampsia or eclampsia).
    """
    kb = w.kb
    is_product = not w.p.mg_product_drugs.isdisjoint(med.drugs)
    if not is_product and "magnesium" not in med.text.lower():
        return False  # the common case, decided without a name lookup
    form = match_supplement(kb, med.text)
    parenteral_form = bool(form) and kb.supplements[form.ids[0]].route == "parenteral"
    if not (is_product or parenteral_form):
        return False
    route = (med.route or "").lower()
    if parenteral_form or route in _PARENTERAL_ROUTES:
        return True
    if route:
        return False  # a route was recorded and it is not parenteral
    text = med.text.lower()
    if gives_parenteral_route(text):
        return True
    reason = (med.reason or "").lower()
    if any(word in reason for word in _MG_THERAPY_INDICATIONS):
        return True
    return (
        ("magnesium_sulfate" in med.drugs or (bool(form) and form.ids[0] in _SULFATE_FORMS))
        and not _ORAL_WORDS.search(text)
        and any(c in w.current_conditions for c in _MG_THERAPY_CONDITIONS)
    )


def _therapy_by_indication(w: _Work) -> None:
    """After the problem list is read: magnesium sulfate given for a condition on it is treatment.

    The medication pass runs before the problem list is read; when a condition that magnesium
    sulfate treats is current, the therapies are gathered again in record order.
    """
    if w.facts.medications and any(c in w.current_conditions for c in _MG_THERAPY_CONDITIONS):
        w.mg_therapy = _therapies(w, w.facts.medications)


def _medication_pass(w: _Work) -> None:
    """One pass over the medication list: drug ids checked, current drugs and classes, MDS items.

    An unknown drug id is refused here with the error of
    :func:`magstat.core.validate.check_medications` (the same entry and words). The findings
    are made later, in their place among the others (:func:`_medications`).
    """
    meds = w.facts.medications
    if not meds:
        return
    p = w.p
    classes_of = p.drug_classes_of
    components_of = p.mds_components_of
    current_classes = w.current_classes
    current_drugs = w.current_drugs
    unrecognised = w.unrecognised_medications
    taking = w.mds_taking
    for med in meds:
        drugs = med.drugs
        current = med.current
        if not drugs:
            # Not recognised (the common entry of a long record): listed unless known to be
            # stopped; when current, only a magnesium name matters (looked for below).
            if current is not False:
                unrecognised[med.text] = None  # each text once, in the order first met
            continue
        for drug_id in drugs:
            if drug_id not in classes_of:
                check_medications(w.facts, w.kb)  # raises, naming the first unknown id
        if not current:
            if current is None:
                # Perhaps taken: the MDS components it would count for are unknown.
                for drug_id in drugs:
                    w.mds_unsure.update(components_of[drug_id])
            continue
        current_drugs.update(drugs)
        for drug_id in drugs:
            for class_id in classes_of[drug_id]:
                taken = current_classes.get(class_id)
                if taken is None:
                    current_classes[class_id] = [med]
                else:
                    taken.append(med)
            for component in components_of[drug_id]:
                counted = taking[component]
                if not counted or counted[-1] is not med:
                    counted.append(med)
        # The common case (neither a magnesium product nor named magnesium) is decided here.
        if _gives_mg(w, med):
            w.mg_therapy.append(med)
    # An unrecognised current medication is magnesium therapy only if it names magnesium: one
    # look over all their texts settles the common case (none does). Otherwise the therapies
    # are gathered again in record order, recognised or not.
    if unrecognised and "magnesium" in "\n".join(unrecognised).lower():
        w.mg_therapy = _therapies(w, meds)


def _therapies(w: _Work, meds: tuple[Medication, ...]) -> list[Medication]:
    """The current medications that are magnesium therapy, in record order."""
    return [med for med in meds if med.current and _gives_mg(w, med)]


def _gives_mg(w: _Work, med: Medication) -> bool:
    """Whether a current medication is magnesium therapy: a magnesium product, or named magnesium, given as therapy."""
    return (
        not w.p.mg_product_drugs.isdisjoint(med.drugs) or "magnesium" in med.text.lower()
    ) and _is_mg_therapy(w, med)


def _medications(w: _Work) -> None:
    """The findings of current medications (gathered by :func:`_medication_pass`)."""
    kb = w.kb
    if w.facts.medications is None:
        w.missing.append("medications")
        return
    if w.mg_therapy:
        w.findings.append(
            new_finding(
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
                    + ". A serum magnesium taken during it is read against the therapeutic range of magnesium "
                    "sulfate therapy; one taken before it started, or before a draft order is given, as without it."
                ),
                weight="info",
                rule="a current magnesium product given intravenously or intramuscularly, or recorded for eclampsia, "
                "tocolysis, torsades or asthma, is intended magnesium therapy",
                inputs=tuple(
                    new_input("medication", m.text, None, None, m.origin.resource, m.origin.matched_by)
                    for m in w.mg_therapy
                ),
                sources=kb.statement("sf.mg_therapy").sources,
            )
        )
    rules = w.p.class_rules
    drug_names = w.p.drug_names
    classes_of = w.p.drug_classes_of
    for cls_id, taken in w.current_classes.items():
        rule = rules.get(cls_id)
        if rule is None:
            continue
        klass = kb.drug_classes[cls_id]
        assert klass.weight is not None
        names = ", ".join(
            dict.fromkeys([drug_names[d] for m in taken for d in m.drugs if cls_id in classes_of[d]])
        )
        text = f"Current {_in_text(klass.name)} ({names}): {klass.mechanism}"
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
        w.findings.append(
            new_finding(
                id=f"drug.{cls_id}",
                category="risk_factor",
                text=text,
                weight=klass.weight,
                rule=rule,
                inputs=tuple(
                    new_input("medication", m.text, None, m.start, m.origin.resource, m.origin.matched_by)
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
        w.findings.append(
            new_finding(
                id="drug.qt_prolonging",
                category="interaction",
                text=f"Current {_in_text(klass.name)} ({names}): {klass.mechanism}",
                weight="info",
                rule="a QT-prolonging drug does not lower magnesium; with a low or low-normal magnesium, low "
                "potassium or calcium it calls for an ECG and a safety note",
                inputs=tuple(
                    new_input("medication", m.text, None, None, m.origin.resource, m.origin.matched_by)
                    for m in taken
                ),
                sources=klass.sources,
                strength=klass.evidence,
            )
        )
    raising = w.p.raising_classes
    for cls_id in sorted(w.current_classes):
        if cls_id in raising:
            klass = kb.drug_classes[cls_id]
            # Magnesium-containing products are a risk of excess; drugs that raise serum
            # magnesium as an effect (SGLT2 inhibitors) are shown for context.
            product = cls_id == "magnesium_product"
            w.findings.append(
                new_finding(
                    id=f"drug.{cls_id}",
                    category="risk_factor" if product else "protective",
                    text=f"Current {_in_text(klass.name)}: {klass.mechanism}",
                    weight="excess_risk" if product else "info",
                    rule="drugs that raise serum magnesium are shown; they never lower the deficit status",
                    inputs=tuple(
                        new_input("medication", m.text, source=m.origin.resource)
                        for m in w.current_classes[cls_id]
                    ),
                    sources=klass.sources,
                    strength=klass.evidence,
                )
            )


_FINDING_EFFECTS = ("lowers", "raises")


def _condition_input(c: ConditionFact) -> InputUsed:
    origin = c.origin
    verification = c.verification
    # Positional: name, value, unit, date, source, matched_by, context (a call by keyword is
    # slower). A provisional or differential diagnosis counts, and says so.
    return new_input(
        "condition",
        c.text,
        None,
        c.onset,
        origin.resource,
        origin.matched_by,
        verification if verification in ("provisional", "differential", "unconfirmed") else None,
    )


def _condition_pass(w: _Work) -> None:
    """One pass over the problem list: condition ids checked, current conditions gathered.

    An unknown condition id is refused here with the error of
    :func:`magstat.core.validate.check_conditions`. The inputs of a finding are built later,
    only for conditions that give one (that lower or raise magnesium).
    """
    conditions = w.facts.conditions
    if not conditions:
        return
    effect = w.p.condition_effect
    current = w.current_conditions
    recorded = w.recorded_conditions
    unrecognised = w.unrecognised_conditions
    for c in conditions:
        cond_id = c.condition
        if cond_id is None:
            if c.current is not False and not c.signs:
                unrecognised[c.text] = None  # each text once, in the order first met
            continue
        if cond_id not in effect:
            check_conditions(w.facts, w.kb)  # raises, naming the first unknown id
        if c.current:
            current.add(cond_id)
            if effect[cond_id] in _FINDING_EFFECTS:
                taken = recorded.get(cond_id)
                if taken is None:
                    recorded[cond_id] = [c]
                else:
                    taken.append(c)


def _conditions(w: _Work) -> None:
    """The findings of current conditions (gathered by :func:`_condition_pass`)."""
    kb = w.kb
    if w.facts.conditions is None:
        w.missing.append("conditions")
    recorded = w.recorded_conditions
    # Patient-reported states count like the conditions they name.
    for flag, cond_id in (
        (w.facts.pregnant, "pregnancy"),
        (w.facts.lactating, "lactation"),
        (w.facts.chronic_stress, "chronic_stress"),
        (w.facts.high_metabolic_demand, "high_metabolic_demand"),
    ):
        if flag and cond_id in kb.conditions:
            w.current_conditions.add(cond_id)
    findings = w.p.condition_findings
    for cond_id in sorted(w.current_conditions):
        made = findings.get(cond_id)
        if made is None:
            continue  # no finding: its inputs are not built
        effect, text, weight, rule, sources, strength = made
        entries = recorded.get(cond_id)
        used = tuple([_condition_input(c) for c in entries]) if entries else (new_input(cond_id, True),)
        if effect == "lowers":
            (w.major if weight == "major" else w.minor).append(f"condition.{cond_id}")
        w.findings.append(
            new_finding(
                id=f"condition.{cond_id}",
                category="risk_factor",
                text=text,
                weight=weight,
                rule=rule,
                inputs=used,
                sources=sources,
                strength=strength,
            )
        )
