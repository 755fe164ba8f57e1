"""The FHIR reader's shortcuts give the facts of the long way (magstat.adapters.fhir).

The reader leaves out, before making their rows, the Observations it would pass over
silently; keeps the knowledge base's answers per distinct value; and reads a DuckDB
projection straight into a row. Each must change nothing but the time taken.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from magstat.adapters.fhir import facts_from_fhir, facts_from_rows
from magstat.adapters.fhir.flatten import READ_TYPES, views_for_kb
from magstat.errors import InvalidInputError
from magstat.kb import KnowledgeBase

AS_OF = date(2024, 6, 30)
PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01", "gender": "female"}


def magnesium(rid: str, value: float = 0.71) -> dict[str, Any]:
    """A serum magnesium result of the patient."""
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2601-3", "display": "Magnesium"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-01-09",
        "valueQuantity": {
            "value": value,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }


def heart_rate(rid: str) -> dict[str, Any]:
    """A vital sign the knowledge base does not read."""
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-01-09",
        "valueQuantity": {"value": 72, "unit": "/min"},
    }


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    """A collection Bundle of the patient and ``resources``."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (PATIENT, *resources)],
    }


def rows_of(kb: KnowledgeBase, data: dict[str, Any]) -> list[Any]:
    """The rows an SQL engine's projection gives for a Bundle's resources."""
    flat = views_for_kb(kb)
    resources = [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] in READ_TYPES]
    return [
        flat.row_from_projection(
            r["resourceType"], json.dumps([r.get(k) for k in flat.keys[r["resourceType"]]]), index=i
        )
        for i, r in enumerate(resources)
    ]


def test_unread_observation_seen_first_keeps_its_id(kb):
    """An Observation the KB does not know, seen first, is the one read for its id: the later result is not."""
    data = bundle(heart_rate("o1"), magnesium("o1"))
    facts = facts_from_fhir(data, kb, as_of=AS_OF)
    assert () == facts.labs
    assert facts == facts_from_rows(rows_of(kb, data), kb, as_of=AS_OF)


def test_result_seen_first_keeps_its_id(kb):
    """A result seen before an unknown Observation of the same id is read."""
    data = bundle(magnesium("o1"), heart_rate("o1"), magnesium("o1", 0.5))
    facts = facts_from_fhir(data, kb, as_of=AS_OF)
    assert [0.71] == [lab.value for lab in facts.labs]
    assert facts == facts_from_rows(rows_of(kb, data), kb, as_of=AS_OF)


def test_cancelled_observation_with_odd_code_is_passed_over(kb):
    """A cancelled Observation is passed over before its code is read, even a malformed one."""
    odd = {**heart_rate("o2"), "status": "cancelled", "code": {"coding": "not a list"}}
    facts = facts_from_fhir(bundle(odd, magnesium("o1")), kb, as_of=AS_OF, strict=True)
    assert 1 == len(facts.labs)


def test_unknown_observation_with_malformed_code_is_still_refused(kb):
    """A malformed code is refused in strict mode even when it names nothing the KB knows."""
    odd = {**heart_rate("o2"), "code": {"coding": [{"code": 8867}]}}
    with pytest.raises(InvalidInputError) as caught:
        facts_from_fhir(bundle(odd), kb, as_of=AS_OF, strict=True)
    assert "code.coding[0].code" in caught.value.field
    lenient = facts_from_fhir(bundle(odd), kb, as_of=AS_OF, strict=False)
    assert 1 == len(lenient.excluded)


def test_answers_are_kept_per_knowledge_base(kb):
    """A knowledge base that does not know a test never gets another's memoised answer for it."""
    serum = kb.tests["serum_mg"]
    other = dataclasses.replace(
        kb,
        sha256="0" * 64,
        tests={**kb.tests, "serum_mg": dataclasses.replace(serum, loinc=(), text_patterns=("serum mg xyz",))},
    )
    data = bundle(magnesium("o1"))
    for _ in range(2):  # alternate, so that each reads after the other has answered
        assert 1 == len(facts_from_fhir(data, kb, as_of=AS_OF).labs)
        assert () == facts_from_fhir(data, other, as_of=AS_OF).labs


def test_repeated_values_give_the_same_facts_as_fresh_ones(kb):
    """Reading the same codes, units and values again (memoised) gives facts equal to the first reading."""
    data = bundle(magnesium("o1", 0.0), magnesium("o2", -0.0), magnesium("o3", 0.71), magnesium("o4", 0.71))
    first = facts_from_fhir(data, kb, as_of=AS_OF, strict=False)
    again = facts_from_fhir(data, kb, as_of=AS_OF, strict=False)
    assert repr(first) == repr(again)


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text("abc", max_size=2))
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "code", "value"]), inner, max_size=2),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(READ_TYPES), st.data())
def test_projection_reads_as_the_row_function(kb, rtype, data):
    """A projection with any values at the view's keys reads as the row the in-process path makes."""
    flat = views_for_kb(kb)
    keys = flat.keys[rtype]
    assert keys is not None
    chosen = data.draw(st.lists(st.sampled_from(keys), unique=True, max_size=6))
    resource = {k: data.draw(JSON) for k in chosen}
    resource = {k: v for k, v in resource.items() if v is not None}
    projection = json.dumps([resource.get(k) for k in keys])
    assert flat.row(rtype, resource) == flat.row_from_projection(rtype, projection).values
