"""CDS Hooks 2.0 messages as pydantic models: the request, cards, discovery and feedback.

They validate what the EHR sends and document the API in the OpenAPI document. The service
builds responses as plain dicts (optional attributes are omitted, never ``null``, as the
specification requires) and declares these models for the documentation.

.. versionadded:: 0.1.0
"""

# ruff: noqa: N815 - attribute names are the wire names of the CDS Hooks specification
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "AcceptedSuggestion",
    "Card",
    "CardAction",
    "CdsResponse",
    "Coding",
    "Discovery",
    "Feedback",
    "FeedbackRequest",
    "FeedbackResponse",
    "FhirAuthorization",
    "HookRequest",
    "Link",
    "OperationOutcome",
    "OverrideReason",
    "ServiceDescription",
    "Source",
    "Suggestion",
]


class _Open(BaseModel):
    """Accepts attributes it does not know (``extension`` and later additions)."""

    model_config = ConfigDict(extra="allow")


class Coding(_Open):
    """A code from a code system (CDS Hooks Coding)."""

    system: str = Field(max_length=1024)
    code: str = Field(max_length=256)
    display: str | None = Field(default=None, max_length=1024)


class FhirAuthorization(_Open):
    """The OAuth 2.0 access token the EHR gives the service to read its FHIR server."""

    access_token: str = Field(min_length=1, max_length=16_384)
    token_type: str = "Bearer"  # noqa: S105 - the token type, not a secret
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None


class HookRequest(_Open):
    """The body of ``POST /cds-services/{id}``."""

    hook: str = Field(min_length=1, max_length=128, description="the hook that triggered the call")
    hookInstance: str = Field(min_length=1, max_length=256, description="a UUID for this hook call")
    fhirServer: str | None = Field(
        default=None, max_length=2048, description="base URL of the EHR's FHIR server"
    )
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any] = Field(description="hook context: patientId, userId, draftOrders, ...")
    prefetch: dict[str, dict[str, Any] | None] | None = Field(
        default=None, description="prefetch key to FHIR resource or Bundle (or null when the EHR has no data)"
    )

    @model_validator(mode="after")
    def _server_with_token(self) -> HookRequest:
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirServer is required when fhirAuthorization is given")
        return self


class Source(_Open):
    """Where the guidance of a card comes from."""

    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class CardAction(_Open):
    """A change the EHR applies when a suggestion is accepted."""

    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None


class Suggestion(_Open):
    """A set of actions the clinician can accept with one click."""

    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[CardAction] | None = None


class Link(_Open):
    """A link to more information (here: the full magstat report)."""

    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Card(_Open):
    """A CDS Hooks card."""

    uuid: str | None = None
    summary: str = Field(max_length=139)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None


class CdsResponse(_Open):
    """The answer to a hook call: zero or more cards."""

    cards: list[Card]
    systemActions: list[CardAction] | None = None


class ServiceDescription(_Open):
    """One CDS service in the discovery response."""

    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(_Open):
    """The discovery response."""

    services: list[ServiceDescription]


class AcceptedSuggestion(_Open):
    """A suggestion the clinician accepted."""

    id: str = Field(min_length=1, max_length=256)


class OverrideReason(_Open):
    """Why the clinician overrode a card."""

    reason: Coding | None = None
    userComment: str | None = Field(default=None, max_length=4000)


class Feedback(_Open):
    """What the clinician did with one card."""

    card: str = Field(min_length=1, max_length=256)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = Field(default=None, max_length=100)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime

    @model_validator(mode="after")
    def _accepted_has_suggestions(self) -> Feedback:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required when outcome is accepted")
        return self


class FeedbackRequest(_Open):
    """The body of ``POST /cds-services/{id}/feedback``."""

    feedback: list[Feedback] = Field(min_length=1, max_length=1000)


class FeedbackResponse(BaseModel):
    """How many feedback items were stored."""

    stored: int


class OperationOutcome(_Open):
    """A FHIR OperationOutcome: how every error is reported."""

    resourceType: Literal["OperationOutcome"] = "OperationOutcome"
    issue: list[dict[str, Any]]
