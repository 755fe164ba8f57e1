"""Project checks that run with the test suite: lint, typing and the core's import boundary."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PURE = ("core", "kb")
ALLOWED_INTERNAL = ("magstat.core", "magstat.kb", "magstat.errors")


def test_core_and_kb_import_only_the_standard_library():
    """magstat.core and magstat.kb import the standard library and each other, nothing else."""
    stdlib = set(sys.stdlib_module_names)
    offenders = []
    for part in PURE:
        for path in sorted((ROOT / "src" / "magstat" / part).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top == "magstat":
                        if not name.startswith(ALLOWED_INTERNAL):
                            offenders.append(f"{path.name}: {name}")
                    elif top not in stdlib and top != "__future__":
                        offenders.append(f"{path.name}: {name}")
    assert [] == offenders


def test_core_does_no_io():
    """The core opens no files, reads no environment and asks no clock."""
    banned = ("open(", "os.environ", "datetime.now", "date.today", "time.time", "print(", "logging.")
    found = []
    for path in sorted((ROOT / "src" / "magstat" / "core").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        found.extend(f"{path.name}: {word}" for word in banned if word in text)
    assert [] == found


def _imported_modules(path) -> list[str]:
    """The absolute names a module imports (``from magstat import cli`` counts as magstat.cli)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return names


def test_surfaces_below_the_cli_do_not_import_it():
    """The service, web app, screening and demo catalogue never import the CLI (no import cycle)."""
    offenders = []
    for part in ("web", "service", "batch", "demo", "adapters", "render"):
        for path in sorted((ROOT / "src" / "magstat" / part).rglob("*.py")):
            offenders += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in _imported_modules(path)
                if name == "magstat.cli" or name.startswith("magstat.cli.")
            ]
    assert [] == offenders


@pytest.mark.parametrize(
    "command",
    [["check", "src", "tests", "benchmarks"], ["format", "--check", "src", "tests", "benchmarks"]],
    ids=["check", "format"],
)
def test_ruff_clean(command):
    """ruff finds nothing to fix or reformat in src, tests and benchmarks."""
    pytest.importorskip("ruff")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == result.returncode, result.stdout[-3000:]


def test_mypy_strict_clean():
    """mypy --strict passes on the package."""
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == result.returncode, result.stdout[-3000:]


def test_one_version_number():
    """The version is written once (magstat.__version__); the installed metadata reads it from there."""
    import importlib.metadata  # noqa: PLC0415
    import tomllib  # noqa: PLC0415

    import magstat  # noqa: PLC0415

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project
    assert ["version"] == project["dynamic"]
    assert magstat.__version__ == importlib.metadata.version("magstat")
