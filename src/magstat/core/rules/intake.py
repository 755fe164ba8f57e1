"""Dietary magnesium intake against the DRI, and supplements against the upper limit."""

from __future__ import annotations

from typing import Literal

from magstat.core import calculators as calc
from magstat.core.facts import SupplementFact
from magstat.core.result import NO_SUPPLEMENTS, IntakeResult, SupplementResult, new_finding, new_input
from magstat.core.rules.work import _Work


def _intake(w: _Work) -> IntakeResult:
    kb = w.kb
    facts = w.facts
    amount: float | None = facts.diet_mg_per_day
    estimated_from: Literal["reported", "food_frequency"] | None = "reported" if amount is not None else None
    ffq_sources: list[str] = []
    if amount is None and facts.food_frequency:
        amount = calc.food_frequency_mg(kb, facts.food_frequency)
        estimated_from = "food_frequency"
        for item in facts.food_frequency:
            ffq_sources.extend(kb.foods[item.food].sources)
        w.limit("lim.intake_estimate", "Intake was estimated from a short food-frequency answer set.")
    row = None
    if w.age is not None:
        row = w.dri_row = calc.dri_for(kb, w.age, facts.sex, facts.pregnant, facts.lactating)
    if amount is None:
        w.missing.append("diet")
        # It depends only on the row (frozen, shared): made once per row.
        made = w.p.unknown_intake.get(row.id if row else None)
        if made is None:
            made = w.p.unknown_intake[row.id if row else None] = IntakeResult(
                None,
                None,
                row.id if row else None,
                row.ear_mg if row else None,
                row.rda_mg if row else None,
                bool(row and row.is_ai),
                None,
                None,
                row.sources if row else (),
            )
        return made
    if row is None:
        return IntakeResult(amount, estimated_from, None, None, None, False, None, None, tuple(ffq_sources))
    below = None if row.ear_mg is None else amount < row.ear_mg
    percent = amount / row.rda_mg * 100.0
    sources = tuple(dict.fromkeys([*row.sources, *ffq_sources]))
    reference = f"EAR {row.ear_mg:.0f} mg" if row.ear_mg is not None else "no EAR for this life stage"
    text = f"Dietary magnesium about {amount:.0f} mg/day: {percent:.0f}% of the {'AI' if row.is_ai else 'RDA'} of {row.rda_mg:.0f} mg/day ({reference})."
    if below:
        w.minor.append("diet.below_ear")
        text += " Below the EAR: inadequate for most people of this life stage."
    w.findings.append(
        new_finding(
            id="diet.below_ear" if below else "diet.intake",
            category="diet",
            text=text,
            weight="minor" if below else "info",
            rule="intake below the life stage's EAR counts as a minor risk factor",
            inputs=(new_input("dietary magnesium", round(amount), "mg/day"), new_input("life stage", row.id)),
            sources=sources,
            strength="IOM 1997 DRIs",
        )
    )
    return IntakeResult(
        amount, estimated_from, row.id, row.ear_mg, row.rda_mg, row.is_ai, percent, below, sources
    )


def _supplements(w: _Work) -> SupplementResult:
    kb = w.kb
    facts = w.facts
    if facts.supplements is None:
        w.missing.append("supplements")
        return NO_SUPPLEMENTS
    total = 0.0
    unknown_content: list[str] = []
    not_counted: list[str] = []
    sources: list[str] = []
    therapy_sources = {m.origin.resource for m in w.mg_therapy if m.origin.resource}
    counted: list[tuple[SupplementFact, float | None]] = []  # each product and its elemental mg/day
    for item in facts.supplements:
        if item.origin.resource is not None and item.origin.resource in therapy_sources:
            continue  # magnesium given as treatment is not a supplement (see _safety)
        entry = kb.supplements.get(item.form) if item.form else None
        if entry is not None:
            sources.extend(entry.sources)
        if entry is not None and not entry.counts_toward_intake:
            not_counted.append(item.text)
            continue
        elemental = item.elemental_mg_per_day
        if elemental is None and item.product_mg_per_day is not None:
            elemental = calc.elemental_mg(kb, item.form, item.product_mg_per_day)
        if elemental is None:
            unknown_content.append(item.text)
        else:
            total += elemental
        counted.append((item, elemental))
        w.oral_magnesium.append(item.text)
    row = w.dri_row  # the life stage's row, found by _intake (None without an age)
    if row is None and w.age is not None:
        # The UL does not depend on sex: any row of the age band will do.
        row = next((r for r in kb.dri if r.age_min <= w.age < r.age_max), None)
    ul = row.ul_supplemental_mg if row else None
    # With a product of unknown content the total is a lower bound: above the UL only if the
    # known part is, otherwise not known.
    above = None if ul is None else True if total > ul else None if unknown_content else False
    if row is not None:
        sources.extend(row.sources)
    if not_counted:
        w.safe("sf.transdermal", f"Not counted: {', '.join(not_counted)}.")
    if facts.supplements:
        if unknown_content and not total:
            amount = "not known"
        elif unknown_content:
            amount = f"at least {total:.0f} mg/day"
        else:
            amount = f"about {total:.0f} mg/day"
        text = (
            f"Supplemental elemental magnesium {amount}"
            + (f" (UL {ul:.0f} mg/day for supplements)" if ul else "")
            + "."
        )
        if unknown_content:
            text += f" Content unknown for: {', '.join(unknown_content)}."
        w.findings.append(
            new_finding(
                id="supplements.above_ul" if above else "supplements.total",
                category="supplement",
                text=text,
                weight="info",
                rule="elemental Mg = product amount × elemental percentage of the salt; compared with the UL for supplements",
                inputs=tuple(
                    new_input(f"supplement {s.text}", round(mg), "mg/day elemental", source=s.origin.resource)
                    if mg is not None
                    else new_input("supplement", s.text, source=s.origin.resource)
                    for s, mg in counted
                ),
                sources=tuple(dict.fromkeys(sources)),
            )
        )
    return SupplementResult(
        total if facts.supplements else 0.0,
        ul,
        above,
        tuple(not_counted),
        tuple(dict.fromkeys(sources)),
        tuple(unknown_content),
    )
