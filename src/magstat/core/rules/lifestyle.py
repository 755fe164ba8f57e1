"""Alcohol and lifestyle as risk factors."""

from __future__ import annotations

from magstat.core import calculators as calc
from magstat.core.result import InputUsed, new_finding, new_input
from magstat.core.rules.work import _fmt, _lab_input, _Work


def _alcohol_and_lifestyle(w: _Work) -> None:
    kb = w.kb
    facts = w.facts
    drinks = w.latest.get("alcohol_drinks_per_day")
    audit = w.latest.get("audit_c")
    if drinks is not None:
        if calc.heavy_drinking(kb, drinks.value, facts.sex):
            _alcohol_finding(
                w,
                "alcohol.heavy",
                text=f"{_fmt(drinks.value, 1)} drinks a day is heavy drinking (more than 1 a day for women, 2 for men): "
                "alcohol increases renal and gut magnesium loss.",
                rule="> 1 drink/day (women) or > 2 (men), as the MDS defines heavy drinking",
                used=_lab_input("alcohol drinks/day", drinks),
                param="alcohol.heavy_female_above",
                strength="strong",
            )
    elif audit is not None and "alcohol_use_disorder" not in w.current_conditions:
        cut = kb.param(
            "audit_c.positive_female_at_least" if facts.sex == "female" else "audit_c.positive_male_at_least"
        )
        if facts.sex is not None and audit.value >= cut:
            _alcohol_finding(
                w,
                "alcohol.audit_c_positive",
                text=f"AUDIT-C {audit.value:.0f} is a positive screen for unhealthy drinking (≥ {cut:.0f} for "
                f"{facts.sex}s); alcohol misuse is a common cause of magnesium loss. The drinks per day are not "
                "known, so the MDS alcohol item stays unknown.",
                rule="AUDIT-C at or above the sex-specific cut-off is a positive screen",
                used=_lab_input("AUDIT-C", audit),
                param="audit_c.positive_male_at_least",
                strength="screening instrument",
            )
    if drinks is None and audit is None and "alcohol_use_disorder" not in w.current_conditions:
        w.missing.append("alcohol")
    if w.age is None:
        w.missing.append("age")
    elif w.age >= w.p.params["age.older_adult_at_least"]:
        w.minor.append("age")
        w.findings.append(
            new_finding(
                id="age.older",
                category="risk_factor",
                text=f"Age {w.age:.0f}: older adults more often have low intake and lower absorption, though serum magnesium changes little with age.",
                weight="minor",
                rule=f"age ≥ {w.p.params['age.older_adult_at_least']:.0f} years counts as a minor risk factor",
                inputs=(new_input("age", round(w.age, 1), "years"),),
                sources=kb.parameters["age.older_adult_at_least"].sources,
                strength="moderate",
            )
        )
    if facts.sex is None:
        w.missing.append("sex")


def _alcohol_finding(
    w: _Work, finding_id: str, *, text: str, rule: str, used: InputUsed, param: str, strength: str
) -> None:
    """Record heavy or unhealthy drinking as a major risk factor, citing the cut-off and AUD."""
    kb = w.kb
    aud = kb.conditions.get("alcohol_use_disorder")
    sources = tuple(dict.fromkeys([*kb.parameters[param].sources, *(aud.sources if aud else ())]))
    w.major.append(finding_id)
    w.findings.append(
        new_finding(
            id=finding_id,
            category="risk_factor",
            text=text,
            weight="major",
            rule=rule,
            inputs=(used,),
            sources=sources,
            strength=strength,
        )
    )
