"""Every shared synthetic patient through the CLI, and golden files for hand-checked ones.

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
from tests.conftest import DATA, SHARED

GOLDEN = DATA / "golden"

SYNTHEA = sorted(
    p for p in (SHARED / "synthea").glob("*.json") if not p.name.startswith(("hospital", "practitioner"))
)
SYNTHEA_PY = sorted((SHARED / "synthea-py").glob("*.json.gz"))
pytestmark = pytest.mark.skipif(not SYNTHEA, reason="shared data not present next to the project")


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


@pytest.mark.parametrize("path", SYNTHEA + SYNTHEA_PY, ids=lambda p: p.name[:24])
def test_every_shared_patient_assesses(capsys, path):
    """Each shared patient assesses without error, strictly, at the end of its record."""
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
    "synthea-py-patient-07": SHARED / "synthea-py" / "patient-07.json.gz",
    "synthea-py-patient-06": SHARED / "synthea-py" / "patient-06.json.gz",
    "synthea-coleman-ortiz": SHARED / "synthea" / "Coleman_Ortiz_70e00093-a3d5-42bc-8186-eface8432c02.json",
    "synthea-barrett-douglas": SHARED
    / "synthea"
    / "Barrett_Douglas_d21c38f7-9fc7-4729-b414-3e0fe5ce3d8b.json",
    "synthea-beatrice-aufderhar": SHARED
    / "synthea"
    / "Beatrice_Aufderhar_5451401c-ab1b-4adc-9df6-c02e856e492a.json",
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
    path = SHARED / "synthea" / "Barrett_Douglas_d21c38f7-9fc7-4729-b414-3e0fe5ce3d8b.json"
    bundle = json.loads(path.read_bytes())
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
