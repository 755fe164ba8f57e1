"""Unit handling: UCUM-style unit strings to each test's canonical unit.

Conversions between mass, amount and charge (mg/dL, mmol/L, mEq/L) use the analyte's molar
mass and valence from the knowledge base, so every factor traces to a cited entry. A unit that
is not recognised, or that does not fit the test, is refused: never guessed.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from dataclasses import dataclass

from magstat.errors import InvalidInputError
from magstat.kb.schema import KnowledgeBase, LabTest

__all__ = ["Unit", "convert", "normalise_unit", "parse_unit", "to_canonical"]


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit as a dimension and a factor to that dimension's base unit."""

    dimension: str
    factor: float


# dimension -> base unit: amount_conc mmol/L, mass_conc mg/L, charge_conc mEq/L,
# amount_rate mmol/d, mass_rate mg/d, charge_rate mEq/d, gfr mL/min/1.73 m2, clearance mL/min,
# percent %, score {score}, drinks {drinks}/d.
_UNITS: dict[str, Unit] = {
    "mmol/l": Unit("amount_conc", 1.0),
    "umol/l": Unit("amount_conc", 1e-3),
    "nmol/l": Unit("amount_conc", 1e-6),
    "mol/l": Unit("amount_conc", 1e3),
    "mg/dl": Unit("mass_conc", 10.0),
    "mg/l": Unit("mass_conc", 1.0),
    "ug/ml": Unit("mass_conc", 1.0),
    "ug/dl": Unit("mass_conc", 0.01),
    "g/l": Unit("mass_conc", 1e3),
    "g/dl": Unit("mass_conc", 1e4),
    "meq/l": Unit("charge_conc", 1.0),
    "eq/l": Unit("charge_conc", 1e3),
    "mmol/d": Unit("amount_rate", 1.0),
    "mmol/(24.h)": Unit("amount_rate", 1.0),
    "mmol/24.h": Unit("amount_rate", 1.0),
    "mmol/24h": Unit("amount_rate", 1.0),
    "umol/d": Unit("amount_rate", 1e-3),
    "mg/d": Unit("mass_rate", 1.0),
    "mg/(24.h)": Unit("mass_rate", 1.0),
    "mg/24.h": Unit("mass_rate", 1.0),
    "mg/24h": Unit("mass_rate", 1.0),
    "g/d": Unit("mass_rate", 1e3),
    "g/(24.h)": Unit("mass_rate", 1e3),
    "meq/d": Unit("charge_rate", 1.0),
    "meq/(24.h)": Unit("charge_rate", 1.0),
    "ml/min/{1.73_m2}": Unit("gfr", 1.0),
    "ml/min/1.73_m2": Unit("gfr", 1.0),
    "ml/min/1.73m2": Unit("gfr", 1.0),
    "ml/min/(1.73.m2)": Unit("gfr", 1.0),
    "ml/min/{1.73m2}": Unit("gfr", 1.0),
    "ml/min": Unit("clearance", 1.0),
    "%": Unit("percent", 1.0),
    "{score}": Unit("score", 1.0),
    "score": Unit("score", 1.0),
    "{drinks}/d": Unit("drinks", 1.0),
    "{drink}/d": Unit("drinks", 1.0),
    "{drinks}/day": Unit("drinks", 1.0),
    "drinks/d": Unit("drinks", 1.0),
    "drinks/day": Unit("drinks", 1.0),
    "/d": Unit("drinks", 1.0),
    "{#}/d": Unit("drinks", 1.0),
}

# Dimensions that stand for the same quantity and can be converted with molar mass/valence.
_FAMILY = {
    "amount_conc": "conc",
    "mass_conc": "conc",
    "charge_conc": "conc",
    "amount_rate": "rate",
    "mass_rate": "rate",
    "charge_rate": "rate",
}


def normalise_unit(unit: str) -> str:
    """Fold the spellings of one unit together (case, micro sign, spaces, 'day', '24 h')."""
    text = unit.strip().replace("µ", "u").replace("μ", "u").replace(" ", "")
    lowered = text.lower()
    for long, short in (("/day", "/d"), ("/24hr", "/24h"), ("/24hours", "/24h")):
        if lowered.endswith(long):
            lowered = lowered[: -len(long)] + short
    return lowered


def parse_unit(unit: str) -> Unit | None:
    """Return the :class:`Unit` of a unit string, or ``None`` if it is not recognised."""
    return _UNITS.get(normalise_unit(unit))


def convert(kb: KnowledgeBase, test: LabTest, value: float, source: Unit, target: Unit) -> float:
    """Convert ``value`` between two units of the same quantity for ``test``'s analyte."""
    if source.dimension == target.dimension:
        return value * source.factor / target.factor
    base = value * source.factor
    analyte = kb.analytes[test.analyte] if test.analyte else None
    if analyte is None:
        raise ValueError(f"{test.id} has no analyte to convert {source} to {target}")
    # Bring to amount (mmol), then to the target dimension.
    kind_from = source.dimension.split("_")[0]
    kind_to = target.dimension.split("_")[0]
    if kind_from == "mass":
        amount = base / analyte.molar_mass_g_mol  # mg / (g/mol) = mmol
    elif kind_from == "charge":
        amount = base / analyte.valence
    else:
        amount = base
    if kind_to == "mass":
        out = amount * analyte.molar_mass_g_mol
    elif kind_to == "charge":
        out = amount * analyte.valence
    else:
        out = amount
    return out / target.factor


def allowed_units(kb: KnowledgeBase, test: LabTest) -> list[str]:
    """The unit spellings that can be read for ``test`` (for error messages)."""
    target = parse_unit(test.canonical_unit)
    if target is None:
        return [test.canonical_unit]
    family = _FAMILY.get(target.dimension)
    preferred = {
        "amount_conc": ["mmol/L", "umol/L"],
        "mass_conc": ["mg/dL", "mg/L", "g/dL", "g/L"],
        "charge_conc": ["mEq/L"],
        "amount_rate": ["mmol/d"],
        "mass_rate": ["mg/d", "mg/(24.h)"],
        "charge_rate": ["mEq/d"],
    }
    out: list[str] = []
    for dimension, names in preferred.items():
        if dimension == target.dimension or (
            family is not None
            and _FAMILY.get(dimension) == family
            and test.analyte is not None
            and (dimension not in {"charge_conc", "charge_rate"} or kb.analytes[test.analyte].valence)
        ):
            out.extend(names)
    return out or [test.canonical_unit]


def to_canonical(kb: KnowledgeBase, test_id: str, value: float, unit: str) -> float:
    """Convert a reported value to the canonical unit of knowledge-base test ``test_id``.

    Raises:
        InvalidInputError: the unit is not recognised or does not measure this test
            (field ``unit``).

    """
    test = kb.tests[test_id]
    target = parse_unit(test.canonical_unit)
    if target is None:  # a knowledge-base error, caught by the kb tests
        raise ValueError(f"{test_id}: canonical unit {test.canonical_unit!r} is not known")
    source = parse_unit(unit)
    ok = source is not None and (
        source.dimension == target.dimension
        or (
            _FAMILY.get(source.dimension) is not None
            and _FAMILY.get(source.dimension) == _FAMILY.get(target.dimension)
            and test.analyte is not None
        )
    )
    # eGFR is by definition indexed to 1.73 m2; some systems label it plain mL/min.
    if source is not None and source.dimension == "clearance" and target.dimension == "gfr":
        ok = True
        source = target
    if not ok or source is None:
        raise InvalidInputError(
            "unit",
            f"unit not recognised for {test.name}",
            value=unit,
            allowed=", ".join(allowed_units(kb, test)),
        )
    # Round away floating-point noise (1.822875 mg/dL is exactly 0.75 mmol/L, not 0.7499999999):
    # no laboratory reports ten significant decimals, and thresholds must compare equal.
    return round(convert(kb, test, value, source, target), 10)
