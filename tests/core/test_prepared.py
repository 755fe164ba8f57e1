"""The per-knowledge-base prepared tables, and the result classes' slot-storing constructors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil

import pytest

from magstat.core.prepared import prepared
from magstat.core.result import Action, Assessment, Finding, InputUsed
from magstat.errors import KnowledgeBaseError
from magstat.kb import load_dir
from tests.conftest import ROOT

KB_DIR = ROOT / "src" / "magstat" / "kb" / "data"


def test_prepared_once_per_knowledge_base_content(kb):
    """The same knowledge base gives the same prepared object; a changed one gets its own."""
    assert prepared(kb) is prepared(kb)


def test_a_changed_knowledge_base_is_prepared_anew(kb, tmp_path):
    """A knowledge base with a changed parameter is prepared from its own values."""
    folder = tmp_path / "kb"
    shutil.copytree(KB_DIR, folder)
    path = folder / "parameters.toml"
    text = path.read_text(encoding="utf-8")
    old = kb.parameters["labs.recent_days"].value
    changed, count = re.subn(
        r'(\[parameters\."labs\.recent_days"\]\nvalue = )[^\n]+', r"\g<1>12345", text, count=1
    )
    assert 1 == count
    path.write_text(changed, encoding="utf-8")
    other = load_dir(folder)
    assert old == prepared(kb).params["labs.recent_days"]
    assert 12345 == prepared(other).params["labs.recent_days"]


def test_prepared_tables_match_the_knowledge_base(kb):
    """Each prepared table says what the knowledge base's entries say."""
    p = prepared(kb)
    assert {k: v.value for k, v in kb.parameters.items()} == dict(p.params)
    for test in kb.tests.values():
        assert (test.canonical_unit, test.plausible_low, test.plausible_high) == p.lab_limits[test.id]
    for drug in kb.drugs.values():
        expected = {kb.drug_classes[c].mds_component for c in drug.classes} - {None}
        assert expected == set(p.mds_components_of[drug.id])
        assert ("magnesium_product" in drug.classes) == (drug.id in p.mg_product_drugs)
    assert [r for r in kb.interactions if r.check_mg] == list(p.check_mg_interactions)
    assert sorted(kb.dri, key=id) == sorted((r for rows in p.dri_by_state.values() for r in rows), key=id)
    for i, domain in enumerate(p.domains):
        for trigger in (*domain.domain.condition_triggers, *domain.domain.sign_triggers):
            assert i in p.domains_by_trigger[trigger]


def test_an_undefined_parameter_is_a_knowledge_base_error(kb):
    """Reading a parameter the knowledge base lacks names it, as KnowledgeBase.param does."""
    with pytest.raises(KnowledgeBaseError, match=re.escape("no.such")):
        prepared(kb).params["no.such"]


@pytest.mark.parametrize("cls", [InputUsed, Finding, Action, Assessment])
def test_result_classes_stay_frozen_dataclasses(cls):
    """The result classes built through their slots are still frozen, slotted dataclasses."""
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen
    assert "__dict__" not in dir(cls)


def test_slot_built_results_keep_defaults_equality_and_immutability():
    """A result built with defaults equals one built with every field, hashes alike, refuses assignment."""
    day = dt.date(2024, 1, 2)
    short = InputUsed("age", 70.0, "years", day)
    full = InputUsed(
        name="age", value=70.0, unit="years", date=day, source=None, matched_by=None, context=None
    )
    assert full == short
    assert hash(full) == hash(short)
    assert "InputUsed(name='age', value=70.0, unit='years'" in repr(short)
    with pytest.raises(dataclasses.FrozenInstanceError):
        short.value = 1.0  # type: ignore[misc]
    assert dataclasses.replace(short, value=71.0) == InputUsed("age", 71.0, "years", day)


def test_slot_built_results_refuse_wrong_arguments():
    """A missing or unknown argument is a TypeError, as with the generated constructor."""
    with pytest.raises(TypeError):
        InputUsed("age")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        InputUsed("age", 1.0, colour="red")  # type: ignore[call-arg]
