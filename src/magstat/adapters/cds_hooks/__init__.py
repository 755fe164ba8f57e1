"""CDS Hooks 2.0 adapter: hook requests to FHIR input, assessments to cards and to FHIR output.

The HTTP service (``magstat.service``) wires these pure functions to the network.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from magstat.adapters.cds_hooks.cards import CardContext, DraftDrug, order_cards, patient_view_cards
from magstat.adapters.cds_hooks.fhir_out import risk_assessment, risk_assessment_json
from magstat.adapters.cds_hooks.request import (
    DraftOrders,
    PrefetchReading,
    draft_drugs,
    draft_orders,
    patient_bundle,
    prefetch_templates,
    render_template,
)

__all__ = [
    "CardContext",
    "DraftDrug",
    "DraftOrders",
    "PrefetchReading",
    "draft_drugs",
    "draft_orders",
    "order_cards",
    "patient_bundle",
    "patient_view_cards",
    "prefetch_templates",
    "render_template",
    "risk_assessment",
    "risk_assessment_json",
]
