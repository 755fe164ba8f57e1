"""The fast builders of findings, inputs and actions make the objects the classes make."""

from __future__ import annotations

import dataclasses
import datetime as dt
import pickle

import pytest

from magstat.adapters.read import facts_from_data
from magstat.core import assess, result
from magstat.core.result import Action, Finding, InputUsed, new_action, new_finding, new_input
from magstat.demo import demo_patients

_PAIRS = [
    (InputUsed, result._InputUsedSlots),
    (Finding, result._FindingSlots),
    (Action, result._ActionSlots),
]


@pytest.mark.parametrize(("cls", "slots"), _PAIRS, ids=lambda x: x.__name__)
def test_builder_layout_is_the_class_layout(cls, slots):
    """Each builder's slotted twin has exactly the fields of the frozen class it becomes."""
    assert sorted(f.name for f in dataclasses.fields(cls)) == sorted(slots.__slots__)


def test_built_input_is_the_constructed_input():
    """new_input gives an InputUsed equal to the constructor's, with defaults, hash and repr."""
    day = dt.date(2024, 5, 1)
    for args, kwargs in (
        (("age", 70.0, "years"), {}),
        (("serum magnesium", 0.61, "mmol/L", day, "Observation/1", "LOINC 19123-9"), {}),
        (("condition", "CKD"), {"date": day, "source": "Condition/2", "context": "provisional"}),
    ):
        built = new_input(*args, **kwargs)
        made = InputUsed(*args, **kwargs)
        assert InputUsed is type(built)
        assert made == built
        assert hash(made) == hash(built)
        assert repr(made) == repr(built)
        assert made.to_dict() == built.to_dict()
        assert made == pickle.loads(pickle.dumps(built))


def test_built_finding_and_action_are_the_constructed_ones():
    """new_finding and new_action give objects equal to the constructors', defaults included."""
    inputs = (new_input("age", 70.0, "years"),)
    args = ("age.older", "risk_factor", "Age 70.", "minor", "age >= 65", inputs, ("S1",))
    assert Finding(*args) == new_finding(*args)
    assert Finding(*args, strength="moderate") == new_finding(*args, strength="moderate")
    assert Finding is type(new_finding(*args))
    assert Action("ns.x", "Do x.", "Because.", ("S2",)) == new_action("ns.x", "Do x.", "Because.", ("S2",))
    assert Action("ns.x", "Do x.", "Why.", (), "urgent") == new_action("ns.x", "Do x.", "Why.", (), "urgent")
    assert Action is type(new_action("ns.x", "Do x.", "Why.", ()))


def test_built_objects_stay_frozen():
    """A built object refuses assignment like one from the class's constructor."""
    built = new_finding("a", "b", "c", "d", "e", (), ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.text = "changed"  # type: ignore[misc]
    assert "changed" == dataclasses.replace(built, text="changed").text


def test_a_subclass_of_a_result_class_is_built_through_its_slots():
    """An instance of a subclass keeps its own class (filled through the slots' descriptors)."""

    class Marked(InputUsed):
        __slots__ = ()

    built = Marked("age", 70.0, "years")
    assert Marked is type(built)
    assert InputUsed("age", 70.0, "years").to_dict() == built.to_dict()
    assert (70.0, "years") == (built.value, built.unit)


def test_assess_fills_the_assessment_fields_in_their_order():
    """assess builds the Assessment positionally: its field order is the one that call follows."""
    assert [
        "status", "severity", "summary", "as_of", "patient_id", "age_years", "sex", "mds", "egfr",
        "serum_magnesium", "femg", "loading_test", "intake", "supplements", "findings", "next_steps",
        "safety", "relevance", "limitations", "missing_inputs", "unrecognised", "excluded", "kb_version",
        "kb_sha256", "sources", "deceased", "deceased_date", "severity_reason",
    ] == [f.name for f in dataclasses.fields(result.Assessment)]  # fmt: skip


def _fields_of(obj: object) -> list[object]:
    return [getattr(obj, f.name) for f in dataclasses.fields(obj)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("builder", "cls"),
    [
        (result.new_assessment, result.Assessment),
        (result.new_mds, result.MdsResult),
        (result.new_egfr, result.EgfrResult),
        (result.new_relevance, result.Relevance),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_positional_builders_make_what_the_class_makes(builder, cls, kb):
    """Each positional builder, given every field in order, makes the object the class makes."""
    made = []
    for _, _, data, as_of in demo_patients():
        if "resourceType" in data:
            continue
        answer = assess(facts_from_data(data, kb, as_of=as_of), kb)
        made.extend([answer, answer.mds, answer.egfr, *answer.relevance])
    examples = [obj for obj in made if type(obj) is cls]
    assert examples
    for obj in examples:
        args = _fields_of(obj)
        built = builder(*args)
        assert cls is type(built)
        assert cls(*args) == built
        assert repr(cls(*args)) == repr(built)
        assert obj.to_dict() == built.to_dict()
        assert built == pickle.loads(pickle.dumps(built))
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.sources = ()
    # The builder takes every field, no fewer.
    with pytest.raises(TypeError):
        builder(*_fields_of(examples[0])[:-1])
