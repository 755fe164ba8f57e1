"""The knowledge base's FHIR views: shipped as generated, hashed with the KB, and read as rows."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

import magstat.kb
from magstat.adapters.fhir import facts_from_fhir, facts_from_rows
from magstat.adapters.fhir.flatten import READ_TYPES, ResourceRow, views_for_kb
from magstat.adapters.fhir.views import VIEW_FILES, generate_views, render_view
from magstat.kb import load_dir

DATA = Path(magstat.kb.__file__).parent / "data"
BUNDLES = Path(__file__).resolve().parents[1] / "data" / "fhir"


def test_shipped_views_equal_the_generated_ones(kb):
    """Every shipped view file is byte for byte what the generator makes from the knowledge base."""
    generated = generate_views(kb)
    assert sorted(VIEW_FILES) == sorted(p.name for p in (DATA / "views").glob("*.json"))
    for name, view in generated.items():
        assert render_view(view) == (DATA / "views" / f"{name}.json").read_text(encoding="utf-8")
        assert render_view(view) == kb.views[name]


def test_observation_view_lists_every_loinc_code_of_the_kb(kb):
    """The Observation view's kb_loinc column names every LOINC code of the knowledge base's tests."""
    path = next(
        c["path"]
        for c in generate_views(kb)["magstat_observation"]["select"][0]["column"]
        if c["name"] == "kb_loinc"
    )
    for test in kb.tests.values():
        for code in test.loinc:
            assert f"'{code.code}'" in path


def test_views_are_hashed_with_the_knowledge_base(tmp_path):
    """Changing a byte of a view file changes the knowledge-base hash."""
    folder = tmp_path / "data"
    shutil.copytree(DATA, folder)
    before = load_dir(folder)
    assert set(before.views) == {name.removesuffix(".json") for name in VIEW_FILES}
    view = folder / "views" / "magstat_patient.json"
    view.write_text(view.read_text(encoding="utf-8") + " ", encoding="utf-8")
    assert before.sha256 != load_dir(folder).sha256


def test_one_view_per_type_read(kb):
    """The views cover each resource type the adapter reads, once."""
    flat = views_for_kb(kb)
    assert set(READ_TYPES) == set(flat.views)
    assert flat is views_for_kb(kb)


def test_sql_rows_give_the_facts_of_the_bundle(kb):
    """Rows passed as the JSON text an SQL engine returns give the same facts as the bundle."""
    bundle = json.loads((BUNDLES / "bundle_collection.json").read_text(encoding="utf-8"))
    as_of = date(2024, 6, 30)
    flat = views_for_kb(kb)
    rows = []
    for i, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        rtype = resource["resourceType"]
        if rtype not in READ_TYPES:
            continue
        columns = flat.compiled[rtype].rows(resource)[0]
        text = json.dumps(list(columns))
        rows.append(flat.row_from_json(rtype, text, index=i))
    assert all(isinstance(r, ResourceRow) for r in rows)
    expected = facts_from_fhir(bundle, kb, as_of=as_of)
    assert expected == facts_from_rows(rows, kb, as_of=as_of)


ODD = [
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "Magnesium"},
        "valueQuantity": [{"value": 1}, {"value": 2}],
        "referenceRange": {"low": {"value": 0.7}},
    },
    {
        "resourceType": "Observation",
        "id": "o2",
        "code": [{"text": "a"}],
        "value": "x",
        "valueString": "y",
        "issued": None,
        "interpretation": [None, {"text": "H"}],
    },
    {
        "resourceType": "Condition",
        "id": "c1",
        "code": {"text": "Tetany"},
        "onsetAge": {"value": 3},
        "abatementBoolean": True,
        "category": [None],
    },
    {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": ["active"],
        "medicationReference": {"reference": "#x"},
        "contained": [{"resourceType": "Medication", "id": "x"}],
        "dosageInstruction": [],
    },
    {"resourceType": "Patient", "id": "p1", "deceasedBoolean": "yes", "birthDate": 1970},
]


@pytest.mark.parametrize("resource", ODD, ids=lambda r: r["id"])
def test_every_path_makes_the_same_row_of_odd_json(kb, resource):
    """The row function, the projection an SQL scan makes and the general view evaluator agree on odd JSON."""
    flat = views_for_kb(kb)
    rtype = resource["resourceType"]
    general = flat.unwrap(rtype, flat.compiled[rtype].rows(resource)[0])
    keys = flat.keys[rtype]
    projection = json.dumps([resource.get(k) for k in keys])
    assert general == flat.row(rtype, resource)
    assert general == flat.row_from_projection(rtype, projection).values
    columns = json.dumps(list(flat.compiled[rtype].rows(resource)[0]))
    assert general == flat.row_from_json(rtype, columns).values


def test_duckdb_projection_gives_the_rows_of_the_python_path(kb):
    """The DuckDB engine's projection of kept lines reads back as the rows the in-process path makes."""
    duckdb = pytest.importorskip("duckdb")
    from magstat.batch.engines.duckdb import USED, DuckDBEngine  # noqa: PLC0415 - needs the batch extra

    flat = views_for_kb(kb)
    con = duckdb.connect()
    con.execute(
        "CREATE TEMP TABLE staged (pid VARCHAR, rt VARCHAR, kind INTEGER, mkey VARCHAR, mref VARCHAR, line JSON)"
    )
    for resource in ODD:
        con.execute(
            "INSERT INTO staged VALUES ('p1', ?, ?, NULL, NULL, ?)",
            [resource["resourceType"], USED, json.dumps(resource)],
        )
    rows = con.execute(DuckDBEngine.projection_fetch_sql(flat.keys)).fetchall()
    assert len(ODD) == len(rows)
    for resource, (_, rtype, text) in zip(ODD, rows, strict=True):
        assert flat.row(rtype, resource) == flat.row_from_projection(rtype, text).values
