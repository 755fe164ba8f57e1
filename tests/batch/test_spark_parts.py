"""The result parts Spark executors write: checked to be seen whole by the driver, merged in order.

These need pyarrow only (no Java): the parts are written here as an executor would write them.
"""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from magstat.batch.engines import spark
from magstat.batch.engines.spark import (
    FOLDED,
    FOLDS_TO_ASCII,
    MAX_RESULT_PARTITIONS,
    MIN_RESULT_PARTITIONS,
    check_parts,
    keyword_regex,
    merge_parts,
    part_name,
    part_schema,
    result_partitions,
)
from magstat.batch.popgen import read_bundle
from magstat.batch.readers.fhir_bulk import code_keyword_alternatives
from tests.batch.conftest import synthea_files


def _write(folder, part, keys):
    """A part holding one result per key, in the given order (as a sorted partition would)."""
    records = [
        {
            "key": key,
            "seq": seq,
            "patient_id": key,
            "row": None if key is None else json.dumps({"patient_id": key, "as_of": "2020-01-01"}),
            "detail": None,
            "issues": None,
        }
        for seq, key in enumerate(keys)
    ]
    pq.write_table(pa.Table.from_pylist(records, schema=part_schema(pa)), folder / part_name(part))


def test_check_parts_refuses_a_part_the_driver_cannot_see(tmp_path):
    """A reported part that is missing, or holds other rows, stops the run naming shared storage."""
    _write(tmp_path, 0, ["a", "b"])
    assert [tmp_path / "part-00000.parquet"] == check_parts(tmp_path, [(0, 2)])
    with pytest.raises(RuntimeError, match=r"cannot find that file.*share"):
        check_parts(tmp_path, [(0, 2), (1, 3)])
    with pytest.raises(RuntimeError, match="reads 2 there"):
        check_parts(tmp_path, [(0, 3)])


def test_merge_parts_gives_one_stream_in_patient_order(tmp_path):
    """Sorted parts merge into one stream sorted by patient id; results without a patient come first."""
    _write(tmp_path, 0, ["b", "d", "e"])
    _write(tmp_path, 1, [None, "a", "c", "f"])
    paths = check_parts(tmp_path, [(1, 4), (0, 3)])
    merged = list(merge_parts(paths))
    assert [None, "a", "b", "c", "d", "e", "f"] == [
        None if r.row is None else r.row["patient_id"] for r in merged
    ]
    assert "2020-01-01" == merged[1].row["as_of"].isoformat()


def test_result_partitions_depend_on_input_size_only():
    """The number of parts grows with the input, within fixed bounds, and nothing else."""
    assert MIN_RESULT_PARTITIONS == result_partitions(0)
    assert MIN_RESULT_PARTITIONS == result_partitions(10 << 20)
    assert 8 == result_partitions(2 << 30)
    assert MAX_RESULT_PARTITIONS == result_partitions(1 << 50)


_UNICODE_SPACES = "\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _python(pattern):
    """A java.util.regex / RE2 keyword pattern in Python's syntax (``\\p{Z}`` spelled out)."""
    return re.compile(pattern.replace(r"\p{Z}", _UNICODE_SPACES))


def _code_texts(kb):
    """Observation codes as the engines serialise them: every test data code, and the KB's names."""
    texts = set()
    for path in synthea_files():
        for entry in read_bundle(path).get("entry", []):
            code = entry["resource"].get("code")
            if code is not None:
                texts.add(json.dumps(code, separators=(",", ":"), ensure_ascii=False))
    for sign in kb.signs.values():
        for name in [sign.name, *sign.synonyms]:
            words = name.split()
            texts.add(json.dumps({"text": "\u00a0".join(words).upper()}, ensure_ascii=False))
            texts.add(json.dumps({"text": "\n".join(words)}))  # written as the escape \n
            texts.add(json.dumps({"text": " ".join(words)[:-1]}))  # one letter short
            texts.add(json.dumps({"text": " ".join(words).replace("s", "\u017f").replace("k", "\u212a")}))
    for test in kb.tests.values():
        for coding in test.loinc:
            texts.add(json.dumps({"coding": [{"system": "http://loinc.org", "code": f"x{coding.code}9"}]}))
            texts.add(json.dumps({"coding": [{"code": coding.code[:-1]}]}))
    return sorted(texts)


def test_keyword_regex_matches_the_texts_duckdb_patterns_match(kb):
    """Spark's merged keyword pattern accepts exactly the codes DuckDB's alternatives accept."""
    alternatives = [_python("(?i)" + a) for a in code_keyword_alternatives(kb)]
    merged = _python(keyword_regex(kb))
    folds = str.maketrans(FOLDS_TO_ASCII, FOLDED)
    texts = _code_texts(kb)
    expected = [any(a.search(t) for a in alternatives) for t in texts]
    actual = [merged.search(t.translate(folds)) is not None for t in texts]
    assert 500 <= len(texts)
    assert 100 <= sum(expected) < len(texts)
    assert expected == actual


def test_keyword_regex_is_one_prefix_tree(monkeypatch, kb):
    """The merged pattern shares prefixes and drops alternatives that extend another."""
    monkeypatch.setattr(spark, "code_keyword_alternatives", lambda _: ["abc", "abd", "ab", "b\\-1", "B\\-2"])
    assert "(?i)(?:ab|b\\-(?:1|2))" == keyword_regex(kb)
    monkeypatch.setattr(spark, "code_keyword_alternatives", lambda _: [])
    assert "(?!)" == keyword_regex(kb)
