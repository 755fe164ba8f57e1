"""Self-check supplements: kidney disease with magnesium, and a product without an amount."""

from __future__ import annotations

import datetime as dt

import pytest

from magstat.adapters.document import facts_from_document
from magstat.core import assess
from magstat.web.selfcheck import document_from_answers, plain_result

TODAY = dt.date(2024, 5, 1)
KIDNEY = "kidney disease"


def _supplement_lines(kb, answers: dict[str, str]) -> tuple[str, ...]:
    """The self-check's supplement lines for these answers."""
    built = document_from_answers(answers, kb, TODAY)
    return plain_result(assess(facts_from_document(built.document, kb), kb), kb).supplements


@pytest.mark.parametrize(
    ("answers", "warned"),
    [
        (
            {
                "cond-chronic_kidney_disease": "1",
                "supp-0-form": "citrate",
                "supp-0-amount": "200",
                "supp-0-basis": "elemental",
            },
            True,
        ),
        ({"cond-chronic_kidney_disease": "1", "supp-0-form": "citrate"}, True),
        ({"cond-chronic_kidney_disease": "1", "supps_none": "1"}, False),
        ({"supp-0-form": "citrate", "supp-0-amount": "200", "supp-0-basis": "elemental"}, False),
    ],
)
def test_kidney_disease_with_a_magnesium_supplement_is_told_to_ask_first(kb, answers, warned):
    """Kidney disease plus a magnesium supplement, whatever its amount, gets the plain warning; either alone does not."""
    base = {"age": "70", "sex": "female", "meds_none": "1"}
    lines = _supplement_lines(kb, {**base, **answers})
    assert warned == any(KIDNEY in line and "build up" in line for line in lines)


def test_a_supplement_without_an_amount_is_named_not_counted_as_none(kb):
    """A supplement without an amount is named as not comparable with the upper limit."""
    lines = _supplement_lines(kb, {"age": "40", "sex": "male", "supp-0-form": "oxide"})
    assert [line for line in lines if "amount was not given" in line and "Magnesium oxide" in line]
