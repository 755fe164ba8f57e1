"""Calculators against published worked examples and the brief's computed anchors."""

from __future__ import annotations

import pytest

from magstat.core import calculators as calc
from magstat.core.units import to_canonical
from magstat.errors import InvalidInputError

# CKD-EPI 2021 (Inker 2021, S99). The first two rows have published checks (S100a: ≈76;
# S100b: kidney.org calculator 71); the others were computed with the published formula in
# the clinical brief, section 13 (tolerance ±0.5 as the brief states).
CKD_EPI_CASES = [
    ("female", 55, 0.9, 75.5),
    ("male", 55, 1.2, 71.4),
    ("female", 30, 0.6, 123.8),
    ("male", 50, 1.0, 91.7),
    ("female", 40, 0.8, 95.5),
    ("male", 70, 2.0, 35.2),
    ("female", 65, 1.5, 38.4),
    ("male", 60, 3.5, 19.2),
]


@pytest.mark.parametrize(("sex", "age", "scr", "expected"), CKD_EPI_CASES)
def test_ckd_epi_2021_worked_examples(kb, sex, age, scr, expected):
    """CKD-EPI 2021 reproduces each worked example within 0.5 mL/min/1.73 m²."""
    assert expected == pytest.approx(calc.ckd_epi_2021(kb, scr, age, sex), abs=0.5)


def test_ckd_epi_2021_published_calculator_values(kb):
    """The two examples checked against published calculators agree to within rounding (±0.6)."""
    assert pytest.approx(calc.ckd_epi_2021(kb, 0.9, 55, "female"), abs=0.6) == 76
    assert pytest.approx(calc.ckd_epi_2021(kb, 1.2, 55, "male"), abs=0.6) == 71


def test_ckd_epi_refuses_non_positive_creatinine(kb):
    """A creatinine of zero is refused, not computed."""
    with pytest.raises(InvalidInputError):
        calc.ckd_epi_2021(kb, 0, 50, "male")


def test_creatinine_umol_to_mg_dl(kb):
    """µmol/L ÷ 88.4 = mg/dL (S99)."""
    assert pytest.approx(to_canonical(kb, "serum_creatinine", 88.4, "umol/L"), abs=0.002) == 1.0


@pytest.mark.parametrize(
    ("mmol", "mg_dl"),
    [(0.70, 1.70), (0.75, 1.82), (0.85, 2.07), (0.95, 2.31), (1.05, 2.55), (0.50, 1.22), (0.40, 0.97)],
)
def test_magnesium_unit_anchors(kb, mmol, mg_dl):
    """The brief's conversion anchors (section 2.4) hold both ways."""
    assert mg_dl == pytest.approx(calc.mg_mmol_to_mg_dl(kb, mmol), abs=0.006)
    assert mmol == pytest.approx(to_canonical(kb, "serum_mg", mg_dl, "mg/dL"), abs=0.003)


def test_magnesium_meq(kb):
    """1 mmol/L = 2 mEq/L, both ways."""
    assert pytest.approx(calc.mg_mmol_to_meq(kb, 0.85)) == 1.7
    assert pytest.approx(to_canonical(kb, "serum_mg", 1.7, "mEq/L")) == 0.85


def test_unknown_unit_refused(kb):
    """A unit that does not measure magnesium concentration is refused with the allowed units."""
    with pytest.raises(InvalidInputError) as err:
        to_canonical(kb, "serum_mg", 1.0, "mg/g")
    assert err.value.field == "unit"
    assert "mmol/L" in (err.value.allowed or "")


def test_femg_formula(kb):
    """FEMg = U_Mg × S_Cr / (0.7 × S_Mg × U_Cr) × 100 (S37)."""
    # U_Mg 3.2 mmol/L, S_Cr 0.9 mg/dL, S_Mg 0.58 mmol/L, U_Cr 80 mg/dL.
    assert pytest.approx(calc.femg_percent(kb, 3.2, 0.58, 80, 0.9), abs=0.001) == 8.867


def test_femg_unit_invariance(kb):
    """Creatinine in µmol/L on both sides gives the same FEMg as mg/dL on both sides."""
    in_mg = calc.femg_percent(kb, 2.0, 0.6, 100, 1.0)
    in_umol = calc.femg_percent(kb, 2.0, 0.6, 100 * 88.4, 1.0 * 88.4)
    assert in_mg == pytest.approx(in_umol)


def test_loading_retention(kb):
    """Rob 1999: retention = (1 − (urine − baseline)/dose) × 100."""
    assert pytest.approx(calc.loading_retention_percent(30, 21, 3)) == 40.0


@pytest.mark.parametrize(("egfr", "points"), [(95, 0), (90, 0), (89.9, 1), (60, 1), (59.9, 2), (12, 2)])
def test_mds_kidney_points(kb, egfr, points):
    """MDS kidney item: ≥ 90 → 0, 60–89 → 1, < 60 → 2 (S2, S3)."""
    assert points == calc.mds_kidney_points(kb, egfr)


@pytest.mark.parametrize(("score", "band"), [(0, "low"), (1, "low"), (2, "middle"), (3, "high"), (5, "high")])
def test_mds_band(kb, score, band):
    """MDS bands of the follow-up papers: 0–1 low, 2 middle, 3–5 high (S4, S5)."""
    assert band == calc.mds_band(kb, score)


@pytest.mark.parametrize(
    ("drinks", "sex", "heavy"),
    [
        (1.0, "female", False),
        (1.5, "female", True),
        (2.0, "male", False),
        (2.5, "male", True),
        (1.5, None, None),
        (3, None, True),
        (0.5, None, False),
    ],
)
def test_heavy_drinking(kb, drinks, sex, heavy):
    """Heavy drinking: > 1 drink/day for women, > 2 for men; unknown sex between the two is unknown."""
    assert heavy == calc.heavy_drinking(kb, drinks, sex)


def test_dri_lookup(kb):
    """The RDA of a 40-year-old woman is 320 mg and of a 25-year-old man 400 mg (S15)."""
    assert calc.dri_for(kb, 40, "female", False, False).rda_mg == 320
    assert calc.dri_for(kb, 25, "male", None, None).rda_mg == 400
    assert calc.dri_for(kb, 25, "male", None, None).ul_supplemental_mg == 350
