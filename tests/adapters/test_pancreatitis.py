"""Acute and chronic pancreatitis as minor risk factors, by code and by name (S670-S672)."""

from __future__ import annotations

import copy

import pytest

from magstat.adapters.fhir.extract import facts_from_fhir
from magstat.core import assess
from tests import safety_cases as cases
from tests.strategies import KB


def _findings(bundle: dict) -> dict[str, str]:
    result = assess(facts_from_fhir(bundle, KB, as_of=cases.AS_OF), KB)
    return {f.id: f.weight for f in result.findings}


def _coded(text: str, snomed: str | None, icd10: str | None) -> dict:
    case = cases.Case("panc", birth="1975-01-01", gender="male").mg(0.8).condition(text)
    bundle = case.bundle()
    condition = bundle["entry"][-1]["resource"]
    codings = []
    if snomed:
        codings.append({"system": cases.SNOMED, "code": snomed})
    if icd10:
        codings.append({"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": icd10})
    condition["code"] = {"coding": codings}  # no text: the codes alone must be recognised
    return copy.deepcopy(bundle)


@pytest.mark.parametrize(
    ("snomed", "icd10", "expected"),
    [
        ("197456007", None, "condition.acute_pancreatitis"),
        (None, "K85.10", "condition.acute_pancreatitis"),
        ("235494005", None, "condition.chronic_pancreatitis"),
        (None, "K86.0", "condition.chronic_pancreatitis"),
    ],
)
def test_pancreatitis_is_recognised_by_its_codes(snomed, icd10, expected):
    assert _findings(_coded("x", snomed, icd10)).get(expected) == "minor"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Acute necrotising pancreatitis", "condition.acute_pancreatitis"),
        ("Gallstone pancreatitis", "condition.acute_pancreatitis"),
        ("Chronic calcific pancreatitis", "condition.chronic_pancreatitis"),
    ],
)
def test_pancreatitis_is_recognised_by_name(text, expected):
    case = cases.Case("panc-text", birth="1975-01-01", gender="male").mg(0.8).condition(text)
    assert _findings(case.bundle()).get(expected) == "minor"


def test_other_diseases_of_the_pancreas_are_not_pancreatitis():
    # K86.81 is exocrine pancreatic insufficiency, not chronic pancreatitis (K86.0, K86.1).
    findings = _findings(_coded("x", None, "K86.81"))
    assert not {"condition.acute_pancreatitis", "condition.chronic_pancreatitis"} & set(findings)
