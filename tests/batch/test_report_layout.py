"""The screening report's charts: "no data" instead of empty axes, labels that fit; progress in logs."""

from __future__ import annotations

import re

from magstat.batch import pipeline
from magstat.batch.output import COMPLETENESS, SERUM_BINS, STATUS_ORDER
from magstat.batch.report import render_report

CHAR_PX = 6.6  # the report's own estimate of a character's width


def _summary(patients: int) -> dict:
    """A screening summary with ``patients`` assessed and nothing else known."""
    return {
        "input": {"format": "table", "path": "people.csv"},
        "as_of": "2024-05-01",
        "patients": patients,
        "engine": "duckdb",
        "knowledge_base": {"version": "test", "sha256": "0" * 64},
        "status_counts": dict.fromkeys(STATUS_ORDER, 0),
        "issues": {"counts": {}},
        "mds_distribution": {str(s): 0 for s in range(6)},
        "mds_distribution_base": {"description": "assessed patients", "n": 0},
        "drug_class_prevalence": {},
        "completeness_percent": {key: 0 for key, _ in COMPLETENESS},
        "status_by_age_band_and_sex": [],
        "serum_mg": {
            "patients_with_result": 0,
            "histogram_mmol_l": {f"{a:.2f}": 0 for a in SERUM_BINS[:-1]},
        },
    }


def test_empty_sections_say_no_data_instead_of_drawing_empty_axes(kb):
    """With no patient, each chart says "No data" and draws no axis."""
    page = render_report(_summary(0), kb)
    for label in ("MDS distribution", "status by age band and sex", "drug class prevalence"):
        svg = re.search(rf'<svg[^>]*aria-label="{label}".*?</svg>', page, re.S)
        assert svg is not None and "No data" in svg[0] and "<line" not in svg[0], label
    histogram = re.search(r'<svg[^>]*aria-label="serum magnesium histogram".*?</svg>', page, re.S)
    assert histogram is not None and "no patient has a serum magnesium result" in histogram[0]


def test_legend_and_row_labels_stay_inside_the_chart(kb):
    """Legend and row labels fit the chart; statuses and drug classes read as words, not ids."""
    summary = _summary(10)
    summary["status_by_age_band_and_sex"] = [
        {"sex": "female", "age_band": "40-59", "status": s, "patients": 1} for s in STATUS_ORDER
    ]
    summary["drug_class_prevalence"] = {
        "Proton-pump inhibitors and other long names of classes": {"percent": 12.5, "patients": 1234},
        "thiazide_diuretic": {"percent": 5.0, "patients": 500},
    }
    page = render_report(summary, kb)
    stacked = re.search(
        r'<svg[^>]*aria-label="status by age band and sex"[^>]*width="(\d+)".*?</svg>', page, re.S
    )
    assert stacked is not None
    width = int(stacked[1])
    for x, text in re.findall(r'<text x="([\d.]+)" y="\d+" font-size="10">([^<]+)</text>', stacked[0]):
        assert float(x) + len(text) * CHAR_PX <= width, text
    assert "Likely deficient" in stacked[0] and "likely_deficient" not in stacked[0]
    rows = re.search(r'<svg[^>]*aria-label="drug class prevalence"[^>]*width="(\d+)".*?</svg>', page, re.S)
    assert rows is not None
    shown = re.findall(r'<text x="([\d.]+)" y="\d+">(12\.5% \(1234\))</text>', rows[0])
    assert shown and float(shown[0][0]) + len(shown[0][1]) * CHAR_PX <= int(rows[1])
    assert kb.drug_classes["thiazide_diuretic"].name in rows[0] and "thiazide_diuretic" not in rows[0]


def test_progress_is_written_as_lines_with_totals_outside_a_terminal(capsys):
    """In a log (no terminal) progress is plain lines that end on the total."""
    progress = pipeline._Progress(True, terminal=False)
    for done in range(0, 101, 10):
        progress("assess", done, 100)
    progress("write", 40, None)
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert "screen: assess 0 of 100 patients (0%)" == lines[0]
    assert "screen: assess 100 of 100 patients (100%)" in lines
    assert "screen: write 40 patients" == lines[-1]


def test_no_progress_means_silence(capsys):
    """--no-progress writes nothing."""
    progress = pipeline._Progress(False, terminal=False)
    progress("assess", 5, 10)
    progress.close()
    assert "" == capsys.readouterr().err
