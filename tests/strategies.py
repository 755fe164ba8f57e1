"""Hypothesis strategies for PatientFacts built from the shipped knowledge base."""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st

from magstat.core.facts import ConditionFact, Lab, Medication, Origin, PatientFacts, SignFact, SupplementFact
from magstat.kb import load

KB = load()
AS_OF = dt.date(2024, 5, 1)

# Plausible, not only physiological, ranges: what a real record may hold.
LAB_RANGES = {
    "serum_mg": (0.2, 2.0),
    "egfr": (5.0, 140.0),
    "serum_creatinine": (0.3, 8.0),
    "potassium": (2.0, 6.5),
    "calcium_total": (1.5, 3.2),
    "alcohol_drinks_per_day": (0.0, 8.0),
    "audit_c": (0.0, 12.0),
    "urine_mg_spot": (0.1, 8.0),
    "urine_creatinine": (10.0, 300.0),
    "loading_retention": (-30.0, 80.0),
    "rbc_mg": (1.0, 3.5),
    "hba1c": (4.0, 14.0),
    "glucose": (2.0, 30.0),
}

LOWERING_DRUGS = sorted(
    d.id
    for d in KB.drugs.values()
    if any(KB.drug_classes[c].effect == "lowers" and KB.drug_classes[c].weight for c in d.classes)
)


@st.composite
def labs(draw: st.DrawFn) -> tuple[Lab, ...]:
    out = []
    for test in draw(st.lists(st.sampled_from(sorted(LAB_RANGES)), max_size=6, unique=True)):
        low, high = LAB_RANGES[test]
        value = draw(st.floats(low, high, allow_nan=False))
        if test == "audit_c":
            value = float(round(value))
        days = draw(st.integers(0, 800))
        out.append(
            Lab(
                test,
                value,
                KB.tests[test].canonical_unit,
                AS_OF - dt.timedelta(days=days),
                origin=Origin(f"Observation/{test}"),
            )
        )
    return tuple(out)


NOT_CURRENT = ("negated", "historical", "hypothetical", "family", "chronic", "resolved", "unknown_status")


@st.composite
def out_of_context_signs(draw: st.DrawFn) -> SignFact:
    """A sign that a record names but does not report present now: out of context, or too old."""
    sign = draw(st.sampled_from(sorted(KB.signs)))
    window = int(KB.param("signs.recent_days"))
    if draw(st.booleans()):
        context = draw(st.sampled_from(NOT_CURRENT))
        when = draw(st.none() | st.integers(0, 4000).map(lambda d: AS_OF - dt.timedelta(days=d)))
        return SignFact(sign, context != "negated", Origin("Condition/x"), context, "trigger", when)
    days = draw(st.integers(window + 1, 20000))
    return SignFact(sign, True, Origin("Condition/old"), when=AS_OF - dt.timedelta(days=days))


@st.composite
def out_of_context_conditions(draw: st.DrawFn) -> ConditionFact:
    """A problem-list entry named in a negated, historical, hypothetical or family context."""
    condition = draw(st.sampled_from(sorted(KB.conditions)))
    context = draw(st.sampled_from(NOT_CURRENT[:4]))
    return ConditionFact(
        condition, condition, False, origin=Origin("Condition/y"), context=context, trigger="t"
    )


@st.composite
def patient_facts(draw: st.DrawFn) -> PatientFacts:
    drugs = sorted(KB.drugs)
    meds = draw(
        st.none()
        | st.lists(
            st.builds(
                lambda d, cur: Medication(d, (d,), cur, origin=Origin("MedicationRequest/x")),
                st.sampled_from(drugs),
                st.sampled_from([True, False, None]),
            ),
            max_size=4,
        ).map(tuple)
    )
    conds = draw(
        st.none()
        | st.lists(
            st.builds(
                lambda c, cur: ConditionFact(c, c, cur),
                st.sampled_from(sorted(KB.conditions)),
                st.sampled_from([True, False, None]),
            ),
            max_size=3,
        ).map(tuple)
    )
    signs = draw(
        st.lists(
            st.builds(SignFact, st.sampled_from(sorted(KB.signs)), st.booleans()) | out_of_context_signs(),
            max_size=3,
        ).map(tuple)
    )
    supplements = draw(
        st.none()
        | st.lists(
            st.builds(
                lambda f, mg: SupplementFact(f, f, product_mg_per_day=mg),
                st.sampled_from(sorted(KB.supplements)),
                st.floats(0, 2000),
            ),
            max_size=2,
        ).map(tuple)
    )
    return PatientFacts(
        as_of=AS_OF,
        age_years=draw(st.none() | st.floats(18, 100)),
        sex=draw(st.sampled_from([None, "female", "male"])),
        pregnant=draw(st.sampled_from([None, False, True])),
        medications=meds,
        conditions=conds,
        signs=signs,
        labs=draw(labs()),
        chronic_stress=draw(st.sampled_from([None, False, True])),
        high_metabolic_demand=draw(st.sampled_from([None, False, True])),
        diet_mg_per_day=draw(st.none() | st.floats(0, 900)),
        supplements=supplements,
    )
