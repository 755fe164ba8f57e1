"""The opt-in compiled core (``MAGSTAT_COMPILE_CORE=1``, see ``hatch_build.py``) against the pure core.

The core is compiled with mypyc into a temporary copy of ``src`` (as the build hook does for a
wheel, about a minute on two cores), and every golden input is assessed there, in a separate
process, and here: the JSON texts must be the same. Skipped, with the reason, where mypyc, a C
compiler or the Python headers are missing (CI has them all).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT
from tests.core.golden_outputs import outputs

COMPILE_TIMEOUT_S = 600
"""Bound on the compilation (about a minute on this project's two-core machine)."""


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("magstat_hatch_build", ROOT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cannot_compile() -> str | None:
    """Why the core cannot be compiled in this environment, or ``None``."""
    for module, install in (("mypyc", "mypy"), ("setuptools", "setuptools")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install {install})"
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}) on the PATH"
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        return f"no Python headers ({headers})"
    return None


@pytest.fixture(scope="module")
def compiled_src(tmp_path_factory) -> Path:
    """A copy of ``src`` with the core compiled by the build hook's own function."""
    reason = _cannot_compile()
    if reason is not None:
        pytest.skip(f"the compiled core cannot be built here: {reason}")
    target = tmp_path_factory.mktemp("compiled-core") / "src"
    _hook().compile_core(ROOT / "src", target)
    return target


_PROBE = """
import json, sys
from magstat.build_info import compiled_core_modules
from tests.core.golden_outputs import outputs
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump({"compiled": list(compiled_core_modules()), "outputs": outputs()}, out)
"""


@pytest.fixture(scope="module")
def compiled_run(compiled_src, tmp_path_factory) -> dict:
    """What a process that imports magstat from the compiled copy reports: its compiled modules and outputs."""
    result = tmp_path_factory.mktemp("compiled-run") / "run.json"
    env = {**os.environ, "PYTHONPATH": str(compiled_src)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(result)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMPILE_TIMEOUT_S,
        check=False,
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    return json.loads(result.read_text(encoding="utf-8"))


def test_the_compiled_modules_are_the_ones_imported(compiled_run):
    """Every core module the hook compiles is imported compiled; the ones it leaves out are not."""
    hook = _hook()
    expected = sorted(
        name.removesuffix(".py").replace("/", ".") for name in hook.modules_to_compile(ROOT / "src")
    )
    expected = [name.removesuffix(".__init__") for name in expected]
    assert expected == sorted(compiled_run["compiled"])
    assert not {n.removesuffix(".py").replace("/", ".") for n in hook.NOT_COMPILED} & set(
        compiled_run["compiled"]
    )


def test_the_compiled_core_gives_every_golden_output_of_the_pure_core(compiled_run):
    """Every golden input (records at two dates, documents, constructed cases, refusals) gives the same JSON text."""
    pure = outputs()
    compiled = compiled_run["outputs"]
    assert sorted(pure) == sorted(compiled)
    assert [] == [key for key in sorted(pure) if pure[key] != compiled[key]]


def test_no_compiled_file_in_src():
    """The compilation works on a copy: no extension file in src shadows a pure module of this checkout."""
    assert [] == sorted(str(p) for p in (ROOT / "src").rglob("*") if p.suffix in {".so", ".pyd"})


def test_without_the_variable_the_hook_changes_nothing(monkeypatch):
    """Without MAGSTAT_COMPILE_CORE=1 the hook asks for no build dependency and leaves the wheel pure Python."""
    monkeypatch.delenv("MAGSTAT_COMPILE_CORE", raising=False)
    hook = _hook()
    instance = object.__new__(hook.CompiledCoreHook)
    build_data: dict = {"force_include": {}, "pure_python": True}
    instance.initialize("standard", build_data)
    assert ([], {"force_include": {}, "pure_python": True}) == (instance.dependencies(), build_data)
    monkeypatch.setenv("MAGSTAT_COMPILE_CORE", "1")
    assert ["mypy>=1.10", "setuptools"] == instance.dependencies()
