"""Constructed FHIR R4 bundles for the arrhythmia, therapy, severity and always-on safety rules.

Each case is built from a published rule (the KB source named in its docstring), not taken from
a record: the CLI, core and CDS Hooks tests all read the same bundles. Dates are fixed; the
as-of date of every case is :data:`AS_OF`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

AS_OF = dt.date(2024, 6, 1)
"""The as-of date of every constructed case."""

LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"


class Case:
    """A FHIR Bundle under construction for one patient."""

    def __init__(self, pid: str, *, birth: str = "1960-01-01", gender: str = "female") -> None:
        self.pid = pid
        self.entries: list[dict[str, Any]] = [
            {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth}
        ]

    def _add(self, resource: dict[str, Any]) -> Case:
        resource.setdefault("id", f"{resource['resourceType'].lower()}-{len(self.entries)}")
        resource["subject"] = {"reference": f"Patient/{self.pid}"}
        self.entries.append(resource)
        return self

    def lab(
        self,
        code: str,
        value: float,
        unit: str,
        when: str = "2024-05-30T08:00:00Z",
        low: float | None = None,
        high: float | None = None,
    ) -> Case:
        """An Observation with a LOINC code and a UCUM quantity (and a reference range if given)."""
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        }
        if low is not None and high is not None:
            obs["referenceRange"] = [
                {
                    "low": {"value": low, "unit": unit, "system": UCUM, "code": unit},
                    "high": {"value": high, "unit": unit, "system": UCUM, "code": unit},
                }
            ]
        return self._add(obs)

    def mg(self, value: float, when: str = "2024-05-30T08:00:00Z") -> Case:
        """Serum magnesium in mmol/L with a 0.70-1.00 mmol/L laboratory interval."""
        return self.lab("2601-3", value, "mmol/L", when, 0.70, 1.00)

    def potassium(self, value: float) -> Case:
        """Serum potassium in mmol/L with a 3.5-5.1 mmol/L interval."""
        return self.lab("2823-3", value, "mmol/L", low=3.5, high=5.1)

    def calcium(self, value: float) -> Case:
        """Total serum calcium in mg/dL with an 8.6-10.2 mg/dL interval."""
        return self.lab("17861-6", value, "mg/dL", low=8.6, high=10.2)

    def creatinine(self, value: float, when: str = "2024-05-30T08:00:00Z") -> Case:
        """Serum creatinine in mg/dL."""
        return self.lab("2160-0", value, "mg/dL", when)

    def egfr(self, value: float, when: str) -> Case:
        """A reported eGFR (CKD-EPI 2021 LOINC 98979-8)."""
        return self.lab("98979-8", value, "mL/min/{1.73_m2}", when)

    def drug(
        self,
        text: str,
        rxnorm: str | None = None,
        *,
        kind: str = "MedicationRequest",
        route: tuple[str, str] | None = None,
        reason: str | None = None,
        dose_mg: float | None = None,
        per_day: int | None = None,
    ) -> Case:
        """An active MedicationRequest (or MedicationStatement), with route, reason and dosage."""
        concept: dict[str, Any] = {"text": text}
        if rxnorm:
            concept["coding"] = [{"system": RXNORM, "code": rxnorm, "display": text}]
        dosage: dict[str, Any] = {}
        if route is not None:
            dosage["route"] = {"coding": [{"system": SNOMED, "code": route[0], "display": route[1]}]}
        if dose_mg is not None:
            dosage["doseAndRate"] = [
                {"doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}
            ]
        if per_day is not None:
            dosage["timing"] = {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}}
        resource: dict[str, Any] = {
            "resourceType": kind,
            "status": "active",
            "medicationCodeableConcept": concept,
        }
        if kind == "MedicationRequest":
            resource["intent"] = "order"
            resource["authoredOn"] = "2024-05-20"
            if dosage:
                resource["dosageInstruction"] = [dosage]
        else:
            resource["effectiveDateTime"] = "2024-05-20"
            if dosage:
                resource["dosage"] = [dosage]
        if reason:
            resource["reasonCode"] = [{"text": reason}]
        return self._add(resource)

    def given(
        self,
        text: str,
        rxnorm: str | None = None,
        *,
        status: str = "completed",
        start: str = "2024-06-01T04:00:00Z",
        end: str | None = "2024-06-01T06:00:00Z",
        route: tuple[str, str] | None = None,
        dose: tuple[float, str] | None = None,
        reason: str | None = None,
    ) -> Case:
        """A MedicationAdministration: one dose given (by default completed on the as-of date)."""
        concept: dict[str, Any] = {"text": text}
        if rxnorm:
            concept["coding"] = [{"system": RXNORM, "code": rxnorm, "display": text}]
        resource: dict[str, Any] = {
            "resourceType": "MedicationAdministration",
            "status": status,
            "medicationCodeableConcept": concept,
            "effectivePeriod": {"start": start, **({"end": end} if end else {})},
        }
        dosage: dict[str, Any] = {}
        if route is not None:
            dosage["route"] = {"coding": [{"system": SNOMED, "code": route[0], "display": route[1]}]}
        if dose is not None:
            dosage["dose"] = {"value": dose[0], "unit": dose[1], "system": UCUM, "code": dose[1]}
        if dosage:
            resource["dosage"] = dosage
        if reason:
            resource["reasonCode"] = [{"text": reason}]
        return self._add(resource)

    def condition(self, text: str, onset: str = "2024-05-28") -> Case:
        """An active, confirmed problem-list Condition with a recent onset."""
        return self._add(
            {
                "resourceType": "Condition",
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "verificationStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "code": "confirmed",
                        }
                    ]
                },
                "code": {"text": text},
                "onsetDateTime": onset,
                "recordedDate": onset,
            }
        )

    def bundle(self) -> dict[str, Any]:
        """The collection Bundle."""
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": f"urn:uuid:{self.pid}-{i}", "resource": resource}
                for i, resource in enumerate(self.entries)
            ],
        }


IV = ("47625008", "Intravenous route")
ORAL = ("26643006", "Oral route")


def qt_low_k() -> dict[str, Any]:
    """Methadone and citalopram, Mg 0.72 mmol/L (low-normal), K 3.1 mmol/L (S341, S342, S346)."""
    return (
        Case("qt-low-k", birth="1970-04-02")
        .drug("methadone", "6813")
        .drug("citalopram", "2556")
        .mg(0.72)
        .potassium(3.1)
        .bundle()
    )


def qt_normal_mg() -> dict[str, Any]:
    """Methadone with K 3.1 mmol/L but serum Mg 0.92 mmol/L: the Mg-specific ECG rule does not fire."""
    return Case("qt-normal-mg", birth="1970-04-02").drug("methadone", "6813").mg(0.92).potassium(3.1).bundle()


def refractory() -> dict[str, Any]:
    """Mg 0.52 mmol/L with hypocalcaemia and refractory hypokalaemia (S54, S63): IV, not oral."""
    return (
        Case("refractory", birth="1955-09-09", gender="male")
        .mg(0.52)
        .calcium(7.6)
        .potassium(3.0)
        .condition("Refractory hypokalemia")
        .bundle()
    )


def tetany() -> dict[str, Any]:
    """Mg 0.6 mmol/L with tetany (S54): symptomatic, graded severe."""
    return Case("tetany", birth="1980-02-02").mg(0.6).condition("Tetany").bundle()


def mg_therapy(serum_mg: float) -> dict[str, Any]:
    """Pre-eclampsia on IV magnesium sulfate (S56, S60) with the given serum Mg."""
    return (
        Case(f"mgso4-{serum_mg}", birth="1994-07-07")
        .condition("Pre-eclampsia")
        .drug("magnesium sulfate 50 MG/ML Injectable Solution", route=IV, reason="Severe pre-eclampsia")
        .mg(serum_mg)
        .creatinine(0.6)
        .bundle()
    )


def oral_mg_high(serum_mg: float) -> dict[str, Any]:
    """Magnesium oxide by mouth with a high serum Mg and poor kidney function: excess advice stays."""
    return (
        Case(f"oral-{serum_mg}", birth="1940-03-03")
        .drug("magnesium oxide 400 MG Oral Tablet", route=ORAL, dose_mg=400, per_day=1)
        .mg(serum_mg)
        .creatinine(2.6)
        .bundle()
    )


def digoxin_no_mg() -> dict[str, Any]:
    """Digoxin with no magnesium result (S20): the check is asked for whatever the status."""
    return (
        Case("digoxin", birth="1945-05-05", gender="male")
        .drug("digoxin 0.125 MG Oral Tablet", "3407")
        .bundle()
    )


def child_supplement(text: str = "Magnesium 100 mg chewable tablet", dose_mg: float = 100) -> dict[str, Any]:
    """A 6-year-old taking a magnesium product twice a day (UL 110 mg/day at 4-8 years, S16)."""
    return (
        Case("child", birth="2018-01-15")
        .drug(text, kind="MedicationStatement", route=ORAL, dose_mg=dose_mg, per_day=2)
        .bundle()
    )


def infant_severe() -> dict[str, Any]:
    """A 4-month-old with serum Mg 0.35 mmol/L: IV treatment, but no adult label dose (S58 doses are adult)."""
    return Case("infant", birth="2024-02-01", gender="male").mg(0.35).bundle()


def same_time_creatinines() -> dict[str, Any]:
    """Two creatinines with the same timestamp (eGFR about 63 vs 38): flagged, the safer used."""
    return (
        Case("two-creatinines", birth="1964-06-01")
        .creatinine(1.0, "2024-05-30T08:00:00Z")
        .creatinine(1.55, "2024-05-30T08:00:00Z")
        .bundle()
    )


def egfr_far_apart() -> dict[str, Any]:
    """A reported eGFR of 91 six weeks before a creatinine that gives about 22: flagged, 22 used."""
    return (
        Case("egfr-gap", birth="1950-06-01", gender="male")
        .egfr(91, "2024-04-18T08:00:00Z")
        .creatinine(2.95, "2024-05-30T08:00:00Z")
        .bundle()
    )


def insulin_only() -> dict[str, Any]:
    """Insulin alone with a normal serum Mg: insulin is not a risk factor (S89)."""
    return Case("insulin", birth="1970-01-01").drug("insulin glargine", "5856").mg(0.9).bundle()


def low_on_oral_magnesium() -> dict[str, Any]:
    """Serum Mg 0.6 mmol/L while magnesium oxide 400 mg twice a day is taken, with a PPI."""
    return (
        Case("low-on-oral", birth="1962-03-01")
        .mg(0.6)
        .creatinine(0.9)
        .drug(
            "magnesium oxide 400 MG Oral Tablet",
            kind="MedicationStatement",
            route=ORAL,
            dose_mg=400,
            per_day=2,
        )
        .drug("omeprazole 20 MG Delayed Release Oral Capsule", "7646")
        .bundle()
    )


MG_IV = "Magnesium sulfate 4 g in 100 mL water for injection"


def iv_magnesium_given() -> Case:
    """Serum Mg 0.55 mmol/L (0.70-1.00) drawn at 08:00, two hours after 4 g of IV magnesium sulfate ended.

    Recorded as a MedicationAdministration only, as hospital records hold a dose given (S669).
    """
    return (
        Case("ma-iv", birth="1958-03-03")
        .given(MG_IV, route=IV, dose=(4, "g"), reason="Hypomagnesemia")
        .mg(0.55, when="2024-06-01T08:00:00Z")
        .condition("Essential hypertension", onset="2020-01-01")
    )
