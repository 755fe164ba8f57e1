"""The [smart] configuration contract: the EHR list, relative key paths, and a SMART-only service."""

from __future__ import annotations

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from magstat.service import ConfigError, load_settings
from magstat.service.accesslog import DEMO_HEADER
from tests.ehr.conftest import serve, write_key


def test_the_config_file_contract(tmp_path):
    """[[smart.ehrs]] with iss, client_id, private_key_file (relative to the file) and scopes is read."""
    (tmp_path / "keys").mkdir()
    write_key(tmp_path / "keys" / "magstat-smart.pem", "ec")
    config = tmp_path / "magstat.toml"
    config.write_text(
        "[cds]\nrequire_auth = false\n\n"
        "[[smart.ehrs]]\n"
        'iss = "https://ehr.example/fhir/"\n'
        'client_id = "magstat"\n'
        'private_key_file = "keys/magstat-smart.pem"\n'
        'scopes = "launch openid fhirUser patient/*.rs"\n\n'
        "[[smart.ehrs]]\n"
        'iss = "https://other.example/fhir"\n'
        'client_id = "magstat-public"\n',
        encoding="utf-8",
    )
    settings = load_settings(config)
    settings.check()
    first, second = settings.smart.ehrs
    assert "https://ehr.example/fhir" == first.iss  # a trailing slash is not part of the key
    assert tmp_path / "keys" / "magstat-smart.pem" == first.private_key_file
    assert first.confidential and not second.confidential
    assert first is settings.smart.find("https://ehr.example/fhir/")
    assert None is settings.smart.find("https://unknown.example/fhir")
    scopes = settings.smart.scopes_for(first, standalone=False).split()
    assert ["launch", "openid", "fhirUser", "patient/*.rs", "patient/RiskAssessment.c"] == scopes
    standalone = settings.smart.scopes_for(second, standalone=True).split()
    assert "launch/patient" in standalone and "launch" not in standalone
    assert ("https://ehr.example", "https://other.example") == settings.smart.frame_origins


@pytest.mark.parametrize(
    ("smart", "field"),
    [
        ({"ehrs": [{"iss": "http://ehr.example/fhir", "client_id": "m"}]}, "plain http"),
        ({"ehrs": [{"iss": "ehr.example/fhir", "client_id": "m"}]}, "FHIR base URL"),
        ({"ehrs": [{"iss": "https://ehr.example/fhir"}]}, "client_id"),
        ({"ehrs": [{"iss": "https://e.example/fhir", "client_id": "m"}] * 2}, "listed twice"),
        (
            {
                "ehrs": [
                    {
                        "iss": "https://e.example/fhir",
                        "client_id": "m",
                        "frame_origins": ["https://e.example/x"],
                    }
                ]
            },
            "not an origin",
        ),
    ],
)
def test_bad_smart_settings_are_refused(smart, field):
    """A wrong [smart] entry is refused with a message naming the problem."""
    with pytest.raises(ConfigError, match=field):
        load_settings(None, smart=smart)


def test_a_missing_or_unusable_key_is_refused(tmp_path):
    """A private_key_file that is missing, not a key, a short RSA key or another curve stops the service."""
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key", encoding="utf-8")
    small = tmp_path / "small.pem"
    weak = rsa.generate_private_key(65537, 1024)
    small.write_bytes(
        weak.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    p256 = tmp_path / "p256.pem"
    other_curve = ec.generate_private_key(ec.SECP256R1())
    p256.write_bytes(
        other_curve.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    for path, why in (
        (tmp_path / "missing.pem", "cannot be read"),
        (bad, "not a usable"),
        (small, "2048"),
        (p256, "P-384"),
    ):
        settings = load_settings(
            None,
            cds={"require_auth": False},
            smart={
                "ehrs": [{"iss": "https://e.example/fhir", "client_id": "m", "private_key_file": str(path)}]
            },
        )
        with pytest.raises(ConfigError, match=why):
            settings.check()


def test_a_smart_only_service_is_not_demo_mode():
    """require_auth = false with no trusted issuers but SMART EHRs: CDS Hooks refuses calls; no demo mode."""
    settings = load_settings(
        None,
        cds={"require_auth": False},
        smart={"ehrs": [{"iss": "https://ehr.example/fhir", "client_id": "magstat"}]},
        database={"url": "sqlite:///:memory:"},
    )
    assert settings.smart_only and settings.auth_enabled
    with serve(settings) as app:
        health = httpx.get(app.url("/healthz")).json()
        hook = httpx.post(app.url("/cds-services/magstat-patient-view"), json={"hook": "patient-view"})
        start = httpx.get(app.url("/smart/start"))
    assert "required" == health["auth"]
    assert 401 == hook.status_code
    assert DEMO_HEADER not in hook.headers and 200 == start.status_code


def test_auth_without_issuers_or_smart_is_still_refused():
    """Authentication on with no trusted issuer and no SMART EHR remains a configuration error."""
    with pytest.raises(ConfigError, match="trusted_issuers"):
        load_settings(None).check()
