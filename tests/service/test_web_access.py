"""Who may use the web app: open in demo mode; with authentication on, only with the web credential.

The service's ``/assess`` needs the EHR's JWT; the clinician pages that assess (``/ui/assess``,
``/ui/report.{kind}``, the demo patients and the form) must not be an open side door to it.
"""

from __future__ import annotations

import httpx
import pytest

from magstat.service import load_settings
from tests.service.conftest import live

FORM = {"source": "form", "age": "50", "sex": "female"}
PROTECTED = [
    ("POST", "/ui/assess"),
    ("POST", "/ui/report.json"),
    ("GET", "/"),
    ("GET", "/ui/demo/case-04-healthy"),
]


def _settings(tmp_path, jwks_file, **web):
    return load_settings(
        None,
        cds={"trusted_issuers": [{"iss": "https://ehr.example.org", "jwks_file": str(jwks_file)}]},
        database={"url": f"sqlite:///{tmp_path / 'fb.sqlite3'}"},
        web=web,
    )


def _call(server, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(
        method, server.url(path), data=FORM if method == "POST" else None, timeout=30, **kwargs
    )


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_auth_on_without_web_credential_disables_the_clinician_pages(tmp_path, jwks_file, method, path):
    """With authentication on and no web credential configured, the clinician pages answer 403."""
    with live(_settings(tmp_path, jwks_file)) as server:
        response = _call(server, method, path)
        assess = httpx.post(server.url("/assess"), json={"age": 50, "sex": "female"})
    assert (403, 401) == (response.status_code, assess.status_code)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_auth_on_web_credential_is_required(tmp_path, jwks_file, method, path):
    """With a web credential configured, no or a wrong Basic credential is 401 with a challenge; the right one passes."""
    with live(_settings(tmp_path, jwks_file, username="clinic", password="s3cret-pass")) as server:
        anonymous = _call(server, method, path)
        wrong = _call(server, method, path, auth=("clinic", "guess"))
        right = _call(server, method, path, auth=("clinic", "s3cret-pass"))
    assert (401, 401) == (anonymous.status_code, wrong.status_code)
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert right.status_code in (200, 303, 422)  # the page, a redirect, or the form's own error


def test_auth_on_self_check_stays_open(tmp_path, jwks_file):
    """The plain-language self-check (a person's own answers, nothing stored) is open in every mode."""
    with live(_settings(tmp_path, jwks_file)) as server:
        response = httpx.get(server.url("/self-check"))
    assert 200 == response.status_code


def test_demo_mode_web_app_is_open(demo_server):
    """In demo mode the web app answers without a credential, like the rest of the service."""
    response = httpx.post(demo_server.url("/ui/assess"), data=FORM, timeout=30)
    assert response.status_code in (200, 422)  # the result, or the form with its problems: not 401/403
    assert "text/html" in response.headers["content-type"]


def test_half_a_web_credential_is_a_config_error(tmp_path, jwks_file):
    """A web username without a password (or the reverse) refuses to start."""
    from magstat.service import ConfigError, create_app  # noqa: PLC0415

    with pytest.raises(ConfigError, match=r"web\.username"):
        create_app(_settings(tmp_path, jwks_file, username="clinic"))
