"""The EHR launch end to end in headless Chromium: from the EHR's page to the rendered assessment.

magstat and the test EHR run on two loopback ports (two origins). The browser opens the EHR's
page for a patient, which launches magstat (in the page, or framed inside it), signs in at the
EHR's consent page, and lands on the result page; its status and findings must be those
``magstat assess`` gives for the patient's bundle. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from magstat.cli import main
from tests.ehr.conftest import PATIENT_FILES
from tests.web.conftest import SCREENSHOTS

FINDING = re.compile(r'id="finding-([^"]+)"')


def expected(capsys, name: str, as_of: str) -> tuple[str, list[str]]:
    """The status line and the finding ids magstat assess gives for a shared patient."""
    assert 0 == main(["assess", str(PATIENT_FILES[name]), "--as-of", as_of, "--lenient"])
    status = capsys.readouterr().out.splitlines()[0].strip().split(". Urgent:")[0]
    assert 0 == main(["assess", str(PATIENT_FILES[name]), "--as-of", as_of, "--lenient", "--format", "html"])
    return status, sorted(FINDING.findall(capsys.readouterr().out))


def ehr_page(ehr, app, patient_id: str, *, framed: bool = False) -> str:
    """The URL of the EHR's chart page that launches magstat for a patient."""
    query = {"patient": patient_id, "app": app.url("/smart/launch")}
    if framed:
        query["framed"] = "1"
    return ehr.url("/ehr/launch?" + urlencode(query))


@pytest.mark.parametrize("name", ["py06", "coleman", "barrett"])
def test_ehr_launch_in_the_browser(make_app, ehr, ehr_records, tab, capsys, name):
    """Launch, consent and callback in Chromium end on the assessment magstat assess gives."""
    app = make_app()
    as_of = app.assess_as_of(name)
    tab.goto(ehr_page(ehr, app, ehr_records[name].patient_id))
    tab.get_by_role("button", name="Allow").click()
    tab.wait_for_url(app.url("/smart/app"))
    status, findings = expected(capsys, name, as_of)
    assert status == tab.locator(".banner .status").inner_text().strip()
    assert findings == sorted(FINDING.findall(tab.content()))
    assert tab.get_by_role("button", name="Save to chart").is_visible()
    # The test EHR asks for a patient banner (need_patient_banner): the patient's name is shown.
    assert "Patient:" in tab.locator(".patient-banner").inner_text()
    tab.screenshot(path=str(SCREENSHOTS / f"smart-launch-{name}.png"), full_page=True)
    assert [] == tab.console_errors


def test_framed_inside_the_ehr_page(make_app, ehr, ehr_records, tab, capsys):
    """Inside an iframe of the EHR's page (another origin) the launch works, and Save to chart too."""
    app = make_app(key="ec")  # a confidential client, this time
    name = "py07"
    as_of = app.assess_as_of(name)
    tab.goto(ehr_page(ehr, app, ehr_records[name].patient_id, framed=True))
    frame = tab.frame_locator("#app")
    frame.get_by_role("button", name="Allow").click()
    status, findings = expected(capsys, name, as_of)
    assert status == frame.locator(".banner .status").inner_text().strip()
    html = frame.locator("html").inner_html()
    assert findings == sorted(FINDING.findall(html))
    tab.screenshot(path=str(SCREENSHOTS / "smart-launch-framed.png"), full_page=True)
    frame.get_by_role("button", name="Save to chart").click()
    expect(frame.locator("h1")).to_have_text("Saved to the chart")
    [resource] = ehr.saved.values()
    assert f"Patient/{ehr_records[name].patient_id}" == resource["subject"]["reference"]
    assert [] == tab.console_errors


def test_another_origin_cannot_frame_the_app(make_app, ehr, ehr_records, tab):
    """A page from an origin that is not a registered EHR's cannot frame the SMART pages."""
    app = make_app()
    # The same test EHR reached by another name is another origin, not the registered one.
    other = ehr_page(ehr, app, ehr_records["py06"].patient_id, framed=True).replace(
        "127.0.0.1", "localhost", 1
    )
    tab.goto(other)
    frame = tab.frame_locator("#app")
    frame.get_by_role("button", name="Allow").click()  # the EHR's own consent page may be framed
    tab.wait_for_timeout(1500)
    assert any("frame-ancestors" in error for error in tab.console_errors), tab.console_errors
    assert 0 == frame.locator(".banner .status").count()  # the result page was refused
