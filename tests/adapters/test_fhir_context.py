"""FHIR context read into facts: Condition statuses and dates, sign text, Observation answers, death."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from magstat.adapters.document import facts_from_document
from magstat.adapters.fhir import facts_from_fhir
from magstat.errors import InvalidInputError
from tests import context_cases as cases

AS_OF = cases.AS_OF


def read(kb, *resources: dict[str, Any]):
    """Facts of a bundle of the resources (with the cases' Patient)."""
    return facts_from_fhir(cases.bundle(cases.patient(), *resources), kb, as_of=AS_OF)


def test_denial_text_gives_three_negated_signs(kb):
    """A Condition 'Patient denies tetany, seizures or muscle cramps' gives three signs reported absent."""
    facts = facts_from_fhir(cases.denial(), kb, as_of=AS_OF)
    assert [
        ("tetany", False, "negated", "denies"),
        ("seizure", False, "negated", "denies"),
        ("muscle_cramps", False, "negated", "denies"),
    ] == [(s.sign, s.present, s.context, s.trigger) for s in facts.signs]
    (condition,) = facts.conditions or ()
    assert ("tetany", "seizure", "muscle_cramps") == condition.signs


@pytest.mark.parametrize("verification", ["refuted", "entered-in-error"])
def test_refuted_condition_is_dropped(kb, verification):
    """verificationStatus refuted or entered-in-error: the Condition is not read at all."""
    c = cases.condition("c1", snomed="91175000", verificationStatus={"coding": [{"code": verification}]})
    facts = read(kb, c)
    assert ((), ()) == (tuple(facts.conditions or ()), facts.signs)


def test_provisional_condition_is_noted(kb):
    """A provisional diagnosis is read and keeps its verification status, category and onset."""
    c = cases.condition(
        "c1",
        snomed="44054006",
        verificationStatus={"coding": [{"code": "provisional"}]},
        category=[{"coding": [{"code": "problem-list-item"}]}],
        onsetPeriod={"start": "2020-01-01"},
    )
    (fact,) = read(kb, c).conditions or ()
    assert ("type2_diabetes", True, "provisional", "problem-list-item", dt.date(2020, 1, 1)) == (
        fact.condition,
        fact.current,
        fact.verification,
        fact.category,
        fact.onset,
    )


@pytest.mark.parametrize(
    ("extra", "current", "context"),
    [
        ({"clinicalStatus": {"coding": [{"code": "resolved"}]}}, False, "resolved"),
        ({"clinicalStatus": {"coding": [{"code": "remission"}]}}, False, "remission"),
        ({"abatementDateTime": "2024-01-01"}, False, "resolved"),
        ({"abatementDateTime": "2024-06-01"}, True, "current"),
        ({"abatementPeriod": {"start": "2023-01-01", "end": "2023-02-01"}}, False, "resolved"),
        ({"abatementAge": {"value": 60, "code": "a"}}, False, "resolved"),
    ],
)
def test_condition_status_and_abatement(kb, extra, current, context):
    """clinicalStatus and abatement[x] (dateTime, Period, Age) decide whether a condition is current."""
    c = cases.condition("c1", snomed="44054006", **extra)
    (fact,) = read(kb, c).conditions or ()
    assert (current, context) == (fact.current, fact.context)


def test_onset_age_is_a_date(kb):
    """onsetAge 20 years is read as the date 20 years after the birth date."""
    c = cases.condition("c1", snomed="91175000", onsetAge={"value": 20, "unit": "years", "code": "a"})
    (sign,) = read(kb, c).signs
    assert dt.date(1980, 3, 2) == sign.when


def test_epilepsy_is_chronic_not_a_seizure(kb):
    """Epilepsy (SNOMED CT 84757009) gives the seizure sign only in context 'chronic'."""
    (sign,) = read(kb, cases.condition("c1", snomed="84757009", text="Epilepsy")).signs
    assert ("seizure", "chronic") == (sign.sign, sign.context)


def test_observation_answer_no_is_negated(kb):
    """An Observation of tetany answered false is a sign reported absent, in context 'negated'."""
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "Tetany"},
        "effectiveDateTime": "2024-04-30",
        "valueBoolean": False,
    }
    (sign,) = read(kb, obs).signs
    assert ("tetany", False, "negated", "valueBoolean", dt.date(2024, 4, 30)) == (
        sign.sign,
        sign.present,
        sign.context,
        sign.trigger,
        sign.when,
    )


@pytest.mark.parametrize(
    ("death", "deceased", "date"),
    [
        ({"deceasedDateTime": "2023-01-10T08:00:00+01:00"}, True, dt.date(2023, 1, 10)),
        ({"deceasedDateTime": "2024-05-01"}, True, dt.date(2024, 5, 1)),
        ({"deceasedDateTime": "2025-01-10"}, False, dt.date(2025, 1, 10)),
        ({"deceasedBoolean": True}, True, None),
        ({"deceasedBoolean": False}, False, None),
        ({}, None, None),
    ],
)
def test_patient_deceased(kb, death, deceased, date):
    """deceased[x]: a date on or before as_of is death, a later one is not yet; a boolean is taken as is."""
    facts = facts_from_fhir(cases.bundle(cases.patient(**death)), kb, as_of=AS_OF)
    assert (deceased, date) == (facts.deceased, facts.deceased_date)


def test_bad_deceased_boolean_is_refused(kb):
    """deceasedBoolean that is not true/false is refused, naming the field."""
    with pytest.raises(InvalidInputError, match="deceasedBoolean"):
        facts_from_fhir(cases.bundle(cases.patient(deceasedBoolean="yes")), kb, as_of=AS_OF)


def test_document_signs_and_death(kb):
    """A patient document: a denial in the signs list, a deceased_date, and a denial as a condition."""
    facts = facts_from_document(
        {
            "signs": ["Patient denies tetany, seizures or muscle cramps"],
            "conditions": ["Mother has tremor"],
            "deceased_date": "2024-04-01",
        },
        kb,
        as_of=AS_OF,
    )
    assert [("tetany", False), ("seizure", False), ("muscle_cramps", False), ("tremor", True)] == [
        (s.sign, s.present) for s in facts.signs
    ]
    assert "family" == facts.signs[-1].context
    assert (True, dt.date(2024, 4, 1)) == (facts.deceased, facts.deceased_date)


def test_document_conflicting_death_is_refused(kb):
    """deceased false with a deceased_date is refused."""
    with pytest.raises(InvalidInputError, match="deceased"):
        facts_from_document({"deceased": False, "deceased_date": "2024-01-01"}, kb, as_of=AS_OF)
