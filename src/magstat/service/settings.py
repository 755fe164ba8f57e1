"""Settings of the HTTP service: a TOML file, overridden by ``MAGSTAT_*`` environment variables.

The file is given with ``magstat serve --config FILE`` or the ``MAGSTAT_CONFIG`` variable.
Nested keys are reached from the environment with a double underscore, for example
``MAGSTAT_CDS__REQUIRE_AUTH=false`` or ``MAGSTAT_DATABASE__URL=postgresql://...``. Relative
``jwks_file`` and ``private_key_file`` paths are read relative to the folder of the config file.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from magstat.service.smart.config import SmartSettings

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "CdsSettings",
    "ConfigError",
    "DatabaseSettings",
    "MetricsSettings",
    "ServerSettings",
    "Settings",
    "TrustedIssuer",
    "load_settings",
]

ASYMMETRIC_ALGORITHMS: tuple[str, ...] = (
    "ES256",
    "ES384",
    "ES512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
)
"""The JWS algorithms accepted for the EHR's token: asymmetric only (CDS Hooks forbids ``none``
and every HMAC algorithm, which needs a shared secret)."""

_FILE_DATA: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "magstat_settings_file", default=None
)


class ConfigError(ValueError):
    """The service configuration cannot be used; the message says which key and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    """Where the service listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_base_url: str | None = Field(
        default=None,
        description=(
            "The base URL EHRs call (https://cds.example.org). It is the start of the JWT audience "
            "and of report links; when unset, the URL of each request is used."
        ),
    )
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    cors_allow_origins: tuple[str, ...] = ("*",)

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be an http(s) URL without query or fragment, e.g. https://cds.example.org")
        return value.rstrip("/")


class TrustedIssuer(_Section):
    """An EHR allowed to call the service: its ``iss`` and where its public keys are."""

    iss: str = Field(min_length=1)
    jwks_file: Path | None = None
    jwks_url: str | None = None
    fhir_servers: tuple[str, ...] = Field(
        default=(),
        description="if given, the only FHIR server base URLs this EHR may ask the service to read",
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> TrustedIssuer:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError(f"issuer {self.iss!r}: give exactly one of jwks_file or jwks_url")
        if self.jwks_url is not None and urlsplit(self.jwks_url).scheme not in ("https", "http"):
            raise ValueError(f"issuer {self.iss!r}: jwks_url must be an https URL")
        return self


class CdsSettings(_Section):
    """CDS Hooks: authentication of the EHR, FHIR access, cards."""

    require_auth: bool = True
    trusted_issuers: tuple[TrustedIssuer, ...] = ()
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS
    clock_skew_seconds: int = Field(default=60, ge=0, le=600)
    max_token_lifetime_seconds: int = Field(
        default=600, ge=10, description="longest exp - iat accepted; bounds the jti replay cache"
    )
    jwks_cache_seconds: int = Field(default=300, ge=0)
    fhir_deadline_seconds: float = Field(default=1.5, gt=0, le=30)
    fhir_max_pages: int = Field(default=20, ge=1, le=1000)
    allow_http_fhir_server: bool = Field(
        default=False, description="allow a plain-http fhirServer (local testing only)"
    )
    report_ttl_seconds: int = Field(default=3600, ge=10)
    report_max_entries: int = Field(
        default=10_000, ge=1, description="reports kept at most for card links (the oldest go first)"
    )
    show_info_cards: bool = Field(
        default=True, description="false: cards whose indicator is info are not shown (per deployment)"
    )
    override_suppression_days: float = Field(
        default=30,
        ge=0,
        le=3650,
        description="a card overridden with one of its reasons is not shown again for this long (0: off)",
    )
    order_result_due_days: float = Field(
        default=7,
        ge=0,
        le=365,
        description="after an accepted serum magnesium order, the card waits this long for the result",
    )
    repeat_window_hours: float = Field(
        default=24,
        ge=0,
        le=24 * 365,
        description="a concern shown by one hook is not repeated by another within this window (0: off)",
    )
    suppression_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key of the stored patient-and-concern keys; unset: a random key per process",
    )
    report_secret: SecretStr | None = Field(
        default=None,
        description=(
            "HMAC key of the reports kept for card links (every worker must have the same); unset: "
            "a random key per `magstat serve` run, shared by its workers"
        ),
    )
    developer: str = "magstat developers (open-source project, Apache-2.0)"
    funding_source: str = "not declared by the deploying organisation"

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [a for a in value if a not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ValueError(
                f"not allowed: {', '.join(bad)}; allowed: asymmetric algorithms {', '.join(ASYMMETRIC_ALGORITHMS)}"
            )
        if not value:
            raise ValueError("at least one algorithm is needed")
        return value


class DatabaseSettings(_Section):
    """Where card feedback is stored."""

    url: str = Field(
        default="sqlite:///magstat-feedback.sqlite3",
        description="sqlite:///relative.db, sqlite:////absolute.db or postgresql://user:pass@host/db",
    )
    timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="the longest wait for the database (connect, statement, a free connection); then 503",
    )
    threads: int = Field(default=4, ge=1, le=64, description="database calls that may run at once")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].split("+", 1)[0].lower()
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


class WebSettings(_Section):
    """Who may use the clinician web app (``/`` and ``/ui/...``) when authentication is on.

    In demo mode the web app is open, like the rest of the service. With authentication on, the
    clinician pages answer only a browser that sends this HTTP Basic credential (over HTTPS, set
    by the operator); without one configured they are disabled (403). The plain-language
    self-check (``/self-check``) stays open in every mode: it takes a person's own answers,
    stores nothing and reads no record.
    """

    username: str | None = Field(default=None, min_length=1, max_length=128)
    password: SecretStr | None = Field(default=None, description="set it in the environment, not in a file")

    @property
    def configured(self) -> bool:
        """Whether a credential for the web app is set."""
        return bool(self.username and self.password and self.password.get_secret_value())


class MetricsSettings(_Section):
    """The Prometheus endpoint ``GET /metrics``.

    It holds counts and timings only, never patient data, but they show how busy the service is:
    set ``bearer_token`` (the scraper then sends ``Authorization: Bearer <token>``) or keep
    ``/metrics`` off the public side of the reverse proxy.
    """

    enabled: bool = Field(default=True, description="false: /metrics answers 404")
    bearer_token: SecretStr | None = Field(
        default=None, description="if set, /metrics answers only a request with this bearer token"
    )


class _FileSource(PydanticBaseSettingsSource):
    """The parsed TOML file given to :func:`load_settings` (lowest priority after defaults)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        data = _FILE_DATA.get() or {}
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_DATA.get() or {})


class Settings(BaseSettings):
    """Every setting of ``magstat serve``.

    Attributes:
        demo: run without authentication (demonstration only; logged loudly and marked on
            every response).

    """

    model_config = SettingsConfigDict(
        env_prefix="MAGSTAT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerSettings = ServerSettings()
    cds: CdsSettings = CdsSettings()
    database: DatabaseSettings = DatabaseSettings()
    web: WebSettings = WebSettings()
    metrics: MetricsSettings = MetricsSettings()
    smart: SmartSettings = SmartSettings()
    demo: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments first, then the environment, then the config file."""
        return (init_settings, env_settings, _FileSource(settings_cls))

    @property
    def smart_only(self) -> bool:
        """A configuration that serves only the SMART app: ``[[smart.ehrs]]``, no CDS Hooks issuers.

        Set by ``[cds] require_auth = false`` with no trusted issuers. It is not demo mode: the
        CDS Hooks endpoints then refuse every call (no EHR is trusted to make one).
        """
        return (
            bool(self.smart.ehrs)
            and not self.cds.require_auth
            and not self.cds.trusted_issuers
            and not self.demo
        )

    @property
    def auth_enabled(self) -> bool:
        """Whether EHR requests must carry a valid JWT (false only in demo mode)."""
        return (self.cds.require_auth or self.smart_only) and not self.demo

    def check(self) -> None:
        """Refuse a configuration that cannot serve safely.

        Raises:
            ConfigError: authentication is required but no trusted issuer is configured, or
                a JWKS file is missing.

        """
        if self.auth_enabled and not self.cds.trusted_issuers and not self.smart_only:
            raise ConfigError(
                "cds.require_auth is true but no [[cds.trusted_issuers]] is configured; "
                "add the EHRs allowed to call the service, or run `magstat serve --demo` for a demonstration "
                "(a service for the SMART app only sets cds.require_auth = false and lists [[smart.ehrs]])"
            )
        if bool(self.web.username) != bool(self.web.password and self.web.password.get_secret_value()):
            raise ConfigError("web.username and web.password are set together (or neither: web app disabled)")
        for issuer in self.cds.trusted_issuers:
            if issuer.jwks_file is not None and not issuer.jwks_file.is_file():
                raise ConfigError(
                    f"cds.trusted_issuers ({issuer.iss}): jwks_file {issuer.jwks_file} not found"
                )
        for ehr in self.smart.ehrs:
            if ehr.private_key_file is not None:
                from magstat.service.smart.oauth import load_client_key  # noqa: PLC0415 - needs authlib

                try:
                    load_client_key(ehr)
                except ValueError as exc:
                    raise ConfigError(f"smart.ehrs ({ehr.iss}): private_key_file {exc}") from None


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the settings from a TOML file (or ``MAGSTAT_CONFIG``), the environment and overrides.

    Args:
        path: the config file; ``None`` reads ``MAGSTAT_CONFIG`` if it is set.
        overrides: settings that win over both (``demo=True``).

    Raises:
        ConfigError: the file cannot be read or a setting is invalid.

    """
    if path is None:
        path = os.environ.get("MAGSTAT_CONFIG") or None
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{file}: cannot be read: {exc.strerror}") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        _resolve_paths(data, file.resolve().parent)
    token = _FILE_DATA.set(data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"{where}: {first['msg']}") from None
    finally:
        _FILE_DATA.reset(token)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    smart = data.get("smart")
    ehrs = smart.get("ehrs") if isinstance(smart, dict) else None
    for ehr in ehrs if isinstance(ehrs, list) else ():
        if isinstance(ehr, dict) and isinstance(ehr.get("private_key_file"), str):
            key = Path(ehr["private_key_file"])
            ehr["private_key_file"] = str(key if key.is_absolute() else base / key)
    cds = data.get("cds")
    if not isinstance(cds, dict):
        return
    issuers = cds.get("trusted_issuers")
    if not isinstance(issuers, list):
        return
    for issuer in issuers:
        if isinstance(issuer, dict) and isinstance(issuer.get("jwks_file"), str):
            jwks = Path(issuer["jwks_file"])
            issuer["jwks_file"] = str(jwks if jwks.is_absolute() else base / jwks)
