"""Every SMART App Launch requirement on the app has a test or a written reason."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _requirements() -> list[dict]:
    return tomllib.loads((HERE / "smart_requirements.toml").read_text(encoding="utf-8"))["requirement"]


def test_every_requirement_has_a_test_or_a_reason():
    """Each requirement names tests or gives a reason; each SHALL names at least one test; ids are unique."""
    requirements = _requirements()
    assert len(requirements) >= 20
    assert len({r["id"] for r in requirements}) == len(requirements)
    assert [] == [r["id"] for r in requirements if not r["tests"] and not r.get("reason")]
    assert [] == [r["id"] for r in requirements if r["level"] == "SHALL" and not r["tests"]]


def test_named_tests_exist():
    """Every test a requirement names is a test function of the SMART flow or browser tests."""
    names: set[str] = set()
    for module in ("test_smart_flow.py", "test_smart_browser.py"):
        tree = ast.parse((HERE / module).read_text(encoding="utf-8"))
        names |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert [] == sorted({t for r in _requirements() for t in r["tests"]} - names)
