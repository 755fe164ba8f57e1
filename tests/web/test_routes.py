"""The web app's pages through FastAPI's test client: every page renders, errors sit by their field."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import re
from html.parser import HTMLParser
from importlib import resources

import pytest
from fastapi import FastAPI

from magstat.web import patients, router, routes
from tests.conftest import DATA
from tests.web.conftest import TestClient

DEMO_IDS = [p.id for p in patients.catalogue() if p.path is None]


class _Links(HTMLParser):
    """Collects every URL a page refers to, by attribute, and inline scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.inline_scripts = 0
        self.event_handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src", "action", "formaction", "srcset", "poster", "data") and value:
                self.urls.append((tag, name, value))
            if name.startswith("on"):
                self.event_handlers.append(f"{tag} {name}")
        if tag == "script" and not dict(attrs).get("src"):
            self.inline_scripts += 1


def _refs(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def _error_for(html: str, control: str) -> str:
    match = re.search(rf'<p class="error" id="{re.escape(control)}-error">(.*?)</p>', html, re.S)
    return re.sub(r"<[^>]+>", "", match[1]) if match else ""


def test_index_lists_demo_patients_upload_and_form(client):
    """The clinician's page offers the demo patients, the upload and the form with every section."""
    response = client.get("/")
    assert 200 == response.status_code
    html = response.text
    for demo in DEMO_IDS:
        assert f'href="/ui/demo/{demo}"' in html
    for text in (
        "Upload a record",
        'type="file"',
        "Medications",
        "Conditions",
        "Signs and symptoms",
        "Laboratory results",
        "Magnesium loading",
        "Diet",
        "Supplements",
        "AUDIT-C",
        "Pregnant",
    ):
        assert text in html
    assert 'value="2024-05-01"' in html  # the assessment date defaults to today


@pytest.mark.parametrize("demo_id", DEMO_IDS)
def test_every_demo_patient_has_a_result_page_and_reports(client, demo_id):
    """Each built-in demo patient renders a result page, a PDF and JSON."""
    response = client.get(f"/ui/demo/{demo_id}")
    assert 200 == response.status_code
    html = response.text
    for heading in (
        "Measurements and calculators",
        "Magnesium Depletion Score",
        "Diet and supplements",
        "Findings and their basis",
        "Other next steps and safety notes",
        "Why it matters for this patient",
        "Limitations",
        "Sources",
    ):
        assert f">{heading}</h2>" in html
    assert "Status: " in html
    pdf = client.get(f"/ui/demo/{demo_id}/report.pdf")
    assert 200 == pdf.status_code
    assert "application/pdf" == pdf.headers["content-type"]
    assert pdf.content.startswith(b"%PDF-")
    data = client.get(f"/ui/demo/{demo_id}/report.json").json()
    assert data["status"] in html.replace("_", " ") or data["status"] in html


def test_result_page_shows_the_core_assessment(client):
    """Case 01: the banner, the trend chart against the band and 0.85, the MDS and cited findings."""
    html = client.get("/ui/demo/case-01-ppi-diuretic-deficient").text
    assert "Status: Deficient (severe)" in html  # 0.45 mmol/L with tetany: severe (S54)
    assert "<svg" in html and "0.85" in html
    assert "diuretic" in html and "Score 4" in html
    assert "0.45 mmol/L" in html and "1.1 mg/dL" in html
    assert 'id="finding-drug.ppi"' in html
    assert "Basis: rule, inputs and" in html
    assert "S20</b>" in html  # the PPI finding's source, with its citation


def test_unknown_demo_patient_is_404(client):
    """A patient id that is not in the catalogue is a 404 page, never a file path."""
    assert 404 == client.get("/ui/demo/..%2F..%2Fetc%2Fpasswd").status_code
    assert 404 == client.get("/ui/demo/nobody").status_code
    assert 404 == client.get("/ui/demo/nobody/report.pdf").status_code
    assert 404 == client.get("/ui/demo?patient=nobody").status_code


def test_demo_picker_redirects_to_the_result(client):
    """The picker's form goes to the chosen patient's result page."""
    response = client.get("/ui/demo?patient=case-04-healthy", follow_redirects=False)
    assert 303 == response.status_code
    assert "/ui/demo/case-04-healthy" == response.headers["location"]


def test_form_builds_a_document_the_core_assesses(client):
    """A filled form gives a result page, and its PDF replays the same input."""
    response = client.post(
        "/ui/assess",
        data={
            "source": "form",
            "id": "form-1",
            "as_of": "2024-05-01",
            "age": "67",
            "sex": "female",
            "med-0-name": "omeprazole 20 mg",
            "med-0-start": "2021-01-01",
            "lab-serum_mg-0-value": "1.5",
            "lab-serum_mg-0-unit": "mg/dL",
            "lab-serum_mg-0-date": "2024-04-28",
            "lab-serum_mg-1-value": "0.8",
            "lab-serum_mg-1-unit": "mmol/L",
            "lab-serum_mg-1-date": "2023-04-28",
            "sign-muscle_cramps": "yes",
            "supp-0-form": "transdermal",
        },
    )
    assert 200 == response.status_code
    html = response.text
    assert "Status: Deficient" in html
    assert "0.62 mmol/L" in html
    assert "Current proton-pump inhibitors" in html
    assert "Not counted toward intake" in html
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html))
    pdf = client.post("/ui/report.pdf", files={k: (None, v) for k, v in fields.items()})
    assert 200 == pdf.status_code
    assert pdf.content.startswith(b"%PDF-")
    data = client.post("/ui/report.json", files={k: (None, v) for k, v in fields.items()}).json()
    assert "deficient" == data["status"]
    assert "form-1" == data["patient"]["id"]


def test_an_allergy_typed_in_the_form_reaches_the_advice(client):
    """A magnesium sulfate allergy entered in the form is named, urgent, beside the IV advice for tetany; the report replays it."""
    response = client.post(
        "/ui/assess",
        data={
            "source": "form",
            "as_of": "2024-05-01",
            "age": "58",
            "sex": "male",
            "allergies_known": "known",
            "allergy-0-name": "magnesium sulfate",
            "allergy-0-reaction": "anaphylaxis",
            "allergy-0-type": "allergy",
            "lab-serum_mg-0-value": "0.42",
            "lab-serum_mg-0-unit": "mmol/L",
            "lab-serum_mg-0-date": "2024-04-30",
            "sign-tetany": "yes",
        },
    )
    assert 200 == response.status_code
    html = response.text
    assert "anaphylaxis" in html
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html))
    data = client.post("/ui/report.json", files={k: (None, v) for k, v in fields.items()}).json()
    allergy = next(a for a in data["safety"] if a["id"] == "sf.mg_allergy")
    assert "urgent" == allergy["priority"]
    assert "anaphylaxis" in allergy["reason"]


def test_the_form_shows_the_allergy_rows(client):
    """The clinician form asks for allergies, with a known/not-known choice and a type per row."""
    html = client.get("/").text
    for control in (
        "allergies_known-known",
        "allergy-0-name",
        "allergy-0-reaction",
        "allergy-0-type",
        "allergy-1-name",
    ):
        assert f'id="{control}"' in html


def test_wrong_unit_is_shown_next_to_its_field_with_the_allowed_units(client):
    """A unit the test cannot have is refused next to that row's unit field, naming the allowed units."""
    response = client.post(
        "/ui/assess",
        data={
            "source": "form",
            "as_of": "2024-05-01",
            "lab-potassium-0-value": "3.9",
            "lab-serum_mg-0-value": "0.7",
            "lab-serum_mg-0-unit": "mg/d",
        },
    )
    assert 422 == response.status_code
    message = _error_for(response.text, "lab-serum_mg-0-unit")
    assert "Unit not recognised for Serum magnesium" in message
    assert "“mg/d”" in message
    for unit in ("mmol/L", "mg/dL", "mEq/L"):
        assert unit in message
    assert 'id="lab-serum_mg-0-unit" name="lab-serum_mg-0-unit" type="text" value="mg/d"' in response.text
    assert 'href="#lab-serum_mg-0-unit"' in response.text  # the summary links to the field
    assert 'value="3.9"' in response.text  # what was typed is kept


@pytest.mark.parametrize(
    ("data", "control", "words"),
    [
        ({"age": "200"}, "age", "implausible"),
        ({"birth_date": "2030-01-01"}, "birth_date", "after the as-of date"),
        ({"lab-serum_mg-0-value": "70"}, "lab-serum_mg-0-value", "implausible"),
        ({"lab-serum_mg-0-value": "abc"}, "lab-serum_mg-0-value", "must be a number"),
        ({"lab-serum_mg-0-date": "2024-01-01"}, "lab-serum_mg-0-value", "must be a number"),
        ({"alcohol_drinks_per_day": "-3"}, "alcohol_drinks_per_day", "implausible"),
        ({"diet_mg_per_day": "20000"}, "diet_mg_per_day", "implausible"),
        ({"food-almonds": "1000"}, "food-almonds", "implausible"),
        ({"med-2-start": "yesterday", "med-2-name": "omeprazole"}, "med-2-start", "not a date"),
        ({"med-1-dose": "20 mg"}, "med-1-name", "non-empty"),
        ({"supp-0-form": "oxide", "supp-0-amount": "50000"}, "supp-0-amount", "implausible"),
        ({"loading_dose_mmol": "0"}, "loading_dose_mmol", "implausible"),
        ({"as_of": ""}, "as_of", "required"),
    ],
)
def test_validation_message_sits_next_to_the_field(client, data, control, words):
    """Each refusal of the adapter or the core is shown by the control that was filled."""
    response = client.post("/ui/assess", data={"source": "form", "as_of": "2024-05-01", **data})
    assert 422 == response.status_code
    assert words in _error_for(response.text, control).lower()
    assert f'id="{control}"' in response.text


def test_upload_of_a_fhir_bundle_is_assessed_at_the_end_of_the_record(client):
    """A gzip FHIR bundle without a date is assessed at its last date, and the page says so."""
    raw = (resources.files("magstat") / "demo" / "synthea-antonio-castellanos.json.gz").read_bytes()
    response = client.post(
        "/ui/assess",
        data={"source": "upload", "lenient": "1"},
        files={"file": ("bundle.json.gz", raw, "application/gzip")},
    )
    assert 200 == response.status_code
    assert "Uploaded file bundle.json.gz" in response.text
    assert "assessed as of its last date" in response.text
    assert "Current thiazide" in response.text


def test_upload_of_a_patient_document(client):
    """A YAML patient document is read by its content, not its name."""
    doc = b"as_of: 2024-05-01\nage: 50\nsex: male\nlabs:\n  - {test: serum_mg, value: 0.9, unit: mmol/L}\n"
    response = client.post(
        "/ui/assess", data={"source": "upload"}, files={"file": ("p.txt", doc, "text/plain")}
    )
    assert 200 == response.status_code
    assert "0.9 mmol/L" in response.text


def test_upload_errors_name_the_place_in_the_file(client):
    """A strict upload with an unknown unit is refused with the FHIR path of the bad value."""
    raw = (DATA / "fhir" / "invalid_unknown_unit.json").read_bytes()
    response = client.post(
        "/ui/assess", data={"source": "upload", "upload_as_of": "2024-05-01"}, files={"file": ("b.json", raw)}
    )
    assert 422 == response.status_code
    message = _error_for(response.text, "file")
    assert "unit" in message.lower()
    assert "Bundle" in message or "Observation" in message


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"file": ("empty.json", b"")}, "empty"),
        ({"file": ("bad.json", b"{not json")}, "malformed json"),
        ({"file": ("list.yaml", b"- 1\n- 2\n")}, "not a fhir resource"),
    ],
)
def test_bad_uploads_are_refused_clearly(client, files, words):
    """Empty, malformed or wrong-shaped files are refused by the upload field."""
    response = client.post("/ui/assess", data={"source": "upload"}, files=files)
    assert 422 == response.status_code
    assert words in _error_for(response.text, "file").lower()


def test_damaged_report_payload_is_refused(client, monkeypatch):
    """A tampered or inflating hidden payload gives a clear 422 page, not a server error."""
    response = client.post("/ui/report.pdf", files={"payload": (None, "%%%"), "as_of": (None, "2024-05-01")})
    assert 422 == response.status_code
    assert "damaged report data" in response.text.lower()
    monkeypatch.setattr(routes, "MAX_UPLOAD_BYTES", 1000)
    bomb = base64.b64encode(gzip.compress(b"{" + b" " * 100_000 + b"}")).decode()
    response = client.post("/ui/report.json", files={"payload": (None, bomb), "as_of": (None, "2024-05-01")})
    assert 422 == response.status_code
    assert "input too large" in response.text.lower()


def test_self_check_plain_language_without_diagnostic_wording(client):
    """The self-check answers in plain words, says when to see a clinician and never 'diagnoses'."""
    assert "diagnos" not in client.get("/self-check").text.lower()
    response = client.post(
        "/self-check",
        data={
            "age": "70",
            "sex": "female",
            "med-0-name": "omeprazole",
            "sign-muscle_cramps": "1",
            "supp-0-form": "transdermal",
            "food-almonds": "3",
            "conds_none": "1",
        },
    )
    assert 200 == response.status_code
    html = response.text
    # The titles of the cited papers are theirs, not ours; everything else is checked.
    text = re.sub(r"<[^>]+>", " ", re.sub(r'<ol class="sources">.*?</ol>', "", html, flags=re.S)).lower()
    assert "diagnos" not in text
    for word in ("deficien", "hypomagnes", "you have low"):
        assert word not in text
    assert "When to see a clinician" in html
    assert "You take omeprazole" in html
    assert "magnesium oil" in text and "not counted" in text
    assert "from your food answers" in text


@pytest.mark.parametrize(
    ("answers", "urgency"),
    [
        ({}, "u-none"),
        (
            {"age": "40", "sex": "male", "conds_none": "1", "meds_none": "1", "alcohol_drinks_per_day": "0"},
            "u-none",
        ),
        ({"med-0-name": "omeprazole"}, "u-soon"),
        ({"med-0-name": "furosemide", "sign-tetany": "1"}, "u-today"),
    ],
)
def test_self_check_urgency_follows_the_core(client, answers, urgency):
    """When to see a clinician follows the core's status and priorities."""
    html = client.post("/self-check", data=answers).text
    assert f"urgency {urgency}" in html
    assert "diagnos" not in re.sub(r'<ol class="sources">.*?</ol>', "", html, flags=re.S).lower()


def test_self_check_errors_sit_next_to_the_question(client):
    """An implausible age is refused next to the age question, in plain words."""
    response = client.post("/self-check", data={"age": "300"})
    assert 422 == response.status_code
    assert "implausible" in _error_for(response.text, "age").lower()


@pytest.mark.parametrize(
    "path",
    ["/", "/self-check", "/ui/demo/case-01-ppi-diuretic-deficient", "/ui/demo/synthea-py-patient-07"],
)
def test_pages_load_nothing_from_elsewhere(client, path):
    """Every URL a page uses is the app's own: no CDN, no external font, no inline script."""
    response = client.get(path)
    refs = _refs(response.text)
    external = [u for u in refs.urls if re.match(r"^(https?:)?//", u[2])]
    assert [] == external
    assert 0 == refs.inline_scripts
    assert [] == refs.event_handlers
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "no-store" == response.headers["cache-control"]


def test_static_files_have_no_external_urls(client):
    """The stylesheet and script load nothing from elsewhere (no @import, no url(http...), no fetch)."""
    for name, kind in (("magstat.css", "text/css"), ("magstat.js", "text/javascript")):
        response = client.get(f"/static/{name}")
        assert 200 == response.status_code
        assert response.headers["content-type"].startswith(kind)
        assert [] == re.findall(r"https?://|@import|url\(\s*['\"]?//", response.text)
    assert 404 == client.get("/static/../routes.py").status_code
    assert 404 == client.get("/static/nothing.css").status_code


def test_static_files_are_revalidated_by_etag(client):
    """A repeated request with the ETag gets 304 Not Modified."""
    first = client.get("/static/magstat.css")
    again = client.get("/static/magstat.css", headers={"If-None-Match": first.headers["etag"]})
    assert 304 == again.status_code


def test_the_json_download_is_the_core_contract(client):
    """The JSON report is Assessment.to_dict(): status, mds, knowledge_base."""
    data = json.loads(client.get("/ui/demo/case-02-grey-zone-diabetes/report.json").content)
    assert {"status", "mds", "egfr", "serum_magnesium", "findings", "knowledge_base"} <= set(data)


def test_router_uses_the_hosting_apps_knowledge_base(kb):
    """Mounted in another app, the pages use that app's ``state.kb`` (as the service sets it)."""
    host = FastAPI()
    host.state.kb = dataclasses.replace(kb, version="9.9.9-test")
    host.include_router(router)
    with TestClient(host) as other:
        assert "Knowledge base 9.9.9-test" in other.get("/").text
        assert "/static/magstat.css" in other.get("/self-check").text
        assert 200 == other.get("/static/magstat.js").status_code


def test_shared_patients_are_listed_only_when_present(client, monkeypatch, tmp_path):
    """Without the shared folder only the built-in patients show; with it, its records can be picked."""
    monkeypatch.setattr(patients, "shared_data_dir", lambda: None)
    html = client.get("/").text
    assert "Shared Synthea patients" not in html
    assert "case-01-ppi-diuretic-deficient" in html
    (tmp_path / "synthea").mkdir()
    (tmp_path / "synthea" / "Ada_Lovelace_0001.json").write_bytes(
        (DATA / "fhir" / "bundle_collection.json").read_bytes()
    )
    (tmp_path / "synthea" / "hospitalInformation1.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(patients, "shared_data_dir", lambda: tmp_path)
    html = client.get("/").text
    assert "Ada Lovelace" in html
    assert "hospitalInformation" not in html
    page = client.get("/ui/demo/shared-synthea-Ada_Lovelace_0001")
    assert 200 == page.status_code
    assert "assessed as of its last date" in page.text
