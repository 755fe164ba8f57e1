"""The traced CDS Hooks 2.0 conformance matrix: every requirement has a passing test or a reason.

``tests/data/standards/cds-hooks-2.0-service-requirements.csv`` lists the service-side
requirements; ``tests/data/standards/cds-hooks-2.0-trace.toml`` maps each id to pytest node ids
or to a written reason. The tests here check that every SHALL and SHALL NOT (and every SHOULD
and SHOULD NOT) row is traced, that every traced test exists, and run the traced tests once, in
a separate pytest process without random order (never this module: no recursion), to see that
each passes. The page ``docs/cds-hooks-conformance.md`` is generated from the same data and
outcomes; a test checks that the committed page is current. Regenerate it with::

    python -m tests.service.test_conformance_matrix
"""

from __future__ import annotations

import ast
import csv
import os
import subprocess
import sys
import tempfile
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STANDARDS = ROOT / "tests" / "data" / "standards"
REQUIREMENTS = STANDARDS / "cds-hooks-2.0-service-requirements.csv"
TRACE = STANDARDS / "cds-hooks-2.0-trace.toml"
PAGE = ROOT / "docs" / "cds-hooks-conformance.md"
THIS = "tests/service/test_conformance_matrix.py"
INNER = "MAGSTAT_CONFORMANCE_INNER"
"""Set in the pytest process that runs the traced tests (a guard against recursion)."""

MUST = ("SHALL", "SHALL NOT")
SHOULD = ("SHOULD", "SHOULD NOT")


def load_requirements() -> list[dict[str, str]]:
    """The rows of the requirement list, in file order."""
    with REQUIREMENTS.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def load_trace() -> dict[str, dict[str, Any]]:
    """Requirement id to its trace (``tests`` or ``reason``)."""
    with TRACE.open("rb") as handle:
        return dict(tomllib.load(handle)["requirement"])


def traced_tests(trace: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every node id in the trace, once, sorted."""
    return sorted({t for entry in trace.values() for t in entry.get("tests", ())})


def _defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def missing_tests(nodes: list[str]) -> list[str]:
    """The node ids whose file or test function does not exist."""
    missing = []
    cache: dict[str, set[str]] = {}
    for node in nodes:
        file, _, name = node.partition("::")
        path = ROOT / file
        if not path.is_file():
            missing.append(node)
            continue
        names = cache.setdefault(file, _defined(path))
        if name.split("[", 1)[0] not in names:
            missing.append(node)
    return missing


def run_tests(nodes: list[str]) -> dict[str, str]:
    """Run the node ids in one pytest process (file order, no random order); node id to outcome."""
    if os.environ.get(INNER):
        raise RuntimeError("the conformance run must not start itself again")
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        env = {**os.environ, INNER: "1"}
        env.pop("PYTEST_ADDOPTS", None)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:randomly",
                "-p",
                "no:cacheprovider",
                f"--junitxml={report}",
                "-o",
                "junit_family=xunit1",
                *nodes,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
            timeout=900,
        )
        if not report.is_file():
            return {}
        outcomes: dict[str, str] = {}
        for case in ET.parse(report).getroot().iter("testcase"):
            file = case.get("file") or (case.get("classname", "").replace(".", "/") + ".py")
            node = f"{file}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                outcomes[node] = "failed"
            elif case.find("skipped") is not None:
                outcomes[node] = "skipped"
            else:
                outcomes.setdefault(node, "passed")
        return outcomes


def _outcome(node: str, outcomes: Mapping[str, str]) -> str:
    if node in outcomes:
        return outcomes[node]
    if "[" not in node:  # a parametrised test: every case must pass
        cases = [v for k, v in outcomes.items() if k.startswith(node + "[")]
        if cases:
            return "passed" if all(c == "passed" for c in cases) else "failed"
    return "not run"


def row_result(row: Mapping[str, str], entry: Mapping[str, Any], outcomes: Mapping[str, str]) -> str:
    """The result column of one requirement."""
    tests = entry.get("tests", ())
    if tests:
        results = {_outcome(t, outcomes) for t in tests}
        return "pass" if results == {"passed"} else "FAIL (" + ", ".join(sorted(results - {"passed"})) + ")"
    if "reason" not in entry:
        return "UNTRACED"
    verb = row["Conformance"]
    if verb in MUST:
        return "not applicable"
    if verb in SHOULD:
        return "not met"
    return "not used"


def should_met(
    rows: list[dict[str, str]], trace: Mapping[str, Mapping[str, Any]], outcomes: Mapping[str, str]
) -> int:
    """How many SHOULD and SHOULD NOT rows a passing test meets."""
    return sum(
        1
        for r in rows
        if r["Conformance"] in SHOULD and row_result(r, trace.get(r["ID"], {}), outcomes) == "pass"
    )


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_page(
    rows: list[dict[str, str]], trace: Mapping[str, Mapping[str, Any]], outcomes: Mapping[str, str]
) -> str:
    """The Markdown page of the matrix."""
    verbs = Counter(r["Conformance"] for r in rows)
    results = {r["ID"]: row_result(r, trace.get(r["ID"], {}), outcomes) for r in rows}
    must = [r for r in rows if r["Conformance"] in MUST]
    must_pass = sum(1 for r in must if results[r["ID"]] == "pass")
    must_reason = sum(1 for r in must if results[r["ID"]] == "not applicable")
    should = [r for r in rows if r["Conformance"] in SHOULD]
    lines = [
        "# CDS Hooks 2.0 conformance (service side)",
        "",
        "Audience: EHR integrators and reviewers. Type: reference. Generated by",
        "`python -m tests.service.test_conformance_matrix` from",
        "`tests/data/standards/cds-hooks-2.0-service-requirements.csv` (the service-side requirements of",
        "CDS Hooks 2.0, from the Inferno Da Vinci CRD test kit, Apache-2.0; see `SOURCE.md` there) and",
        "`tests/data/standards/cds-hooks-2.0-trace.toml` (the tests or the reason for each row), with the",
        "outcome of each test. `tests/service/test_conformance_matrix.py` fails when a SHALL or SHALL NOT",
        "row has neither a passing test nor a reason, and when this page is out of date.",
        "",
        f"- Requirements: {len(rows)} ("
        + ", ".join(
            f"{v} {verbs[v]}" for v in ("SHALL", "SHALL NOT", "SHOULD", "SHOULD NOT", "MAY", "DEPRECATED")
        )
        + ").",
        f"- SHALL and SHALL NOT: {len(must)}; proved by passing tests: {must_pass}; not applicable, with the"
        f" reason: {must_reason}.",
        f"- SHOULD and SHOULD NOT met by a passing test: {should_met(rows, trace, outcomes)} of {len(should)};"
        " the others give the reason.",
        "",
        "| id | verb | requirement | test or reason | result |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        entry = trace.get(r["ID"], {})
        tests = entry.get("tests", ())
        if tests:
            how = "<br>".join(f"`{t.split('/')[-1]}`" for t in tests)
        else:
            how = _cell(str(entry.get("reason", "")))
        text = _cell(r["Requirement"]).replace("[", "\\[").replace("]", "\\]")
        requirement = f"[{text}]({r['URL']})"
        lines.append(f"| {r['ID']} | {r['Conformance']} | {requirement} | {how} | {results[r['ID']]} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Tests


def test_every_requirement_is_traced():
    """Every row is in the trace with tests or a reason (SHALL/SHALL NOT and SHOULD rows without exception), and every test exists."""
    rows = load_requirements()
    trace = load_trace()
    assert sorted(r["ID"] for r in rows) == sorted(trace)
    untraced = [
        r["ID"]
        for r in rows
        if r["Conformance"] in (*MUST, *SHOULD)
        and not (trace[r["ID"]].get("tests") or str(trace[r["ID"]].get("reason", "")).strip())
    ]
    assert [] == untraced
    both = [i for i, e in trace.items() if e.get("tests") and e.get("reason")]
    assert [] == both
    nodes = traced_tests(trace)
    assert [] == missing_tests(nodes)
    assert [] == [n for n in nodes if n.startswith(THIS)]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, str]:
    """The outcome of every traced test, from one separate pytest run."""
    return run_tests(traced_tests(load_trace()))


def test_every_traced_test_passes(outcomes, capsys):
    """Each test named in the trace ran and passed; the count of SHOULD rows met is printed."""
    rows = load_requirements()
    trace = load_trace()
    failing = {r["ID"]: row_result(r, trace[r["ID"]], outcomes) for r in rows if trace[r["ID"]].get("tests")}
    assert {} == {k: v for k, v in failing.items() if v != "pass"}
    should = [r for r in rows if r["Conformance"] in SHOULD]
    with capsys.disabled():
        print(
            f"\nCDS Hooks 2.0 conformance: SHOULD rows met by a passing test: "
            f"{should_met(rows, trace, outcomes)} of {len(should)}"
        )


def test_conformance_page_is_current(outcomes):
    """docs/cds-hooks-conformance.md is what the generator writes from the trace and the outcomes."""
    expected = render_page(load_requirements(), load_trace(), outcomes)
    assert expected == PAGE.read_text(encoding="utf-8")


def main() -> int:
    """Run the traced tests and write the page; print the SHOULD count."""
    rows, trace = load_requirements(), load_trace()
    results = run_tests(traced_tests(trace))
    PAGE.write_text(render_page(rows, trace, results), encoding="utf-8")
    should = [r for r in rows if r["Conformance"] in SHOULD]
    sys.stdout.write(
        f"wrote {PAGE.relative_to(ROOT)}; SHOULD rows met: {should_met(rows, trace, results)} of {len(should)}\n"
    )
    bad = [
        r["ID"]
        for r in rows
        if row_result(r, trace[r["ID"]], results) not in ("pass", "not applicable", "not met", "not used")
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
