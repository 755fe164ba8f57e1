"""Assessment to FHIR RiskAssessment: valid R4 for every shared and demo patient, never "certain", coded
outcome, a contained Device naming the knowledge base, basis references, and one JSON on CLI and REST."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import httpx
import pytest

from magstat import __version__
from magstat.adapters.cds_hooks.fhir_out import (
    DEVICE_ID,
    RISK_PROBABILITY,
    risk_assessment,
    risk_assessment_json,
)
from magstat.adapters.fhir import facts_from_fhir
from magstat.adapters.read import facts_from_data
from magstat.cli import main
from magstat.core import assess
from magstat.core.facts import Lab, Origin, PatientFacts
from magstat.demo import demo_patients
from magstat.errors import KnowledgeBaseError
from magstat.kb import load
from magstat.kb.schema import FILES, RISK_STATUSES, build
from tests.service.conftest import SYNTHEA, SYNTHEA_PY_FILES
from tests.service.ehr import load_bundle

riskassessment = pytest.importorskip(
    "fhir.resources.R4B.riskassessment", reason="fhir.resources not installed"
)

AS_OF = dt.date(2021, 6, 1)
SNOMED = "http://snomed.info/sct"


def validate(resource: dict) -> None:
    """The resource passes the FHIR R4B model (RiskAssessment and Device are the same in R4 and R4B)."""
    riskassessment.RiskAssessment.model_validate(resource)


def check(resource: dict, kb) -> None:
    """What every RiskAssessment must hold, whatever the patient."""
    validate(resource)
    assert "final" == resource["status"]
    assert "certain" not in json.dumps(resource["prediction"]).lower()
    [device] = resource["contained"]
    assert {"reference": f"#{DEVICE_ID}", "display": f"magstat {__version__}"} == resource["performer"]
    assert "Device" == device["resourceType"] and DEVICE_ID == device["id"]
    versions = {v["type"]["text"]: v["value"] for v in device["version"]}
    assert {
        "software": __version__,
        "knowledge base version": kb.version,
        "knowledge base sha256": kb.sha256,
    } == versions
    assert "magstat" == device["deviceName"][0]["name"]
    assert any(n["text"].startswith("Decision support, not a diagnosis") for n in resource["note"])
    for basis in resource.get("basis", []):
        assert basis["reference"].split("/")[0] in (
            "Observation",
            "Condition",
            "MedicationRequest",
            "MedicationStatement",
            "MedicationAdministration",
            "MedicationDispense",
            "Patient",
            "Procedure",
            "Encounter",
        ), basis


@pytest.mark.parametrize("path", SYNTHEA + SYNTHEA_PY_FILES, ids=lambda p: p.name[:24])
def test_every_shared_patient_gives_a_valid_risk_assessment(path: Path, kb) -> None:
    """Every Synthea and synthea-py patient gives a RiskAssessment that the FHIR models accept."""
    bundle = load_bundle(path)
    result = assess(facts_from_fhir(bundle, kb, as_of=AS_OF, strict=False), kb)
    resource = risk_assessment(result, kb, version=__version__)
    check(resource, kb)
    assert resource["subject"]["reference"].startswith("Patient/")
    assert "2021-06-01" == resource["occurrenceDateTime"]
    assert kb.version in resource["method"]["text"] and kb.sha256 in resource["method"]["text"]


@pytest.mark.parametrize("row", demo_patients(), ids=lambda r: r[0][:24])
def test_every_demo_patient_gives_a_valid_risk_assessment(row, kb) -> None:
    """Every built-in demo patient gives a valid RiskAssessment whose probability follows the KB mapping."""
    _name, _label, data, as_of = row
    result = assess(facts_from_data(data, kb, as_of=as_of, strict=False), kb)
    resource = risk_assessment(result, kb, version=__version__)
    check(resource, kb)
    mapping = kb.risk.statuses[result.status]
    codes = [c["code"] for c in resource["prediction"][0].get("qualitativeRisk", {}).get("coding", [])]
    assert ([mapping.probability] if mapping.probability else []) == codes


def test_deficiency_is_high_not_certain(kb) -> None:
    """A serum value below the lab range is a high likelihood of hypomagnesaemia (SNOMED CT), never certain."""
    facts = PatientFacts(
        as_of=dt.date(2024, 1, 10),
        patient_id="abc",
        labs=(Lab("serum_mg", 0.5, "mmol/L", dt.date(2024, 1, 9), origin=Origin("Observation/mg1")),),
    )
    result = assess(facts, kb)
    assert "deficient" == result.status
    resource = risk_assessment(result, kb, version="0.1.0")
    validate(resource)
    prediction = resource["prediction"][0]
    assert {"system": RISK_PROBABILITY, "code": "high", "display": "High likelihood"} == prediction[
        "qualitativeRisk"
    ]["coding"][0]
    assert {"system": SNOMED, "code": "190855004", "display": "Hypomagnesemia"} == prediction["outcome"][
        "coding"
    ][0]
    assert result.summary == prediction["rationale"]
    assert {"reference": "Observation/mg1"} in resource["basis"]
    assert f"{result.next_steps[0].text} ({result.next_steps[0].reason})" == resource["mitigation"]


def test_excess_is_coded_hypermagnesaemia(kb) -> None:
    """A serum value above the lab range predicts hypermagnesaemia (SNOMED CT 66978005) at a high likelihood."""
    facts = PatientFacts(
        as_of=dt.date(2024, 1, 10),
        patient_id="abc",
        labs=(Lab("serum_mg", 2.2, "mmol/L", dt.date(2024, 1, 9), origin=Origin("Observation/mg2")),),
    )
    result = assess(facts, kb)
    assert "excess" == result.status
    prediction = risk_assessment(result, kb, version="0.1.0")["prediction"][0]
    assert "66978005" == prediction["outcome"]["coding"][0]["code"]
    assert "high" == prediction["qualitativeRisk"]["coding"][0]["code"]


def test_indeterminate_has_no_qualitative_risk(kb) -> None:
    """Too little known: no qualitative risk (unknown is not low), and a subject without an id is a display."""
    result = assess(PatientFacts(as_of=dt.date(2024, 1, 10)), kb)
    assert "indeterminate" == result.status
    resource = risk_assessment(result, kb, version="0.1.0")
    validate(resource)
    assert "qualitativeRisk" not in resource["prediction"][0]
    assert "display" in resource["subject"]


def test_basis_names_conditions_and_medications(kb) -> None:
    """The basis lists the Condition and MedicationRequest resources that findings used, each once."""
    bundle = json.loads((Path(__file__).resolve().parents[2] / "examples" / "bundle.json").read_text())
    result = assess(facts_from_fhir(bundle, kb, as_of=AS_OF, strict=False), kb)
    refs = [b["reference"] for b in risk_assessment(result, kb, version="0.1.0").get("basis", [])]
    used = {
        i.source
        for f in result.findings
        for i in f.inputs
        if i.source and i.source.split("/")[0] in ("Condition", "MedicationRequest")
    }
    assert used, "the example bundle should have a condition or medication finding"
    assert used <= set(refs)
    assert len(refs) == len(set(refs))


def test_risk_assessment_is_deterministic(kb) -> None:
    """The same assessment gives the same bytes twice (no clock, no random id)."""
    result = assess(facts_from_fhir(load_bundle(SYNTHEA[0]), kb, as_of=AS_OF, strict=False), kb)
    assert risk_assessment_json(result, kb, version="1") == risk_assessment_json(result, kb, version="1")


def test_every_status_maps_to_a_probability_that_is_not_certain(kb) -> None:
    """risk.toml maps each status once; only indeterminate has no probability, none is certain."""
    assert sorted(RISK_STATUSES) == sorted(kb.risk.statuses)
    assert {"indeterminate"} == {s for s, m in kb.risk.statuses.items() if m.probability is None}
    assert "certain" not in {m.probability for m in kb.risk.statuses.values()}
    assert RISK_PROBABILITY == kb.risk.probability_system


def test_kb_statuses_match_the_core(kb) -> None:
    """The statuses risk.toml must map are exactly the statuses the core can give."""
    from typing import get_args  # noqa: PLC0415

    from magstat.core.result import Status  # noqa: PLC0415

    assert sorted(get_args(Status)) == sorted(RISK_STATUSES)


def _documents() -> tuple[dict, dict]:
    import tomllib  # noqa: PLC0415
    from importlib import resources  # noqa: PLC0415

    folder = resources.files("magstat.kb") / "data"
    raw = {name: (folder / name).read_bytes() for name in FILES}
    return {name: tomllib.loads(data.decode()) for name, data in raw.items()}, raw


def test_loader_refuses_a_certain_probability() -> None:
    """A risk.toml that maps a status to 'certain' is refused by the loader, naming the file and key."""
    docs, raw = _documents()
    docs = copy.deepcopy(docs)
    docs["risk.toml"]["statuses"]["deficient"]["probability"] = "certain"
    with pytest.raises(KnowledgeBaseError, match=r"risk.toml:statuses.deficient.probability"):
        build(docs, raw)


def test_loader_refuses_a_missing_status_or_outcome() -> None:
    """A risk.toml without a status, or naming an unknown outcome, or with a half code, is refused."""
    docs, raw = _documents()
    broken = copy.deepcopy(docs)
    del broken["risk.toml"]["statuses"]["at_risk"]
    with pytest.raises(KnowledgeBaseError, match="statuses must be"):
        build(broken, raw)
    broken = copy.deepcopy(docs)
    broken["risk.toml"]["statuses"]["at_risk"]["outcome"] = "scurvy"
    with pytest.raises(KnowledgeBaseError, match="unknown outcome 'scurvy'"):
        build(broken, raw)
    broken = copy.deepcopy(docs)
    del broken["risk.toml"]["outcomes"]["excess"]["code"]
    with pytest.raises(KnowledgeBaseError, match="all or none"):
        build(broken, raw)


def test_outcome_codes_are_cited_terminology(kb) -> None:
    """Each coded outcome cites a terminology source (the code's verification)."""
    for outcome in kb.risk.outcomes.values():
        if outcome.code:
            assert any(kb.sources[s].evidence_level == "terminology" for s in outcome.sources), outcome.id
    assert load().risk == kb.risk


@pytest.mark.parametrize(
    "path",
    [SYNTHEA[0], SYNTHEA_PY_FILES[0], Path(__file__).resolve().parents[2] / "examples" / "patient.yaml"],
)
def test_cli_and_rest_give_the_same_bytes(path: Path, demo_server, capsys) -> None:
    """`magstat assess --format fhir` prints exactly the body of POST /assess?format=fhir."""
    assert 0 == main(["assess", str(path), "--format", "fhir", "--as-of", "2021-06-01", "--lenient"])
    printed = capsys.readouterr().out
    body = path.read_bytes()
    headers = {"Content-Type": "application/yaml" if path.suffix == ".yaml" else "application/json"}
    if path.suffix == ".gz":
        headers["Content-Encoding"] = "gzip"
    response = httpx.post(
        demo_server.url("/assess?format=fhir&as_of=2021-06-01"), content=body, headers=headers, timeout=60
    )
    assert 200 == response.status_code, response.text[:300]
    assert "application/fhir+json" == response.headers["content-type"].split(";")[0]
    assert printed == response.text
    validate(json.loads(printed))
