"""FHIR MedicationAdministration (a dose given in hospital), read alike by every path.

The same records go through the bundle reader (``magstat assess``), the CDS Hooks prefetch, and
the DuckDB and Spark screening; each must give the same assessment. The statuses are read as
the module documentation of :mod:`magstat.adapters.fhir.extract` says, and a dose of IV
magnesium given two hours before a low serum value is magnesium therapy, as a current
MedicationStatement of IV magnesium is.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from magstat.adapters.cds_hooks.request import (
    MEDICATION_KEYS,
    OPTIONAL_KEYS,
    patient_bundle,
    prefetch_templates,
)
from magstat.adapters.fhir import facts_from_fhir
from magstat.batch import ScreenOptions, screen
from magstat.cli import main
from magstat.core import assess
from magstat.errors import InvalidInputError
from magstat.kb import load
from tests import safety_cases as cases
from tests.safety_cases import IV, ORAL, Case
from tests.service.conftest import hook_request
from tests.service.ehr import Record, prefetch_for

AS_OF = cases.AS_OF  # 2024-06-01
MG_IV = cases.MG_IV
iv_magnesium_given = cases.iv_magnesium_given


def ward_drugs() -> Case:
    """Omeprazole given on the ward this morning, furosemide given a week ago, serum Mg 0.62 mmol/L.

    The furosemide names its drug in a contained Medication, which every path resolves.
    """
    case = (
        Case("ma-ward", birth="1949-07-07", gender="male")
        .given("omeprazole 40 MG", "7646", route=ORAL)
        .mg(0.62, when="2024-06-01T07:00:00Z")
        .condition("Essential hypertension", onset="2020-01-01")
    )
    case.entries.append(
        {
            "resourceType": "MedicationAdministration",
            "id": "furosemide-given",
            "status": "completed",
            "contained": [
                {
                    "resourceType": "Medication",
                    "id": "m1",
                    "code": {"coding": [{"system": cases.RXNORM, "code": "4603", "display": "furosemide"}]},
                }
            ],
            "medicationReference": {"reference": "#m1"},
            "subject": {"reference": "Patient/ma-ward"},
            "effectiveDateTime": "2024-05-25T09:00:00Z",
        }
    )
    return case


def referenced_medication() -> list[dict[str, Any]]:
    """A patient whose IV magnesium names a Medication resource of the export (Bulk Data only)."""
    return [
        {"resourceType": "Patient", "id": "ma-ref", "birthDate": "1970-01-01", "gender": "female"},
        {"resourceType": "Medication", "id": "mgso4", "code": {"text": "Magnesium sulfate 50% injection"}},
        {
            "resourceType": "MedicationAdministration",
            "id": "ma-ref-1",
            "status": "in-progress",
            "medicationReference": {"reference": "Medication/mgso4"},
            "subject": {"reference": "Patient/ma-ref"},
            "effectivePeriod": {"start": "2024-06-01T06:00:00Z"},
            "dosage": {"route": {"text": "IV"}, "rateQuantity": {"value": 1, "unit": "g/h"}},
        },
        {
            "resourceType": "Observation",
            "id": "ma-ref-mg",
            "status": "final",
            "subject": {"reference": "Patient/ma-ref"},
            "code": {"coding": [{"system": cases.LOINC, "code": "2601-3"}]},
            "effectiveDateTime": "2024-06-01T09:00:00Z",
            "valueQuantity": {"value": 0.5, "unit": "mmol/L", "system": cases.UCUM, "code": "mmol/L"},
        },
    ]


def as_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A collection Bundle of the resources."""
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def records() -> dict[str, dict[str, Any]]:
    """Patient id -> the Bundle of each test patient."""
    return {
        "ma-iv": iv_magnesium_given().bundle(),
        "ma-ward": ward_drugs().bundle(),
        "ma-ref": as_bundle(referenced_medication()),
    }


def cli_assessment(tmp_path: Path, pid: str, bundle: dict[str, Any], capsys: Any) -> dict[str, Any]:
    """``magstat assess FILE --format json --as-of AS_OF`` of one bundle."""
    path = tmp_path / f"{pid}.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    capsys.readouterr()
    assert 0 == main(["assess", str(path), "--format", "json", "--as-of", AS_OF.isoformat()])
    return json.loads(capsys.readouterr().out)


def write_export(folder: Path, bundles: dict[str, dict[str, Any]]) -> Path:
    """The bundles as a Bulk Data export: one ``<Type>.ndjson`` per type, ``urn:uuid`` subjects rewritten."""
    folder.mkdir(parents=True)
    for bundle in bundles.values():
        for entry in bundle["entry"]:
            resource = entry["resource"]
            with (folder / f"{resource['resourceType']}.ndjson").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(resource) + "\n")
    return folder


def screened(folder: Path) -> dict[str, dict[str, Any]]:
    """Patient id -> the assessment a screening wrote (``--details``)."""
    with gzip.open(folder / "assessments.ndjson.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return {row["patient"]["id"]: row for row in rows}


def given_therapy(result: dict[str, Any]) -> list[str]:
    """The medications a result names as magnesium given as treatment."""
    found = [f for f in result["findings"] if f["id"] == "drug.magnesium_therapy"]
    return [i["source"] for f in found for i in f["inputs"]]


# --- every path -------------------------------------------------------------------------------


def test_the_cli_reads_administrations_as_the_core_expects(tmp_path, capsys):
    """The CLI: IV magnesium given 2 h before a low value is therapy; omeprazole given today is a current PPI."""
    iv = cli_assessment(tmp_path, "ma-iv", records()["ma-iv"], capsys)
    assert ["MedicationAdministration/medicationadministration-1"] == given_therapy(iv)
    ward = cli_assessment(tmp_path, "ma-ward", records()["ma-ward"], capsys)
    ids = [f["id"] for f in ward["findings"]]
    assert "drug.ppi" in ids
    assert "drug.loop_diuretic" not in ids  # given a week ago: not current
    assert 1 == ward["mds"]["components"]["ppi"]
    assert 0 == ward["mds"]["components"]["diuretic"]
    ref = cli_assessment(tmp_path, "ma-ref", records()["ma-ref"], capsys)
    assert ["MedicationAdministration/ma-ref-1"] == given_therapy(ref)


def test_the_service_prefetch_gives_the_cli_assessment(tmp_path, capsys, kb):
    """The prefetch an EHR sends (medicationAdministrations included) is read into the CLI's assessment."""
    templates = prefetch_templates(kb)
    assert templates["medicationAdministrations"].startswith("MedicationAdministration?patient=")
    for pid in ("ma-iv", "ma-ward"):  # the third names a Medication resource, which no template fetches
        bundle = records()[pid]
        record = Record(bundle)
        body = hook_request("patient-view", record.patient_id)
        prefetch = prefetch_for(templates, body["context"], record)
        assert prefetch["medicationAdministrations"] is not None
        reading = patient_bundle(prefetch)
        facts = facts_from_fhir(reading.bundle, kb, as_of=AS_OF, strict=False, patient_id=pid)
        assert cli_assessment(tmp_path, pid, bundle, capsys) == assess(facts, kb).to_dict(), pid


def test_duckdb_screening_gives_the_cli_assessment(tmp_path, capsys):
    """DuckDB screening of the same records, a referenced Medication included, gives the CLI's assessments."""
    bundles = records()
    export = write_export(tmp_path / "export", bundles)
    screen(ScreenOptions(input=export, out=tmp_path / "duck", as_of=AS_OF, workers=0, details=True))
    rows = screened(tmp_path / "duck")
    assert sorted(bundles) == sorted(rows)
    for pid, bundle in bundles.items():
        assert cli_assessment(tmp_path, pid, bundle, capsys) == rows[pid], pid


@pytest.mark.spark
@pytest.mark.slow
def test_spark_screening_gives_the_cli_assessment(tmp_path, capsys):
    """Spark (local mode) screening of the same records gives the CLI's assessments, row for row."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:  # pragma: no cover - depends on the machine
        pytest.skip("Spark needs a Java runtime")
    bundles = records()
    export = write_export(tmp_path / "export", bundles)
    screen(ScreenOptions(input=export, out=tmp_path / "spark", as_of=AS_OF, engine="spark", details=True))
    rows = screened(tmp_path / "spark")
    assert sorted(bundles) == sorted(rows)
    for pid, bundle in bundles.items():
        assert cli_assessment(tmp_path, pid, bundle, capsys) == rows[pid], pid


# --- the clinical case --------------------------------------------------------------------------


def _ids(result: Any) -> dict[str, list[str]]:
    return {
        "findings": [f.id for f in result.findings],
        "safety": [a.id for a in result.safety],
        "next_steps": [a.id for a in result.next_steps],
        "limitations": [lim.id for lim in result.limitations],
    }


def test_iv_magnesium_given_2_h_before_a_low_value_reads_as_a_current_iv_statement(kb):
    """IV magnesium completed 2 h before serum Mg 0.55 changes the assessment as a current IV statement does."""

    def read(case: Case) -> Any:
        return assess(facts_from_fhir(case.bundle(), kb, as_of=AS_OF), kb)

    def low_serum(case: Case) -> Case:
        return case.mg(0.55, when="2024-06-01T08:00:00Z").condition(
            "Essential hypertension", onset="2020-01-01"
        )

    given = read(iv_magnesium_given())
    statement = read(
        low_serum(
            Case("ma-iv", birth="1958-03-03").drug(
                MG_IV, kind="MedicationStatement", route=IV, reason="Hypomagnesemia"
            )
        )
    )
    untreated = read(low_serum(Case("ma-iv", birth="1958-03-03")))
    assert (statement.status, statement.severity) == (given.status, given.severity)
    assert _ids(statement) == _ids(given)
    assert _ids(untreated) != _ids(given)
    assert "drug.magnesium_therapy" in _ids(given)["findings"]
    assert "sf.mg_therapy" in _ids(given)["safety"]
    assert "drug.magnesium_therapy" not in _ids(untreated)["findings"]


def test_iv_magnesium_given_two_days_before_is_not_therapy_now(kb):
    """The same infusion two days before the as-of date is outside the window: not magnesium therapy."""
    bundle = (
        Case("ma-old", birth="1958-03-03")
        .given(MG_IV, route=IV, start="2024-05-30T04:00:00Z", end="2024-05-30T06:00:00Z")
        .mg(0.55, when="2024-06-01T08:00:00Z")
        .bundle()
    )
    result = assess(facts_from_fhir(bundle, kb, as_of=AS_OF), kb)
    assert "drug.magnesium_therapy" not in [f.id for f in result.findings]


# --- statuses ------------------------------------------------------------------------------------


def _administration(status: str | None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": "a1",
        "medicationCodeableConcept": {
            "coding": [{"system": cases.RXNORM, "code": "7646"}],
            "text": "omeprazole",
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-06-01T06:00:00Z",
        **extra,
    }
    if status is not None:
        resource["status"] = status
    return resource


def _read(*resources: dict[str, Any], strict: bool = True) -> Any:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-01-01", "gender": "female"}
    return facts_from_fhir(as_bundle([patient, *resources]), load(), as_of=AS_OF, strict=strict)


@pytest.mark.parametrize(
    ("status", "current"),
    [("in-progress", True), ("completed", True), ("on-hold", True), ("stopped", False), ("unknown", None)],
)
def test_each_status_given_today(status, current):
    """Given today: in-progress, completed and on-hold are current, stopped is not, unknown stays unknown."""
    facts = _read(_administration(status))
    assert [(("omeprazole",), current)] == [(m.drugs, m.current) for m in facts.medications or ()]


@pytest.mark.parametrize("status", ["not-done", "entered-in-error"])
def test_not_done_and_entered_in_error_are_passed_over(status):
    """A dose not given, or recorded in error, is not on the list (as for a statement, the list is known)."""
    facts = _read(_administration(status))
    assert () == facts.medications


@pytest.mark.parametrize(
    ("extra", "current"),
    [
        ({"effectiveDateTime": "2024-05-31T23:00:00Z"}, True),  # the day before: within 1 day
        ({"effectiveDateTime": "2024-05-30T23:00:00Z"}, False),  # two days before
        ({"effectivePeriod": {"start": "2024-05-20T00:00:00Z", "end": "2024-05-31T10:00:00Z"}}, True),
        ({"effectivePeriod": {"start": "2024-05-20T00:00:00Z", "end": "2024-05-25T10:00:00Z"}}, False),
    ],
)
def test_a_completed_dose_counts_within_the_window(extra, current):
    """A completed dose is current on its day and the next (medications.administered_within_days = 1)."""
    resource = _administration("completed")
    del resource["effectiveDateTime"]
    resource.update(extra)
    assert [current] == [m.current for m in _read(resource).medications or ()]


def test_an_infusion_running_for_days_is_current_and_one_not_begun_is_passed_over():
    """In progress since last week with no end: current; an administration starting after the as-of date: not read."""
    running = _administration("in-progress")
    del running["effectiveDateTime"]
    running["effectivePeriod"] = {"start": "2024-05-25T00:00:00Z"}
    assert [True] == [m.current for m in _read(running).medications or ()]
    later = _administration("completed", effectiveDateTime="2024-06-02T08:00:00Z")
    assert () == _read(later).medications


def test_a_completed_dose_without_a_date_is_unknown():
    """Completed with no effective[x]: whether it is recent cannot be told, so current is unknown (not false)."""
    resource = _administration("completed")
    del resource["effectiveDateTime"]
    assert [None] == [m.current for m in _read(resource).medications or ()]


def test_route_dose_and_rate_are_read():
    """dosage.route (SNOMED CT) and the dose and rate as written are kept on the medication."""
    resource = _administration(
        "in-progress",
        dosage={
            "route": {"coding": [{"system": cases.SNOMED, "code": "47625008"}]},
            "dose": {"value": 4, "unit": "g"},
            "rateQuantity": {"value": 2, "unit": "g/h"},
        },
    )
    [med] = _read(resource).medications or ()
    assert ("intravenous", "4 g at 2 g/h") == (med.route, med.dose)


def test_an_invalid_status_is_refused_naming_field_value_and_the_allowed_statuses():
    """Status 'active' is not a MedicationAdministration status: the error names it and the sorted statuses."""
    with pytest.raises(InvalidInputError) as err:
        _read(_administration("active"))
    message = str(err.value)
    assert "status" in message and "active" in message
    assert "completed, entered-in-error, in-progress, not-done, on-hold, stopped, unknown" in message
    lenient = _read(_administration("active"), strict=False)
    assert lenient.medications is None
    assert any("MedicationAdministration/a1" in note for note in lenient.excluded)


def test_a_negative_dose_is_refused_naming_the_element():
    """A dose of -4 g is refused, naming dosage.dose.value."""
    resource = _administration("completed", dosage={"dose": {"value": -4, "unit": "g"}})
    with pytest.raises(InvalidInputError) as err:
        _read(resource)
    assert "dosage.dose.value" in str(err.value)


def test_another_patients_administration_is_left_out():
    """An administration whose subject is another patient is listed as left out, not read."""
    resource = _administration("completed", subject={"reference": "Patient/someone-else"})
    facts = _read(resource, strict=False)
    assert facts.medications is None
    assert any("subject is not the Patient" in note for note in facts.excluded)


def test_the_prefetch_key_is_optional(kb):
    """The template asks for the statuses read as given or unknown; its key is optional."""
    template = prefetch_templates(kb)["medicationAdministrations"]
    assert template.endswith("status=in-progress,on-hold,completed,unknown")
    assert ("medicationAdministrations",) == OPTIONAL_KEYS
    assert "medicationAdministrations" not in MEDICATION_KEYS


# --- the SMART app ------------------------------------------------------------------------------


def _chart(kb: Any, fail: frozenset[str]) -> Any:
    """Assess the IV-magnesium record through the SMART app's chart read; ``fail`` types answer 403."""
    import httpx  # noqa: PLC0415 - the service extra

    from magstat.service.smart.chart import assess_chart  # noqa: PLC0415
    from tests.conftest import run_async  # noqa: PLC0415

    record = Record(iv_magnesium_given().bundle())

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/fhir/")
        if path.split("/")[0] in fail:
            return httpx.Response(403, json={"resourceType": "OperationOutcome", "issue": []})
        query = path + ("?" + request.url.query.decode() if request.url.query else "")
        return httpx.Response(200, json=record.query(query))

    async def run() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            return await assess_chart(
                http,
                "https://ehr.test/fhir",
                "token",
                "ma-iv",
                kb,
                today=AS_OF,
                deadline_seconds=5,
                max_pages=5,
            )

    return run_async(run())


def test_the_smart_app_reads_administrations_and_goes_on_without_them(kb):
    """The SMART app counts the IV magnesium given; a server refusing MedicationAdministration still gets an assessment, with a note."""
    from magstat.service.smart.chart import ChartUnreadableError  # noqa: PLC0415

    full = _chart(kb, frozenset())
    expected = assess(facts_from_fhir(iv_magnesium_given().bundle(), kb, as_of=AS_OF), kb).to_dict()
    assert expected == full.result.to_dict()
    refused = _chart(kb, frozenset({"MedicationAdministration"}))
    assert "drug.magnesium_therapy" not in [f.id for f in refused.result.findings]
    assert any(note.startswith("medicationAdministrations: not read") for note in refused.notes)
    with pytest.raises(ChartUnreadableError):  # a required search failing still gives no assessment
        _chart(kb, frozenset({"MedicationStatement"}))
