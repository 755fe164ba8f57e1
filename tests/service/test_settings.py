"""Service settings: the TOML file, environment overrides, and refusals of unsafe configurations."""

from __future__ import annotations

import re

import pytest

from magstat.service.settings import ConfigError, load_settings

CONFIG = """
[server]
port = 9090
public_base_url = "https://cds.example.org/"

[cds]
require_auth = true

[[cds.trusted_issuers]]
iss = "https://ehr.example.org"
jwks_file = "keys/ehr.jwks.json"

[[cds.trusted_issuers]]
iss = "https://other.example.org"
jwks_url = "https://other.example.org/jwks.json"
fhir_servers = ["https://other.example.org/fhir"]

[database]
url = "postgresql://magstat@db/magstat"
"""


def write(tmp_path, text: str):
    """Write a config file with a JWKS file beside it."""
    (tmp_path / "keys").mkdir(exist_ok=True)
    (tmp_path / "keys" / "ehr.jwks.json").write_text('{"keys": []}')
    path = tmp_path / "magstat.toml"
    path.write_text(text)
    return path


def test_config_file_is_read_and_paths_resolved(tmp_path):
    """The TOML file is read; jwks_file is relative to the file; the base URL loses its slash."""
    settings = load_settings(write(tmp_path, CONFIG))
    settings.check()
    assert 9090 == settings.server.port
    assert "https://cds.example.org" == settings.server.public_base_url
    first, second = settings.cds.trusted_issuers
    assert tmp_path / "keys" / "ehr.jwks.json" == first.jwks_file
    assert ("https://other.example.org/fhir",) == second.fhir_servers
    assert settings.auth_enabled


def test_config_from_environment_variable(tmp_path, monkeypatch):
    """MAGSTAT_CONFIG names the file, and MAGSTAT_* variables override it."""
    monkeypatch.setenv("MAGSTAT_CONFIG", str(write(tmp_path, CONFIG)))
    monkeypatch.setenv("MAGSTAT_SERVER__PORT", "7070")
    monkeypatch.setenv("MAGSTAT_DATABASE__URL", "sqlite:///x.db")
    settings = load_settings()
    assert (7070, "sqlite:///x.db") == (settings.server.port, settings.database.url)
    assert 2 == len(settings.cds.trusted_issuers)


def test_auth_is_the_default_and_needs_trusted_issuers(tmp_path, monkeypatch):
    """Without a config, authentication is required, and starting without trusted EHRs is refused."""
    monkeypatch.delenv("MAGSTAT_CONFIG", raising=False)
    settings = load_settings()
    assert settings.auth_enabled
    with pytest.raises(ConfigError, match=re.escape("no [[cds.trusted_issuers]]")):
        settings.check()
    demo = load_settings(demo=True)
    demo.check()
    assert not demo.auth_enabled


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[cds]\nalgorithms = ["HS256"]\n', "cds.algorithms"),
        ('[cds]\nalgorithms = ["none"]\n', "cds.algorithms"),
        ('[[cds.trusted_issuers]]\niss = "x"\n', "cds.trusted_issuers"),
        ("[server]\nport = 0\n", "server.port"),
        ('[database]\nurl = "mysql://x"\n', "database.url"),
        ("[server\n", "not valid TOML"),
        ("[server]\nunknown = 1\n", "server.unknown"),
    ],
)
def test_invalid_settings_are_refused(tmp_path, text, where):
    """Symmetric or null algorithms, an issuer without keys, bad values and unknown keys are refused."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(where)):
        load_settings(path)


def test_missing_jwks_file_is_refused(tmp_path):
    """A configured JWKS file that does not exist stops the start-up with its path."""
    path = tmp_path / "c.toml"
    path.write_text('[[cds.trusted_issuers]]\niss = "x"\njwks_file = "missing.json"\n')
    with pytest.raises(ConfigError, match=re.escape("missing.json")):
        load_settings(path).check()
