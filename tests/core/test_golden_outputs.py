"""The whole assessment of every shipped patient stays byte for byte what it was.

The guard of refactors and speed work in the core: see ``tests/core/golden_outputs.py`` for the
patients and for how to rewrite the pinned file after a reviewed change.
"""

from __future__ import annotations

import difflib

from tests.core.golden_outputs import outputs, read_golden


def test_every_shipped_patient_assesses_byte_for_byte_as_pinned(kb):
    """Each patient's assessment JSON (or refusal text) equals the pinned one, and none is missing."""
    expected = read_golden()
    actual = outputs(kb)
    assert sorted(expected) == sorted(actual)
    changed = [k for k in expected if expected[k] != actual[k]]
    if changed:
        first = changed[0]
        diff = "".join(
            difflib.unified_diff(
                expected[first].splitlines(keepends=True),
                actual[first].splitlines(keepends=True),
                "pinned",
                "now",
            )
        )
        raise AssertionError(f"{len(changed)} outputs changed, first {first}:\n{diff[:4000]}")


def test_the_pinned_set_covers_every_kind_of_patient():
    """The pinned outputs include FHIR records, documents, demo, safety and context cases."""
    keys = read_golden()
    for prefix in ("synthea/", "synthea-py/", "fhir/", "examples/", "demo/", "safety/", "context/", "core/"):
        assert any(k.startswith(prefix) for k in keys), prefix
