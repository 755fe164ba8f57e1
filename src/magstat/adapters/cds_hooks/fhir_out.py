"""Assessment to a FHIR R4 ``RiskAssessment`` resource.

- ``status`` ``final``; ``subject`` the patient (a reference when the id is known, else a
  display); ``occurrenceDateTime`` the as-of date.
- ``method``: magstat and the knowledge-base version and hash (text), so that the result can be
  traced to the rules that made it.
- ``basis``: references to the resources the findings used (``Observation/...``,
  ``MedicationRequest/...``), each once.
- ``prediction[0]``: the outcome (magnesium deficiency, or magnesium excess), a
  ``qualitativeRisk`` from the HL7 risk-probability code system and the summary as
  ``rationale``. ``indeterminate`` has no qualitative risk: unknown is not low.
- ``mitigation``: the next steps; ``note``: findings, safety, limitations, the disclaimer.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import re
from typing import Any

from magstat.core.result import Assessment
from magstat.kb.schema import KnowledgeBase

__all__ = ["RISK_PROBABILITY", "risk_assessment"]

RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
_METHOD_SYSTEM = "urn:magstat:method"
_REFERENCE = re.compile(r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$")

# status -> (risk-probability code, display); the code system's own displays.
_RISK: dict[str, tuple[str, str]] = {
    "excess": ("certain", "Certain"),
    "deficient": ("certain", "Certain"),
    "likely_deficient": ("high", "High likelihood"),
    "at_risk": ("moderate", "Moderate likelihood"),
    "unlikely": ("low", "Low likelihood"),
}


def risk_assessment(result: Assessment, kb: KnowledgeBase, *, version: str) -> dict[str, Any]:
    """The assessment as a FHIR R4 ``RiskAssessment`` (a JSON-ready dict).

    Args:
        result: the assessment.
        kb: the knowledge base (for the citations in the notes).
        version: the magstat version.

    """
    subject: dict[str, Any] = (
        {"reference": f"Patient/{result.patient_id}"}
        if result.patient_id and _REFERENCE.match(f"Patient/{result.patient_id}")
        else {"display": "the assessed patient"}
    )
    outcome = "Magnesium excess (hypermagnesaemia)" if result.status == "excess" else "Magnesium deficiency"
    prediction: dict[str, Any] = {"outcome": {"text": outcome}, "rationale": result.summary}
    if result.status in _RISK:
        code, display = _RISK[result.status]
        prediction["qualitativeRisk"] = {
            "coding": [{"system": RISK_PROBABILITY, "code": code, "display": display}],
            "text": result.status.replace("_", " ") + (f" ({result.severity})" if result.severity else ""),
        }
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": subject,
        "occurrenceDateTime": result.as_of.isoformat(),
        "method": {
            "coding": [{"system": _METHOD_SYSTEM, "code": "magstat-assess", "display": "magstat assessment"}],
            "text": (f"magstat {version}; knowledge base {result.kb_version} (sha256 {result.kb_sha256})"),
        },
        "performer": {"display": f"magstat {version}"},
        "prediction": [prediction],
    }
    basis = _basis(result)
    if basis:
        resource["basis"] = [{"reference": ref} for ref in basis]
    if result.next_steps:
        resource["mitigation"] = " ".join(f"{a.text} ({a.reason})" for a in result.next_steps)
    notes = [f"{f.text} [{', '.join(f.sources)}]" for f in result.findings if f.weight != "info"]
    notes += [f"Safety: {a.text} ({a.reason})" for a in result.safety]
    notes += [f"Limitation: {a.text}" for a in result.limitations]
    cited = [kb.sources[s] for s in result.sources if s in kb.sources]
    if cited:
        notes.append("Sources: " + " | ".join(f"[{s.id}] {s.citation}" for s in cited))
    notes.append(
        "Decision support, not a diagnosis: review the basis of each finding before acting on it. "
        f"Knowledge base {result.kb_version}, sha256 {result.kb_sha256}."
    )
    resource["note"] = [{"text": n} for n in notes if n.strip()]
    return resource


def _basis(result: Assessment) -> list[str]:
    refs: dict[str, None] = {}
    for finding in result.findings:
        for item in finding.inputs:
            if item.source and _REFERENCE.match(item.source):
                refs.setdefault(item.source)
    for part in (result.egfr.inputs, result.femg.inputs):
        for item in part:
            if item.source and _REFERENCE.match(item.source):
                refs.setdefault(item.source)
    if result.serum_magnesium.source and _REFERENCE.match(result.serum_magnesium.source):
        refs.setdefault(result.serum_magnesium.source)
    return list(refs)
