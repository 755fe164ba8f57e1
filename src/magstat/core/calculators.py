"""Clinical calculators: CKD-EPI 2021, FEMg, loading-test retention, MDS, DRIs, elemental Mg.

Each takes plain numbers in the units its name states and returns a number; constants come
from the knowledge base (parameter ids in the docstrings), never from literals here.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping

from magstat.core.facts import FoodServing, Sex
from magstat.core.prepared import prepared
from magstat.errors import InvalidInputError
from magstat.kb.schema import DriRow, KnowledgeBase

__all__ = [
    "ckd_epi_2021",
    "ckd_epi_2021_from",
    "dri_for",
    "elemental_mg",
    "femg_percent",
    "food_frequency_mg",
    "heavy_drinking",
    "loading_retention_percent",
    "mds_band",
    "mds_kidney_points",
    "mg_mmol_to_meq",
    "mg_mmol_to_mg_dl",
]


class _Parameters(Mapping[str, float]):
    """A knowledge base's parameter values by id, read through ``kb.param`` (its errors too)."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self._kb = kb

    def __getitem__(self, key: str) -> float:
        return self._kb.param(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._kb.parameters)

    def __len__(self) -> int:
        return len(self._kb.parameters)


def ckd_epi_2021(kb: KnowledgeBase, creatinine_mg_dl: float, age_years: float, sex: Sex) -> float:
    """Estimated GFR (mL/min/1.73 m²) by the race-free CKD-EPI 2021 creatinine equation.

    eGFR = 142 × min(Scr/κ, 1)^α × max(Scr/κ, 1)^−1.200 × 0.9938^age [× 1.012 if female]
    (parameters ``ckd_epi.*``, source S99).

    Raises:
        InvalidInputError: creatinine is not positive.

    """
    return ckd_epi_2021_from(_Parameters(kb), creatinine_mg_dl, age_years, sex)


def ckd_epi_2021_from(
    params: Mapping[str, float], creatinine_mg_dl: float, age_years: float, sex: Sex
) -> float:
    """:func:`ckd_epi_2021` with the knowledge base's parameter values given (``prepared(kb).params``)."""
    if creatinine_mg_dl <= 0:
        raise InvalidInputError(
            "serum_creatinine", "must be positive", value=creatinine_mg_dl, allowed="> 0 mg/dL"
        )
    female = sex == "female"
    kappa = params["ckd_epi.kappa_female" if female else "ckd_epi.kappa_male"]
    alpha = params["ckd_epi.alpha_female" if female else "ckd_epi.alpha_male"]
    ratio = creatinine_mg_dl / kappa
    egfr: float = (
        params["ckd_epi.constant"]
        * min(ratio, 1.0) ** alpha
        * max(ratio, 1.0) ** params["ckd_epi.exponent_high"]
        * params["ckd_epi.age_base"] ** age_years
    )
    if female:
        egfr *= params["ckd_epi.female_factor"]
    return egfr


def femg_percent(
    kb: KnowledgeBase,
    urine_mg: float,
    serum_mg: float,
    urine_creatinine: float,
    serum_creatinine: float,
) -> float:
    """Fractional excretion of magnesium, percent.

    FEMg = (U_Mg × S_Cr) / (0.7 × S_Mg × U_Cr) × 100, the 0.7 being the ultrafilterable
    fraction of plasma magnesium (``femg.ultrafilterable_fraction``, S37). Magnesium values
    must share a unit, and so must the creatinine values.

    Raises:
        InvalidInputError: a denominator value is not positive.

    """
    if serum_mg <= 0 or urine_creatinine <= 0:
        raise InvalidInputError(
            "femg", "serum magnesium and urine creatinine must be positive", allowed="> 0"
        )
    fraction = kb.param("femg.ultrafilterable_fraction")
    return urine_mg * serum_creatinine / (fraction * serum_mg * urine_creatinine) * 100.0


def loading_retention_percent(dose_mmol: float, urine_mmol: float, baseline_mmol: float) -> float:
    """Share of an IV magnesium load retained: (1 − (urine − baseline) / dose) × 100.

    ``urine_mmol`` is the magnesium excreted in the collection after the load and
    ``baseline_mmol`` the excretion over the same time before it (S40c, S42).

    Raises:
        InvalidInputError: the dose is not positive.

    """
    if dose_mmol <= 0:
        raise InvalidInputError("loading_dose_mmol", "must be positive", value=dose_mmol, allowed="> 0")
    return (1.0 - (urine_mmol - baseline_mmol) / dose_mmol) * 100.0


def mg_mmol_to_mg_dl(kb: KnowledgeBase, mmol_l: float) -> float:
    """Magnesium mmol/L to mg/dL (molar mass from analyte ``magnesium``)."""
    return mmol_l * kb.analytes["magnesium"].molar_mass_g_mol / 10.0


def mg_mmol_to_meq(kb: KnowledgeBase, mmol_l: float) -> float:
    """Magnesium mmol/L to mEq/L (valence from analyte ``magnesium``)."""
    return mmol_l * kb.analytes["magnesium"].valence


def mds_kidney_points(kb: KnowledgeBase, egfr: float) -> int:
    """MDS kidney component: 2 if eGFR < 60, 1 if 60 ≤ eGFR < 90, else 0 (S2, S3)."""
    if egfr < kb.param("mds.egfr_reduced_below"):
        return 2
    if egfr < kb.param("mds.egfr_mild_below"):
        return 1
    return 0


def mds_band(kb: KnowledgeBase, score: int) -> str:
    """MDS band of later papers: 0–1 low, 2 middle, 3–5 high (S4, S5)."""
    if score >= kb.param("mds.band_high"):
        return "high"
    if score >= kb.param("mds.band_middle"):
        return "middle"
    return "low"


def heavy_drinking(kb: KnowledgeBase, drinks_per_day: float, sex: Sex | None) -> bool | None:
    """Heavy drinking as the MDS defines it: > 1 drink/day (women), > 2 (men) (S2, S3).

    Returns ``None`` when sex is unknown and the amount lies between the two cut-offs.
    """
    female_limit = kb.param("alcohol.heavy_female_above")
    male_limit = kb.param("alcohol.heavy_male_above")
    if sex == "female":
        return drinks_per_day > female_limit
    if sex == "male":
        return drinks_per_day > male_limit
    if drinks_per_day > max(female_limit, male_limit):
        return True
    if drinks_per_day <= min(female_limit, male_limit):
        return False
    return None


def dri_for(
    kb: KnowledgeBase,
    age_years: float,
    sex: Sex | None,
    pregnant: bool | None,
    lactating: bool | None,
) -> DriRow | None:
    """The DRI row of a life stage, or ``None`` if sex is needed and unknown."""
    state = "pregnancy" if pregnant else "lactation" if lactating else "none"
    p = prepared(kb)
    # The first row of the state whose age band holds and whose sex fits; a pregnancy or
    # lactation state without a row for the age falls back to the rows of no special state.
    for candidate in (state, "none") if state != "none" else (state,):
        bands = p.dri_bands.get(candidate)
        if bands is not None:
            lows, highs, rows_of_band = bands
            i = bisect_right(lows, age_years) - 1
            if i < 0 or not age_years < highs[i]:
                continue
            for row in rows_of_band[i]:
                if row.sex in ("any", sex):
                    return row
            return None
        age_band_found = False
        for row in p.dri_by_state.get(candidate, ()):
            if row.age_min <= age_years < row.age_max:
                if row.sex in ("any", sex):
                    return row
                age_band_found = True
        if age_band_found:
            return None
    return None


def elemental_mg(kb: KnowledgeBase, form: str | None, product_mg: float) -> float | None:
    """Elemental magnesium in ``product_mg`` of a salt, or ``None`` if its content is unknown."""
    if form is None:
        return None
    supplement = kb.supplements.get(form)
    if supplement is None or supplement.elemental_percent is None:
        return None
    return product_mg * supplement.elemental_percent / 100.0


def food_frequency_mg(kb: KnowledgeBase, servings: Iterable[FoodServing]) -> float:
    """Magnesium from a short food-frequency answer set, mg/day.

    Raises:
        InvalidInputError: a food is not in the knowledge base.

    """
    foods: Mapping[str, object] = kb.foods
    total = 0.0
    for i, item in enumerate(servings):
        food = kb.foods.get(item.food)
        if food is None:
            raise InvalidInputError(
                f"food_frequency[{i}].food",
                "unknown food",
                value=item.food,
                allowed=", ".join(sorted(foods)) or "(no foods in the knowledge base)",
            )
        total += food.mg_per_serving * item.servings_per_day
    return total
