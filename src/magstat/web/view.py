"""What the result page and the PDF show: the presentation model, with the laboratory results.

The model itself is :mod:`magstat.render.model`, shared with the text, the standalone HTML
report and the CDS card detail; this module keeps the web layer's names for it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from magstat.core.facts import PatientFacts
from magstat.core.result import Assessment
from magstat.kb.schema import KnowledgeBase
from magstat.render.model import (
    STATUS_LABELS,
    AssessmentView,
    FindingGroup,
    LabResult,
    LabView,
    SourceView,
    assessment_view,
    fmt,
)

__all__ = [
    "STATUS_LABELS",
    "FindingGroup",
    "LabResult",
    "LabView",
    "ResultView",
    "SourceView",
    "fmt",
    "result_view",
]

ResultView = AssessmentView
"""The web layer's name of the presentation model."""


def result_view(result: Assessment, facts: PatientFacts, kb: KnowledgeBase) -> AssessmentView:
    """Arrange an assessment for the result page and the PDF (with the laboratory results read)."""
    return assessment_view(result, kb, facts)
