"""The ``[smart]`` settings: the EHRs the app may be launched from, scopes, session lifetimes.

```toml
[[smart.ehrs]]
iss = "https://ehr.example/fhir"   # the FHIR base URL the EHR sends as `iss`
client_id = "magstat"
# private_key_file = "keys/magstat-smart.pem"   # confidential client (private_key_jwt); absent: public client
# scopes = "launch openid fhirUser patient/*.rs"  # optional override
```

A relative ``private_key_file`` is read relative to the folder of the config file.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DEFAULT_SCOPES", "WRITE_SCOPE", "SmartEhr", "SmartSettings", "origin_of"]

DEFAULT_SCOPES = (
    "launch openid fhirUser patient/Patient.rs patient/Observation.rs patient/MedicationRequest.rs "
    "patient/MedicationStatement.rs patient/MedicationAdministration.rs patient/Condition.rs "
    "patient/AllergyIntolerance.rs"
)
"""The scopes of an EHR launch (SMART App Launch 2.x, scopes v2): what the chart read needs."""

WRITE_SCOPE = "patient/RiskAssessment.c"
"""The scope asked in addition for "Save to chart" (create a RiskAssessment)."""


def origin_of(url: str) -> str:
    """The origin (``scheme://host[:port]``) of a URL, lower-cased as browsers compare it."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmartEhr(_Section):
    """One EHR registered for SMART launch."""

    iss: str = Field(min_length=1, description="the FHIR base URL the EHR sends as iss")
    client_id: str = Field(min_length=1, max_length=256)
    private_key_file: Path | None = Field(
        default=None,
        description="PEM private key (RSA or EC P-384): a confidential client with private_key_jwt; absent: public",
    )
    key_id: str | None = Field(
        default=None, description="the kid of the key as registered; default: its RFC 7638 thumbprint"
    )
    scopes: str | None = Field(default=None, description="the scopes asked; default: [smart] scopes")
    name: str | None = Field(default=None, max_length=120, description="the EHR's name on the start page")
    frame_origins: tuple[str, ...] = Field(
        default=(),
        description="origins allowed to frame the app (the EHR's web origin); default: the origin of iss",
    )

    @field_validator("iss")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be the FHIR base URL (https://...), without query or fragment")
        if parts.username or parts.password:
            raise ValueError("must not carry a user name or password")
        return value.rstrip("/")

    @field_validator("frame_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
                raise ValueError(f"{origin!r} is not an origin (https://host[:port])")
            out.append(origin_of(origin))
        return tuple(out)

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: str | None) -> str | None:
        if value is not None and not value.split():
            raise ValueError("must name at least one scope")
        return " ".join(value.split()) if value is not None else None

    @property
    def label(self) -> str:
        """What the start page calls this EHR."""
        return self.name or urlsplit(self.iss).netloc

    @property
    def confidential(self) -> bool:
        """Whether the app authenticates to this EHR with a signed assertion (private_key_jwt)."""
        return self.private_key_file is not None

    @property
    def origins(self) -> tuple[str, ...]:
        """The origins allowed to frame the app for this EHR."""
        return self.frame_origins or (origin_of(self.iss),)


class SmartSettings(_Section):
    """SMART App Launch: the registered EHRs and how the app uses what they grant."""

    ehrs: tuple[SmartEhr, ...] = ()
    scopes: str = Field(default=DEFAULT_SCOPES, description="the scopes of an EHR launch (per EHR: scopes)")
    write_scope: str = Field(
        default=WRITE_SCOPE,
        description='asked in addition, for "Save to chart" (a RiskAssessment); "" asks none and hides the button',
    )
    session_ttl_seconds: int = Field(
        default=3600, ge=60, le=24 * 3600, description="a signed-in session ends this long after the launch"
    )
    launch_ttl_seconds: int = Field(
        default=600, ge=30, le=3600, description="the time allowed between the launch and the callback"
    )
    fhir_deadline_seconds: float = Field(
        default=10.0, gt=0, le=120, description="the time allowed to read the chart from the FHIR server"
    )
    fhir_max_pages: int = Field(default=50, ge=1, le=1000, description="the most pages read of one search")
    allow_http: bool = Field(
        default=False, description="allow plain-http EHR endpoints (loopback testing only)"
    )

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: str) -> str:
        if not value.split():
            raise ValueError("must name at least one scope")
        return " ".join(value.split())

    @model_validator(mode="after")
    def _distinct(self) -> SmartSettings:
        seen = set()
        for ehr in self.ehrs:
            if ehr.iss in seen:
                raise ValueError(f"smart.ehrs: iss {ehr.iss!r} is listed twice")
            seen.add(ehr.iss)
            if urlsplit(ehr.iss).scheme == "http" and not self.allow_http:
                raise ValueError(
                    f"smart.ehrs ({ehr.iss}): plain http is refused; use https (allow_http is for loopback tests)"
                )
        return self

    def find(self, iss: str) -> SmartEhr | None:
        """The registered EHR whose ``iss`` this is (a trailing slash ignored), or ``None``."""
        wanted = iss.strip().rstrip("/")
        return next((e for e in self.ehrs if e.iss == wanted), None)

    def scopes_for(self, ehr: SmartEhr, *, standalone: bool) -> str:
        """The scopes to ask of an EHR: its own or the default, the write scope, and the launch kind.

        A standalone launch asks ``launch/patient`` (the EHR lets the user pick a patient)
        instead of ``launch`` (the context of an EHR launch).
        """
        scopes = (ehr.scopes or self.scopes).split()
        if standalone:
            scopes = ["launch/patient" if s == "launch" else s for s in scopes]
            if "launch/patient" not in scopes:
                scopes.insert(0, "launch/patient")
        if self.write_scope:
            scopes += [s for s in self.write_scope.split() if s not in scopes]
        return " ".join(dict.fromkeys(scopes))

    @property
    def frame_origins(self) -> tuple[str, ...]:
        """Every origin allowed to frame the SMART pages (those of every registered EHR)."""
        return tuple(dict.fromkeys(o for e in self.ehrs for o in e.origins))
