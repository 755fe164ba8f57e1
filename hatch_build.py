"""Build hook: compile the core and the FHIR reading with mypyc, only when asked (``MAGSTAT_COMPILE_CORE=1``).

Without the variable the hook does nothing and magstat installs as pure Python, as before: the
Quickstart needs only Python 3.11+ and pip. With it, building a wheel (``pip install .``)
compiles the modules listed by :func:`modules_to_compile` with mypyc: those of ``magstat.core``
and the FHIR reading that screening workers run (:data:`READING_MODULES`) (pip
installs mypy into the build environment; a C compiler and the Python headers must be present)
and puts the extension files in the wheel beside the ``.py`` files, which Python then imports
in their place. An editable install (``pip install -e``) is refused with the variable set:
compiled files in ``src`` would shadow the sources being edited.

The modules left interpreted, and why, are in :data:`NOT_COMPILED` and :data:`READING_NOT_COMPILED`.
The compiled build gives the same assessments (``tests/core/test_compiled_core.py`` compares
every golden output, ``tests/batch/test_compiled_screen.py`` the outputs of a screening); see
README.md, "A compiled core (optional)", and benchmarks/RESULTS.md for what it gains.

Also imported without hatchling, by that test and by ``benchmarks/bench_core.py``, for
:func:`compile_core`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # imported by a test or a benchmark, outside a build
    BuildHookInterface = object  # type: ignore[assignment,misc]

ENV_VARIABLE = "MAGSTAT_COMPILE_CORE"
"""Set to ``1`` to compile the core when a wheel is built."""

BUILD_REQUIREMENTS = ["mypy>=1.10", "setuptools"]
"""What compiling needs in the build environment: mypy provides mypyc, which builds with setuptools."""

NOT_COMPILED = {
    "magstat/core/__init__.py": "re-exports only",
    "magstat/core/facts.py": "the input classes, made by the adapters: compiled, a class converts or rejects "
    "each field by its declared type when built (a bool value becomes 1.0), before the core's checks",
    "magstat/core/factbuild.py": "builders generated with exec from the classes' slot descriptors",
    "magstat/core/result.py": "builders that fill a slotted twin and switch its __class__ (not possible on a "
    "compiled class), and __init__ methods generated with exec",
    "magstat/core/validate.py": "the checks must see each value as given (a bool or a list where a number or a "
    "text belongs, to refuse it); compiled, a field's declared type converts or rejects it first",
    "magstat/core/rules/decide.py": "the status finding states the rule from _decide's docstring, which a "
    "compiled function does not keep",
}
"""Modules of ``magstat.core`` left interpreted, with the reason (every other one is compiled)."""

READING_MODULES = {
    "magstat/adapters/fhir/extract.py": "the clinical reading of a patient's view rows into facts, about "
    "half of a DuckDB screening worker's time per patient, and of the in-process reading of a Bundle",
    "magstat/adapters/fhir/flatten.py": "the rows made from the projections DuckDB sends (after orjson's "
    "parse) and from whole resources in process; its frozen FlatViews is built in each process, never "
    "pickled",
}
"""Modules outside the core compiled too, with the reason: the FHIR reading the screening workers run."""

READING_NOT_COMPILED = {
    "magstat/batch/rows.py": "Job and PatientResult, frozen dataclasses, are pickled to and from the "
    "workers, and compiled, a frozen dataclass fails to unpickle (FrozenInstanceError: pickle sets its "
    "fields through the frozen __setattr__; a __reduce__ would mend it); its own work per patient "
    "(slicing a unit, a results row) is small beside the reading",
    "magstat/views/pyeval.py": "the view getters are closures made per column when the views are "
    "compiled; a projection's row calls them only where a key needs more than its one value",
    "magstat/adapters/supplements.py": "a few calls per patient with medications",
}
"""Modules a screening worker runs outside the core that stay interpreted, with the reason."""


def modules_to_compile(src: Path) -> list[str]:
    """The modules to compile, as paths relative to ``src``.

    Every module of ``magstat.core`` not in :data:`NOT_COMPILED`, and :data:`READING_MODULES`.
    """
    found = (path.relative_to(src).as_posix() for path in (src / "magstat" / "core").rglob("*.py"))
    core = sorted(name for name in found if name not in NOT_COMPILED)
    return core + sorted(name for name in READING_MODULES if (src / name).is_file())


def compile_core(src: Path, target: Path) -> list[Path]:
    """Copy ``src`` to ``target`` and compile the core and the FHIR reading there with mypyc.

    Args:
        src: a ``src`` folder holding the ``magstat`` package.
        target: an empty or absent folder; it receives the copy, the extension files beside the
            modules they replace, and mypyc's build files.

    Returns:
        The extension files made, each a path inside ``target`` (``magstat/core/...so``,
        ``magstat/adapters/fhir/...so`` and the shared library of the group, at the top).

    Raises:
        RuntimeError: mypyc is not installed or the compilation failed (its output is included).

    """
    shutil.copytree(
        src, target, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"), dirs_exist_ok=True
    )
    before = set(_extensions(target))
    config = src.parent / "pyproject.toml"
    command = [sys.executable, "-m", "mypyc", *(["--config-file", str(config)] if config.is_file() else [])]
    command += modules_to_compile(target)
    try:
        done = subprocess.run(command, cwd=target, capture_output=True, text=True, check=False)  # noqa: S603 - this interpreter, fixed arguments
    except OSError as exc:
        raise RuntimeError(f"could not run mypyc: {exc}") from exc
    if done.returncode != 0:
        raise RuntimeError(
            f"mypyc failed (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    made = sorted(set(_extensions(target)) - before)
    if not made:
        raise RuntimeError("mypyc made no extension files")
    return made


def _extensions(folder: Path) -> list[Path]:
    """Extension files under ``folder``, outside mypyc's own ``build`` folder."""
    return [
        p
        for p in folder.rglob("*")
        if p.suffix in {".so", ".pyd"} and "build" not in p.relative_to(folder).parts
    ]


def _wanted() -> bool:
    return os.environ.get(ENV_VARIABLE, "") == "1"


class CompiledCoreHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compiles the core into the wheel when ``MAGSTAT_COMPILE_CORE=1``; otherwise does nothing."""

    def dependencies(self) -> list[str]:
        """What compiling needs in the build environment (mypy, setuptools), only when compiling."""
        return list(BUILD_REQUIREMENTS) if _wanted() else []

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile and add the extension files to the wheel (the wheel is then tagged for this platform)."""
        if not _wanted() or self.target_name != "wheel":
            return
        if version == "editable":
            raise RuntimeError(
                f"{ENV_VARIABLE}=1 needs a regular install (pip install .), not an editable one: "
                "compiled files would shadow the sources in src"
            )
        self._temp = tempfile.TemporaryDirectory(prefix="magstat-mypyc-")
        target = Path(self._temp.name)
        for path in compile_core(Path(self.root) / "src", target):
            build_data["force_include"][str(path)] = path.relative_to(target).as_posix()
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        """Remove the compilation's temporary folder."""
        temp = getattr(self, "_temp", None)
        if temp is not None:
            temp.cleanup()
