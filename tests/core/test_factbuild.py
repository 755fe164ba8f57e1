"""The fast fact builders make the objects the classes' own constructors make, for any arguments."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import Any

import pytest

from magstat.core import factbuild
from magstat.core.facts import ConditionFact, Lab, Medication, Origin, SignFact

BUILDERS = [
    (Origin, factbuild.origin),
    (Lab, factbuild.lab),
    (Medication, factbuild.medication),
    (ConditionFact, factbuild.condition_fact),
    (SignFact, factbuild.sign_fact),
]


def _value(rng: random.Random) -> Any:
    """A random value of one of the kinds the fact fields hold (or not: the builders do not check)."""
    kind = rng.randrange(9)
    if kind == 0:
        return None
    if kind == 1:
        return "".join(rng.choice("abcé µ-/") for _ in range(rng.randrange(6)))
    if kind == 2:
        return rng.uniform(-1e6, 1e6)
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return dt.date(2000, 1, 1) + dt.timedelta(days=rng.randrange(10_000))
    if kind == 5:
        return tuple(rng.choice(["ppi", "loop_diuretic", "x"]) for _ in range(rng.randrange(3)))
    if kind == 6:
        return Origin(rng.choice([None, "Observation/1"]), rng.choice([None, "LOINC 19123-9"]))
    if kind == 7:
        return rng.randrange(-5, 5)
    return ()


def _fields(made: Any) -> list[tuple[str, Any]]:
    """Every field of a fact, by name, as read from the object."""
    return [(f.name, getattr(made, f.name)) for f in dataclasses.fields(made)]


@pytest.mark.parametrize(("cls", "build"), BUILDERS, ids=[c.__name__ for c, _ in BUILDERS])
def test_builders_equal_the_constructor_on_random_arguments(cls, build):
    """For random values of every field, given by position, by name or left to their defaults, a builder equals the constructor."""
    assert build is not cls
    rng = random.Random(f"factbuild-{cls.__name__}")
    fields = dataclasses.fields(cls)
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for _ in range(500):
        values = {f.name: _value(rng) for f in fields}
        given = {name: value for name, value in values.items() if name in required or rng.random() < 0.6}
        expected, made = cls(**given), build(**given)
        assert type(expected) is type(made)
        assert expected == made
        assert _fields(expected) == _fields(made)
        positional = [values[f.name] for f in fields]
        assert cls(*positional) == build(*positional)


@pytest.mark.parametrize(("cls", "build"), BUILDERS, ids=[c.__name__ for c, _ in BUILDERS])
def test_defaults_are_the_classes_and_factories_run_per_object(cls, build):
    """Left out, every field takes the class's default; a default_factory gives each object its own value."""
    fields = dataclasses.fields(cls)
    required = {
        f.name: f"value-{f.name}"
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    assert _fields(cls(**required)) == _fields(build(**required))
    factories = [f.name for f in fields if f.default_factory is not dataclasses.MISSING]
    if factories:
        first, second = build(**required), build(**required)
        assert all(getattr(first, name) is not getattr(second, name) for name in factories)


def test_built_facts_stay_frozen_and_hash_as_the_constructed_ones():
    """A built fact refuses assignment like a constructed one, and hashes the same."""
    made = factbuild.lab(
        "serum_mg", 0.7, "mmol/L", when=dt.date(2020, 1, 1), origin=Origin("Observation/1", "LOINC 19123-9")
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.value = 1.0  # type: ignore[misc]
    same = Lab(
        "serum_mg", 0.7, "mmol/L", when=dt.date(2020, 1, 1), origin=Origin("Observation/1", "LOINC 19123-9")
    )
    assert hash(same) == hash(made)


def test_a_builder_refuses_what_the_constructor_refuses():
    """Missing, unknown or repeated arguments raise TypeError, as they do for the constructor."""
    for call in (
        lambda f: f("serum_mg"),
        lambda f: f("t", 1.0, "u", colour="red"),
        lambda f: f("t", 1.0, "u", test="t"),
    ):
        with pytest.raises(TypeError):
            call(Lab)
        with pytest.raises(TypeError):
            call(factbuild.lab)


def test_a_class_the_road_does_not_fit_is_built_by_its_constructor():
    """Without slots, with __post_init__ or with a keyword-only field, the builder is the class itself."""

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            object.__setattr__(self, "a", self.a + 1)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        a: int

    for cls in (NoSlots, PostInit, KeywordOnly):
        assert cls is factbuild.builder(cls)


def test_a_new_field_is_built_too():
    """A slotted dataclass with any fields gets a builder that sets every one of them."""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Later:
        a: int
        b: str = "b"
        c: tuple[str, ...] = dataclasses.field(default_factory=tuple)
        d: Origin = dataclasses.field(default_factory=Origin)

    build = factbuild.builder(Later)
    assert build is not Later
    assert Later(1) == build(1)
    assert Later(1, "x", ("y",), Origin("r")) == build(1, "x", ("y",), Origin("r"))
    assert Later(a=2, d=Origin(None, "m")) == build(a=2, d=Origin(None, "m"))
