"""Every patient the repository ships, assessed, as JSON text: the byte-for-byte guard of the core.

The patients: the Synthea and synthea-py sets and the other FHIR bundles in ``tests/data``, the
examples, the demo catalogue, and the constructed cases of ``tests/safety_cases.py`` and
``tests/context_cases.py``, and facts that only the core's own checks refuse. Each FHIR record is assessed at the end of its record and three
years earlier (older labs, other current drugs). An input the core refuses gives its error text.
The knowledge base's version and hash are left out: they change with each release of its files.

``tests/core/test_golden_outputs.py`` compares the result with
``tests/data/golden/core-outputs.json.gz``. After a reviewed change to the rules or the
knowledge base, rewrite that file with::

    .venv/bin/python -m tests.core.golden_outputs --write

and read the differences (``--diff``) before committing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from magstat.adapters.read import facts_from_data, parse_bytes
from magstat.core.facts import ConditionFact, Lab, Medication, PatientFacts, SignFact
from magstat.demo import demo_patients
from magstat.errors import InvalidInputError
from magstat.kb import KnowledgeBase, load
from tests import context_cases, safety_cases

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
GOLDEN = DATA / "golden" / "core-outputs.json.gz"


def end_of_record(bundle: Any) -> dt.date:
    """The latest clinical date in a FHIR bundle (the as-of date at which the record ends)."""
    latest = "1900-01-01"
    for entry in bundle.get("entry", []) if isinstance(bundle, dict) else []:
        resource = entry.get("resource", {})
        for key in ("effectiveDateTime", "authoredOn", "recordedDate", "issued"):
            value = resource.get(key)
            if isinstance(value, str) and value[:10] > latest:
                latest = value[:10]
    return dt.date.fromisoformat(latest)


def _files() -> Iterator[tuple[str, Path]]:
    for folder in ("synthea", "synthea-py", "fhir", "fhir/synthea-context"):
        for path in sorted((DATA / folder).glob("*.json*")):
            if path.name.startswith(("hospital", "practitioner")):
                continue
            yield f"{folder}/{path.name}", path
    for name in ("bundle.json", "patient.yaml"):
        yield f"examples/{name}", ROOT / "examples" / name


def _cases() -> Iterator[tuple[str, dt.date, Callable[[], dict[str, Any]]]]:
    s, c = safety_cases, context_cases
    yield from (
        (f"safety/{f.__name__}", s.AS_OF, f)
        for f in (
            s.qt_low_k,
            s.qt_normal_mg,
            s.refractory,
            s.tetany,
            s.digoxin_no_mg,
            s.same_time_creatinines,
            s.egfr_far_apart,
            s.insulin_only,
            s.child_supplement,
        )
    )
    for value in (0.5, 1.0, 1.9, 3.0, 5.5):
        yield f"safety/mg_therapy({value})", s.AS_OF, lambda v=value: s.mg_therapy(v)
        yield f"safety/oral_mg_high({value})", s.AS_OF, lambda v=value: s.oral_mg_high(v)
    yield (
        "safety/child_supplement(oxide 400)",
        s.AS_OF,
        lambda: s.child_supplement("magnesium oxide 400 MG Oral Tablet", 400),
    )
    for verb in ("denies", "reports", "has"):
        yield f"context/denial({verb})", c.AS_OF, lambda v=verb: c.denial(v)
    for acute in (False, True):
        yield f"context/epilepsy_from_birth({acute})", c.AS_OF, lambda a=acute: c.epilepsy_from_birth(a)
    for a1c in (None, 5.9, 7.5, 10.0):
        for glucose in (None, 90.0, 250.0):
            yield (
                f"context/diabetes({a1c}, {glucose})",
                c.AS_OF,
                lambda a=a1c, g=glucose: c.diabetes_for_twenty_years(a, g),
            )
    for death in (
        {},
        {"deceasedBoolean": True},
        {"deceasedBoolean": False},
        {"deceasedDateTime": "2020-01-01"},
        {"deceasedDateTime": "2023-01-10T08:00:00Z"},
        {"deceasedDateTime": "2025-01-10"},
    ):
        yield f"context/deceased({death})", c.AS_OF, lambda d=death: c.deceased(**d)


def _refused_facts() -> Iterator[tuple[str, PatientFacts]]:
    """Facts that only the core's own checks refuse (no adapter would build them)."""
    day = dt.date(2024, 6, 1)
    mg = Lab("serum_mg", 0.7, "mmol/L", day)
    yield "core/lab unit not canonical", PatientFacts(day, labs=(Lab("serum_mg", 1.7, "mg/dL", day),))
    yield "core/lab implausible", PatientFacts(day, labs=(mg, Lab("potassium", 40.0, "mmol/L", day)))
    yield "core/lab unknown test", PatientFacts(day, labs=(Lab("no_such_test", 1.0, "mmol/L", day),))
    yield (
        "core/range low above high",
        PatientFacts(day, labs=(Lab("serum_mg", 0.7, "mmol/L", ref_low=1.0, ref_high=0.7),)),
    )
    yield "core/unknown drug", PatientFacts(day, medications=(Medication("x", ("no_such_drug",), True),))
    yield "core/unknown condition", PatientFacts(day, conditions=(ConditionFact("x", "no_such", True),))
    yield "core/unknown sign", PatientFacts(day, signs=(SignFact("no_such_sign", True),))
    yield "core/unknown context", PatientFacts(day, signs=(SignFact("tetany", True, context="maybe"),))
    yield "core/birth after as-of", PatientFacts(day, birth_date=dt.date(2025, 1, 1))
    yield "core/diet implausible", PatientFacts(day, diet_mg_per_day=-1.0)
    yield "core/no facts", PatientFacts(day)
    yield "core/age only", PatientFacts(day, age_years=70.0, sex="male", labs=(mg,))


def _assess(kb: KnowledgeBase, data: Any, as_of: dt.date | None, strict: bool) -> str:
    try:
        facts = facts_from_data(data, kb, as_of=as_of, strict=strict)
    except InvalidInputError as exc:
        return f"adapter refused: {exc}"
    return _assess_facts(kb, facts)


def _assess_facts(kb: KnowledgeBase, facts: PatientFacts) -> str:
    from magstat.core import assess  # noqa: PLC0415 - after the adapters, as a surface does

    try:
        result = assess(facts, kb)
    except InvalidInputError as exc:
        return f"core refused: {exc}"
    data = result.to_dict()
    # The knowledge base's version and hash change with every release of its files (a new
    # version number, a new view); what the rules answer is what is pinned.
    data["knowledge_base"] = {"version": "(not pinned)", "sha256": "(not pinned)"}
    return json.dumps(data, ensure_ascii=False, indent=1)


def outputs(kb: KnowledgeBase | None = None) -> dict[str, str]:
    """Assess every shipped patient; return ``{patient label: assessment JSON or error text}``."""
    kb = kb or load()
    out: dict[str, str] = {}
    for label, path in _files():
        data = parse_bytes(path.read_bytes(), path.name)
        if isinstance(data, dict) and "resourceType" in data:
            end = end_of_record(data)
            for years in (0, 3):
                as_of = end.replace(year=end.year - years, day=min(end.day, 28))
                for strict in (True, False):
                    out[f"{label} as of {as_of} strict={strict}"] = _assess(kb, data, as_of, strict)
        else:
            out[label] = _assess(kb, data, None, True)
    for file, _, data, as_of in demo_patients():
        when = as_of or (end_of_record(data) if "resourceType" in data else None)
        out[f"demo/{file}"] = _assess(kb, data, when, False)
    for label, as_of, make in _cases():
        out[label] = _assess(kb, make(), as_of, True)
    for label, facts in _refused_facts():
        out[label] = _assess_facts(kb, facts)
    return out


def read_golden(path: Path = GOLDEN) -> dict[str, str]:
    """The pinned outputs."""
    result: dict[str, str] = json.loads(gzip.decompress(path.read_bytes()))
    return result


def main(argv: list[str] | None = None) -> int:
    """Write the golden file (``--write``) or print which outputs differ from it (``--diff``)."""
    parser = argparse.ArgumentParser(prog="python -m tests.core.golden_outputs")
    parser.add_argument("--write", action="store_true", help="rewrite the golden file")
    parser.add_argument("--diff", action="store_true", help="show a unified diff of each change")
    args = parser.parse_args(argv)
    actual = outputs()
    if args.write:
        text = json.dumps(actual, ensure_ascii=False, indent=0, sort_keys=True) + "\n"
        GOLDEN.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
        print(f"wrote {len(actual)} outputs to {GOLDEN.relative_to(ROOT)}")
        return 0
    expected = read_golden()
    changed = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
    for key in changed:
        print(f"differs: {key}")
        if args.diff:
            import difflib  # noqa: PLC0415

            sys.stdout.writelines(
                difflib.unified_diff(
                    expected.get(key, "").splitlines(keepends=True),
                    actual.get(key, "").splitlines(keepends=True),
                    "golden",
                    "now",
                )
            )
    print(f"{len(actual)} outputs, {len(changed)} differ")
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
