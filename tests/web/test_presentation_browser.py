"""What a clinician sees first, on screen, on paper and in the PDF, for every demo patient.

Headless Chromium opens each demo patient's result page; the first screen must hold the
status and (when there is one) the first urgent action. The page printed as A4 must stay short,
keep every finding's basis and put the urgent action on page 1; the downloaded PDF likewise.
Screenshots and the printed files are kept in ``artifacts/screenshots/`` (a CI artefact).
"""

from __future__ import annotations

import io
import unicodedata

import pytest
from playwright.sync_api import expect

from magstat.adapters.read import facts_from_data
from magstat.core.assess import assess
from magstat.kb import load
from magstat.render.model import assessment_view
from magstat.web import patients
from tests.web.conftest import SCREENSHOTS

pypdf = pytest.importorskip("pypdf", reason="pypdf reads the PDFs (pip install -e '.[test]')")

DEMOS = [p for p in patients.catalogue() if p.path is None]
# A printed result stays a handful of pages: the status and actions, then the basis.
MAX_PRINTED_PAGES = 8


def _expected(patient):
    kb = load()
    facts = facts_from_data(patient.load(), kb, as_of=patient.as_of, strict=False)
    return assessment_view(assess(facts, kb), kb, facts)


def _pages(data: bytes) -> list[str]:
    reader = pypdf.PdfReader(io.BytesIO(data))
    # NFKC folds the ligatures a PDF may hold ("ﬁ" -> "fi").
    return [
        " ".join(unicodedata.normalize("NFKC", page.extract_text() or "").split()) for page in reader.pages
    ]


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("patient", DEMOS, ids=lambda p: p.id)
def test_first_screen_print_and_pdf_open_with_status_and_urgent_action(browser, page, patient):
    """Screen, print and PDF: the status and the first urgent action come first, on page 1."""
    view = _expected(patient)
    page.goto(f"{browser.base}/ui/demo/{patient.id}")
    page.screenshot(path=str(SCREENSHOTS / f"first-screen-{patient.id}.png"))
    banner = page.get_by_role("status")
    assert f"Status: {view.status_label}" in banner.inner_text()
    height = page.viewport_size["height"]
    if view.urgent:
        first = view.urgent[0]
        assert first.first_sentence in _words(banner.inner_text())
        action = page.locator("#h-first + ol > li").first
        assert _words(first.text) in _words(action.inner_text())
        box = action.bounding_box()
        assert box is not None and box["y"] < height, "the first urgent action is below the first screen"

    page.emulate_media(media="print")
    page.screenshot(path=str(SCREENSHOTS / f"print-{patient.id}.png"), full_page=True)
    # Every finding's basis is printed, although its <details> is closed on screen.
    rules = page.locator("details.basis p:has-text('Rule:')")
    assert sum(len(g.findings) for g in view.groups) <= rules.count()
    assert all(rules.nth(i).is_visible() for i in range(rules.count()))
    printed = page.pdf(format="A4", print_background=True)
    (SCREENSHOTS / f"print-{patient.id}.pdf").write_bytes(printed)
    pages = _pages(printed)
    assert len(pages) <= MAX_PRINTED_PAGES, f"printed result is {len(pages)} pages"
    assert f"Status: {view.status_label}" in pages[0]
    if view.urgent:
        assert _words(view.urgent[0].text)[:80] in pages[0]
    page.emulate_media(media="screen")

    response = page.request.get(f"{browser.base}/ui/demo/{patient.id}/report.pdf")
    assert 200 == response.status
    pdf = response.body()
    (SCREENSHOTS / f"report-{patient.id}.pdf").write_bytes(pdf)
    first_page = _pages(pdf)[0]
    assert f"Status: {view.status_label}" in first_page
    for action in view.urgent:
        assert _words(action.text)[:60] in first_page


def test_a_refused_form_moves_focus_to_the_error_list(browser, page):
    """After a refused submission the keyboard focus is on the error list, which states the range in mg/dL."""
    page.goto(browser.base + "/")
    page.get_by_label("Serum magnesium: value").first.fill("90")
    page.get_by_label("Serum magnesium: unit").first.fill("mg/dL")
    page.get_by_label("Serum magnesium: date").first.fill("2024-04-28")
    page.get_by_role("button", name="Assess this patient").click()
    summary = page.get_by_role("alert")
    assert "0.024 to 48.6 mg/dL" in summary.inner_text()
    page.wait_for_load_state("load")
    expect(page.locator(".error-summary")).to_be_focused()
    page.screenshot(path=str(SCREENSHOTS / "form-error-focus.png"))
