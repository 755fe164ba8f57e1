"""Magnesium products on a medication list are supplements, read alike from FHIR and documents."""

from __future__ import annotations

import pytest

from magstat.adapters.document import facts_from_document
from magstat.core import assess
from tests import safety_cases as cases
from tests.adapters.test_fhir_dosage import read
from tests.strategies import KB

AS_OF = "2024-06-01"


def document(medications: list, **extra: object) -> dict:
    """A 60-year-old woman's document with a low serum magnesium and the given medications."""
    return {
        "magstat": "1",
        "as_of": AS_OF,
        "age": 60,
        "sex": "female",
        "medications": medications,
        "labs": [{"test": "serum_mg", "value": 0.62, "unit": "mmol/L", "date": "2024-05-30"}],
        **extra,
    }


def test_a_magnesium_tablet_on_the_document_list_is_a_supplement():
    """'magnesium oxide 400 mg' on the list: the supplements are known, the salt recognised, content unknown."""
    facts = facts_from_document(document(["magnesium oxide 400 mg twice daily", "pantoprazole 40 mg"]), KB)
    assert [("oxide", "magnesium oxide 400 mg twice daily", "medications[0]")] == [
        (s.form, s.text, s.origin.resource) for s in facts.supplements or ()
    ]
    result = assess(facts, KB)
    assert ("deficient", None) == (result.status, result.supplements.above_ul)
    assert "sf.low_despite_oral" in {a.id for a in result.safety}


@pytest.mark.parametrize(
    "medications",
    [
        [],
        ["pantoprazole 40 mg"],
        [{"name": "magnesium oxide 400 mg", "current": False}],
        ["magnesium oxide 400 mg, discontinued"],
        [{"name": "magnesium sulfate 2 g", "route": "intravenous"}],
    ],
)
def test_no_current_oral_product_leaves_the_supplements_unknown(medications):
    """Without a current magnesium product taken by mouth the document's supplements stay unknown."""
    assert None is facts_from_document(document(medications), KB).supplements


def test_a_supplement_list_given_is_kept_as_given():
    """When the document lists supplements, those are the supplements (no second count from the medications)."""
    doc = document(["magnesium oxide 400 mg"], supplements=[{"form": "citrate", "product_mg_per_day": 1000}])
    assert ["citrate"] == [s.form for s in facts_from_document(doc, KB).supplements or ()]


def test_fhir_and_document_read_the_same_product_alike():
    """The same product read from a FHIR MedicationStatement and from a document gives the same supplement form."""
    fhir = read(cases.child_supplement("magnesium oxide 400 MG Oral Tablet", 400))
    doc = facts_from_document(
        {
            "magstat": "1",
            "as_of": cases.AS_OF.isoformat(),
            "birth_date": "2018-01-15",
            "medications": ["magnesium oxide 400 MG Oral Tablet"],
        },
        KB,
    )
    assert [s.form for s in fhir.supplements or ()] == [s.form for s in doc.supplements or ()]


def test_an_empty_supplement_list_does_not_hide_a_magnesium_medication():
    """'No supplements' with magnesium oxide on the medication list: the tablet is still counted."""
    facts = facts_from_document(document(["magnesium oxide 400 mg"], supplements=[]), KB)
    assert ["oxide"] == [s.form for s in facts.supplements or ()]


def test_an_empty_supplement_list_without_a_magnesium_medication_stays_known_and_empty():
    """'No supplements' and no magnesium product: the supplements are known to be none."""
    assert () == facts_from_document(document(["pantoprazole 40 mg"], supplements=[]), KB).supplements


@pytest.mark.parametrize(
    "name",
    [
        "Magnesium sulfate 50% IV",
        "magnesium sulfate 500 MG/ML Injectable Solution",
        "MgSO4 4 g IV then 1 g/h",
        "Magnesium sulfate 2 g in 50 mL infusion",
    ],
)
def test_a_product_named_parenteral_with_no_route_is_never_an_oral_supplement(name):
    """An IV product with no recorded route is magnesium therapy, not 'about 0 mg/day' of supplement (FHIR and document)."""
    bundle = cases.Case("iv-name").mg(0.55).drug(name, kind="MedicationStatement").bundle()
    fhir = read(bundle)
    assert None is fhir.supplements
    result = assess(fhir, KB)
    assert "drug.magnesium_therapy" in [f.id for f in result.findings]
    assert (None, None) == (result.supplements.elemental_mg_per_day, result.supplements.above_ul)
    assert "supplements" in result.missing_inputs
    assert None is facts_from_document(document([name]), KB).supplements


def test_a_recorded_oral_route_keeps_a_product_a_supplement_whatever_its_name():
    """A recorded oral route decides, as it does for therapy: 'magnesium sulfate IV' taken by mouth is a supplement."""
    bundle = (
        cases.Case("oral-route")
        .drug("magnesium sulfate IV", kind="MedicationStatement", route=cases.ORAL)
        .bundle()
    )
    assert ["sulfate_heptahydrate"] == [s.form for s in read(bundle).supplements or ()]


def test_magnesium_therapy_with_unknown_kidney_function_asks_for_it():
    """IV magnesium given with no creatinine or eGFR: the next steps ask for kidney function (S58)."""
    result = assess(read(cases.Case("iv-no-egfr").mg(0.9).drug(cases.MG_IV, route=cases.IV).bundle()), KB)
    assert "drug.magnesium_therapy" in [f.id for f in result.findings]
    assert "ns.kidney_function" in [a.id for a in result.next_steps]
