"""The patient document has one definition: its JSON Schema and its reader accept the same documents.

Many documents, valid and not, are drawn from pools of right and wrong values for every field;
for each, the schema (draft 2020-12 with format checking) and ``facts_from_document`` must give
the same answer. What the schema cannot know is kept out of the draw, as its docstring says: a
lab's unit is the test's canonical one and its value plausible, a LOINC code is one the
knowledge base knows, and signs are given by id, not by a name that the reader recognises.
"""

from __future__ import annotations

import datetime as dt

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from magstat.adapters.document import _TOP_KEYS, FIELDS, facts_from_document, json_schema
from magstat.errors import InvalidInputError
from tests.strategies import KB

AS_OF = dt.date(2024, 5, 1)
SCHEMA = json_schema(KB)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())

# Right and wrong values, shared by every field: each is right for some field and wrong for others.
SCALARS = [None, True, False, 0, 1, 2, 12, 13, 130, 131, -1, 0.5, 2.0, 2.5, 1e300, -0.0]
TEXTS = ["", " ", "\t\n", "x", " padded ", "1", "female", "male", "other"]
DATES = ["2024-05-01", "1950-02-28", "2024-05-01xyz", "2024-02-30", "2024-5-1", " 2024-05-01", "20240501"]
JUNK = [[], {}, ["x"], {"a": 1}]
ANY = st.one_of(
    st.sampled_from(SCALARS + TEXTS + DATES + JUNK),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
TRI = st.sampled_from([True, False, None, 1, "yes", "true"])
NUMBER = st.one_of(
    st.sampled_from([None, 0, 1, 2.5, -1, -0.5, "3", True]), st.floats(allow_nan=False, allow_infinity=False)
)
DATE = st.sampled_from([*DATES, None, 20240501, True])
TEXT = st.one_of(st.sampled_from([*TEXTS, None, 1, 1.5, True, ["x"]]), st.text(max_size=6))
LABS = {"serum_mg": "19123-9", "serum_creatinine": "2160-0", "potassium": None, "egfr": None, "audit_c": None}


def _optional(**fields: st.SearchStrategy) -> st.SearchStrategy:
    """Objects holding any subset of these fields (and now and then one unknown key)."""
    return st.fixed_dictionaries({}, optional={**fields, "unknown_key": st.just(1)})


CODE = _optional(system=TEXT, code=st.one_of(TEXT, st.integers(0, 10**9)), display=TEXT)
CODES = st.one_of(st.none(), CODE, st.lists(CODE, max_size=2), st.sampled_from(["7646", 5]))


def _named(**fields: st.SearchStrategy) -> st.SearchStrategy:
    """A list item: a name, or an object with a name (sometimes missing) and further fields."""
    return st.one_of(TEXT, _optional(name=TEXT, **fields))


@st.composite
def labs(draw: st.DrawFn) -> object:
    """One lab: a known test with a plausible value in its canonical unit, or something wrong."""
    test = draw(st.sampled_from(sorted(LABS)))
    spec = KB.tests[test]
    value = (spec.plausible_low + spec.plausible_high) / 2
    lab = draw(
        _optional(
            test=st.sampled_from([test, test, None, "not_a_test", 1]),
            loinc=st.sampled_from([c for c in (LABS[test], None, 19123, "") if c != ""] + [""]),
            value=st.sampled_from([value, value, None, str(value), True]),
            unit=st.sampled_from([spec.canonical_unit, None, 1]),
            date=DATE,
            method=TEXT,
            reference_range=st.one_of(st.none(), _optional(low=NUMBER, high=NUMBER), st.just("x")),
        )
    )
    if lab.get("test") is None and lab.get("loinc") is not None and LABS[test] != lab["loinc"]:
        lab.pop("loinc")  # a LOINC code must name this test, so that the value stays plausible
    return lab


SIGN_IDS = sorted(KB.signs)
SIGNS = st.one_of(
    st.none(),
    st.lists(st.sampled_from([*SIGN_IDS[:6], "not_a_sign", "", 1, None]), max_size=3),
    st.dictionaries(st.sampled_from([*SIGN_IDS[:6], "not_a_sign"]), TRI, max_size=3),
    st.sampled_from(["tetany", 0]),
)
FOODS = sorted(KB.foods)[:3]
FORMS = sorted(KB.supplements)[:3]

DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(FIELDS, ANY),
        "as_of": st.one_of(DATE, ANY),
        "sex": st.one_of(st.sampled_from(["female", "male", "other", None]), ANY),
        "medications": st.one_of(
            st.none(),
            st.lists(
                _named(
                    code=CODES,
                    start=DATE,
                    current=TRI,
                    dose=st.one_of(TEXT, NUMBER),
                    route=st.sampled_from(["oral", "intravenous", "by mouth", None, 1]),
                    reason=TEXT,
                ),
                max_size=3,
            ),
            st.sampled_from(["omeprazole", {}, 0]),
        ),
        "conditions": st.one_of(
            st.none(),
            st.lists(_named(code=CODES, current=TRI, onset=DATE), max_size=3),
            st.sampled_from(["heart failure", 0]),
        ),
        "signs": SIGNS,
        "labs": st.one_of(st.none(), st.lists(labs(), max_size=3), st.sampled_from(["x", 0, {}])),
        "diet": st.one_of(
            st.none(),
            _optional(
                mg_per_day=NUMBER,
                food_frequency=st.one_of(
                    st.none(), st.dictionaries(st.sampled_from([*FOODS, "not_a_food"]), NUMBER, max_size=3)
                ),
            ),
            st.sampled_from([[], 0]),
        ),
        "supplements": st.one_of(
            st.none(),
            st.lists(
                st.one_of(
                    TEXT,
                    _optional(
                        name=TEXT,
                        form=st.sampled_from([*FORMS, None, "not_a_form", 1]),
                        elemental_mg_per_day=NUMBER,
                        product_mg_per_day=NUMBER,
                    ),
                ),
                max_size=3,
            ),
            st.sampled_from([{}, "magnesium citrate"]),
        ),
        "loading_test": st.one_of(
            st.none(),
            _optional(
                retention_percent=NUMBER,
                dose_mmol=NUMBER,
                urine_mmol=NUMBER,
                baseline_urine_mmol=NUMBER,
                date=DATE,
            ),
            st.just([]),
        ),
        "not_a_field": st.just(1),
    },
)


def schema_accepts(doc: object) -> bool:
    """Whether the JSON Schema (with format checking) accepts the document."""
    return VALIDATOR.is_valid(doc)


def reader_accepts(doc: object) -> bool:
    """Whether facts_from_document reads the document (assessed as of 2024-05-01)."""
    try:
        facts_from_document(doc, KB, as_of=AS_OF)
    except InvalidInputError:
        return False
    return True


# The probes that found the two definitions apart: each is (document, accepted?).
PROBES = [
    ({"as_of": "2024-05-01"}, True),
    ({"as_of": "2024-05-01xyz"}, False),
    ({"as_of": "2024-02-30"}, False),
    ({"audit_c": 2.5}, False),
    ({"audit_c": 4.0}, True),
    ({"audit_c": 13}, False),
    ({"id": 1.5}, False),
    ({"id": 15}, True),
    ({"supplements": [{}]}, False),
    ({"supplements": [{"form": FORMS[0]}]}, True),
    ({"age": -1}, False),
    ({"magstat": 1}, False),
    ({"medications": [""]}, False),
    ({"medications": None, "labs": None}, True),
    ({"medications": [{"name": "furosemide", "code": {"system": "rxnorm"}}]}, False),
    ({"labs": [{"test": "serum_mg"}]}, False),
    ({"labs": [{"value": 0.8}]}, False),
    ({"signs": ["not_a_sign"]}, False),
    ({"diet": {"food_frequency": {FOODS[0]: -1}}}, False),
    ({"labs": 0}, False),
    ({"deceased": False, "deceased_date": "2020-01-01"}, False),
    ({"deceased": True, "deceased_date": "2020-01-01"}, True),
    ({"deceased": False, "deceased_date": None}, True),
]


@pytest.mark.parametrize(("doc", "accepted"), PROBES, ids=[str(p[0])[:60] for p in PROBES])
def test_probe(doc, accepted):
    """Each probe is accepted by both definitions, or refused by both."""
    assert (accepted, accepted) == (schema_accepts(doc), reader_accepts(doc))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
@example({"as_of": " 2024-05-01"})
@example({"magstat": "\x1c"})
@example({"supplements": [{"name": "", "form": FORMS[0]}]})
def test_schema_valid_exactly_when_the_reader_accepts(doc):
    """For any document drawn, the schema accepts it exactly when facts_from_document does."""
    assert schema_accepts(doc) == reader_accepts(doc), doc


def test_schema_lists_every_field_the_reader_knows():
    """The schema's top-level properties are the reader's fields, in the same order."""
    assert list(_TOP_KEYS) == list(SCHEMA["properties"])
    assert set(FIELDS) <= set(_TOP_KEYS)


def test_draw_reaches_both_answers():
    """The drawn documents are not all accepted or all refused (the property above can fail)."""
    seen: set[bool] = set()

    @settings(max_examples=200, deadline=None, database=None)
    @given(DOCUMENTS)
    def collect(doc):
        seen.add(reader_accepts(doc))

    collect()
    assert {True, False} == seen


@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_a_number_beyond_a_double_is_refused_not_a_crash(value):
    """10**400 (a JSON integer no double holds) is refused by the reader and by the core's checks, naming the field."""
    from magstat.core import PatientFacts, assess  # noqa: PLC0415
    from magstat.core.facts import Lab  # noqa: PLC0415

    doc = {"as_of": "2024-06-01", "age": 50, "sex": "female"}
    with pytest.raises(InvalidInputError) as caught:
        facts_from_document({**doc, "labs": [{"test": "serum_mg", "value": value, "unit": "mmol/L"}]}, KB)
    assert ("labs[0].value", "must be a number") == (caught.value.field, caught.value.problem)
    with pytest.raises(InvalidInputError) as caught:
        facts_from_document({**doc, "age": value}, KB)
    assert "age" == caught.value.field
    lab = Lab("serum_mg", value, "mmol/L", dt.date(2024, 5, 1))
    with pytest.raises(InvalidInputError) as caught:
        assess(PatientFacts(as_of=dt.date(2024, 6, 1), age_years=50, sex="female", labs=(lab,)), KB)
    assert ("labs[0].value", "must be a finite number") == (caught.value.field, caught.value.problem)
