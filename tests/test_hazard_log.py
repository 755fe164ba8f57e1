"""The hazard log names real tests, and every hazard has at least one."""

from __future__ import annotations

import ast

import yaml

from tests.conftest import ROOT


def _front_matter() -> dict:
    text = (ROOT / "clinical-safety" / "HAZARD-LOG.md").read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---", 2)[1])


def test_every_hazard_names_existing_tests():
    """Each test named in the hazard log exists as a test function in that file."""
    missing = []
    hazards = _front_matter()["hazards"]
    assert hazards
    for hazard in hazards:
        assert hazard["tests"], hazard["id"]
        for ref in hazard["tests"]:
            path, name = ref.split("::")
            tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
            names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
            if name not in names:
                missing.append(ref)
    assert [] == missing
