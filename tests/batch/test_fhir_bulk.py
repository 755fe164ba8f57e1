"""The Bulk Data scan: files by name, and the Observation filter that can only err by keeping."""

from __future__ import annotations

import json
import re

import duckdb
import pytest

from magstat.adapters.fhir import extract
from magstat.batch.engines.duckdb import _ref_id
from magstat.batch.readers import fhir_bulk
from magstat.core.match import match_sign, match_test


@pytest.fixture(scope="module")
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


def keeps(con, kb, code: dict) -> bool:
    """Whether the DuckDB scan would keep an Observation with this code (as it serialises it)."""
    text = con.execute(
        "SELECT CAST(json_extract(?, '$.code') AS VARCHAR)", [json.dumps({"code": code})]
    ).fetchall()[0][0]
    matches = any(
        con.execute("SELECT regexp_matches(?, ?)", [text, p]).fetchall()[0][0]
        for p in fhir_bulk.code_keyword_patterns(kb)
    )
    plain = con.execute("SELECT regexp_matches(?, ?)", [text, fhir_bulk.plain_code_pattern()]).fetchall()[0][
        0
    ]
    return matches or not plain


def test_needed_types_are_what_the_adapter_reads():
    """The scan reads exactly the resource types the FHIR adapter reads."""
    assert set(extract._READ) == set(fhir_bulk.NEEDED_TYPES)


def test_file_names(tmp_path):
    """<Type>.ndjson, <Type>.<n>.ndjson and .gz are typed; other NDJSON is read whole; the rest listed."""
    for name in (
        "Patient.ndjson",
        "Observation.2.ndjson.gz",
        "Claim.ndjson",
        "export.ndjson",
        "manifest.json",
    ):
        (tmp_path / name).write_bytes(b"")
    source = fhir_bulk.discover(tmp_path)
    assert ["Patient.ndjson", "Observation.2.ndjson.gz", "export.ndjson"] == [f.name for f in source.read]
    assert ["Claim.ndjson"] == [f.name for f in source.skipped]
    assert ("manifest.json",) == source.ignored
    assert ("Observation", 2) == (source.read[1].rtype, source.read[1].part)


def test_hidden_files_and_folders_are_not_read(tmp_path):
    """An output being written inside the export (a hidden temporary folder) is not read as input."""
    (tmp_path / "Patient.ndjson").write_bytes(b"")
    (tmp_path / ".hidden.ndjson").write_bytes(b"")
    (tmp_path / ".out.magstat-tmp-1").mkdir()
    (tmp_path / ".out.magstat-tmp-1" / "assessments.ndjson.gz").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "Observation.ndjson").write_bytes(b"")
    source = fhir_bulk.discover(tmp_path)
    assert ["Patient.ndjson", "sub/Observation.ndjson"] == [f.name for f in source.read]
    assert () == source.ignored


def test_the_output_folder_inside_the_export_is_not_read(tmp_path):
    """A screening's output folder inside the export (from an earlier run) is left out."""
    (tmp_path / "Patient.ndjson").write_bytes(b"")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "assessments.ndjson.gz").write_bytes(b"")
    (tmp_path / "out" / "summary.json").write_bytes(b"")
    source = fhir_bulk.discover(tmp_path, exclude=tmp_path / "out")
    assert (["Patient.ndjson"], ()) == ([f.name for f in source.read], source.ignored)


def test_every_code_and_name_the_kb_knows_is_kept(con, kb):
    """Each LOINC/SNOMED/ICD-10 code and name the matcher knows keeps its Observation, however spaced."""
    samples = []
    for test in kb.tests.values():
        samples += [{"coding": [{"system": "http://loinc.org", "code": c.code}]} for c in test.loinc]
        samples += [{"text": p.upper().replace(" ", "  \n")} for p in test.text_patterns]
    for sign in kb.signs.values():
        samples += [{"coding": [{"system": "http://snomed.info/sct", "code": c}]} for c in sign.snomed]
        samples += [
            {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": c + "9"}]} for c in sign.icd10
        ]
        samples += [
            {"coding": [{"display": n.title().replace(" ", "-")}]} for n in (sign.name, *sign.synonyms)
        ]
    known = 0
    for code in samples:
        codes = tuple((c.get("system"), c.get("code")) for c in code.get("coding", []))
        text = (
            code.get("text")
            or " / ".join(c["display"] for c in code.get("coding", []) if "display" in c)
            or None
        )
        if match_test(kb, codes, text) or match_sign(kb, codes, text):  # what the matcher knows ...
            known += 1
            assert keeps(con, kb, code), code  # ... the scan keeps
        else:
            # A name the matcher cannot find (a hyphenated one: see the note in the report);
            # the scan keeps it all the same.
            assert keeps(con, kb, code), code
    assert known > 100


def spark_knows(kb, code: dict) -> bool:
    """The Spark engine's looser test, in Python: does the code hold an anchor token?"""
    anchors, prefixes = fhir_bulk.code_keyword_anchors(kb)
    text = re.sub(fhir_bulk.JSON_ESCAPE, " ", json.dumps(code, separators=(",", ":")).lower())
    tokens = re.split(fhir_bulk.WORD_SEPARATOR, text)
    return bool(set(tokens) & set(anchors)) or any(t.startswith(p) for t in tokens for p in prefixes)


def test_spark_word_test_keeps_what_the_matcher_knows(kb):
    """Every code or name the matcher recognises holds one of Spark's anchor tokens."""
    samples = [
        {"coding": [{"system": "http://loinc.org", "code": c.code}]}
        for t in kb.tests.values()
        for c in t.loinc
    ]
    samples += [{"text": p.upper().replace(" ", "\n")} for t in kb.tests.values() for p in t.text_patterns]
    samples += [{"coding": [{"code": c.replace(".", "")}]} for s in kb.signs.values() for c in s.icd10]
    samples += [{"text": n} for s in kb.signs.values() for n in (s.name, *s.synonyms)]
    for code in samples:
        assert spark_knows(kb, code), code
    assert not spark_knows(
        kb, {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]}
    )


def test_unknown_plain_codes_are_dropped_odd_ones_kept(con, kb):
    """A well-formed code naming nothing known is dropped; any odd shape goes to the adapter."""
    assert not keeps(
        con,
        kb,
        {
            "coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}],
            "text": "Body Height",
        },
    )
    assert not keeps(
        con,
        kb,
        {
            "coding": [
                {"system": "x", "code": "1", "display": 'Pain "severity" \\ 0-10', "userSelected": True}
            ]
        },
    )
    for odd in (
        {"coding": [{"system": "x", "code": 12}]},
        {"coding": {"system": "x"}},
        {"text": 5},
        {"coding": [{"system": "x", "code": "1", "extension": [{"url": "u"}]}]},
        {"coding": ["8302-2"]},
    ):
        assert keeps(con, kb, odd), odd


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/123", "123"),
        ("urn:uuid:0b1c", "0b1c"),
        ("https://ehr.example/fhir/Patient/9/_history/2", "9"),
        ("Patient/7?_format=json", "7"),
        ("abc", "abc"),
        ("Group/5", None),
        ("#contained", None),
        ("", None),
    ],
)
def test_patient_reference_as_the_adapter_reads_it(con, reference, expected):
    """The scan's patient id of a reference is the adapter's (type Patient or none, then the id)."""
    rtype, rid = extract._ref_key(reference) if reference else (None, None)
    adapter = rid if reference and not reference.startswith("#") and rtype in (None, "Patient") else None
    assert expected == adapter
    sql = _ref_id("ref", "Patient")
    assert (
        expected
        == con.execute(f"SELECT {sql} FROM (SELECT CAST(? AS VARCHAR) AS ref)", [reference]).fetchall()[0][0]
    )
