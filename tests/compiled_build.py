"""The opt-in compiled build (``MAGSTAT_COMPILE_CORE=1``, see ``hatch_build.py``), made once for the tests.

The build hook's own function compiles the core and the FHIR reading with mypyc into a
temporary copy of ``src`` (about two minutes on two cores); the ``compiled_src`` fixture of
``tests/conftest.py`` does it once per test session, for every test that compares the compiled
build with the pure one. Where mypyc, a C compiler or the Python headers are missing, those
tests are skipped with the reason (CI has them all).
"""

from __future__ import annotations

import importlib.util
import shutil
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUN_TIMEOUT_S = 600
"""Bound on a process that runs the compiled build."""


def hook() -> ModuleType:
    """``hatch_build.py``, imported without hatchling."""
    spec = importlib.util.spec_from_file_location("magstat_hatch_build", ROOT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cannot_compile() -> str | None:
    """Why the build cannot be compiled in this environment, or ``None``."""
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


def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``src`` compiled as a wheel built with ``MAGSTAT_COMPILE_CORE=1`` is (or a skip)."""
    reason = cannot_compile()
    if reason is not None:
        pytest.skip(f"the compiled build cannot be made here: {reason}")
    target = tmp_path_factory.mktemp("compiled-build") / "src"
    hook().compile_core(ROOT / "src", target)
    return target


def module_name(path: str) -> str:
    """``magstat/core/rules/__init__.py`` -> ``magstat.core.rules``."""
    return path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
