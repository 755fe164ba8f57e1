"""The result view arranges the core's assessment without changing it, and the PDF draws it."""

from __future__ import annotations

import pytest

from magstat.adapters.read import facts_from_data
from magstat.core.assess import assess
from magstat.web import patients, pdf, view

BUILT_IN = [p for p in patients.catalogue() if p.path is None]


def _assessed(patient, kb):
    facts = facts_from_data(patient.load(), kb, as_of=patient.as_of, strict=False)
    return assess(facts, kb), facts


@pytest.mark.parametrize("patient", BUILT_IN, ids=lambda p: p.id)
def test_view_keeps_every_finding_and_action(kb, patient):
    """Every finding of the core is shown once, under a heading; every action once, by priority."""
    result, facts = _assessed(patient, kb)
    shown = view.result_view(result, facts, kb)
    listed = [f.id for g in shown.groups for f in g.findings]
    expected = [f.id for f in result.findings if f.category != "status"]
    assert sorted(expected) == sorted(listed)
    ranks = {"urgent": 0, "high": 1, "routine": 2}
    core = [a.id for a in (*result.next_steps, *result.safety)]
    assert sorted(core) == sorted(a.id for a in shown.actions)
    assert sorted(shown.actions, key=lambda a: ranks[a.priority]) == list(shown.actions)
    assert set(result.sources) <= set(shown.sources)


@pytest.mark.parametrize("patient", BUILT_IN, ids=lambda p: p.id)
def test_pdf_of_every_demo_patient(kb, patient):
    """The PDF of each demo patient is a complete PDF file with the fonts embedded."""
    result, facts = _assessed(patient, kb)
    body = pdf.render_pdf(view.result_view(result, facts, kb))
    assert body.startswith(b"%PDF-")
    assert body.rstrip().endswith(b"%%EOF")
    assert b"/FontFile2" in body  # embedded TrueType, nothing left to the reader's fonts


def test_lab_table_uses_the_lab_interval_or_says_it_is_a_default(kb):
    """A result with the lab's range shows it as the lab's; without one, the default, labelled."""
    doc = {
        "as_of": "2024-05-01",
        "labs": [
            {
                "test": "serum_mg",
                "value": 1.5,
                "unit": "mg/dL",
                "date": "2024-04-01",
                "reference_range": {"low": 1.7, "high": 2.2},
            },
            {"test": "serum_mg", "value": 0.8, "unit": "mmol/L", "date": "2023-04-01"},
            {"test": "potassium", "value": 3.2, "unit": "mmol/L", "date": "2024-04-01"},
        ],
    }
    facts = facts_from_data(doc, kb, as_of=None)
    shown = view.result_view(assess(facts, kb), facts, kb)
    serum = next(lab for lab in shown.labs if lab.test == "serum_mg")
    assert ("2024-04-01", "lab", "low", "1.50 mg/dL") == (
        serum.latest.date,
        serum.latest.interval_from,
        serum.latest.flag,
        serum.latest.reported,
    )
    assert ("2023-04-01", "default") == (serum.earlier[0].date, serum.earlier[0].interval_from)
    potassium = next(lab for lab in shown.labs if lab.test == "potassium")
    assert ("default", "low") == (potassium.latest.interval_from, potassium.latest.flag)
    assert (("2023-04-01", "0.80"), ("2024-04-01", "0.62")) == shown.trend_points


def test_pdf_spells_out_what_its_font_cannot_draw():
    """A character missing from the embedded font is spelled out, never dropped silently."""
    assert "x = alpha -&gt; kappa" == pdf._text("x = α → κ")
    assert "≥ 0.85 &amp; &lt;1" == pdf._text("≥ 0.85 & <1")
