"""The context rules through ``magstat assess --format json``: constructed cases and Synthea patients."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from magstat.cli import main
from magstat.kb import load
from tests import context_cases as cases
from tests.conftest import DATA

SYNTHEA = sorted((DATA / "fhir" / "synthea-context").glob("*.json.gz"))


def assess(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bundle: dict[str, Any], as_of: str
) -> dict[str, Any]:
    """Write the bundle, run the CLI on it and return its JSON."""
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    assert 0 == main(["assess", str(path), "--as-of", as_of, "--format", "json"])
    return json.loads(capsys.readouterr().out)


def ids(result: dict[str, Any]) -> list[str]:
    """The finding ids of an assessment."""
    return [f["id"] for f in result["findings"]]


AS_OF = cases.AS_OF.isoformat()


def test_denied_signs_are_not_signs(capsys, tmp_path):
    """'Patient denies tetany, seizures or muscle cramps' on a thiazide: at risk, no sign, no URGENT step."""
    result = assess(capsys, tmp_path, cases.denial(), AS_OF)
    assert "at_risk" == result["status"]
    assert None is result["severity"]
    assert [] == [i for i in ids(result) if i.startswith("sign.")]
    contexts = {f["id"]: f["inputs"][0]["context"] for f in result["findings"] if f["category"] == "context"}
    assert {
        "context.sign.tetany": 'negated by "denies"',
        "context.sign.seizure": 'negated by "denies"',
        "context.sign.muscle_cramps": 'negated by "denies"',
    } == contexts
    assert [] == [s for s in result["next_steps"] if s["priority"] == "urgent"]
    assert "ns.measure_serum_mg" in [s["id"] for s in result["next_steps"]]
    assert [] == result["unrecognised"]  # the entry was read: not listed as unrecognised


def test_reported_signs_still_count(capsys, tmp_path):
    """The same entry saying 'reports' gives the three signs and the urgent serum Mg step."""
    result = assess(capsys, tmp_path, cases.denial("reports"), AS_OF)
    assert "likely_deficient" == result["status"]
    assert {"sign.tetany", "sign.seizure", "sign.muscle_cramps"} <= set(ids(result))
    urgent = [s["id"] for s in result["next_steps"] if s["priority"] == "urgent"]
    assert ["ns.measure_serum_mg"] == urgent


def test_epilepsy_from_birth_is_not_a_seizure(capsys, tmp_path):
    """Epilepsy since birth with Mg 0.68: mild deficiency with oral repletion, no seizure sign, no IV."""
    result = assess(capsys, tmp_path, cases.epilepsy_from_birth(), AS_OF)
    assert ("deficient", "mild") == (result["status"], result["severity"])
    assert "sign.seizure" not in ids(result)
    chronic = next(f for f in result["findings"] if f["id"] == "context.sign.seizure")
    assert chronic["inputs"][0]["context"].startswith("chronic")
    safety = [s["id"] for s in result["safety"]]
    assert "sf.oral_mild" in safety
    assert "sf.severe_iv" not in safety


def test_recent_seizure_still_counts(capsys, tmp_path):
    """A seizure recorded five days ago with Mg 0.68 is a current sign: severe (symptomatic), IV route."""
    result = assess(capsys, tmp_path, cases.epilepsy_from_birth(acute_seizure=True), AS_OF)
    assert ("deficient", "severe") == (result["status"], result["severity"])
    assert "sign.seizure" in ids(result)
    assert "sf.severe_iv" in [s["id"] for s in result["safety"]]


@pytest.mark.parametrize(
    ("a1c", "poor"), [(None, False), (5.9, False), (6.9, False), (7.0, True), (8.4, True)]
)
def test_glycaemic_control_comes_from_hba1c(capsys, tmp_path, a1c, poor):
    """Diabetes for 20 years is a risk factor; poor control only from HbA1c at or above 7 %."""
    result = assess(capsys, tmp_path, cases.diabetes_for_twenty_years(a1c), AS_OF)
    assert "condition.type2_diabetes" in ids(result)
    assert poor == ("sign.poor_glycaemic_control" in ids(result))
    assert "at_risk" == result["status"]


@pytest.mark.parametrize(
    ("a1c", "glucose", "poor"), [(None, 250, True), (None, 180, False), (6.2, 250, False), (8.0, 100, True)]
)
def test_glucose_counts_only_without_a_recent_hba1c(capsys, tmp_path, a1c, glucose, poor):
    """Glucose 250 mg/dL (13.9 mmol/L) 10 days ago is poor control, unless a recent HbA1c says otherwise."""
    result = assess(capsys, tmp_path, cases.diabetes_for_twenty_years(a1c, glucose), AS_OF)
    assert poor == ("sign.poor_glycaemic_control" in ids(result))


def test_deceased_patient_is_not_assessed(capsys, tmp_path):
    """Died 2023-01-10: indeterminate, one 'deceased' finding with the date, no steps, no safety."""
    result = assess(capsys, tmp_path, cases.deceased(deceasedDateTime="2023-01-10T08:00:00Z"), AS_OF)
    assert "indeterminate" == result["status"]
    assert True is result["deceased"]
    assert "2023-01-10" == result["patient"]["deceased_date"]
    assert ["patient.deceased"] == ids(result)
    assert "Deceased on 2023-01-10" in result["findings"][0]["text"]
    assert [] == result["next_steps"]
    assert [] == result["safety"]
    assert [] == result["relevance"]


def test_deceased_boolean_is_not_assessed(capsys, tmp_path):
    """deceasedBoolean true without a date: not assessed either."""
    result = assess(capsys, tmp_path, cases.deceased(deceasedBoolean=True), AS_OF)
    assert ("indeterminate", ["patient.deceased"], []) == (
        result["status"],
        ids(result),
        result["next_steps"],
    )


def test_death_after_the_as_of_date_is_not_yet_death(capsys, tmp_path):
    """Assessed on a date before the recorded death, the patient is assessed as living."""
    result = assess(capsys, tmp_path, cases.deceased(deceasedDateTime="2025-01-10"), AS_OF)
    assert False is result["deceased"]
    assert "at_risk" == result["status"]
    assert "drug.ppi" in ids(result)


def test_patient_document_deceased_date(capsys, tmp_path):
    """A patient document with deceased_date on or before as_of is not assessed."""
    path = tmp_path / "doc.json"
    path.write_text(
        json.dumps({"as_of": AS_OF, "deceased_date": "2024-02-01", "medications": ["omeprazole"]})
    )
    assert 0 == main(["assess", str(path), "--format", "json"])
    result = json.loads(capsys.readouterr().out)
    assert ("indeterminate", ["patient.deceased"], []) == (result["status"], ids(result), result["safety"])


# --- the Synthea patients ----------------------------------------------------------------------


def _bundle(path: Path) -> dict[str, Any]:
    return json.loads(gzip.decompress(path.read_bytes()))


def _resources(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
        for e in bundle["entry"]
        if "id" in e["resource"]
    }


def _death(bundle: dict[str, Any]) -> dt.date | None:
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    value = patient.get("deceasedDateTime")
    return dt.date.fromisoformat(value[:10]) if value else None


CHRONIC = {code for sign in load().signs.values() for code in sign.chronic_snomed}
AS_OF_DATES = ("1990-06-01", "2000-06-01", "2010-06-01", "2015-06-01", "2021-06-01")


@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.name[:20])
def test_synthea_deceased_and_lifelong_diagnoses(capsys, tmp_path, path):
    """At several dates: the dead are never assessed as living; a sign never rests on a lifelong or old entry."""
    bundle = _bundle(path)
    resources = _resources(bundle)
    died = _death(bundle)
    src = tmp_path / "p.json"
    src.write_text(json.dumps(bundle))
    window = load().param("signs.recent_days")
    for as_of in AS_OF_DATES:
        assert 0 == main(["assess", str(src), "--as-of", as_of, "--format", "json"])
        result = json.loads(capsys.readouterr().out)
        day = dt.date.fromisoformat(as_of)
        if died is not None and died <= day:
            assert ("indeterminate", ["patient.deceased"], [], []) == (
                result["status"],
                ids(result),
                result["next_steps"],
                result["safety"],
            )
            continue
        assert False is result["deceased"]
        lifelong = [
            r
            for r in resources.values()
            if r["resourceType"] == "Condition"
            and {c["code"] for c in r["code"]["coding"]} & CHRONIC
            and r["onsetDateTime"][:10] <= as_of
        ]
        if lifelong:  # recognised, shown with its context, and not counted
            assert "context.sign.seizure" in ids(result)
            assert "sign.seizure" not in ids(result)
        for finding in result["findings"]:
            if not finding["id"].startswith("sign."):
                continue
            for used in finding["inputs"]:
                condition = resources.get(str(used.get("source")).replace("urn:uuid:", "Condition/"))
                if used.get("source", "").startswith("Condition/") or condition is not None:
                    codes = {c["code"] for c in (condition or {}).get("code", {}).get("coding", [])}
                    assert not codes & CHRONIC, finding
                    assert used["date"] is not None
                    assert (day - dt.date.fromisoformat(used["date"])).days <= window, finding


def test_synthea_set_has_both_kinds():
    """The copied Synthea set holds deceased patients and lifelong seizure diagnoses (the test above needs both)."""
    bundles = [_bundle(p) for p in SYNTHEA]
    assert 3 <= sum(_death(b) is not None for b in bundles)
    assert 2 <= sum(any(c in json.dumps(b) for c in ('"84757009"', '"128613002"')) for b in bundles)
