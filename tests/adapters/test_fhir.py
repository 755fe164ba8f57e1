"""Tests of the FHIR R4 input adapter (magstat.adapters.fhir)."""

from __future__ import annotations

import copy
import gzip
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from magstat.adapters.fhir import facts_from_fhir, is_fhir
from magstat.core.facts import PatientFacts
from magstat.errors import InvalidInputError
from magstat.kb import KnowledgeBase
from tests.conftest import DATA, SYNTHEA_PY, every_patient, synthea

FHIR = DATA / "fhir"
AS_OF = date(2024, 6, 30)
MG_MOLAR_MASS = 24.305  # g/mol, the knowledge base's analyte entry (magnesium)


def load(name: str) -> dict[str, Any]:
    """Read a fixture of tests/data/fhir."""
    return json.loads((FHIR / name).read_text(encoding="utf-8"))


def load_shared(path: Path) -> dict[str, Any]:
    """Read a Synthea bundle of tests/data, plain or gzip."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(raw)


def latest_date(bundle: dict[str, Any]) -> date:
    """The date of the latest clinical resource of a bundle (its natural as-of date)."""
    keys = ("effectiveDateTime", "authoredOn", "onsetDateTime", "issued", "recordedDate")
    found = [
        entry["resource"][key][:10]
        for entry in bundle.get("entry", [])
        for key in keys
        if isinstance(entry.get("resource", {}).get(key), str)
    ]
    return date.fromisoformat(max(found)) if found else AS_OF


def read(data: dict[str, Any], kb: KnowledgeBase, **kwargs: Any) -> PatientFacts:
    """Convert with the default as-of date of these tests."""
    kwargs.setdefault("as_of", AS_OF)
    return facts_from_fhir(data, kb, **kwargs)


def one_observation(**fields: Any) -> dict[str, Any]:
    """A serum magnesium Observation (2601-3, 0.8 mmol/L) with fields replaced."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "obs-x",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2601-3"}]},
        "effectiveDateTime": "2024-05-01",
        "valueQuantity": {
            "value": 0.8,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }
    obs.update(fields)
    return obs


def bundle_of(*resources: Any) -> dict[str, Any]:
    """A collection Bundle holding the given resources (or raw entries)."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} if isinstance(r, dict) else r for r in resources],
    }


# --- the synthetic Synthea patients (tests/data) ---------------------------------------------------------------


@pytest.mark.parametrize("path", every_patient("synthea", patients_only=False), ids=lambda p: p.name[:24])
def test_every_synthea_bundle_converts(kb, path):
    """Every Synthea bundle converts strictly at its latest date, with nothing excluded."""
    bundle = load_shared(path)
    facts = read(bundle, kb, as_of=latest_date(bundle))
    assert () == facts.excluded


@pytest.mark.parametrize("path", every_patient("synthea-py"), ids=lambda p: p.name)
def test_every_synthea_py_bundle_converts(kb, path):
    """Every synthea-py bundle converts strictly at its latest date, with nothing excluded."""
    bundle = load_shared(path)
    facts = read(bundle, kb, as_of=latest_date(bundle))
    assert () == facts.excluded


def test_synthea_patient_on_hydrochlorothiazide(kb):
    """Antonio Castellanos's active hydrochlorothiazide order is a current thiazide, with origin."""
    bundle = load_shared(synthea("Antonio_Castellanos"))
    facts = read(bundle, kb, as_of=latest_date(bundle))
    hctz = [m for m in facts.medications or () if "hydrochlorothiazide" in m.drugs]
    assert 1 == len(hctz)
    assert True is hctz[0].current
    assert date(2009, 8, 1) == hctz[0].start
    assert "MedicationRequest/bc1002ff-ede8-44b2-9221-820084a0d674" == hctz[0].origin.resource
    assert hctz[0].origin.matched_by is not None
    assert "6d2eba67-5b4a-403f-a29f-e6da3f1ea963" != facts.patient_id  # file name is not the id
    assert "2be9b668-847a-4437-b33a-bdc38c665e08" == facts.patient_id
    assert "male" == facts.sex


def test_synthea_egfr_in_ml_min_is_read_as_mdrd(kb):
    """Synthea eGFR (33914-3), sometimes in plain mL/min, is read with the MDRD equation."""
    bundle = load_shared(synthea("Coleman_Ortiz"))
    facts = read(bundle, kb, as_of=latest_date(bundle))
    egfr = [lab for lab in facts.labs if "egfr" == lab.test]
    assert [] != egfr
    assert {"MDRD"} == {lab.method for lab in egfr}
    assert {"mL/min/{1.73_m2}"} == {lab.unit for lab in egfr}


def test_synthea_py_serum_mg_in_mg_dl_is_converted(kb):
    """A serum Mg of 1.6495 mg/dL (19123-9) becomes mg/dL x 10 / 24.305 mmol/L, lab range too."""
    bundle = load_shared(SYNTHEA_PY / "patient-07.json.gz")
    facts = read(bundle, kb, as_of=latest_date(bundle))
    [lab] = [
        lab for lab in facts.labs if "Observation/aa0a80ba-e87d-4106-a3ed-a3be7f2b477f" == lab.origin.resource
    ]
    assert "serum_mg" == lab.test
    assert pytest.approx(1.6495019654837089 * 10 / MG_MOLAR_MASS) == lab.value
    assert "mmol/L" == lab.unit
    assert "mg/dL" == lab.reported_unit
    assert pytest.approx(1.7 * 10 / MG_MOLAR_MASS) == lab.ref_low
    assert pytest.approx(2.2 * 10 / MG_MOLAR_MASS) == lab.ref_high
    assert date(2005, 6, 13) == lab.when
    assert "LOINC 19123-9" == lab.origin.matched_by


def test_past_medication_administrations_are_read_as_not_current(kb):
    """synthea-py's MedicationAdministrations (single doses, years before the as-of date) are listed, none current."""
    bundle = load_shared(SYNTHEA_PY / "patient-01.json.gz")
    facts = read(bundle, kb, as_of=latest_date(bundle))
    given = [m for m in facts.medications or () if m.origin.resource.startswith("MedicationAdministration/")]
    administrations = [
        e for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationAdministration"
    ]
    assert len(administrations) == len(given)
    assert {False} == {m.current for m in given}
    assert all(m.start is not None and m.start < date(2006, 1, 1) for m in given)


# --- a collection bundle with Patient/<id> references -------------------------------------


def test_collection_bundle_demographics(kb):
    """The Patient of a collection bundle gives id, birth date and sex."""
    facts = read(load("bundle_collection.json"), kb)
    assert "pat-001" == facts.patient_id
    assert date(1958, 3, 14) == facts.birth_date
    assert "female" == facts.sex
    assert AS_OF == facts.as_of
    assert () == facts.excluded


def test_collection_bundle_labs_in_order(kb):
    """Only the usable results are read: not the erroneous, later, absent or unknown ones."""
    facts = read(load("bundle_collection.json"), kb)
    expected = [
        "Observation/obs-mg-mmol",
        "Observation/obs-mg-mgdl",
        "Observation/obs-egfr",
        "Observation/obs-k",
        "Observation/obs-auditc",
        "Observation/obs-drinks",
    ]
    assert expected == [lab.origin.resource for lab in facts.labs]


def test_mg_in_mmol_l_and_mg_dl_give_the_same_value(kb):
    """0.62 mmol/L and 1.50691 mg/dL are the same serum magnesium in mmol/L."""
    labs = {lab.origin.resource: lab for lab in read(load("bundle_collection.json"), kb).labs}
    in_mmol = labs["Observation/obs-mg-mmol"]
    in_mg = labs["Observation/obs-mg-mgdl"]
    assert ("serum_mg", "serum_mg") == (in_mmol.test, in_mg.test)
    assert pytest.approx(in_mmol.value, abs=1e-5) == in_mg.value
    assert (1.50691, "mg/dL") == (in_mg.reported_value, in_mg.reported_unit)


def test_reference_range_is_converted(kb):
    """A lab interval of 1.7-2.2 mg/dL is given in mmol/L."""
    labs = {lab.origin.resource: lab for lab in read(load("bundle_collection.json"), kb).labs}
    lab = labs["Observation/obs-mg-mgdl"]
    assert pytest.approx(1.7 * 10 / MG_MOLAR_MASS) == lab.ref_low
    assert pytest.approx(2.2 * 10 / MG_MOLAR_MASS) == lab.ref_high


def test_reference_range_without_unit_takes_the_result_unit(kb):
    """A reference range whose bounds carry no unit is read in the unit of the result."""
    labs = {lab.origin.resource: lab for lab in read(load("bundle_collection.json"), kb).labs}
    assert (3.5, 5.1) == (labs["Observation/obs-k"].ref_low, labs["Observation/obs-k"].ref_high)


def test_entered_in_error_is_skipped(kb):
    """An Observation entered in error is passed over without complaint."""
    facts = read(load("bundle_collection.json"), kb)
    assert "Observation/obs-mg-error" not in {lab.origin.resource for lab in facts.labs}
    assert () == facts.excluded


def test_result_after_as_of_is_ignored_until_then(kb):
    """A result dated after the as-of date is ignored, and read from its date on."""
    bundle = load("bundle_collection.json")
    before = read(bundle, kb)
    after = read(bundle, kb, as_of=date(2024, 9, 1))
    assert "Observation/obs-mg-later" not in {lab.origin.resource for lab in before.labs}
    assert "Observation/obs-mg-later" in {lab.origin.resource for lab in after.labs}


def test_egfr_equation_comes_from_the_loinc_note(kb):
    """eGFR coded 98979-8 is reported with the CKD-EPI 2021 equation."""
    labs = {lab.origin.resource: lab for lab in read(load("bundle_collection.json"), kb).labs}
    assert ("egfr", 52.0, "CKD-EPI 2021") == (
        labs["Observation/obs-egfr"].test,
        labs["Observation/obs-egfr"].value,
        labs["Observation/obs-egfr"].method,
    )


def test_scores_and_drinks(kb):
    """AUDIT-C as valueInteger and drinks/day (LOINC 74013-4) are read in their units."""
    labs = {lab.test: lab for lab in read(load("bundle_collection.json"), kb).labs}
    assert (5.0, "{score}") == (labs["audit_c"].value, labs["audit_c"].unit)
    assert (3.0, "{drinks}/d") == (
        labs["alcohol_drinks_per_day"].value,
        labs["alcohol_drinks_per_day"].unit,
    )


def test_medication_requests(kb):
    """Active orders are current, stopped ones not; draft and later orders are left out."""
    facts = read(load("bundle_collection.json"), kb)
    meds = {m.origin.resource: m for m in facts.medications or ()}
    expected = {
        "MedicationRequest/mr-hctz": (("hydrochlorothiazide",), True, "25 mg by mouth once daily"),
        "MedicationRequest/mr-furo": (("furosemide",), True, "20 mg every morning"),
        "MedicationRequest/mr-ppi-stopped": (("omeprazole",), False, None),
    }
    assert expected == {k: (m.drugs, m.current, m.dose) for k, m in meds.items()}
    assert "RxNorm 7646" == meds["MedicationRequest/mr-ppi-stopped"].origin.matched_by


def test_medication_by_reference(kb):
    """A medicationReference to a Medication in the bundle is resolved to its code and name."""
    meds = {m.origin.resource: m for m in read(load("bundle_collection.json"), kb).medications or ()}
    furosemide = meds["MedicationRequest/mr-furo"]
    assert "Furosemide 20 MG Oral Tablet" == furosemide.text
    assert date(2023, 11, 2) == furosemide.start


def test_conditions_current_and_resolved(kb):
    """An active condition is current, a resolved one is not, a refuted one is left out."""
    facts = read(load("bundle_collection.json"), kb)
    conditions = {c.origin.resource: (c.condition, c.current) for c in facts.conditions or ()}
    expected = {
        "Condition/cond-htn": ("hypertension", True),
        "Condition/cond-alcohol": ("alcohol_use_disorder", False),
    }
    assert expected == conditions


def test_condition_abated_after_as_of_was_current(kb):
    """A condition resolved after the as-of date was current at that date."""
    facts = read(load("bundle_collection.json"), kb, as_of=date(2018, 1, 1))
    conditions = {c.origin.resource: c.current for c in facts.conditions or ()}
    assert True is conditions["Condition/cond-alcohol"]


def test_condition_with_onset_after_as_of_is_left_out(kb):
    """A condition whose onset is after the as-of date was not known then."""
    facts = read(load("bundle_collection.json"), kb, as_of=date(2010, 1, 1))
    assert ["Condition/cond-alcohol"] == [c.origin.resource for c in facts.conditions or ()]


def test_unrecognised_condition_is_kept(kb):
    """A condition the knowledge base does not know stays on the list with no condition id."""
    condition = {
        "resourceType": "Condition",
        "id": "c-1",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "195662009"}],
            "text": "Acute viral pharyngitis",
        },
    }
    [fact] = read(condition, kb).conditions or ()
    assert ("Acute viral pharyngitis", None, True) == (fact.text, fact.condition, fact.current)


def test_condition_without_clinical_status_is_unknown(kb):
    """A condition without clinicalStatus or abatement is neither current nor past: unknown."""
    condition = {
        "resourceType": "Condition",
        "id": "c-2",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
    }
    [fact] = read(condition, kb).conditions or ()
    assert None is fact.current


def test_current_pregnancy_sets_pregnant(kb):
    """A current pregnancy condition sets pregnant; without one pregnancy stays unknown."""
    pregnancy = kb.conditions["pregnancy"]
    code = pregnancy.snomed[0] if pregnancy.snomed else None
    condition = {
        "resourceType": "Condition",
        "id": "c-preg",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}], "text": "Pregnancy"},
        "onsetDateTime": "2024-02-01",
    }
    assert True is read(condition, kb).pregnant
    assert None is read(load("bundle_collection.json"), kb).pregnant
    resolved = copy.deepcopy(condition)
    resolved["clinicalStatus"] = {"coding": [{"code": "resolved"}]}
    assert None is read(resolved, kb).pregnant


def test_history_named_by_text_is_not_current(kb):
    """'Past pregnancy history of miscarriage', found by name, is a past pregnancy, not a current one."""
    condition = {
        "resourceType": "Condition",
        "id": "c-hist",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "161743003"}],
            "text": "Past pregnancy history of miscarriage (situation)",
        },
    }
    facts = read(condition, kb)
    assert [("pregnancy", False)] == [(c.condition, c.current) for c in facts.conditions or ()]
    assert None is facts.pregnant


# --- searchset, single resource, medication statements -----------------------------------


def test_searchset_bundle(kb):
    """A searchset with _include gives the results and the patient; no lists are known."""
    facts = read(load("bundle_searchset.json"), kb)
    assert "pat-002" == facts.patient_id
    assert date(1971, 11, 1) == facts.birth_date  # a partial date: its first day
    assert ["serum_mg", "serum_creatinine"] == [lab.test for lab in facts.labs]
    assert pytest.approx(97 / 88.4, rel=1e-3) == facts.labs[1].value
    assert date(2024, 3, 18) == facts.labs[0].when  # effectivePeriod.start
    assert date(2024, 3, 18) == facts.labs[1].when  # issued


def test_no_medication_resources_means_unknown_lists(kb):
    """Without MedicationRequest/Statement or Condition resources both lists are unknown."""
    facts = read(load("bundle_searchset.json"), kb)
    assert (None, None) == (facts.medications, facts.conditions)


def test_single_observation(kb):
    """A single Observation is read on its own, without a Patient."""
    facts = read(load("observation_serum_mg.json"), kb)
    [lab] = facts.labs
    assert ("serum_mg", 0.71, 0.66, 1.07) == (lab.test, lab.value, lab.ref_low, lab.ref_high)
    assert "Observation/obs-301" == lab.origin.resource
    assert (None, None, None) == (facts.patient_id, facts.medications, facts.conditions)


def test_ppi_by_text_only(kb):
    """An omeprazole statement named only in text is recognised by text."""
    facts = read(load("bundle_medication_statements.json"), kb)
    meds = {m.origin.resource: m for m in facts.medications or ()}
    ppi = meds["MedicationStatement/ms-ppi-text"]
    assert (("omeprazole",), True, date(2022, 1, 15)) == (ppi.drugs, ppi.current, ppi.start)
    assert ppi.origin.matched_by.startswith("text")
    assert "20 mg daily before breakfast" == ppi.dose


def test_combination_product_names_both_ingredients(kb):
    """A combination product named in text yields both ingredients."""
    facts = read(load("bundle_medication_statements.json"), kb)
    meds = {m.origin.resource: m for m in facts.medications or ()}
    assert ("amiloride", "hydrochlorothiazide") == meds["MedicationStatement/ms-combination"].drugs


def test_medication_statement_statuses(kb):
    """Completed and ended statements are not current; contained and urn references resolve.

    The IV magnesium given weeks before the as-of date is listed, and not current.
    """
    facts = read(load("bundle_medication_statements.json"), kb)
    meds = {m.origin.resource: (m.drugs, m.current) for m in facts.medications or ()}
    expected = {
        "MedicationAdministration/ma-ivmg": (("magnesium_sulfate",), False),
        "MedicationStatement/ms-ppi-text": (("omeprazole",), True),
        "MedicationStatement/ms-combination": (("amiloride", "hydrochlorothiazide"), True),
        "MedicationStatement/ms-esomeprazole-completed": (("esomeprazole",), False),
        "MedicationStatement/ms-active-ended": (("pantoprazole",), False),
        "MedicationStatement/ms-contained": (("furosemide",), True),
        "MedicationRequest/mr-by-urn": (("hydrochlorothiazide",), True),
    }
    assert expected == meds


def test_gender_other_and_year_only_birth_date(kb):
    """Gender 'other' leaves sex unknown; a year-only birth date becomes 1 January."""
    facts = read(load("bundle_medication_statements.json"), kb)
    assert (None, date(1970, 1, 1)) == (facts.sex, facts.birth_date)


def test_nested_searchset_in_batch_response_is_flattened(kb):
    """A searchset inside a batch-response is read like a flat bundle."""
    inner = load("bundle_searchset.json")
    outer = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [{"resource": inner, "response": {"status": "200 OK"}}, {"response": {"status": "404"}}],
    }
    assert ["serum_mg", "serum_creatinine"] == [lab.test for lab in read(outer, kb).labs]


# --- bad input ---------------------------------------------------------------------------


def test_unknown_unit_is_refused_naming_resource_and_field(kb):
    """A unit that is not recognised refuses the input, naming entry, resource and field."""
    with pytest.raises(InvalidInputError) as caught:
        read(load("invalid_unknown_unit.json"), kb)
    assert "Bundle.entry[1] (Observation/obs-bad-unit).valueQuantity.unit" == caught.value.field
    assert "mg/dl/x" == caught.value.value


@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_a_number_beyond_a_double_is_refused_naming_the_field(kb, value):
    """10**400 is a JSON number no double holds: refused as not finite, the field named (was a
    bare "malformed Observation (OverflowError)")."""
    data = bundle_of(one_observation(valueQuantity={"value": value, "unit": "mmol/L"}))
    with pytest.raises(InvalidInputError) as caught:
        read(data, kb)
    assert caught.value.field.endswith("(Observation/obs-x).valueQuantity.value")
    assert "not a finite number" == caught.value.problem
    lenient = read(data, kb, strict=False)
    assert [] == list(lenient.labs)
    assert "valueQuantity.value: not a finite number" in lenient.excluded[0]


def test_unknown_unit_is_excluded_when_lenient(kb):
    """Read leniently, the bad result is left out and said so; the good one is kept."""
    facts = read(load("invalid_unknown_unit.json"), kb, strict=False)
    assert ["potassium"] == [lab.test for lab in facts.labs]
    [reason] = facts.excluded
    assert reason.startswith("Observation/obs-bad-unit: valueQuantity.unit: unit not recognised")
    assert "'mg/dl/x'" in reason


def test_implausible_value_is_refused(kb):
    """A serum magnesium of 40 mmol/L is refused as implausible."""
    with pytest.raises(InvalidInputError) as caught:
        read(load("invalid_implausible_value.json"), kb)
    assert "Bundle.entry[1] (Observation/obs-mg-40).valueQuantity.value" == caught.value.field
    assert "implausible" in caught.value.problem


def test_implausible_value_is_excluded_when_lenient(kb):
    """Read leniently, an implausible value is left out, never interpreted."""
    facts = read(load("invalid_implausible_value.json"), kb, strict=False)
    assert () == facts.labs
    assert 1 == len(facts.excluded)


def test_birth_date_after_as_of_is_refused(kb):
    """A birth date after the as-of date is refused, naming Patient.birthDate."""
    with pytest.raises(InvalidInputError) as caught:
        read(load("invalid_birth_date_after_as_of.json"), kb)
    assert "Bundle.entry[0] (Patient/pat-009).birthDate" == caught.value.field


def test_two_patients_without_patient_id_are_refused(kb):
    """A bundle with two Patients needs a patient id, strict or not."""
    for strict in (True, False):
        with pytest.raises(InvalidInputError) as caught:
            read(load("invalid_two_patients.json"), kb, strict=strict)
        assert "Bundle.entry" == caught.value.field
        assert "more than one Patient; pass a patient id" == caught.value.problem


def test_patient_id_selects_one_patient(kb):
    """With a patient id only that patient's resources are read, silently."""
    bundle = load("invalid_two_patients.json")
    first = read(bundle, kb, patient_id="pat-101")
    second = read(bundle, kb, patient_id="pat-102")
    assert (["Observation/obs-1011"], None, ()) == (
        [lab.origin.resource for lab in first.labs],
        first.medications,
        first.excluded,
    )
    assert ("pat-102", "male", ["Observation/obs-1021"], ("furosemide",)) == (
        second.patient_id,
        second.sex,
        [lab.origin.resource for lab in second.labs],
        (second.medications or ())[0].drugs,
    )


def test_unknown_patient_id_is_refused(kb):
    """A patient id that names no Patient of the bundle is refused."""
    with pytest.raises(InvalidInputError) as caught:
        read(load("invalid_two_patients.json"), kb, patient_id="pat-999")
    assert "patient_id" == caught.value.field


def test_resource_of_another_patient_is_left_out_and_noted(kb):
    """In a one-patient bundle, a result about someone else is left out and listed."""
    bundle = load("bundle_searchset.json")
    stranger = one_observation(id="obs-other", subject={"reference": "Patient/pat-777"})
    bundle["entry"].append({"resource": stranger})
    facts = read(bundle, kb)
    assert 2 == len(facts.labs)
    assert ("Observation/obs-other: subject is not the Patient of this input",) == facts.excluded


@pytest.mark.parametrize(
    ("resource", "field"),
    [
        (one_observation(valueQuantity={"value": "0.8", "unit": "mmol/L"}), "valueQuantity.value"),
        (one_observation(valueQuantity={"value": float("nan"), "unit": "mmol/L"}), "valueQuantity.value"),
        (one_observation(effectiveDateTime="01/05/2024"), "effectiveDateTime"),
        (one_observation(effectiveDateTime="2024-02-30"), "effectiveDateTime"),
        (one_observation(code={"coding": "2601-3"}), "code.coding"),
        (
            one_observation(code={"coding": [{"system": "http://loinc.org", "code": 2601}]}),
            "code.coding[0].code",
        ),
        (one_observation(valueQuantity={"value": 0.8}), "valueQuantity.unit"),
        (
            one_observation(referenceRange=[{"low": {"value": 1.0}, "high": {"value": 0.7}}]),
            "referenceRange[0]",
        ),
        (
            {
                "resourceType": "MedicationRequest",
                "id": "mr-x",
                "status": "actve",
                "medicationCodeableConcept": {"text": "omeprazole"},
            },
            "status",
        ),
        ({"resourceType": "MedicationRequest", "id": "mr-y", "status": "active"}, "medication[x]"),
        (
            {
                "resourceType": "Condition",
                "id": "c-x",
                "code": {"text": "Tetany"},
                "clinicalStatus": {"coding": [{"code": "gone"}]},
            },
            "clinicalStatus",
        ),
        ({"resourceType": "Patient", "id": "p-x", "gender": "M"}, "gender"),
    ],
)
def test_malformed_resource_names_the_field(kb, resource, field):
    """A malformed element refuses the input (strict) or leaves the resource out (lenient)."""
    with pytest.raises(InvalidInputError) as caught:
        read(bundle_of(resource), kb)
    rtype, rid = resource["resourceType"], resource["id"]
    assert f"Bundle.entry[0] ({rtype}/{rid}).{field}" == caught.value.field
    facts = read(bundle_of(resource), kb, strict=False)
    assert 1 == len(facts.excluded)
    assert facts.excluded[0].startswith(f"{rtype}/{rid}: {field}")
    assert () == facts.labs


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("not an object", "Bundle.entry[0]"),
        ({"resource": {"id": "x"}}, "Bundle.entry[0].resource"),
        ({"resource": ["Observation"]}, "Bundle.entry[0].resource"),
    ],
)
def test_malformed_entry_names_the_entry(kb, entry, field):
    """An entry that is not an object, or a resource without resourceType, names the entry."""
    with pytest.raises(InvalidInputError) as caught:
        read(bundle_of(entry), kb)
    assert field == caught.value.field
    assert 1 == len(read(bundle_of(entry), kb, strict=False).excluded)


def test_not_a_fhir_resource_is_refused(kb):
    """An object without resourceType, or not an object at all, is refused."""
    for data in ({"status": "final"}, ["Observation"], {"resourceType": 3}):
        with pytest.raises(InvalidInputError) as caught:
            facts_from_fhir(data, kb, as_of=AS_OF)  # type: ignore[arg-type]
        assert "resourceType" == caught.value.field


def test_is_fhir():
    """is_fhir is true for objects with a string resourceType only."""
    assert [True, False, False, False] == [
        is_fhir({"resourceType": "Bundle"}),
        is_fhir({"resourceType": 1}),
        is_fhir({"labs": []}),
        is_fhir(["resourceType"]),
    ]


def test_comparator_result_keeps_its_bound(kb):
    """A censored result (<0.3 mmol/L) is read as a bound: the lab keeps its comparator, nothing is left out."""
    obs = one_observation(valueQuantity={"value": 0.3, "comparator": "<", "unit": "mmol/L"})
    facts = read(obs, kb)
    assert [("serum_mg", 0.3, "<")] == [(lab.test, lab.value, lab.comparator) for lab in facts.labs]
    assert () == facts.excluded


def test_unknown_comparator_is_refused(kb):
    """A comparator FHIR does not define is refused, naming the field and the allowed codes."""
    obs = one_observation(valueQuantity={"value": 0.3, "comparator": "~", "unit": "mmol/L"})
    with pytest.raises(InvalidInputError) as caught:
        read(obs, kb)
    assert "valueQuantity.comparator" in caught.value.field
    assert "<, <=, >, >=" == caught.value.allowed


def test_test_recognised_by_name_with_an_unfit_unit_is_noted_not_refused(kb):
    """A result recognised only by its name whose unit does not fit is noted, not refused."""
    obs = one_observation(code={"text": "Serum magnesium"}, valueQuantity={"value": 12, "unit": "mg/g"})
    facts = read(obs, kb)
    assert () == facts.labs
    assert facts.excluded[0].startswith("Observation/obs-x: not read as Serum magnesium")


def test_recognised_by_name(kb):
    """A result without a LOINC code is recognised by its name and says so."""
    obs = one_observation(code={"text": "Serum magnesium"})
    [lab] = read(obs, kb).labs
    assert ("serum_mg", 0.8) == (lab.test, lab.value)
    assert lab.origin.matched_by.startswith("text")


# --- signs -------------------------------------------------------------------------------


def sign_with_snomed(kb: KnowledgeBase) -> tuple[str, str]:
    """A knowledge-base sign id with its first SNOMED CT code."""
    for sign in kb.signs.values():
        if sign.snomed:
            return sign.id, sign.snomed[0]
    pytest.skip("the knowledge base has no sign with a SNOMED CT code")
    raise AssertionError  # unreachable: skip raises


def test_observation_of_a_sign_is_present(kb):
    """An Observation coded as a sign, without a value, reports the sign present."""
    sign_id, code = sign_with_snomed(kb)
    obs = {
        "resourceType": "Observation",
        "id": "obs-sign",
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "effectiveDateTime": "2024-04-01",
    }
    [sign] = read(obs, kb).signs
    assert (sign_id, True, "Observation/obs-sign") == (sign.sign, sign.present, sign.origin.resource)


def test_latest_observation_of_a_sign_wins(kb):
    """A later 'No' answer about a sign overrides an earlier 'Yes'."""
    sign_id, code = sign_with_snomed(kb)

    def obs(rid: str, when: str, answer: str) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": rid,
            "status": "final",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
            "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": answer}]},
        }

    facts = read(bundle_of(obs("o-1", "2024-01-01", "373066001"), obs("o-2", "2024-03-01", "373067005")), kb)
    assert [(sign_id, False, "Observation/o-2")] == [
        (s.sign, s.present, s.origin.resource) for s in facts.signs
    ]


def test_current_condition_coded_as_a_sign_gives_the_sign(kb):
    """A current Condition coded as a sign reports it present; a resolved one does not."""
    sign_id, code = sign_with_snomed(kb)
    condition = {
        "resourceType": "Condition",
        "id": "c-sign",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
    }
    assert [(sign_id, True)] == [(s.sign, s.present) for s in read(condition, kb).signs]
    condition["clinicalStatus"] = {"coding": [{"code": "resolved"}]}
    assert [(sign_id, "resolved")] == [(s.sign, s.context) for s in read(condition, kb).signs]


# --- never anything but InvalidInputError ------------------------------------------------

_KEYS = st.sampled_from(
    [
        "resourceType",
        "id",
        "status",
        "code",
        "coding",
        "system",
        "text",
        "display",
        "subject",
        "reference",
        "valueQuantity",
        "value",
        "unit",
        "valueInteger",
        "valueBoolean",
        "valueCodeableConcept",
        "effectiveDateTime",
        "effectivePeriod",
        "start",
        "end",
        "issued",
        "referenceRange",
        "low",
        "high",
        "birthDate",
        "gender",
        "clinicalStatus",
        "verificationStatus",
        "abatementDateTime",
        "onsetDateTime",
        "medicationCodeableConcept",
        "medicationReference",
        "authoredOn",
        "dosageInstruction",
        "contained",
        "entry",
        "resource",
        "fullUrl",
        "comparator",
        "dataAbsentReason",
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "Observation",
            "Patient",
            "Condition",
            "MedicationRequest",
            "MedicationStatement",
            "Medication",
            "Bundle",
            "final",
            "active",
            "resolved",
            "2601-3",
            "19123-9",
            "http://loinc.org",
            "http://snomed.info/sct",
            "mmol/L",
            "mg/dL",
            "2024-01-01",
            "2024-13-45",
            "1970",
            "Patient/p1",
            "urn:uuid:p1",
            "#m1",
            "omeprazole",
            "male",
            "entered-in-error",
            "http://unitsofmeasure.org",
            "",
        ]
    ),
    st.text(max_size=8),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=25,
)
_RESOURCE = st.fixed_dictionaries(
    {
        "resourceType": st.sampled_from(
            ["Observation", "Patient", "Condition", "MedicationRequest", "MedicationStatement", "Medication"]
        )
    },
    optional=dict.fromkeys(
        (
            "id",
            "status",
            "code",
            "subject",
            "valueQuantity",
            "effectiveDateTime",
            "birthDate",
            "clinicalStatus",
            "medicationCodeableConcept",
            "medicationReference",
            "referenceRange",
            "valueCodeableConcept",
            "contained",
        ),
        _JSON,
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resources=st.lists(_RESOURCE | _JSON, max_size=4), strict=st.booleans())
def test_odd_json_raises_only_invalid_input(kb, resources, strict):
    """Whatever the JSON, the adapter returns facts or raises InvalidInputError, nothing else."""
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    try:
        facts = facts_from_fhir(bundle, kb, as_of=AS_OF, strict=strict)
    except InvalidInputError:
        return
    assert isinstance(facts, PatientFacts)
