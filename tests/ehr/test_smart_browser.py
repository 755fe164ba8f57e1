"""The EHR launch end to end in headless Chromium: from the EHR's page to the rendered assessment.

magstat and the test EHR run on two loopback ports (two origins). The browser opens the EHR's
page for a patient, which launches magstat (in the page, or framed inside it), signs in at the
EHR's consent page, and lands on the result page; its status and findings must be those
``magstat assess`` gives for the patient's bundle. Screenshots go to ``artifacts/screenshots/``.
Each test drives the browser on a thread of its own (see ``tests/ehr/conftest.py``).
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
def test_ehr_launch_in_the_browser(make_app, ehr, ehr_records, browse, capsys, name):
    """Launch, consent and callback in Chromium end on the assessment magstat assess gives."""
    app = make_app()
    as_of = app.assess_as_of(name)
    status, findings = expected(capsys, name, as_of)

    def work(tab):
        tab.goto(ehr_page(ehr, app, ehr_records[name].patient_id))
        tab.get_by_role("button", name="Allow").click()
        tab.wait_for_url(app.url("/smart/app"))
        shown = tab.locator(".banner .status").inner_text().strip()
        ids = sorted(FINDING.findall(tab.content()))
        save = tab.get_by_role("button", name="Save to chart").is_visible()
        # The test EHR asks for a patient banner (need_patient_banner): the patient's name is shown.
        banner = tab.locator(".patient-banner").inner_text()
        tab.screenshot(path=str(SCREENSHOTS / f"smart-launch-{name}.png"), full_page=True)
        return shown, ids, save, banner, list(tab.console_errors)

    shown, ids, save, banner, errors = browse(work)
    assert status == shown
    assert findings == ids
    assert save and "Patient:" in banner
    assert [] == errors


def test_framed_inside_the_ehr_page(make_app, ehr, ehr_records, browse, capsys):
    """Inside an iframe of the EHR's page (another origin) the launch works, and Save to chart too."""
    app = make_app(key="ec")  # a confidential client, this time
    name = "py07"
    as_of = app.assess_as_of(name)
    status, findings = expected(capsys, name, as_of)

    def work(tab):
        tab.goto(ehr_page(ehr, app, ehr_records[name].patient_id, framed=True))
        frame = tab.frame_locator("#app")
        frame.get_by_role("button", name="Allow").click()
        shown = frame.locator(".banner .status").inner_text().strip()
        ids = sorted(FINDING.findall(frame.locator("html").inner_html()))
        tab.screenshot(path=str(SCREENSHOTS / "smart-launch-framed.png"), full_page=True)
        frame.get_by_role("button", name="Save to chart").click()
        expect(frame.locator("h1")).to_have_text("Saved to the chart")
        return shown, ids, list(tab.console_errors)

    shown, ids, errors = browse(work)
    assert status == shown
    assert findings == ids
    [resource] = ehr.saved.values()
    assert f"Patient/{ehr_records[name].patient_id}" == resource["subject"]["reference"]
    assert [] == errors


def test_another_origin_cannot_frame_the_app(make_app, ehr, ehr_records, browse):
    """A page from an origin that is not a registered EHR's cannot frame the SMART pages."""
    app = make_app()
    # The same test EHR reached by another name is another origin, not the registered one.
    other = ehr_page(ehr, app, ehr_records["py06"].patient_id, framed=True).replace(
        "127.0.0.1", "localhost", 1
    )

    def work(tab):
        tab.goto(other)
        frame = tab.frame_locator("#app")
        frame.get_by_role("button", name="Allow").click()  # the EHR's own consent page may be framed
        tab.wait_for_timeout(1500)
        return list(tab.console_errors), frame.locator(".banner .status").count()

    errors, shown = browse(work)
    assert any("frame-ancestors" in error for error in errors), errors
    assert 0 == shown  # the result page was refused
