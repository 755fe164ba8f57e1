"""Assessment to FHIR RiskAssessment: valid against the FHIR models, with basis, prediction and method."""

from __future__ import annotations

import datetime as dt

import pytest

from magstat.adapters.cds_hooks.fhir_out import RISK_PROBABILITY, risk_assessment
from magstat.adapters.fhir import facts_from_fhir
from magstat.core import assess
from magstat.core.facts import Lab, Origin, PatientFacts
from tests.service.conftest import SYNTHEA, SYNTHEA_PY_FILES
from tests.service.ehr import load_bundle

riskassessment = pytest.importorskip(
    "fhir.resources.R4B.riskassessment", reason="fhir.resources not installed"
)


def validate(resource: dict) -> None:
    """The resource passes the FHIR R4B model (the RiskAssessment of R4 and R4B is the same)."""
    riskassessment.RiskAssessment.model_validate(resource)


@pytest.mark.parametrize("path", SYNTHEA[::3] + SYNTHEA_PY_FILES[::2], ids=lambda p: p.name[:20])
def test_synthetic_patients_give_valid_risk_assessments(path, kb):
    """Synthetic Synthea patients give RiskAssessments that the FHIR models accept, with a basis."""
    bundle = load_bundle(path)
    facts = facts_from_fhir(bundle, kb, as_of=dt.date(2021, 6, 1), strict=False)
    result = assess(facts, kb)
    resource = risk_assessment(result, kb, version="0.1.0")
    validate(resource)
    assert "final" == resource["status"]
    assert resource["subject"]["reference"].startswith("Patient/")
    assert "2021-06-01" == resource["occurrenceDateTime"]
    assert kb.version in resource["method"]["text"] and kb.sha256 in resource["method"]["text"]
    for basis in resource.get("basis", []):
        assert "/" in basis["reference"]


def test_deficiency_prediction(kb):
    """A deficiency is a certain risk of the outcome, with the summary as rationale."""
    facts = PatientFacts(
        as_of=dt.date(2024, 1, 10),
        patient_id="abc",
        labs=(Lab("serum_mg", 0.5, "mmol/L", dt.date(2024, 1, 9), origin=Origin("Observation/mg1")),),
    )
    result = assess(facts, kb)
    resource = risk_assessment(result, kb, version="0.1.0")
    validate(resource)
    prediction = resource["prediction"][0]
    assert {"system": RISK_PROBABILITY, "code": "certain", "display": "Certain"} == prediction[
        "qualitativeRisk"
    ]["coding"][0]
    assert result.summary == prediction["rationale"]
    assert {"reference": "Observation/mg1"} in resource["basis"]
    assert any("Decision support, not a diagnosis" in n["text"] for n in resource["note"])


def test_indeterminate_has_no_qualitative_risk(kb):
    """Too little known: no qualitative risk (unknown is not low), and a subject without an id is a display."""
    result = assess(PatientFacts(as_of=dt.date(2024, 1, 10)), kb)
    assert "indeterminate" == result.status
    resource = risk_assessment(result, kb, version="0.1.0")
    validate(resource)
    assert "qualitativeRisk" not in resource["prediction"][0]
    assert "display" in resource["subject"]
