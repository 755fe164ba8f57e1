"""The README works as written: every file its commands name exists, and the offline ones run."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import shutil
from pathlib import Path

import pytest

from magstat.cli import main
from tests.conftest import ROOT

README = ROOT / "README.md"
PROGRAM = ".venv/bin/magstat"
OUTPUT_OPTIONS = ("-o", "--output", "--out", "--report")


def _blocks(language: str) -> list[str]:
    """The fenced code blocks of one language in README.md."""
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _commands() -> list[list[str]]:
    """Each ``magstat`` command of the README's shell blocks, as its argument list."""
    out = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == PROGRAM:
                out.append(words[1:])
    return out


COMMANDS = _commands()


def _paths(argv: list[str]) -> list[str]:
    """The input files and folders a command names (not its outputs, options or URLs)."""
    found = []
    for before, word in zip(["", *argv], argv, strict=False):
        if before in OUTPUT_OPTIONS or word.startswith("-") or "://" in word:
            continue
        if "/" in word or word.endswith((".json", ".yaml", ".toml", ".ndjson")):
            found.append(word)
    return found


def _with_outputs_in(argv: list[str], folder: Path) -> list[str]:
    """The command with each output path moved into ``folder``."""
    return [
        str(folder / word) if before in OUTPUT_OPTIONS else word
        for before, word in zip(["", *argv], argv, strict=False)
    ]


def test_readme_has_the_commands_it_should():
    """The README shows assess, demo, schema, kb, serve and screen commands."""
    assert {"assess", "demo", "schema", "kb", "serve", "screen"} <= {argv[0] for argv in COMMANDS}


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_path_a_command_names_exists(argv):
    """Each file or folder a README command reads ships with the repository."""
    missing = [p for p in _paths(argv) if not (ROOT / p).exists()]
    assert [] == missing


def test_every_relative_link_resolves():
    """Each relative Markdown link in the README points at a file or folder of the repository."""
    links = re.findall(r"\]\(([^)#]+)\)", README.read_text(encoding="utf-8"))
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert [] == missing


def _runnable(argv: list[str]) -> bool:
    """Whether a command ends by itself offline (serving and exporting from a server do not)."""
    return argv[0] != "serve" and "--serve" not in argv and "--fhir-server" not in argv


def _serve_feedback_store(url: str, folder: Path) -> None:
    """Create, in ``folder``, the empty feedback store that the service makes at ``url``."""
    pytest.importorskip("pydantic_settings", reason="the service extra is not installed")
    from magstat.service.feedback import FeedbackStore  # noqa: PLC0415 - needs the service extra
    from magstat.service.settings import CdsSettings  # noqa: PLC0415
    from magstat.service.suppression import CardMemory  # noqa: PLC0415

    with contextlib.chdir(folder):
        store = FeedbackStore(url)
        store.initialise()
        CardMemory(store, CdsSettings()).initialise()


@pytest.mark.parametrize(
    "argv",
    [pytest.param(a, marks=[pytest.mark.slow] if "spark" in a else []) for a in COMMANDS if _runnable(a)],
    ids=" ".join,
)
def test_offline_commands_run(argv, tmp_path, monkeypatch, capsys):
    """Each README command that ends by itself exits 0 from the project folder."""
    if "spark" in argv and (importlib.util.find_spec("pyspark") is None or shutil.which("java") is None):
        pytest.skip("the Spark example needs PySpark and a Java runtime")
    monkeypatch.chdir(ROOT)
    if argv[:2] == ["feedback", "report"]:
        # The report reads the database that `magstat serve` writes: make that store, empty,
        # in this test's folder and run the command from there.
        _serve_feedback_store(argv[argv.index("--db") + 1], tmp_path)
        monkeypatch.chdir(tmp_path)
    assert 0 == main(_with_outputs_in(argv, tmp_path)), capsys.readouterr().err
    for before, word in zip(["", *argv], argv, strict=False):
        if before in OUTPUT_OPTIONS:
            assert (tmp_path / word).exists(), word


@pytest.mark.parametrize("argv", [a for a in COMMANDS if a[:2] == ["serve", "--config"]], ids=" ".join)
def test_serve_config_loads(argv):
    """The example service configuration loads, with its trusted EHR's key file found."""
    pytest.importorskip("pydantic_settings", reason="the service extra is not installed")
    from magstat.service import load_settings  # noqa: PLC0415 - needs the service extra

    settings = load_settings(ROOT / argv[2])
    [issuer] = settings.cds.trusted_issuers
    assert issuer.jwks_file is not None and issuer.jwks_file.is_file()
    assert True is settings.cds.require_auth


def test_library_example_runs(monkeypatch):
    """The README's Python example runs from the project folder and prints a status."""
    [code] = _blocks("python")
    monkeypatch.chdir(ROOT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    assert printed.getvalue().split()[0] in ("deficient", "likely_deficient", "at_risk", "excess", "unlikely")
