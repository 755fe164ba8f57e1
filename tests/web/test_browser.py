"""End to end in headless Chromium: what a person sees when they use the web app.

Each test drives the real app (uvicorn in a child process) through Debian's Chromium, asserts on
visible text, and keeps a screenshot in ``artifacts/screenshots/``. Requests to anything but the
app are refused and recorded, so the pages must work offline; any console error fails the test.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from importlib import resources
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import DATA, SYNTHEA, SYNTHEA_PY, bundle_files
from tests.web.conftest import ARTIFACTS, SCREENSHOTS

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
BUNDLE = resources.files("magstat") / "demo" / "synthea-antonio-castellanos.json.gz"


def _shot(page, name: str, *, full_page: bool = True) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def _visible_text(page) -> str:
    return page.locator("main").inner_text()


def test_pick_a_demo_patient(browser, page):
    """Picking case 01 shows the status banner, the trend, the MDS, cited findings, next steps and safety."""
    page.goto(browser.base + "/")
    _shot(page, "01-home")
    page.get_by_role("link", name="Assess PPI + loop diuretic, symptomatic low Mg").click()
    page.wait_for_url("**/ui/demo/case-01-ppi-diuretic-deficient")
    banner = page.get_by_role("status")
    assert "Status: Deficient (severe)" in banner.inner_text()  # 0.45 mmol/L with tetany: severe (S54)
    assert page.get_by_role("img", name="Serum magnesium over time").is_visible()
    assert page.get_by_role("heading", name="Magnesium Depletion Score").is_visible()
    assert "Score 4" in _visible_text(page)
    # A finding's basis is folded away until asked for, then shows the rule and full citations.
    basis = page.locator("#finding-drug\\.ppi details")
    assert not basis.locator("text=Rule:").is_visible()
    basis.locator("summary").click()
    assert basis.locator("text=Rule:").is_visible()
    # Each source id links to its full citation in the list of sources at the end.
    target = basis.locator("a[href='#src-S20']").get_attribute("href")
    assert "proton" in page.locator(target).inner_text().lower()
    for heading in ("Act first", "Other next steps and safety notes", "Why it matters for this patient"):
        assert page.get_by_role("heading", name=heading).is_visible()
    assert "Urgent" in page.locator("#h-first + ol").inner_text()
    _shot(page, "02-demo-case-01")


def test_pick_a_shared_synthea_patient_and_download_the_pdf(browser, page):
    """A synthetic patient of tests/data (or a built-in record) is assessed; the PDF downloads."""
    page.goto(browser.base + "/")
    pickers = page.locator("form[action='/ui/demo'] select")
    if pickers.count():
        pickers.first.select_option(index=3)
        page.get_by_role("button", name="Assess the chosen patient").first.click()
    else:
        page.get_by_role("link", name="Assess Synthea patient (FHIR R4 bundle)").click()
    page.wait_for_url("**/ui/demo/**")
    assert "Status:" in page.get_by_role("status").inner_text()
    assert "assessed as of" in _visible_text(page)
    with page.expect_download() as info:
        page.get_by_role("link", name="Download PDF").click()
    path = info.value.path()
    assert Path(path).read_bytes().startswith(b"%PDF-")
    assert info.value.suggested_filename.endswith(".pdf")
    _shot(page, "03-demo-synthea")


def test_upload_a_fhir_bundle(browser, page, tmp_path):
    """Uploading a gzip FHIR bundle assesses it at the end of the record; its PDF re-posts the input."""
    bundle = tmp_path / "patient-bundle.json.gz"
    bundle.write_bytes(BUNDLE.read_bytes())
    page.goto(browser.base + "/#upload")
    page.get_by_label("FHIR R4 Bundle or magstat patient document").set_input_files(str(bundle))
    page.get_by_role("button", name="Assess the file").click()
    page.wait_for_url("**/ui/assess#upload")
    text = _visible_text(page)
    assert "Uploaded file patient-bundle.json.gz" in text
    assert "assessed as of its last date" in text
    assert "Current thiazide" in text
    _shot(page, "04-upload-result")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download PDF").click()
    assert Path(info.value.path()).read_bytes().startswith(b"%PDF-")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download JSON").click()
    data = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert data["status"] in (
        "excess",
        "deficient",
        "likely_deficient",
        "at_risk",
        "unlikely",
        "indeterminate",
    )


def test_upload_a_broken_file_shows_why(browser, page, tmp_path):
    """A file that is not JSON or YAML is refused next to the upload field."""
    bad = tmp_path / "broken.json"
    bad.write_text("{ this is not json", encoding="utf-8")
    page.goto(browser.base + "/")
    page.get_by_label("FHIR R4 Bundle or magstat patient document").set_input_files(str(bad))
    page.get_by_role("button", name="Assess the file").click()
    error = page.locator("#file-error")
    assert "broken.json: Malformed JSON at line 1" in error.inner_text()
    _shot(page, "05-upload-error")


def test_fill_the_form_with_a_wrong_unit_then_correct_it(browser, page):
    """A wrong unit is refused next to its field, naming the allowed units; corrected, it assesses."""
    page.goto(browser.base + "/#enter")
    page.get_by_label("Patient label (optional)").fill("form-e2e")
    page.get_by_label("Date of the assessment").fill("2024-05-01")
    page.get_by_label("Age in years").fill("68")
    page.get_by_label("Sex", exact=True).select_option("female")
    page.get_by_label("Medication 1: name").fill("omeprazole 20 mg")
    page.get_by_label("Medication 1: date started").fill("2021-02-01")
    page.get_by_role("button", name="Add another medication").click()  # a seventh row, by script
    page.get_by_label("Medication 7: name").fill("hydrochlorothiazide 25 mg")
    page.get_by_label("Tetany").select_option("no")
    page.get_by_label("Muscle cramps").select_option("yes")
    page.get_by_label("Serum magnesium: value").fill("1.5")
    page.get_by_label("Serum magnesium: unit").fill("mg/d")
    page.get_by_label("Serum magnesium: date").fill("2024-04-28")
    page.get_by_label("Serum potassium: value").fill("3.3")
    page.get_by_role("button", name="Assess this patient").click()

    summary = page.get_by_role("alert")
    assert "There is a problem" in summary.inner_text()
    expect(summary).to_be_in_viewport()  # the page opens at the problems, not at its top
    message = page.locator("#lab-serum_mg-0-unit-error").inner_text()
    assert "Unit not recognised for Serum magnesium" in message
    assert "mmol/L" in message and "mg/dL" in message and "mEq/L" in message
    unit = page.get_by_label("Serum magnesium: unit")
    assert "true" == unit.get_attribute("aria-invalid")
    assert "mg/d" == unit.input_value()
    assert "omeprazole 20 mg" == page.get_by_label("Medication 1: name").input_value()  # nothing lost
    assert "hydrochlorothiazide 25 mg" == page.get_by_label("Medication 7: name").input_value()
    summary.get_by_role("link").click()  # the summary's link takes the keyboard to the field
    assert "lab-serum_mg-0-unit" == page.evaluate("document.activeElement.id")
    unit.scroll_into_view_if_needed()
    _shot(page, "06-form-wrong-unit", full_page=False)

    unit.fill("mg/dL")
    page.get_by_role("button", name="Assess this patient").click()
    page.wait_for_selector("role=status")
    banner = page.get_by_role("status").inner_text()
    assert "Status: Deficient" in banner
    text = _visible_text(page)
    assert "0.62 mmol/L" in text
    assert "Current proton-pump inhibitors" in text
    assert "Current thiazide" in text
    assert "form-e2e" in text
    _shot(page, "07-form-result")


def test_self_check(browser, page):
    """The self-check answers in plain words, says when to see a clinician, and never diagnoses."""
    page.goto(browser.base + "/self-check")
    _shot(page, "08-self-check")
    page.get_by_label("How old are you?").fill("72")
    page.get_by_label("Your sex").select_option("female")
    page.get_by_label("Medicine 1").fill("omeprazole")
    page.get_by_label("Medicine 2").fill("furosemide")
    page.get_by_label("Muscle cramps").check()
    page.get_by_label("Tiredness").check()
    page.get_by_label("None of these").check()
    page.get_by_label("How many alcoholic drinks do you have on a typical day?").fill("0")
    page.get_by_label("Almonds, dry roasted (1 ounce (28 g))").fill("3")
    page.get_by_label("Supplement 1: what kind?").select_option("transdermal")
    page.get_by_role("button", name="See what my answers may mean").click()
    page.wait_for_url("**/self-check#answers")

    assert "What your answers may mean" in page.get_by_role("heading", level=1).inner_text()
    assert page.get_by_role("heading", name="When to see a clinician").is_visible()
    text = _visible_text(page)
    assert "You take omeprazole" in text
    assert "You take furosemide" in text
    assert (
        "Ordinary muscle cramps (for example in the calf or foot, often at night, easing when you stretch): this is common"
        in text
    )
    assert "magnesium oil" in text.lower() and "Not counted" in text
    assert "From your food answers" in text
    words = page.locator("body").inner_text().lower()
    assert "diagnos" not in words
    assert "deficien" not in words
    _shot(page, "09-self-check-result")


def test_keyboard_only(browser, page):
    """From the top of the page, Tab reaches a demo patient's link and Enter opens it."""
    page.goto(browser.base + "/")
    for _ in range(40):
        page.keyboard.press("Tab")
        label = page.evaluate("document.activeElement.getAttribute('aria-label') || ''")
        if label == "Assess Healthy adult":
            break
    else:
        pytest.fail("Tab never reached the demo patient's link")
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/demo/case-04-healthy")
    assert "Status: Deficiency unlikely" in page.get_by_role("status").inner_text()


def test_result_page_prints_cleanly(browser, page):
    """Printing hides the navigation and buttons and keeps the banner and every section."""
    page.goto(browser.base + "/ui/demo/case-02-grey-zone-diabetes")
    page.emulate_media(media="print")
    assert not page.locator("header.top").is_visible()
    assert not page.get_by_role("button", name="Print").is_visible()
    assert page.get_by_role("status").is_visible()
    _shot(page, "10-print-view")
    # Chromium's own print-to-PDF, kept as an artifact to check the print layout by eye.
    page.pdf(path=str(ARTIFACTS / "print-case-02.pdf"), format="A4")
    page.emulate_media(media="screen")


def test_no_request_leaves_the_app(browser, page):
    """Every page, stylesheet, script and image comes from the app itself: it works offline."""
    for path in (
        "/",
        "/self-check",
        "/ui/demo/case-01-ppi-diuretic-deficient",
        "/ui/demo/synthea-py-patient-07",
    ):
        page.goto(browser.base + path)
        page.wait_for_load_state("networkidle")
    assert [] == browser.external
    sheets = page.evaluate("Array.from(document.styleSheets).map(s => s.href)")
    assert [browser.base + "/static/magstat.css", browser.base + "/static/report.css"] == sheets


@pytest.fixture
def axe_page(browser):
    """A tab with axe-core injected into every document it loads."""
    assert AXE_SHA256 == hashlib.sha256(AXE.read_bytes()).hexdigest()
    tab = browser.page()
    tab.add_init_script(path=str(AXE))
    yield tab
    tab.close()


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/self-check",
        "/ui/demo/case-01-ppi-diuretic-deficient",
        "/ui/demo/case-03-ckd-supplement-excess",
        "/ui/demo/synthea-py-patient-07",
    ],
)
def test_accessibility(browser, axe_page, path):
    """axe-core finds no serious or critical WCAG 2.1 A/AA violation (labels, contrast, structure)."""
    axe_page.goto(browser.base + path)
    for details in axe_page.locator("details").all():  # check folded content as well
        details.evaluate("d => d.open = true")
    results = axe_page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
    )
    serious = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert [] == serious


def test_accessibility_of_form_errors(browser, axe_page):
    """The form with errors shown is still accessible (errors linked to their fields)."""
    axe_page.goto(browser.base + "/")
    axe_page.get_by_label("Age in years").fill("400")
    axe_page.get_by_role("button", name="Assess this patient").click()
    axe_page.wait_for_selector("#age-error")
    results = axe_page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})"
    )
    assert [] == [v["id"] for v in results["violations"] if v["impact"] in ("serious", "critical")]


def _largest_listed_patient() -> Path:
    """The listed synthetic record of tests/data with the most bytes uncompressed (gzip stores its size last).

    The app lists the plain ``.json`` Synthea files and the ``.json.gz`` synthea-py ones.
    """
    best, size = None, 0
    for path in (*SYNTHEA.glob("*.json"), *bundle_files(SYNTHEA_PY)):
        n = int.from_bytes(path.read_bytes()[-4:], "little") if path.suffix == ".gz" else path.stat().st_size
        if n > size:
            best, size = path, n
    assert best is not None
    return best


def test_result_page_time_for_the_largest_shared_patient(browser, page):
    """Measures (does not time-limit) the result page of the largest synthetic record of tests/data.

    Records the server's assess and render times (Server-Timing) and the browser's navigation
    timing in ``artifacts/result-page-timing.json``.
    """
    largest = _largest_listed_patient()
    sub = largest.parent.name
    stem = largest.name.split(".")[0]
    url = f"{browser.base}/ui/demo/shared-{sub}-{stem}"
    page.goto(url)  # warm: the first request also loads the knowledge base and the templates
    runs = []
    for _ in range(5):
        page.goto(url)
        runs.append(
            page.evaluate(
                """() => { const n = performance.getEntriesByType('navigation')[0];
                return {request_to_response_end_ms: n.responseEnd - n.requestStart,
                        dom_content_loaded_ms: n.domContentLoadedEventEnd - n.startTime,
                        load_ms: n.loadEventEnd - n.startTime,
                        server: n.serverTiming.map(t => [t.name, t.duration]),
                        html_bytes: n.transferSize}; }"""
            )
        )
    raw = largest.read_bytes()
    record = {
        "patient": str(largest.relative_to(DATA)),
        "bundle_bytes": len(gzip.decompress(raw)) if largest.suffix == ".gz" else len(raw),
        "runs": runs,
        "median_load_ms": sorted(r["load_ms"] for r in runs)[len(runs) // 2],
    }
    (ARTIFACTS / "result-page-timing.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    print(json.dumps(record, indent=2))
    assert "Status:" in page.get_by_role("status").inner_text()
    _shot(page, "11-largest-shared-patient")
