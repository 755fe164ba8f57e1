"""FHIR R4 input adapter: a Bundle or one resource to :class:`~magstat.core.facts.PatientFacts`.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from magstat.adapters.fhir.extract import facts_from_fhir, is_fhir

__all__ = ["facts_from_fhir", "is_fhir"]
