"""The SMART App Launch flow over HTTP: launch, authorize, callback, the chart read, write-back.

Each test drives magstat and the test EHR, both running on loopback, with an HTTP client that
keeps cookies like a browser. The assessments are checked against ``magstat assess`` on the
same patients' bundles.
"""

from __future__ import annotations

import html
import re

import httpx
import pytest
from fhir.resources.R4B.riskassessment import RiskAssessment  # magstat writes FHIR R4 (R4B: same resource)

from magstat.cli import main
from magstat.service.smart.config import SmartSettings
from magstat.service.smart.routes import COOKIE, can_create, smart_headers
from magstat.service.smart.sessions import MemorySessionStore, SharedSessionStore
from magstat.service.store import SharedStore
from tests.ehr.conftest import PATIENT_FILES
from tests.ehr.server import query_of

FINDING = re.compile(r'id="finding-([^"]+)"')
STATUS = re.compile(r'<p class="status">([^<]*)</p>')


def browser() -> httpx.Client:
    """An HTTP client that keeps cookies and follows redirects, like a browser."""
    return httpx.Client(follow_redirects=True, timeout=30)


def launch(client: httpx.Client, app, ehr, patient_id: str) -> httpx.Response:
    """Open the app from the EHR for a patient (an EHR launch) and follow it to the end."""
    return client.get(ehr.url("/ehr/launch"), params={"patient": patient_id, "app": app.url("/smart/launch")})


def cli(capsys, name: str, as_of: str, *extra: str) -> str:
    """What ``magstat assess`` prints for a shared patient's bundle."""
    assert 0 == main(["assess", str(PATIENT_FILES[name]), "--as-of", as_of, "--lenient", *extra])
    return capsys.readouterr().out


def page_text(response: httpx.Response) -> str:
    """The visible text of a page, roughly (tags removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", response.text))


# --------------------------------------------------------------------------------------------
# The whole launch


@pytest.mark.parametrize("name", sorted(PATIENT_FILES))
def test_ehr_launch_shows_what_magstat_assess_gives(make_app, ehr, ehr_records, capsys, name):
    """An EHR launch ends on the result page, with the status and findings of magstat assess."""
    app = make_app()
    ehr.auto_consent = "allow"
    ehr.page_size = 10  # several pages per search: next links are followed
    as_of = app.assess_as_of(name)
    with browser() as client:
        response = launch(client, app, ehr, ehr_records[name].patient_id)
    assert 200 == response.status_code
    assert app.url("/smart/app") == str(response.url)
    assert 'aria-label="Main"' not in response.text  # no links to pages outside the SMART app
    printed = cli(capsys, name, as_of)
    report = cli(capsys, name, as_of, "--format", "html")
    lines = printed.splitlines()
    summary = " ".join(lines[1 : next(i for i, line in enumerate(lines) if line.startswith("Patient "))])
    # The status line magstat assess prints (before any urgent action, which the page shows below it).
    assert (
        printed.splitlines()[0].strip().split(". Urgent:")[0] == STATUS.search(response.text).group(1).strip()
    )
    assert " ".join(summary.split()) in " ".join(page_text(response).split())
    assert sorted(FINDING.findall(report)) == sorted(FINDING.findall(response.text))
    # Searches with many results came back over several pages.
    assert any("_offset=" in path for _, path, _ in ehr.requests) or name == "antonio"  # a short record
    # Every FHIR request carried the access token.
    assert all(
        with_token
        for _, path, with_token in ehr.requests
        if path.startswith("/fhir/") and "well-known" not in path
    )


def test_aud_is_the_iss_exactly_as_the_ehr_sent_it(make_app, ehr):
    """An iss sent with a trailing slash goes back as aud with it: servers may compare aud to the letter."""
    app = make_app()
    with httpx.Client(follow_redirects=False, timeout=30) as client:
        to_ehr = client.get(app.url("/smart/launch"), params={"iss": ehr.fhir_base + "/", "launch": "abc123"})
    assert 302 == to_ehr.status_code
    assert ehr.fhir_base + "/" == query_of(to_ehr.headers["location"])["aud"]


def test_the_authorization_request_follows_smart(make_app, ehr, ehr_records):
    """The authorization request carries launch, aud, state, PKCE S256 and the configured scopes."""
    app = make_app()
    patient = ehr_records["py06"].patient_id
    with httpx.Client(follow_redirects=False, timeout=30) as client:
        to_app = client.get(
            ehr.url("/ehr/launch"), params={"patient": patient, "app": app.url("/smart/launch")}
        )
        to_ehr = client.get(to_app.headers["location"])
    assert 302 == to_ehr.status_code
    params = query_of(to_ehr.headers["location"])
    assert ehr.url("/auth/authorize") == to_ehr.headers["location"].split("?")[0]
    assert "code" == params["response_type"]
    assert "magstat" == params["client_id"]
    assert app.url("/smart/callback") == params["redirect_uri"]
    assert ehr.fhir_base == params["aud"]
    assert "S256" == params["code_challenge_method"]
    assert 43 <= len(params["code_challenge"]) and 43 <= len(params["state"])
    assert query_of(to_app.headers["location"])["launch"] == params["launch"]
    scopes = params["scope"].split()
    for scope in ("launch", "openid", "fhirUser", "patient/Observation.rs", "patient/RiskAssessment.c"):
        assert scope in scopes
    # The browser holds an opaque id only: nothing of the launch in the cookie.
    cookie = to_ehr.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert params["state"] not in cookie and params["launch"] not in cookie


def test_confidential_clients_sign_their_assertion(make_app, ehr, ehr_records):
    """A confidential client authenticates with a private_key_jwt the EHR checks (ES384 and RS384)."""
    for kind, alg in (("ec", "ES384"), ("rsa", "RS384")):
        app = make_app(key=kind)
        ehr.auto_consent = "allow"
        with browser() as client:
            response = launch(client, app, ehr, ehr_records["py07"].patient_id)
        assert 200 == response.status_code
        assert "Status:" in response.text
        assertion = ehr.assertions[-1]
        assert alg == assertion["alg"] and "JWT" == assertion["typ"] and assertion["kid"]
        claims = assertion["claims"]
        assert "magstat" == claims["iss"] == claims["sub"]
        assert ehr.url("/auth/token") == claims["aud"]
        assert claims["exp"] - claims["iat"] <= 300 and claims["jti"]


def test_a_wrong_key_is_refused(make_app, ehr, ehr_records, tmp_path):
    """A confidential client whose registered key is not the one it signs with gets an error page."""
    other = make_app(key="ec")  # registers its key ...
    jwks = httpx.get(other.url("/smart/jwks.json")).json()
    app = make_app(key="ec", register=False)  # ... and this app signs with another
    ehr.register("magstat", app.url("/smart/callback"), jwks)
    ehr.auto_consent = "allow"
    with browser() as client:
        response = launch(client, app, ehr, ehr_records["py07"].patient_id)
    assert 502 == response.status_code
    assert "The sign-in could not be finished" in response.text


def test_standalone_launch_lets_the_user_pick_a_patient(make_app, ehr, ehr_records):
    """The start page lists the EHR; signing in there with launch/patient gives the chosen patient's page."""
    app = make_app()
    with browser() as client:
        start = client.get(app.url("/smart/start"))
        assert "Test EHR" in start.text
        link = re.search(r'href="(/smart/start\?iss=[^"]+)"', start.text).group(1)
        consent = client.get(app.url(html.unescape(link)))
        assert "launch/patient" in consent.text
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', consent.text))
        fields = {k: html.unescape(v) for k, v in fields.items() if k != "decision"}
        fields.update(decision="allow", patient=ehr_records["barrett"].patient_id)
        response = client.post(ehr.url("/auth/authorize"), data=fields)
    assert 200 == response.status_code
    assert ehr_records["barrett"].patient_id in response.text


# --------------------------------------------------------------------------------------------
# Every failure has its page


def test_a_search_cut_at_the_page_limit_gives_no_assessment(make_app, ehr, ehr_records):
    """A search with more pages than the limit is not assessed in part: the page says what was cut."""
    app = make_app(fhir_max_pages=2)
    ehr.auto_consent = "allow"
    ehr.page_size = 10
    with browser() as client:
        response = launch(client, app, ehr, ehr_records["py07"].patient_id)
    assert 502 == response.status_code
    assert "conditions" in response.text and "Status:" not in response.text


def test_an_unregistered_iss_is_refused_without_contacting_it(make_app, ehr):
    """A launch naming an EHR that is not configured gets a clear 403 page; nothing is fetched."""
    app = make_app()
    with browser() as client:
        response = client.get(
            app.url("/smart/launch"), params={"iss": "https://evil.example/fhir", "launch": "x"}
        )
    assert 403 == response.status_code
    assert "This EHR is not registered" in response.text
    assert [] == ehr.requests


def test_an_ehr_without_what_magstat_needs_is_refused(make_app, ehr, ehr_records):
    """An EHR whose smart-configuration offers no PKCE S256 is refused before any authorization."""
    app = make_app()
    ehr.pkce_methods = ("plain",)
    with browser() as client:
        response = launch(client, app, ehr, ehr_records["py06"].patient_id)
    assert 502 == response.status_code
    assert "does not offer what magstat needs" in response.text
    assert not any(path.startswith("/auth/") for _, path, _ in ehr.requests)


def test_state_mismatch_is_refused(make_app, ehr, ehr_records):
    """A callback whose state is not the launch's gets an error page and no token request."""
    app = make_app()
    patient = ehr_records["py06"].patient_id
    with httpx.Client(follow_redirects=False, timeout=30) as client:
        to_app = client.get(
            ehr.url("/ehr/launch"), params={"patient": patient, "app": app.url("/smart/launch")}
        )
        client.get(to_app.headers["location"])
        response = client.get(app.url("/smart/callback"), params={"code": "abc", "state": "forged"})
    assert 400 == response.status_code
    assert "state mismatch" in response.text
    assert not any(path == "/auth/token" for _, path, _ in ehr.requests)


def test_denied_consent_has_its_page(make_app, ehr, ehr_records):
    """When the user denies access, the EHR answers access_denied and the app says so."""
    app = make_app()
    ehr.auto_consent = "deny"
    with browser() as client:
        response = launch(client, app, ehr, ehr_records["py06"].patient_id)
    assert 403 == response.status_code
    assert "Access was not granted" in response.text


def test_an_expired_code_is_refused(make_app, ehr, ehr_records):
    """A code the EHR no longer accepts (expired) gives an error page asking for a new launch."""
    app = make_app()
    ehr.auto_consent = "allow"
    ehr.code_lifetime = -1  # every code is already expired when it is redeemed
    with browser() as client:
        response = launch(client, app, ehr, ehr_records["py06"].patient_id)
    assert 400 == response.status_code
    assert "The sign-in code was refused" in response.text


def test_a_callback_without_a_launch_is_refused(make_app):
    """A callback in a browser that made no launch (or lost its cookie) gets a clear page."""
    app = make_app()
    with browser() as client:
        response = client.get(app.url("/smart/callback"), params={"code": "abc", "state": "xyz"})
    assert 400 == response.status_code
    assert "This sign-in has expired" in response.text


def test_fhir_server_down_gives_a_page_within_the_deadline(make_app, ehr, ehr_records):
    """A FHIR server that fails or is too slow gives an error page, within the configured deadline."""
    app = make_app(fhir_deadline_seconds=1)
    ehr.auto_consent = "allow"
    with browser() as client:
        ehr.fhir_down = True
        down = launch(client, app, ehr, ehr_records["py06"].patient_id)
        ehr.fhir_down = False
        ehr.fhir_delay = 3
        slow = client.get(app.url("/smart/app"))
    assert 502 == down.status_code and 502 == slow.status_code
    assert "The chart could not be read" in down.text and "within 1 s" in slow.text
    assert slow.elapsed.total_seconds() < 3.0  # the 1 s deadline, plus the page


def test_error_pages_leak_nothing(make_app, ehr, ehr_records):
    """No error page shows a token, the launch patient's id or a traceback."""
    app = make_app(fhir_deadline_seconds=1)
    ehr.auto_consent = "allow"
    ehr.fhir_down = True
    patient = ehr_records["py06"].patient_id
    with browser() as client:
        response = launch(client, app, ehr, patient)
    secrets = [*ehr.access, *ehr.refresh]
    assert 502 == response.status_code
    for text in (patient, "Traceback", *secrets):
        assert text not in response.text


# --------------------------------------------------------------------------------------------
# Tokens: one patient, refresh, expiry


def test_a_token_for_another_patient_cannot_read_this_chart(ehr, ehr_records):
    """The test EHR refuses a token for one patient on another patient's chart."""
    mine, theirs = ehr_records["py06"].patient_id, ehr_records["py07"].patient_id
    token = ehr.token_for(mine, "patient/Patient.rs patient/Observation.rs")
    headers = {"Authorization": f"Bearer {token}"}
    assert 200 == httpx.get(f"{ehr.fhir_base}/Patient/{mine}", headers=headers).status_code
    assert 403 == httpx.get(f"{ehr.fhir_base}/Patient/{theirs}", headers=headers).status_code
    assert 403 == httpx.get(f"{ehr.fhir_base}/Observation?patient={theirs}", headers=headers).status_code


def test_a_session_reads_only_its_launch_patient(make_app, ehr, ehr_records):
    """After a launch for one patient, the app's token cannot read another patient's chart."""
    app = make_app()
    ehr.auto_consent = "allow"
    with browser() as client:
        assert 200 == launch(client, app, ehr, ehr_records["py06"].patient_id).status_code
    [token] = list(ehr.access)
    other = ehr_records["coleman"].patient_id
    headers = {"Authorization": f"Bearer {token}"}
    assert 403 == httpx.get(f"{ehr.fhir_base}/Condition?patient={other}", headers=headers).status_code


def test_an_expired_access_token_is_refreshed(make_app, ehr, ehr_records):
    """When the access token has expired, the refresh token gets a new one and the page shows."""
    app = make_app()
    ehr.auto_consent = "allow"
    with browser() as client:
        assert 200 == launch(client, app, ehr, ehr_records["py07"].patient_id).status_code
        first = set(ehr.access)
        ehr.expire_access_tokens()
        again = client.get(app.url("/smart/app"))
    assert 200 == again.status_code and "Status:" in again.text
    assert 2 == sum(1 for _, path, _ in ehr.requests if path == "/auth/token")
    assert set(ehr.access) - first  # a new access token was issued and used
    assert sum(1 for g in ehr.refresh.values() if g.revoked) == 1  # the old refresh token is used up


@pytest.mark.parametrize("kind", ["shared", "memory"])
def test_the_session_expires(make_app, ehr, ehr_records, kind):
    """After the session's lifetime the result page says the session has ended (either store)."""
    app = make_app()
    now = [1_000_000.0]
    if kind == "shared":
        store = SharedSessionStore(SharedStore("sqlite://", clock=lambda: now[0]))
    else:
        store = MemorySessionStore(clock=lambda: now[0])
    app.app.state.smart_sessions = store
    ehr.auto_consent = "allow"
    with browser() as client:
        assert 200 == launch(client, app, ehr, ehr_records["py07"].patient_id).status_code
        now[0] += 3600 + 1
        response = client.get(app.url("/smart/app"))
    assert 401 == response.status_code
    assert "Your session has ended" in response.text


def test_the_cookie_is_secure_over_tls(make_app, ehr, ehr_records):
    """Behind TLS (public_base_url https) the cookie is SameSite=None; Secure; Partitioned, for iframes."""
    app = make_app()
    app.app.state.settings = app.app.state.settings.model_copy(
        update={
            "server": app.app.state.settings.server.model_copy(
                update={"public_base_url": "https://magstat.example"}
            )
        }
    )
    with httpx.Client(follow_redirects=False, timeout=30) as client:
        to_app = client.get(
            ehr.url("/ehr/launch"),
            params={"patient": ehr_records["py06"].patient_id, "app": app.url("/smart/launch")},
        )
        response = client.get(to_app.headers["location"])
    cookie = response.headers["set-cookie"]
    assert "Secure" in cookie and "SameSite=None" in cookie and "Partitioned" in cookie
    assert "https://magstat.example/smart/callback" == query_of(response.headers["location"])["redirect_uri"]


# --------------------------------------------------------------------------------------------
# Framing, write-back


def test_frame_ancestors_name_exactly_the_ehr_origins(make_app, ehr):
    """SMART pages may be framed by the configured EHR origins only; other pages by nobody."""
    app = make_app()
    with browser() as client:
        start = client.get(app.url("/smart/start"))
        other = client.get(app.url("/self-check"))
    assert f"frame-ancestors {ehr.origin};" in start.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in other.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in smart_headers(SmartSettings())["Content-Security-Policy"]


def test_save_to_chart_round_trips(make_app, ehr, ehr_records):
    """Save to chart creates a valid RiskAssessment for the launch patient on the FHIR server."""
    app = make_app()
    ehr.auto_consent = "allow"
    patient = ehr_records["py06"].patient_id
    with browser() as client:
        page = launch(client, app, ehr, patient)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        saved = client.post(app.url("/smart/save"), data={"csrf": csrf})
    assert 200 == saved.status_code and "Saved to the chart" in saved.text
    [(rid, resource)] = ehr.saved.items()
    assert f"RiskAssessment/{rid}" in saved.text
    assert f"Patient/{patient}" == resource["subject"]["reference"]
    RiskAssessment.model_validate({k: v for k, v in resource.items() if k != "meta"})
    token = ehr.token_for(patient, "patient/RiskAssessment.rs")
    read = httpx.get(f"{ehr.fhir_base}/RiskAssessment/{rid}", headers={"Authorization": f"Bearer {token}"})
    assert resource == read.json()


def test_save_needs_the_csrf_token(make_app, ehr, ehr_records):
    """A save without the page's CSRF token is refused and nothing is written."""
    app = make_app()
    ehr.auto_consent = "allow"
    with browser() as client:
        launch(client, app, ehr, ehr_records["py06"].patient_id)
        refused = client.post(app.url("/smart/save"), data={"csrf": "guess"})
    assert 403 == refused.status_code
    assert {} == ehr.saved


def test_no_save_button_without_the_write_scope(make_app, ehr, ehr_records):
    """With no write scope configured, the page offers no Save to chart and a save is refused."""
    app = make_app(write_scope="")
    ehr.auto_consent = "allow"
    with browser() as client:
        page = launch(client, app, ehr, ehr_records["py06"].patient_id)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is None and "Save to chart" not in page.text
    assert {} == ehr.saved


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        ("patient/RiskAssessment.c", True),
        ("patient/RiskAssessment.cruds", True),
        ("patient/*.cud", True),
        ("user/RiskAssessment.write", True),
        ("patient/*.*", True),
        ("patient/RiskAssessment.rs", False),
        ("patient/Observation.c", False),
        ("patient/RiskAssessment.c?category=x", False),
        ("launch openid", False),
    ],
)
def test_which_scopes_allow_saving(scopes, allowed):
    """SMART v1 and v2 scopes that allow creating a RiskAssessment, and those that do not."""
    assert allowed == can_create(scopes, "RiskAssessment")


def test_cds_cards_offer_the_smart_app(ehr, ehr_records, kb):
    """With SMART configured, each card links to the SMART launch URL beside the report link."""
    from magstat.adapters.cds_hooks.request import prefetch_templates  # noqa: PLC0415
    from magstat.service import load_settings  # noqa: PLC0415
    from tests.ehr.conftest import serve  # noqa: PLC0415
    from tests.service.ehr import prefetch_for  # noqa: PLC0415

    settings = load_settings(
        None,
        demo=True,
        smart={"ehrs": [{"iss": ehr.fhir_base, "client_id": "magstat"}], "allow_http": True},
        database={"url": "sqlite:///:memory:"},
    )
    record = ehr_records["py06"]
    context = {"userId": "Practitioner/example", "patientId": record.patient_id}
    body = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": context,
        "prefetch": prefetch_for(prefetch_templates(kb), context, record),
    }
    with serve(settings) as app:
        cards = httpx.post(app.url("/cds-services/magstat-patient-view"), json=body, timeout=30).json()[
            "cards"
        ]
    assert cards
    for card in cards:
        assert ["absolute", "smart"] == [link["type"] for link in card["links"]]
        assert app.url("/smart/launch") == card["links"][1]["url"]
