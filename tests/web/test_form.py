"""The clinician's form and the self-check build patient documents that the core reads as meant."""

from __future__ import annotations

import datetime as dt

import jsonschema
import pytest

from magstat.adapters.document import facts_from_document, json_schema
from magstat.core.assess import assess
from magstat.core.result import STATUSES, Action, Assessment
from magstat.core.units import to_canonical
from magstat.errors import InvalidInputError
from magstat.web import form, selfcheck

TODAY = dt.date(2024, 5, 1)


def _full_form(kb) -> dict[str, str]:
    """A form with something in every section."""
    values = {
        "id": "p1",
        "as_of": "2024-05-01",
        "birth_date": "1950-03-01",
        "sex": "female",
        "pregnant": "no",
        "lactating": "no",
        "meds_known": "known",
        "med-0-name": "omeprazole",
        "med-0-dose": "20 mg",
        "med-0-start": "2020-01-01",
        "med-1-name": "Lasix",
        "med-1-codesystem": "atc",
        "med-1-code": "C03CA01",
        "med-1-stopped": "1",
        "cond-type2_diabetes": "1",
        "condother-0-name": "gout",
        "sign-tetany": "yes",
        "sign-fatigue": "no",
        "alcohol_drinks_per_day": "1",
        "audit_c": "3",
        "chronic_stress": "yes",
        "high_metabolic_demand": "no",
        "diet_mg_per_day": "250",
        "food-almonds": "2",
        "supp-0-form": "citrate",
        "supp-0-amount": "500",
        "supp-0-basis": "product",
        "supp-1-form": "transdermal",
        "loading_retention_percent": "30",
        "loading_date": "2024-04-01",
    }
    for row in form.form_spec(kb).labs:
        values[f"{row.key}-unit"] = row.canonical_unit
    values.update(
        {
            "lab-serum_mg-0-value": "1.6",
            "lab-serum_mg-0-unit": "mg/dL",
            "lab-serum_mg-0-date": "2024-04-20",
            "lab-serum_mg-0-low": "1.7",
            "lab-serum_mg-0-high": "2.2",
            "lab-potassium-0-value": "3.4",
            "lab-serum_creatinine-0-value": "88",
            "lab-serum_creatinine-0-unit": "umol/L",
        }
    )
    return values


def test_a_full_form_is_a_valid_patient_document(kb):
    """Every section of the form lands in the document, which passes the document's JSON Schema."""
    built = form.document_from_form(_full_form(kb), kb)
    doc = built.document
    jsonschema.validate(doc, json_schema(kb))
    assert {
        "as_of",
        "birth_date",
        "sex",
        "medications",
        "conditions",
        "signs",
        "labs",
        "diet",
        "supplements",
        "loading_test",
        "alcohol_drinks_per_day",
        "audit_c",
        "chronic_stress",
    } <= set(doc)
    assert {"tetany": True, "fatigue": False} == doc["signs"]
    assert False is doc["medications"][1]["current"]
    assert {"product_mg_per_day": 500, "form": "citrate", "name": "Magnesium citrate"} == doc["supplements"][
        0
    ]
    facts = facts_from_document(doc, kb)
    assert 0.658 == pytest.approx(next(lab for lab in facts.labs if lab.test == "serum_mg").value, abs=1e-3)
    assert {"ppi"} <= {c for m in facts.medications for d in m.drugs for c in kb.drugs[d].classes}
    assert ("furosemide",) == facts.medications[1].drugs  # recognised by its ATC code
    assert "ATC C03CA01" == facts.medications[1].origin.matched_by
    assert assess(facts, kb).status in STATUSES


def test_empty_form_leaves_everything_unknown(kb):
    """Nothing entered: no list is known, no sign is present or absent (never read as "no")."""
    doc = form.document_from_form({"as_of": "2024-05-01"}, kb).document
    assert {"magstat": "1", "as_of": "2024-05-01"} == doc


def test_known_empty_lists_mean_none(kb):
    """Marking a list as known with nothing in it means "none"."""
    doc = form.document_from_form(
        {"as_of": "2024-05-01", "meds_known": "known", "conds_known": "known", "supps_known": "known"}, kb
    ).document
    assert [] == doc["medications"] == doc["conditions"] == doc["supplements"]


def test_allergy_rows_make_the_documents_allergy_list(kb):
    """Filled allergy rows become the document's allergies (type only when chosen); known and empty means none."""
    built = form.document_from_form(
        {
            "as_of": "2024-05-01",
            "allergy-0-name": "Magnesium sulfate",
            "allergy-0-reaction": "rash",
            "allergy-0-type": "intolerance",
            "allergy-1-name": "penicillin",
            "allergy-2-type": "allergy",  # a type alone is not an entry
        },
        kb,
    )
    doc = built.document
    jsonschema.validate(doc, json_schema(kb))
    assert [
        {"name": "Magnesium sulfate", "reaction": "rash", "type": "intolerance"},
        {"name": "penicillin"},
    ] == doc["allergies"]
    facts = facts_from_document(doc, kb)
    assert facts.allergies is not None
    assert ("magnesium_sulfate",) == facts.allergies[0].drugs
    assert "allergy-0-reaction" == form.control_for(
        InvalidInputError("allergies[0].reaction", "x"), built.controls
    )
    assert "Allergy 2: name" == form.label_for(form.form_spec(kb), "allergy-1-name")
    assert "allergies" not in form.document_from_form({"as_of": "2024-05-01"}, kb).document
    known = form.document_from_form({"as_of": "2024-05-01", "allergies_known": "known"}, kb).document
    assert [] == known["allergies"]


def test_every_condition_checkbox_is_recognised_as_its_condition(kb):
    """Each ticked knowledge-base condition is read back as that condition."""
    spec = form.form_spec(kb)
    for _group, choices in spec.conditions:
        for choice in choices:
            doc = form.document_from_form({"as_of": "2024-05-01", f"cond-{choice.id}": "1"}, kb).document
            facts = facts_from_document(doc, kb)
            assert choice.id == facts.conditions[0].condition


def test_every_lab_row_accepts_its_suggested_units(kb):
    """Each unit the form suggests for a test is one the core accepts for it."""
    for row in form.form_spec(kb).labs:
        for unit in row.units:
            to_canonical(kb, row.test, 1.0, unit)


def test_numbers_are_passed_as_numbers_and_anything_else_as_typed():
    """Parsing never guesses: "0,7" stays text for the core to refuse by name."""
    assert 0.7 == form.number_or_text("0.7")
    assert 3 == form.number_or_text(" 3 ")
    assert 3.0 == form.number_or_text("3.0")
    assert "0,7" == form.number_or_text("0,7")
    assert "nan" == form.number_or_text("nan")


@pytest.mark.parametrize(
    ("field", "control"),
    [
        ("labs[0].unit", "lab-serum_mg-0-unit"),
        ("labs[0].reference_range.low", "lab-serum_mg-0-low"),
        ("labs[0] (labs[0]).value", "lab-serum_mg-0-value"),
        ("labs[2] (alcohol_drinks_per_day).value", "alcohol_drinks_per_day"),
        ("supplements[0] (supplements[0]).product_mg_per_day", "supp-0-amount"),
        ("medications[0].start", "med-0-start"),
        ("food_frequency[0].servings_per_day", "food-almonds"),
        ("diet_mg_per_day", "diet_mg_per_day"),
        ("age_years", "age"),
        ("as_of", "as_of"),
        ("unknown.path", None),
    ],
)
def test_error_paths_map_to_form_controls(kb, field, control):
    """The adapter's and the core's field paths lead back to the control that was filled."""
    built = form.document_from_form(
        {
            "as_of": "2024-05-01",
            "lab-serum_mg-0-value": "1",
            "lab-serum_mg-0-low": "1",
            "alcohol_drinks_per_day": "1",
            "supp-0-form": "oxide",
            "supp-0-amount": "1",
            "med-0-name": "x",
            "food-almonds": "1",
            "diet_mg_per_day": "1",
        },
        kb,
    )
    assert control == form.control_for(InvalidInputError(field, "problem"), built.controls)


def test_error_message_is_for_people():
    """The message says what is wrong, what was entered and what is allowed, without the path."""
    error = InvalidInputError(
        "labs[0].unit", "unit not recognised for Serum magnesium", value="mg/d", allowed="mmol/L, mg/dL"
    )
    assert (
        "Unit not recognised for Serum magnesium (you entered “mg/d”). Allowed: mmol/L, mg/dL."
        == form.error_message(error)
    )


def test_self_check_answers_make_a_valid_document(kb):
    """The self-check's answers pass the document schema; an unticked sign stays unknown."""
    answers = {
        "age": "45",
        "sex": "male",
        "cond-crohns_disease": "1",
        "med-0-name": "pantoprazole",
        "sign-muscle_cramps": "1",
        "alcohol_drinks_per_day": "2",
        "chronic_stress": "yes",
        "food-spinach": "2",
        "supp-0-form": "oxide",
        "supp-0-amount": "400",
        "supp-0-basis": "product",
        "supp-1-form": "glycinate",
        "supp-1-amount": "100",
        "supp-1-basis": "",
    }
    doc = selfcheck.document_from_answers(answers, kb, TODAY).document
    jsonschema.validate(doc, json_schema(kb))
    assert {"muscle_cramps": True} == doc["signs"]
    assert "2024-05-01" == doc["as_of"]
    assert "elemental_mg_per_day" not in doc["supplements"][1]  # "not sure" leaves the amount out
    assessment = assess(facts_from_document(doc, kb), kb)
    plain = selfcheck.plain_result(assessment, kb)
    assert any("pantoprazole" in r.text for r in plain.reasons)
    assert any("crohn" in r.text for r in plain.reasons)


def test_self_check_asks_no_magnesium_disorder_and_no_iv_product(kb):
    """Already-diagnosed magnesium disorders and injections are not self-check questions."""
    spec = selfcheck.selfcheck_spec(kb)
    asked = {c.id for _g, cs in spec.conditions for c in cs}
    assert not asked & {"hypomagnesaemia_diagnosed", "hypermagnesaemia_diagnosed"}
    assert "sulfate_iv" not in {s.id for s in spec.supplements}
    assert "transdermal" in {s.id for s in spec.supplements}


@pytest.mark.parametrize("status", STATUSES)
def test_plain_wording_of_every_status_has_no_diagnostic_language(kb, status):
    """Whatever the core's status, the self-check's words name no disorder and no diagnosis."""
    doc = {
        "as_of": "2024-05-01",
        "age": 50,
        "medications": ["omeprazole"],
        "signs": ["tetany", "muscle_cramps"],
        "conditions": ["crohn's disease"],
        "alcohol_drinks_per_day": 5,
    }
    base = assess(facts_from_document(doc, kb), kb)
    forced = Assessment(**{**{f: getattr(base, f) for f in base.__slots__}, "status": status})
    plain = selfcheck.plain_result(forced, kb)
    words = " ".join(
        [
            plain.headline,
            plain.meaning,
            plain.when,
            plain.diet,
            *plain.supplements,
            *(r.text for r in (*plain.reasons, *plain.reassuring)),
        ]
    ).lower()
    for banned in ("diagnos", "deficien", "hypomagnes", "hypermagnes", "you have low", "you have high"):
        assert banned not in words


def test_urgency_follows_the_cores_priorities(kb):
    """Today needs a sign the KB marks urgent; an urgent or high action, soon; a plain risk, the next visit."""
    base = assess(facts_from_document({"as_of": "2024-05-01"}, kb), kb)

    def with_actions(status, priority):
        action = Action("x", "text", "reason", ("S1",), priority)
        return Assessment(
            **{
                **{f: getattr(base, f) for f in base.__slots__},
                "status": status,
                "next_steps": (action,),
                "safety": (),
            }
        )

    assert "soon" == selfcheck.plain_result(with_actions("at_risk", "urgent"), kb).urgency
    tetany = assess(facts_from_document({"as_of": "2024-05-01", "signs": {"tetany": True}}, kb), kb)
    assert "today" == selfcheck.plain_result(tetany, kb).urgency
    assert "soon" == selfcheck.plain_result(with_actions("at_risk", "high"), kb).urgency
    assert "next_visit" == selfcheck.plain_result(with_actions("at_risk", "routine"), kb).urgency
    assert "none" == selfcheck.plain_result(with_actions("unlikely", "routine"), kb).urgency
