"""The arrhythmia, therapy, severity and always-on safety rules through ``magstat assess``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from magstat.cli import main
from tests import safety_cases as cases


def assess_json(capsys, tmp_path: Path, bundle: dict[str, Any]) -> dict[str, Any]:
    """Run ``magstat assess bundle.json --format json`` at the cases' as-of date."""
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    assert 0 == main(["assess", str(path), "--as-of", cases.AS_OF.isoformat(), "--format", "json"])
    return json.loads(capsys.readouterr().out)


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Actions or findings by id."""
    return {item["id"]: item for item in items}


def test_methadone_citalopram_low_k_gets_ecg_and_qt_safety(capsys, tmp_path):
    """Low-normal Mg with low K on methadone and citalopram: ECG next step and a QT safety note."""
    out = assess_json(capsys, tmp_path, cases.qt_low_k())
    assert "likely_deficient" == out["status"]
    assert "drug.qt_prolonging" in by_id(out["findings"])
    ecg = by_id(out["next_steps"])["ns.ecg"]
    assert "methadone" in ecg["reason"] and "citalopram" in ecg["reason"]
    qt = by_id(out["safety"])["sf.qt_risk"]
    assert "correct magnesium and potassium" in qt["text"]
    assert {"S341", "S346"} <= set(qt["sources"])


def test_qt_drug_with_normal_mg_gets_no_qt_note(capsys, tmp_path):
    """Serum Mg 0.92 with methadone and low K: the low-Mg arrhythmia rule does not fire."""
    out = assess_json(capsys, tmp_path, cases.qt_normal_mg())
    assert "sf.qt_risk" not in by_id(out["safety"])
    assert "ns.ecg" not in by_id(out["next_steps"])


def test_refractory_hypokalaemia_grades_moderate_with_iv(capsys, tmp_path):
    """Mg 0.52 with hypocalcaemia and refractory hypokalaemia: moderate with its reason, IV, correct Mg first."""
    out = assess_json(capsys, tmp_path, cases.refractory())
    assert ("deficient", "moderate") == (out["status"], out["severity"])
    assert "does not correct with potassium" in out["severity_reason"]
    safety = by_id(out["safety"])
    assert "urgent" == safety["sf.severe_iv"]["priority"]
    assert safety["sf.correct_mg_first"]["text"].startswith("Correct magnesium (and potassium) first")
    assert "sf.oral_mild" not in safety
    assert "urgent" == by_id(out["next_steps"])["ns.ecg"]["priority"]


def test_tetany_is_severe(capsys, tmp_path):
    """Mg 0.6 mmol/L with tetany is severe, not moderate."""
    out = assess_json(capsys, tmp_path, cases.tetany())
    assert ("deficient", "severe") == (out["status"], out["severity"])
    assert "tetany" in out["severity_reason"]


def test_pre_eclampsia_on_iv_mgso4_is_therapeutic_not_poisoning(capsys, tmp_path):
    """IV MgSO4 for pre-eclampsia with Mg 1.9 mmol/L: therapeutic finding, monitoring and antidote, no 'stop'."""
    out = assess_json(capsys, tmp_path, cases.mg_therapy(1.9))
    assert ("indeterminate", None) == (out["status"], out["severity"])
    assert "above_lab_range" == out["serum_magnesium"]["band"]
    findings = by_id(out["findings"])
    assert {"serum_mg.therapeutic", "drug.magnesium_therapy"} <= set(findings)
    safety = by_id(out["safety"])
    assert "sf.excess" not in safety
    assert "do not stop the infusion" in safety["sf.mg_therapy"]["text"]
    monitoring = safety["sf.mg_infusion_monitoring"]["text"]
    assert (
        "patellar reflex" in monitoring and "calcium gluconate" in monitoring and "urine output" in monitoring
    )
    assert out["supplements"]["elemental_mg_per_day"] is None


def test_mgso4_above_therapeutic_range_is_excess(capsys, tmp_path):
    """IV MgSO4 with Mg 3.0 mmol/L (above 2.5): excess, severe, urgent monitoring and stop advice."""
    out = assess_json(capsys, tmp_path, cases.mg_therapy(3.0))
    assert ("excess", "severe") == (out["status"], out["severity"])
    safety = by_id(out["safety"])
    assert "urgent" == safety["sf.mg_infusion_monitoring"]["priority"]
    assert "Stop magnesium-containing products" in safety["sf.excess"]["text"]


def test_oral_product_high_value_keeps_excess_advice(capsys, tmp_path):
    """An oral magnesium oxide with Mg 1.9 and poor kidney function stays excess with the stop advice."""
    out = assess_json(capsys, tmp_path, cases.oral_mg_high(1.9))
    assert "excess" == out["status"]
    assert "sf.excess" in by_id(out["safety"])
    assert "serum_mg.therapeutic" not in by_id(out["findings"])


def test_digoxin_without_mg_gets_the_check(capsys, tmp_path):
    """A digoxin user with no Mg result gets the digoxin safety note and a Mg measurement (high)."""
    out = assess_json(capsys, tmp_path, cases.digoxin_no_mg())
    assert {"sf.digoxin", "ix.ix.digoxin"} <= set(by_id(out["safety"]))
    assert "high" == by_id(out["next_steps"])["ns.measure_serum_mg"]["priority"]


@pytest.mark.parametrize(
    ("text", "dose", "elemental"),
    [("Magnesium 100 mg chewable tablet", 100, 200), ("magnesium oxide 400 MG Oral Tablet", 400, 482)],
)
def test_child_supplement_from_fhir_dosage_above_ul(capsys, tmp_path, text, dose, elemental):
    """A 6-year-old's FHIR dosage twice a day is read, converted by salt and checked against the 110 mg UL."""
    out = assess_json(capsys, tmp_path, cases.child_supplement(text, dose))
    assert elemental == round(out["supplements"]["elemental_mg_per_day"])
    assert 110 == out["supplements"]["ul_mg"]
    assert "sf.above_ul" in by_id(out["safety"])
    assert "supplements.above_ul" in by_id(out["findings"])
    assert [] == [u for u in out["unrecognised"] if text in u]


def test_same_timestamp_creatinines_are_flagged(capsys, tmp_path):
    """Two creatinines with one timestamp: flagged, the higher (eGFR about 38, not 63) used and said."""
    out = assess_json(capsys, tmp_path, cases.same_time_creatinines())
    conflict = by_id(out["findings"])["conflict.serum_creatinine"]
    assert "higher value (1.55 mg/dL) was used" in conflict["text"]
    assert 38 == round(out["egfr"]["value"])
    assert "lim.conflicting_results" in by_id(out["limitations"])


def test_reported_egfr_far_from_computed_is_flagged(capsys, tmp_path):
    """A reported eGFR 91 six weeks before a computed 22: flagged, 22 used for dosing advice."""
    out = assess_json(capsys, tmp_path, cases.egfr_far_apart())
    assert 22 == round(out["egfr"]["value"])
    assert "computed" == out["egfr"]["origin"]
    assert "more than 30%" in by_id(out["findings"])["egfr.discrepancy"]["text"]


def test_json_contract_keeps_its_keys_and_adds_severity_reason(capsys, tmp_path):
    """Every contract key is still there; severity_reason is added."""
    out = assess_json(capsys, tmp_path, cases.tetany())
    for key in (
        "status",
        "mds",
        "egfr",
        "serum_magnesium",
        "femg",
        "findings",
        "next_steps",
        "safety",
        "knowledge_base",
    ):
        assert key in out
    assert "severity_reason" in out


def test_an_infant_with_a_severe_deficit_gets_iv_advice_without_the_adult_dose(capsys, tmp_path):
    """A 4-month-old with Mg 0.35 mmol/L: urgent IV note sending the dose to paediatric sources, no 5 g."""
    out = assess_json(capsys, tmp_path, cases.infant_severe())
    safety = by_id(out["safety"])
    assert "urgent" == safety["sf.severe_iv_child"]["priority"]
    assert "sf.severe_iv" not in safety
    text = json.dumps(out)
    assert "5 g in 1 L" not in text
    assert "paediatric" in safety["sf.severe_iv_child"]["text"]


def test_a_document_lab_reported_as_a_bound(capsys, tmp_path):
    """A patient document's serum magnesium '<' 0.4 mmol/L: deficient, severe, with the bound in the JSON."""
    path = tmp_path / "patient.yaml"
    path.write_text(
        "magstat: '1'\nas_of: 2024-06-01\nage: 60\nsex: female\n"
        "labs:\n  - {test: serum_mg, value: 0.4, comparator: '<', unit: mmol/L, date: 2024-05-30}\n"
    )
    assert 0 == main(["assess", str(path), "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert ("deficient", "severe") == (out["status"], out["severity"])
    assert "<" == out["serum_magnesium"]["comparator"]


def test_a_document_lab_with_an_unknown_comparator_is_refused(capsys, tmp_path):
    """An unknown comparator exits 2 and names the field, the value and what is allowed."""
    path = tmp_path / "patient.yaml"
    path.write_text(
        "magstat: '1'\nas_of: 2024-06-01\nage: 60\n"
        "labs:\n  - {test: serum_mg, value: 0.4, comparator: 'about', unit: mmol/L}\n"
    )
    assert 2 == main(["assess", str(path)])
    err = capsys.readouterr().err
    assert "labs[0].comparator" in err
    assert "'about'" in err
    assert "<, <=, >, >= or absent" in err


def test_a_document_lab_with_a_list_for_comparator_is_refused(capsys, tmp_path):
    """A comparator that is not a text (a YAML list) exits 2 with the field named, not an internal error."""
    path = tmp_path / "patient.yaml"
    path.write_text(
        "magstat: '1'\nas_of: 2024-06-01\nage: 60\nlabs:\n  - {test: serum_mg, value: 0.4, comparator: ['<'], unit: mmol/L}\n"
    )
    assert 2 == main(["assess", str(path)])
    assert "labs[0].comparator" in capsys.readouterr().err


def test_an_injectable_magnesium_sulfate_without_a_route_in_pre_eclampsia(capsys, tmp_path):
    """A FHIR order named 'Injectable Solution' with no dosage route, serum Mg 2.1: therapeutic, not 'stop' (S56)."""
    bundle = (
        cases.Case("mgso4-name", birth="1995-02-02")
        .condition("Severe pre-eclampsia")
        .drug("Magnesium Sulfate 500 MG/ML Injectable Solution")
        .mg(2.1)
        .creatinine(0.6)
        .bundle()
    )
    out = assess_json(capsys, tmp_path, bundle)
    assert "indeterminate" == out["status"]
    assert "serum_mg.therapeutic" in by_id(out["findings"])
    assert "sf.excess" not in by_id(out["safety"])
    assert "drug.magnesium_therapy" in by_id(out["findings"])
