"""Assessment to a FHIR R4 ``RiskAssessment`` resource.

One function makes the resource for every surface (``magstat assess --format fhir``,
``POST /assess?format=fhir`` and the SMART app's write-back), so all give the same JSON. It is
deterministic: the time it states is the assessment's as-of date, never the clock.

- ``status`` ``final``; ``subject`` the patient (a reference when the id is known, else a
  display); ``occurrenceDateTime`` the as-of date.
- ``performer``: a reference to a contained ``Device`` named magstat, whose versions are the
  software version, the knowledge-base version and the knowledge-base SHA-256, so that the
  result can be traced to the rules that made it. ``method`` says how the status is reached.
- ``basis``: references to the resources the findings used (``Observation/...``,
  ``Condition/...``, ``MedicationRequest/...``), each once, as the adapter recorded them.
- ``prediction[0]``: the outcome (coded in SNOMED CT where the knowledge base holds a verified
  code, ``risk.toml``), a ``qualitativeRisk`` from the HL7 risk-probability code system mapped
  from the status by the knowledge base (never ``certain``: this is decision support, not a
  diagnosis; ``indeterminate`` has none, because unknown is not low) and the summary as
  ``rationale``.
- ``mitigation``: the first next step; ``note``: the other next steps, findings, safety,
  limitations, sources and the statement that this is not a diagnosis.

.. versionadded:: 0.1.0
.. versionchanged:: 0.2.0
   Coded outcome, a qualitative probability that is never ``certain``, a contained ``Device``
   as performer, and :func:`risk_assessment_json` for byte-identical output on every surface.
"""

from __future__ import annotations

import json
import re
from typing import Any

from magstat.core.result import Assessment
from magstat.errors import KnowledgeBaseError
from magstat.kb.schema import KnowledgeBase

__all__ = ["DEVICE_ID", "RISK_PROBABILITY", "risk_assessment", "risk_assessment_json"]

RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
DEVICE_ID = "magstat"
"""The id of the contained ``Device`` that ``performer`` references (``#magstat``)."""

_METHOD_SYSTEM = "urn:magstat:method"
_REFERENCE = re.compile(r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$")

# The displays of the HL7 risk-probability code system (S481).
_PROBABILITY_DISPLAY = {
    "negligible": "Negligible likelihood",
    "low": "Low likelihood",
    "moderate": "Moderate likelihood",
    "high": "High likelihood",
}

_NOT_A_DIAGNOSIS = (
    "Decision support, not a diagnosis: review the basis of each finding before acting on it. "
    "The likelihood is magstat's qualitative estimate from the data available, not a certainty."
)

_METHOD_TEXT = (
    "Rule-based magstat assessment: the status is the first rule that holds, in order: serum magnesium "
    "above or below the lab's interval; a low body-store marker, or a grey-zone serum value with a strong "
    "risk, a sign or low intake; any risk factor, Magnesium Depletion Score of 2 or more, or a sign; "
    "no risk with a normal serum value or a complete low score; otherwise indeterminate. Each rule "
    "and its cited sources are in the findings."
)


def risk_assessment(result: Assessment, kb: KnowledgeBase, *, version: str) -> dict[str, Any]:
    """The assessment as a FHIR R4 ``RiskAssessment`` (a JSON-ready dict).

    Args:
        result: the assessment.
        kb: the knowledge base (outcome codes, the probability of each status, citations).
        version: the magstat version (named by the ``Device``).

    Returns:
        The resource, with a contained ``Device`` as performer; the same input always gives the
        same dict.

    Raises:
        KnowledgeBaseError: the knowledge base has no prediction for the status (its loader
            refuses such a knowledge base, so only a hand-built one can).

    """
    subject: dict[str, Any] = (
        {"reference": f"Patient/{result.patient_id}"}
        if result.patient_id and _REFERENCE.match(f"Patient/{result.patient_id}")
        else {"display": "the assessed patient"}
    )
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "contained": [_device(result, version)],
        "status": "final",
        "method": {
            "coding": [{"system": _METHOD_SYSTEM, "code": "magstat-assess", "display": "magstat assessment"}],
            "text": (
                f"{_METHOD_TEXT} magstat {version}; knowledge base {result.kb_version} "
                f"(sha256 {result.kb_sha256})."
            ),
        },
        "subject": subject,
        "occurrenceDateTime": result.as_of.isoformat(),
        "performer": {"reference": f"#{DEVICE_ID}", "display": f"magstat {version}"},
    }
    basis = _basis(result)
    if basis:
        resource["basis"] = [{"reference": ref} for ref in basis]
    resource["prediction"] = [_prediction(result, kb)]
    if result.next_steps:
        top = result.next_steps[0]
        resource["mitigation"] = f"{top.text} ({top.reason})"
    notes = [f"Next step: {a.text} ({a.reason})" for a in result.next_steps[1:]]
    notes += [f"{f.text} [{', '.join(f.sources)}]" for f in result.findings if f.weight != "info"]
    notes += [f"Safety: {a.text} ({a.reason})" for a in result.safety]
    notes += [f"Limitation: {a.text}" for a in result.limitations]
    cited = [kb.sources[s] for s in result.sources if s in kb.sources]
    if cited:
        notes.append("Sources: " + " | ".join(f"[{s.id}] {s.citation}" for s in cited))
    notes.append(f"{_NOT_A_DIAGNOSIS} Knowledge base {result.kb_version}, sha256 {result.kb_sha256}.")
    resource["note"] = [{"text": n} for n in notes if n.strip()]
    return resource


def risk_assessment_json(result: Assessment, kb: KnowledgeBase, *, version: str) -> str:
    """:func:`risk_assessment` as JSON text (two-space indent, keys in resource order, newline).

    The CLI prints it and the REST service sends it, so both give the same bytes.
    """
    return json.dumps(risk_assessment(result, kb, version=version), indent=2, ensure_ascii=False) + "\n"


def _device(result: Assessment, version: str) -> dict[str, Any]:
    """The contained ``Device``: magstat, its version and the knowledge base it ran with."""

    def entry(kind: str, value: str) -> dict[str, Any]:
        return {"type": {"text": kind}, "value": value}

    return {
        "resourceType": "Device",
        "id": DEVICE_ID,
        "status": "active",
        "deviceName": [{"name": "magstat", "type": "manufacturer-name"}],
        "type": {"text": "Clinical decision support software"},
        "version": [
            entry("software", version),
            entry("knowledge base version", result.kb_version),
            entry("knowledge base sha256", result.kb_sha256),
        ],
    }


def _prediction(result: Assessment, kb: KnowledgeBase) -> dict[str, Any]:
    """The prediction: the outcome the status is about and its qualitative probability."""
    mapping = kb.risk.statuses.get(result.status)
    outcome = kb.risk.outcomes.get(mapping.outcome) if mapping else None
    if mapping is None or outcome is None:
        raise KnowledgeBaseError(f"risk.toml: no prediction for status {result.status!r}")
    probability = mapping.probability
    concept: dict[str, Any] = {"text": outcome.text}
    if outcome.system and outcome.code:
        concept = {
            "coding": [{"system": outcome.system, "code": outcome.code, "display": outcome.display}],
            **concept,
        }
    prediction: dict[str, Any] = {"outcome": concept}
    if probability is not None:
        text = result.status.replace("_", " ") + (f" ({result.severity})" if result.severity else "")
        prediction["qualitativeRisk"] = {
            "coding": [
                {
                    "system": kb.risk.probability_system or RISK_PROBABILITY,
                    "code": probability,
                    "display": _PROBABILITY_DISPLAY[probability],
                }
            ],
            "text": text,
        }
    prediction["rationale"] = result.summary
    return prediction


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
