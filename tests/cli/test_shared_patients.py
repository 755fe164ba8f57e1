"""Every synthetic test patient through the CLI, and golden files for hand-checked ones.

The patients are the repository's sets in tests/data (``MAGSTAT_FULL_DATA`` names a larger set
for the every-patient loop; the golden patients always come from the repository).

Set MAGSTAT_UPDATE_GOLDEN=1 to rewrite the golden files after a reviewed change; the diff is
then read by a person before it is committed.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from magstat.cli import main
from tests.conftest import DATA, SYNTHEA_PY, every_patient, synthea

GOLDEN = DATA / "golden"

PATIENTS = every_patient("synthea") + every_patient("synthea-py")


def end_of_record(path: Path) -> str:
    """The latest clinical date in a bundle: the as-of date at which the record ends."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    latest = "1900-01-01"
    for entry in json.loads(raw).get("entry", []):
        resource = entry.get("resource", {})
        for key in ("effectiveDateTime", "authoredOn", "recordedDate", "issued"):
            value = resource.get(key)
            if isinstance(value, str) and value[:10] > latest:
                latest = value[:10]
    return latest


def project(data: dict) -> dict:
    """The part of an assessment a golden file pins: decisions, not wording."""
    return {
        "as_of": data["as_of"],
        "status": data["status"],
        "severity": data["severity"],
        "mds": {k: data["mds"][k] for k in ("score", "complete", "band", "components")},
        "egfr": {"value": data["egfr"]["value"], "equation": data["egfr"]["equation"]},
        "serum_magnesium": {k: data["serum_magnesium"][k] for k in ("mmol_l", "band", "current")},
        "femg": data["femg"]["interpretation"],
        "findings": sorted(f["id"] for f in data["findings"]),
        "next_steps": sorted(a["id"] for a in data["next_steps"]),
        "safety": sorted(a["id"] for a in data["safety"]),
        "relevance": sorted(r["domain"] for r in data["relevance"]),
    }


def test_the_sets_hold_patients():
    """The every-patient loop below has patients of both sets to run over."""
    assert 0 < len(every_patient("synthea")) and 0 < len(every_patient("synthea-py"))


@pytest.mark.parametrize("path", PATIENTS, ids=lambda p: p.name[:24])
def test_every_patient_assesses(capsys, path):
    """Each synthetic patient assesses without error, strictly, at the end of its record."""
    assert 0 == main(["assess", str(path), "--as-of", end_of_record(path), "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert data["status"] in (
        "excess",
        "deficient",
        "likely_deficient",
        "at_risk",
        "unlikely",
        "indeterminate",
    )
    assert [] == data["excluded"]


GOLDEN_CASES = {
    "synthea-py-patient-07": SYNTHEA_PY / "patient-07.json.gz",
    "synthea-py-patient-06": SYNTHEA_PY / "patient-06.json.gz",
    "synthea-coleman-ortiz": synthea("Coleman_Ortiz"),
    "synthea-barrett-douglas": synthea("Barrett_Douglas"),
    "synthea-beatrice-aufderhar": synthea("Beatrice_Aufderhar"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden_patients(capsys, name):
    """Hand-checked patients keep their assessment (see tests/data/golden/README.md)."""
    path = GOLDEN_CASES[name]
    assert 0 == main(["assess", str(path), "--as-of", end_of_record(path), "--format", "json"])
    actual = project(json.loads(capsys.readouterr().out))
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("MAGSTAT_UPDATE_GOLDEN") == "1":
        golden.write_text(json.dumps(actual, indent=2) + "\n")
    assert json.loads(golden.read_text()) == actual


def test_one_bad_resource_refused_unless_lenient(capsys, tmp_path):
    """One corrupted Observation in a full record: exit 2 naming it; --lenient lists it and goes on."""
    path = synthea("Barrett_Douglas")
    bundle = json.loads(gzip.decompress(path.read_bytes()))
    target = next(
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"].get("valueQuantity", {}).get("unit") == "mg/dL"
        and e["resource"]["code"]["coding"][0]["code"] == "38483-4"
    )
    target["valueQuantity"]["unit"] = "mg/furlong"
    target["valueQuantity"]["code"] = "mg/furlong"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bundle))
    as_of = end_of_record(path)
    assert 2 == main(["assess", str(bad), "--as-of", as_of])
    err = capsys.readouterr().err
    assert f"Observation/{target['id']}" in err
    assert "unit" in err
    assert 0 == main(["assess", str(bad), "--as-of", as_of, "--lenient", "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert any(target["id"] in line for line in data["excluded"])
    assert "lim.excluded_input" in {a["id"] for a in data["limitations"]}
