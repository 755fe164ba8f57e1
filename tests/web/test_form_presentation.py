"""The clinician form: ranges in the unit entered, and the "everything else absent" shortcut."""

from __future__ import annotations

import re

from magstat.web import form


def _first_problem(html: str) -> str:
    match = re.search(r'class="error-summary".*?<li>(.*?)</li>', html, re.S)
    assert match is not None
    return re.sub(r"<[^>]+>", "", match[1])


def test_the_allowed_range_is_stated_in_the_unit_entered(client):
    """A serum Mg refused in mg/dL states the allowed range in mg/dL, then in mmol/L."""
    data = {
        "as_of": "2024-05-01",
        "lab-serum_mg-0-value": "90",
        "lab-serum_mg-0-unit": "mg/dL",
        "lab-serum_mg-0-date": "2024-04-01",
    }
    response = client.post("/ui/assess", data=data)
    assert 422 == response.status_code
    assert "Allowed: 0.024 to 48.6 mg/dL (0.01 to 20 mmol/L)." in _first_problem(response.text)


def test_the_allowed_range_is_not_repeated_in_the_same_unit(client):
    """A value refused in the knowledge base's own unit states the range once."""
    data = {"as_of": "2024-05-01", "lab-serum_mg-0-value": "90", "lab-serum_mg-0-unit": "mmol/L"}
    problem = _first_problem(client.post("/ui/assess", data=data).text)
    assert problem.endswith("Allowed: 0.01 to 20 mmol/L.")


def test_everything_else_absent_marks_the_unknown_signs_absent(kb):
    """With the shortcut ticked, the signs left "not known" become absent; those given stay."""
    values = {"as_of": "2024-05-01", "sign-tetany": "yes", "sign-fatigue": "no", form.SIGNS_REST: "1"}
    signs = form.document_from_form(values, kb).document["signs"]
    assert set(kb.signs) == set(signs)
    assert signs["tetany"] is True
    assert [] == [sid for sid, present in signs.items() if present and sid != "tetany"]


def test_without_the_shortcut_unanswered_signs_stay_unknown(kb):
    """Not ticking the shortcut leaves unanswered signs out: unknown is not absent."""
    values = {"as_of": "2024-05-01", "sign-tetany": "yes"}
    assert {"tetany": True} == form.document_from_form(values, kb).document["signs"]


def test_the_form_offers_the_shortcut(client):
    """The clinician page has the "everything else absent" box next to the sign selectors."""
    html = client.get("/").text
    assert f'name="{form.SIGNS_REST}"' in html
    assert "Every sign I leave as “Not known” is absent" in html


def test_web_result_and_cli_report_are_one_template(client, kb):
    """The web result page and the standalone report show the same sections in the same order."""
    from magstat.adapters.read import facts_from_data  # noqa: PLC0415
    from magstat.core.assess import assess  # noqa: PLC0415
    from magstat.render import render_html  # noqa: PLC0415
    from magstat.web import patients  # noqa: PLC0415

    patient = next(p for p in patients.catalogue() if p.id == "case-01-ppi-diuretic-deficient")
    facts = facts_from_data(patient.load(), kb, as_of=patient.as_of, strict=False)
    report = render_html(assess(facts, kb), kb, facts)
    page = client.get(f"/ui/demo/{patient.id}").text

    def headings(html: str) -> list[str]:
        return re.findall(r'<h2 id="(h-[a-z]+)"', html)

    assert headings(report) == headings(page)
    assert ["h-first", "h-measure"] == headings(page)[:2]
