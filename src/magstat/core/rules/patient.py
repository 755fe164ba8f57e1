"""The patient as a whole: age at the as-of date, and the answer for a patient who has died."""

from __future__ import annotations

from magstat.core.facts import PatientFacts
from magstat.core.result import (
    Assessment,
    EgfrResult,
    FemgResult,
    IntakeResult,
    LoadingResult,
    MdsResult,
    SerumMagnesium,
    SupplementResult,
    new_finding,
    new_input,
)
from magstat.core.rules.mds import _MDS_MAX
from magstat.kb.schema import KnowledgeBase


def _died(facts: PatientFacts) -> bool:
    """Whether the patient had died by the as-of date (a later date of death does not count)."""
    return facts.deceased is True and (facts.deceased_date is None or facts.deceased_date <= facts.as_of)


def _deceased(facts: PatientFacts, kb: KnowledgeBase, age: float | None) -> Assessment:
    """The answer for a patient who has died: not assessed, no next steps, no advice."""
    when = facts.deceased_date
    on = f" on {when.isoformat()}" if when else ""
    finding = new_finding(
        id="patient.deceased",
        category="status",
        text=(
            f"Deceased{on}. magstat does not assess a patient who has died: no magnesium status, next steps, "
            "treatment or safety advice are given."
        ),
        weight="info",
        rule="a patient whose record says deceased at or before the as-of date is not assessed as living",
        inputs=(
            new_input(
                "deceased",
                when.isoformat() if when else True,
                date=when,
                source=f"Patient/{facts.patient_id}" if facts.patient_id else "patient",
                matched_by="deceasedDateTime" if when else "deceasedBoolean",
            ),
        ),
        sources=("S304",),
    )
    none = SerumMagnesium(mmol_l=None)
    return Assessment(
        status="indeterminate",
        severity=None,
        summary=f"Deceased{on}: not assessed.",
        as_of=facts.as_of,
        patient_id=facts.patient_id,
        age_years=age,
        sex=facts.sex,
        mds=MdsResult(None, False, None, dict.fromkeys(_MDS_MAX), None, ()),
        egfr=EgfrResult(None, None, None, None),
        serum_magnesium=none,
        femg=FemgResult(None, None),
        loading_test=LoadingResult(None, None, None),
        intake=IntakeResult(None, None, None, None, None, False, None, None),
        supplements=SupplementResult(None, None, None),
        findings=(finding,),
        next_steps=(),
        safety=(),
        relevance=(),
        limitations=(),
        missing_inputs=(),
        unrecognised=(),
        excluded=facts.excluded,
        kb_version=kb.version,
        kb_sha256=kb.sha256,
        sources=("S304",),
        deceased=True,
        deceased_date=when,
    )


def _age(facts: PatientFacts) -> float | None:
    """Age at the as-of date, or at death when the patient died before it."""
    if facts.birth_date is not None:
        at = facts.as_of
        if _died(facts) and facts.deceased_date is not None:
            at = max(facts.deceased_date, facts.birth_date)
        days = (at - facts.birth_date).days
        years = (
            at.year
            - facts.birth_date.year
            - ((at.month, at.day) < (facts.birth_date.month, facts.birth_date.day))
        )
        # Whole years, plus the fraction of the current year of age, for life-stage lookups.
        return years + (days % 365.2425) / 365.2425 if years >= 0 else 0.0
    return facts.age_years
