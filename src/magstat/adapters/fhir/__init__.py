"""FHIR R4 input adapter: a Bundle or one resource to :class:`~magstat.core.facts.PatientFacts`.

``facts_from_fhir`` runs the knowledge base's SQL on FHIR views over the input in process
(:mod:`magstat.adapters.fhir.flatten`) and reads the rows with ``facts_from_rows``, the one
clinical reading every surface shares (SQL engines make the same rows and call it too).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from magstat.adapters.fhir.extract import facts_from_fhir, facts_from_rows, is_fhir
from magstat.adapters.fhir.flatten import FlatViews, ResourceRow, row_sql, views_for_kb

__all__ = [
    "FlatViews",
    "ResourceRow",
    "facts_from_fhir",
    "facts_from_rows",
    "is_fhir",
    "row_sql",
    "views_for_kb",
]
