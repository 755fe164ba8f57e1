"""Magnesium products on a medication list, read as supplement facts.

A magnesium tablet on the medication list is a supplement taken by mouth: the assessment counts
its elemental magnesium against the upper level and knows that oral magnesium is already taken.
The FHIR reader and the patient-document reader both use :func:`supplements_from_medications`,
so the two give the same supplements for the same list.

.. versionadded:: 0.7.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from magstat.core.facts import Medication, SupplementFact
from magstat.core.match import Match, gives_parenteral_route
from magstat.kb.schema import KnowledgeBase

__all__ = ["supplements_from_medications"]

_NOT_SUPPLEMENT_ROUTES = ("intravenous", "intramuscular", "transdermal")


def supplements_from_medications(
    kb: KnowledgeBase, medications: Iterable[Medication], match: Callable[[str], Match]
) -> tuple[SupplementFact, ...] | None:
    """Current magnesium products taken by mouth (or by an unrecorded route), as supplement facts.

    The amount per day comes from the structured dosage (``dose_mg_per_day``). A product named
    by its salt ("magnesium oxide 400 mg") gives the salt's weight, converted to elemental
    magnesium by the knowledge base's percentage; a product named only "magnesium" is taken to
    state elemental magnesium, as supplement labels do. Parenteral and transdermal products are
    not supplements (by the recorded route, the product's form, or, with no route recorded, a
    parenteral route or dose form in its name: "IV", "injection", "infusion"), nor is a product
    known to be stopped or whose use is unknown.

    Args:
        kb: the knowledge base.
        medications: the medication list.
        match: recognises a supplement form in a text (:func:`magstat.core.match.match_supplement`
            bound to ``kb``, or a memo of it).

    Returns:
        The supplements in list order, or ``None`` when no current magnesium product is listed
        (the supplements are then as unknown as they were).

    """
    found: list[SupplementFact] = []
    for med in medications:
        if med.current is not True or med.route in _NOT_SUPPLEMENT_ROUTES:
            continue
        if not med.route and gives_parenteral_route(med.text):
            continue  # "Magnesium sulfate 50% IV": given by infusion or injection, not taken by mouth
        is_product = any("magnesium_product" in kb.drugs[d].classes for d in med.drugs)
        form_match = match(med.text)
        for drug_id in med.drugs:
            # A product recognised by its code: its salt comes from the drug's name.
            if form_match:
                break
            form_match = match(kb.drugs[drug_id].name)
        form = form_match.ids[0] if form_match else None
        if form is not None and kb.supplements[form].route != "oral":
            continue
        named_plain = not med.drugs and form is None and "magnesium" in med.text.lower()
        if not (is_product or form is not None or named_plain):
            continue
        per_day = med.dose_mg_per_day
        found.append(
            SupplementFact(
                form=form,
                text=med.text,
                elemental_mg_per_day=per_day if form is None else None,
                product_mg_per_day=per_day if form is not None else None,
                origin=med.origin,
            )
        )
    return tuple(found) if found else None
