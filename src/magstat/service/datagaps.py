"""The card that says patient data could not be read, so that silence never means "no concern".

CDS Hooks 2.0 (prefetch templates): when the service cannot obtain required data because the
FHIR server cannot be read and the request lacks the prefetch, it answers HTTP 412. magstat
applies that rule to the whole call: when *no* patient data could be had, ``patient-view``
answers 412 (see :mod:`magstat.service.hooks`). When only *part* of the data could not be read
(a query failed, timed out or was refused), the assessment rests on less than the chart holds;
the cards it makes say so in their detail, and when it makes no card at all, this module's
card says that the status could not be fully assessed and what was not read, so that an EHR
user can tell "nothing to say" from "could not look".

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from magstat.adapters.cds_hooks.cards import (
    NAMESPACE,
    OVERRIDE_REASONS,
    OVERRIDE_SYSTEM,
    SUMMARY_MAX,
    TOPIC_SYSTEM,
)

__all__ = ["TOPIC_DATA_UNREAD", "unread_data_card"]

TOPIC_DATA_UNREAD = "data-not-read"
"""The card topic code of the "could not be read" card."""

_SUMMARY = "Magnesium status not fully assessed: some patient data could not be read"


def unread_data_card(
    *,
    service_id: str,
    hook_instance: str,
    version: str,
    kb_version: str,
    unread: Iterable[str],
    notes: Iterable[str],
) -> dict[str, Any]:
    """A warning card: part of the patient's data could not be read, so no card is no answer.

    Args:
        service_id: the CDS service called.
        hook_instance: the call's ``hookInstance`` (seeds the card uuid).
        version: the magstat version.
        kb_version: the knowledge base version.
        unread: the prefetch keys that could not be read.
        notes: why each could not be read (no patient data in them).

    """
    lines = [
        "**magstat could not read part of this patient's record**, so the absence of a magnesium "
        "card does not mean there is no concern. The assessment below rests on what was read.",
        "",
        "Not read: " + ", ".join(sorted(set(unread))) + ".",
        "",
    ]
    lines += [f"- {note}" for note in notes]
    lines += ["", "Open the patient again later, or check magnesium-related data in the chart directly."]
    summary = _SUMMARY[:SUMMARY_MAX]
    return {
        "uuid": str(uuid.uuid5(NAMESPACE, f"card/{hook_instance}/{service_id}/{TOPIC_DATA_UNREAD}")),
        "summary": summary,
        "indicator": "warning",
        "detail": "\n".join(lines),
        "source": {
            "label": f"magstat {version} · knowledge base {kb_version}",
            "topic": {"system": TOPIC_SYSTEM, "code": TOPIC_DATA_UNREAD, "display": "Patient data not read"},
        },
        "overrideReasons": [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": OVERRIDE_REASONS[code]}
            for code in ("recent-result", "not-applicable")
        ],
    }
