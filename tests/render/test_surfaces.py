"""Every surface lays out the one presentation model: same numbers, same units, same order.

Text, the standalone HTML report, the PDF and the CDS card detail of the same assessment must
state the same quantities with the same units for people, and must open with the status, then
the urgent and important actions in priority order, then the basis.
"""

from __future__ import annotations

import dataclasses
import html
import io
import re
import unicodedata

import pytest

from magstat.adapters.cds_hooks.cards import CardContext, patient_view_cards
from magstat.adapters.read import facts_from_data
from magstat.core.assess import assess
from magstat.core.rules.report import EXCLUDED_NAMED
from magstat.render import render_html, render_text
from magstat.render.model import assessment_view
from magstat.web import patients

pdf_module = pytest.importorskip("magstat.web.pdf", reason="the PDF needs the service extra (reportlab)")
pypdf = pytest.importorskip("pypdf", reason="pypdf reads the PDF (pip install -e '.[test]')")

DEMOS = [p for p in patients.catalogue() if p.path is None]
# UCUM codes and raw values that must not reach a person.
NOT_FOR_PEOPLE = (
    "{drinks}",
    "{1.73_m2}",
    " L mmol/L",
    " H mmol/L",
    "{score}",
    "0.4526",
    "0.453 ",
    " True",
    " False",
)


def _assessed(patient, kb):
    facts = facts_from_data(patient.load(), kb, as_of=patient.as_of, strict=False)
    return assess(facts, kb), facts


def _plain(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _surfaces(result, facts, kb) -> dict[str, str]:
    page = re.sub(r"<style>.*?</style>", " ", render_html(result, kb, facts), flags=re.S)
    page = html.unescape(re.sub(r"<[^>]+>", " ", page))
    body = pdf_module.render_pdf(assessment_view(result, kb, facts))
    reader = pypdf.PdfReader(io.BytesIO(body))
    pdf = " ".join(p.extract_text() or "" for p in reader.pages)
    return {"text": _plain(render_text(result, kb)), "html": _plain(page), "pdf": _plain(pdf)}


def _card_detail(result, kb) -> str:
    ctx = CardContext(service_id="magstat-patient-view", hook_instance="0b2a3c4d-0000-4000-8000-000000000001")
    cards = patient_view_cards(result, kb, ctx)
    return _plain(cards[0]["detail"].replace("\\", "")) if cards else ""


@pytest.mark.parametrize("patient", DEMOS, ids=lambda p: p.id)
def test_text_html_and_pdf_state_the_same_numbers_with_the_same_units(kb, patient):
    """Each measurement of the model appears, worded alike, in the text, the HTML and the PDF."""
    result, facts = _assessed(patient, kb)
    view = assessment_view(result, kb, facts)
    surfaces = _surfaces(result, facts, kb)
    for row in view.measurements:
        if row.secondary:
            continue
        value = _plain(row.value)
        for name, text in surfaces.items():
            # Long values wrap in the PDF and the text: compare the quantity that leads them.
            assert value[:40] in text, f"{row.label} {value!r} missing from the {name}"
    for name, text in surfaces.items():
        for code in NOT_FOR_PEOPLE:
            assert code not in text, f"{code!r} shown in the {name}"


def test_serum_magnesium_has_one_rounding_everywhere(kb):
    """Serum magnesium 0.4526 mmol/L is 0.45 mmol/L on every surface, the card included."""
    patient = next(p for p in DEMOS if p.id == "case-01-ppi-diuretic-deficient")
    result, facts = _assessed(patient, kb)
    assert 0.4526 == pytest.approx(result.serum_magnesium.mmol_l, abs=1e-4)
    for name, text in {**_surfaces(result, facts, kb), "card": _card_detail(result, kb)}.items():
        assert "0.45 mmol/L" in text, name
        assert re.search(r"0\.45[0-9]", text) is None, name


@pytest.mark.parametrize("patient", DEMOS, ids=lambda p: p.id)
def test_every_surface_opens_with_status_then_urgent_actions(kb, patient):
    """Status, then the urgent and important actions in priority order, then the basis."""
    result, facts = _assessed(patient, kb)
    view = assessment_view(result, kb, facts)
    texts = _surfaces(result, facts, kb)
    card = _card_detail(result, kb)
    if card:
        texts["card"] = card
    for name, text in texts.items():
        status = text.index(f"Status: {view.status_label}")
        basis = text.find("Rule")
        positions = [
            text.index(_plain(a.text)[:50]) for a in view.first_actions if _plain(a.text)[:50] in text
        ]
        if name != "card":
            assert len(view.first_actions) == len(positions), name
        assert positions == sorted(positions), f"actions out of priority order in the {name}"
        if positions:
            assert status < positions[0], name
            assert basis == -1 or positions[-1] < basis, f"basis before the first actions in the {name}"


def test_actions_are_ordered_urgent_then_important_then_routine(kb):
    """The model puts urgent before important before routine, and keeps every action once."""
    for patient in DEMOS:
        result, _ = _assessed(patient, kb)
        view = assessment_view(result, kb)
        ranks = [{"urgent": 0, "high": 1, "routine": 2}[a.priority] for a in view.actions]
        assert sorted(ranks) == ranks
        assert sorted(a.id for a in (*result.next_steps, *result.safety)) == sorted(
            a.id for a in view.actions
        )


def test_status_banner_names_the_first_urgent_action(kb):
    """The banner of the demo patient with Mg 0.45 mmol/L and tetany names the urgent action."""
    patient = next(p for p in DEMOS if p.id == "case-01-ppi-diuretic-deficient")
    result, _ = _assessed(patient, kb)
    view = assessment_view(result, kb)
    assert view.urgent
    assert view.banner.startswith(f"Status: {view.status_label}. Urgent: {view.urgent[0].first_sentence}")
    first_line = render_text(result, kb).splitlines()[0]
    assert "Urgent:" in first_line


def test_labels_for_people_not_identifiers(kb):
    """Inputs and MDS components read as names ("Proton-pump inhibitors: ...", "Fatigue: reported")."""
    patient = next(p for p in DEMOS if p.id == "case-01-ppi-diuretic-deficient")
    result, facts = _assessed(patient, kb)
    view = assessment_view(result, kb, facts)
    inputs = [i.text for g in view.groups for f in g.findings for i in f.inputs]
    assert any(t.startswith("Fatigue: reported") for t in inputs)
    assert any(t.startswith("Proton-pump inhibitors: ") for t in inputs)
    assert "Proton-pump inhibitors" in [r.label for r in view.mds_rows]
    assert not any(t.startswith(("ppi:", "diuretic:")) for t in inputs)


def test_an_excess_does_not_show_depletion_facts_prominently(kb):
    """In an excess the 0.85 lower limit is not drawn and the MDS is marked as not bearing on it."""
    patient = next(p for p in DEMOS if p.id == "case-03-ckd-supplement-excess")
    result, facts = _assessed(patient, kb)
    assert "excess" == result.status
    view = assessment_view(result, kb, facts)
    assert view.mds_secondary
    assert view.trend is not None and view.trend.limit is None
    assert all(r.secondary for r in view.measurements if r.label in ("Evidence-based lower limit",))
    assert "lower limit" not in render_html(result, kb, facts).split("<figure", 1)[1].split("</figure>")[0]


@pytest.mark.parametrize("count", [2, 8])
def test_each_entry_left_out_is_listed_once_on_every_surface(kb, count):
    """Entries that failed checks: the limitation names the first five, the reports list the rest, none twice."""
    patient = next(p for p in DEMOS if p.id == "case-04-healthy")
    facts = facts_from_data(patient.load(), kb, as_of=patient.as_of, strict=False)
    left_out = tuple(f"Observation/bad-{i}: unit not recognised" for i in range(count))
    facts = dataclasses.replace(facts, excluded=left_out)
    result = assess(facts, kb)
    for name, text in _surfaces(result, facts, kb).items():
        for entry in left_out:
            assert 1 == text.count(entry), (name, entry)
        assert (count > EXCLUDED_NAMED) == ("Also left out because they failed checks" in text), name
