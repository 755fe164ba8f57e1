"""The opt-in compiled core (``MAGSTAT_COMPILE_CORE=1``, see ``hatch_build.py``) against the pure core.

The core and the FHIR reading are compiled with mypyc into a temporary copy of ``src`` (as the
build hook does for a wheel; the session's ``compiled_src`` fixture, made once for this test and
``tests/batch/test_compiled_screen.py``), and every golden input is assessed there, in a
separate process, and here: the JSON texts must be the same. Skipped, with the reason, where
mypyc, a C compiler or the Python headers are missing (CI has them all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.compiled_build import RUN_TIMEOUT_S, hook, module_name
from tests.conftest import ROOT
from tests.core.golden_outputs import outputs

_PROBE = """
import json, sys
from magstat.build_info import compiled_core_modules, compiled_modules
from tests.core.golden_outputs import outputs
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(
        {"core": list(compiled_core_modules()), "compiled": list(compiled_modules()), "outputs": outputs()}, out
    )
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
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    return json.loads(result.read_text(encoding="utf-8"))


def test_the_compiled_modules_are_the_ones_imported(compiled_run):
    """Every module the hook compiles is imported compiled; the ones it leaves out are not."""
    build = hook()
    expected = sorted(module_name(name) for name in build.modules_to_compile(ROOT / "src"))
    assert expected == sorted(compiled_run["compiled"])
    assert [n for n in expected if n.startswith("magstat.core.")] == compiled_run["core"]
    assert {"magstat.adapters.fhir.extract", "magstat.adapters.fhir.flatten"} <= set(expected)
    left_out = {module_name(n) for n in (*build.NOT_COMPILED, *build.READING_NOT_COMPILED)}
    assert not left_out & set(compiled_run["compiled"])


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
    instance = object.__new__(hook().CompiledCoreHook)
    build_data: dict = {"force_include": {}, "pure_python": True}
    instance.initialize("standard", build_data)
    assert ([], {"force_include": {}, "pure_python": True}) == (instance.dependencies(), build_data)
    monkeypatch.setenv("MAGSTAT_COMPILE_CORE", "1")
    assert ["mypy>=1.10", "setuptools"] == instance.dependencies()
