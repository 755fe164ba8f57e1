"""Every engine gives, patient by patient, exactly what ``magstat assess`` gives."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from magstat.batch import ScreenOptions, screen
from magstat.batch.popgen import write_bulk
from tests.batch.conftest import AS_OF, sha, synthea_py_files, synthea_set_files

CLINICAL = (
    "status",
    "severity",
    "age_years",
    "sex",
    "mds_score",
    "mds_complete",
    "mds_band",
    "mds_diuretic",
    "mds_ppi",
    "mds_kidney",
    "mds_alcohol",
    "egfr",
    "egfr_equation",
    "serum_mg_mmol_l",
    "serum_mg_band",
    "serum_mg_date",
    "drug_classes",
    "findings",
    "missing_inputs",
)


def rows_of(folder) -> list[dict]:
    return pq.read_table(folder / "results.parquet").to_pylist()


@pytest.fixture(scope="module")
def duckdb_run(bulk, tmp_path_factory):
    """The shared patients screened once on DuckDB (in this process)."""
    out = tmp_path_factory.mktemp("duckdb") / "out"
    outcome = screen(ScreenOptions(input=bulk, out=out, as_of=AS_OF, workers=0))
    return outcome, out


def test_every_patient_matches_assess(duckdb_run, expected):
    """Each row's assessment hash equals that of `magstat assess --lenient` on the original bundle."""
    outcome, out = duckdb_run
    rows = rows_of(out)
    assert sorted(expected) == [row["patient_id"] for row in rows]
    for row in rows:
        result = expected[row["patient_id"]]
        assert sha(result) == row["assessment_sha256"], row["patient_id"]
        assert result["status"] == row["status"]
        assert result["mds"]["score"] == row["mds_score"]
        assert result["mds"]["complete"] == row["mds_complete"]
        assert result["mds"]["components"]["kidney"] == row["mds_kidney"]
        assert result["egfr"]["value"] == row["egfr"]
        assert result["serum_magnesium"]["mmol_l"] == row["serum_mg_mmol_l"]
        assert result["knowledge_base"]["version"] == row["kb_version"]
    assert 0 == outcome.issues
    assert len(expected) == outcome.summary["patients"]


def test_summary_reports_every_file(duckdb_run, bulk):
    """The summary lists every input file; only the needed types are read, every line counted."""
    outcome, _ = duckdb_run
    files = outcome.summary["input"]["files"]
    assert sorted(p.name for p in bulk.iterdir()) == sorted(f["name"] for f in files)
    for f in files:
        assert f["read"] == (
            f["type"]
            in (
                "Patient",
                "Medication",
                "Condition",
                "MedicationRequest",
                "MedicationStatement",
                "MedicationAdministration",
                "AllergyIntolerance",
                "Observation",
            )
        )
        if f["read"]:
            assert f["lines"] == f["used"] + f["not_needed"] + f["malformed"] + f["no_patient"]
    assert outcome.summary["input"]["bytes_read"] < outcome.summary["input"]["bytes"] / 2


def test_workers_give_the_same_bytes(duckdb_run, bulk, tmp_path):
    """Two worker processes write the very same results file as one process."""
    _, out = duckdb_run
    screen(ScreenOptions(input=bulk, out=tmp_path / "out", as_of=AS_OF, workers=2))
    assert (out / "results.parquet").read_bytes() == (tmp_path / "out" / "results.parquet").read_bytes()


def test_generated_population_matches_its_sources(tmp_path, expected):
    """Replicas with fresh ids (seeded) give their source patient's results."""
    sources = synthea_py_files()[:4] + synthea_set_files()[:2]
    population = write_bulk(sources, tmp_path / "pop", replicas=3, seed=11)
    assert 18 == population.patients
    screen(ScreenOptions(input=tmp_path / "pop", out=tmp_path / "out", as_of=AS_OF))
    rows = rows_of(tmp_path / "out")
    assert 18 == len({row["patient_id"] for row in rows})
    by_id = {row["patient_id"]: row for row in rows}
    for new_id, source_id in population.patient_map.items():
        row, source = by_id[new_id], by_id[source_id]
        assert [source[c] for c in CLINICAL] == [row[c] for c in CLINICAL]
        if new_id == source_id:
            assert sha(expected[source_id]) == row["assessment_sha256"]


def test_generator_is_seeded(tmp_path):
    """The same seed writes the same bytes; another seed gives other ids."""
    sources = synthea_py_files()[:2]
    a = write_bulk(sources, tmp_path / "a", replicas=2, seed=5)
    b = write_bulk(sources, tmp_path / "b", replicas=2, seed=5)
    c = write_bulk(sources, tmp_path / "c", replicas=2, seed=6)
    for name in a.files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a.patient_map == b.patient_map
    assert set(a.patient_map) != set(c.patient_map)
    assert 4 == len(set(a.patient_map))
