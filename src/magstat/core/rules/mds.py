"""The Magnesium Depletion Score (MDS): its components, points and band."""

from __future__ import annotations

import math
from typing import Literal

from magstat.core import calculators as calc
from magstat.core.result import EgfrResult, InputUsed, MdsResult, new_finding, new_input, new_mds
from magstat.core.rules.work import _egfr_input, _lab_input, _Work

_MDS_MAX = {"diuretic": 1, "ppi": 1, "kidney": 2, "alcohol": 1}


def _mds(w: _Work, egfr: EgfrResult) -> MdsResult:
    facts = w.facts
    components: dict[str, int | None] = {}
    inputs: list[InputUsed] = []
    meds = facts.medications
    if meds is None:
        components["diuretic"] = components["ppi"] = None
    else:
        # The medications that count for each component, taken now (current) or perhaps
        # (current unknown), were gathered in the pass over the list (_medication_pass).
        taking = w.mds_taking
        unsure = w.mds_unsure
        for component in ("diuretic", "ppi"):
            taken = taking[component]
            components[component] = 1 if taken else (None if component in unsure else 0)
            for m in taken:
                inputs.append(
                    new_input(component, m.text, None, None, m.origin.resource, m.origin.matched_by)
                )
    components["kidney"] = _kidney_points(w, egfr)
    if egfr.value is not None:
        inputs.append(_egfr_input(egfr))
    components["alcohol"] = _mds_alcohol(w, inputs)
    # The score, its band and the texts depend only on the points (and the knowledge base): they
    # are worked out once per combination of points.
    # The most kidney points an unknown kidney component could add: 2, or 1 under a bound
    # (">60" is 0 or 1). Part of the key: the range and the band depend on it.
    kidney_max = 1 if components["kidney"] is None and egfr.comparator is not None else 2
    key = (*components.values(), kidney_max)
    score, complete, band, possible, text, unknown = w.p.mds_texts.get(key) or _mds_points(
        w, key, components, kidney_max
    )
    sources = w.p.mds_sources
    if score is not None:
        if band in {"high", "middle"}:
            (w.major if band == "high" else w.minor).append("mds")
        w.findings.append(
            new_finding(
                id="mds",
                category="calculator",
                text=text,
                weight="major" if band == "high" else "minor" if band == "middle" else "info",
                rule=_MDS_RULE,
                inputs=tuple(inputs),
                sources=w.p.mds_finding_sources,
                strength=_MDS_STRENGTH,
            )
        )
    if unknown is not None:
        w.limit_fixed("lim.mds_incomplete", unknown)  # a text of the points alone (see _mds_points)
    return new_mds(score, complete, band, components, possible, sources)


def _kidney_points(w: _Work, egfr: EgfrResult) -> int | None:
    """The MDS kidney points, or None when unknown.

    A reported bound gives points only when every value inside it gives the same: ">90" scores
    0 and "<60" scores 2, but ">60" could score 0 or 1 and stays unknown (the score's range then
    shows both).
    """
    value = egfr.value
    if value is None:
        return None
    points = calc.mds_kidney_points(w.kb, value)
    comparator = egfr.comparator
    if comparator is None:
        return points
    # The far end of the bound: any eGFR far above (or at 0, below) scores as that end does.
    far = calc.mds_kidney_points(w.kb, math.inf if comparator in (">", ">=") else 0.0)
    return points if points == far else None


_MDS_RULE = "diuretic 1 + PPI 1 + kidney (eGFR 60–89: 1, < 60: 2) + heavy drinking 1; bands 0–1 low, 2 middle, 3–5 high"
_MDS_STRENGTH = (
    "observational: predicts inflammation and mortality in NHANES; AUC 0.63 against the loading test"
)


_MdsPoints = tuple[
    int | None, bool, Literal["low", "middle", "high"] | None, tuple[int, int] | None, str, str | None
]


def _mds_points(
    w: _Work, key: tuple[int | None, ...], components: dict[str, int | None], kidney_max: int = 2
) -> _MdsPoints:
    """Score, completeness, band, possible range, the finding's text and the unknown components.

    ``kidney_max`` is the most points an unknown kidney component could add (1 when a reported
    eGFR bound such as ">60" leaves only 0 or 1).
    """
    most = {**_MDS_MAX, "kidney": kidney_max}
    kb = w.kb
    known = [v for v in components.values() if v is not None]
    score = sum(known) if known else None
    complete = len(known) == len(components)
    band: Literal["low", "middle", "high"] | None = None
    possible: tuple[int, int] | None = None
    if score is not None:
        upper = score + sum(most[k] for k, v in components.items() if v is None)
        possible = (score, upper)
        low_band, high_band = calc.mds_band(kb, score), calc.mds_band(kb, upper)
        if low_band == high_band:
            band = low_band  # type: ignore[assignment]
    text = ""
    if score is not None:
        parts = ", ".join(f"{k} {_points_shown(k, v, kidney_max)}" for k, v in components.items())
        text = f"Magnesium Depletion Score {score}" + (
            ""
            if complete
            else f" from the known components (could be {possible[0]}–{possible[1]})"
            if possible
            else ""
        )
        text += f": {parts}." + (
            f" Band: {band}." if band else " Band undecided until the unknown components are known."
        )
    unknown = None
    if not complete:
        unknown = (
            "Unknown MDS components: "
            + ", ".join(
                k + (" (0 or 1: eGFR reported only as a bound)" if k == "kidney" and kidney_max < 2 else "")
                for k, v in components.items()
                if v is None
            )
            + "."
        )
    made: _MdsPoints = (score, complete, band, possible, text, unknown)
    w.p.mds_texts[key] = made
    return made


def _points_shown(component: str, points: int | None, kidney_max: int) -> str:
    """A component's points in the finding's text: the number, "unknown", or "0 or 1" under a bound."""
    if points is not None:
        return str(points)
    return "0 or 1" if component == "kidney" and kidney_max < 2 else "unknown"


def _mds_alcohol(w: _Work, inputs: list[InputUsed]) -> int | None:
    """Heavy drinking: from drinks/day; else a current alcohol use disorder; else AUDIT-C."""
    kb = w.kb
    sex = w.facts.sex
    drinks = w.latest.get("alcohol_drinks_per_day")
    if drinks is not None:
        heavy = calc.heavy_drinking(kb, drinks.value, sex)
        inputs.append(_lab_input("alcohol drinks/day", drinks))
        if heavy is not None:
            return int(heavy)
    if "alcohol_use_disorder" in w.current_conditions:
        w.alcohol_proxy = True
        inputs.append(new_input("alcohol use disorder (current diagnosis)", True))
        return 1
    audit = w.latest.get("audit_c")
    if audit is not None:
        inputs.append(_lab_input("AUDIT-C", audit))
        female_cut = w.p.params["audit_c.positive_female_at_least"]
        male_cut = w.p.params["audit_c.positive_male_at_least"]
        cut = female_cut if sex == "female" else male_cut if sex == "male" else min(female_cut, male_cut)
        if audit.value < cut:
            w.alcohol_proxy = True
            return 0
    return None


def mds_high(w: _Work) -> bool:
    """Whether the MDS finding was counted as a major risk (band high)."""
    return "mds" in w.major
