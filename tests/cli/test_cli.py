"""The magstat command: contract of the JSON output, exit codes, refusals, every subcommand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from magstat import __version__, build_info
from magstat.adapters.read import parse_bytes
from magstat.cli import main
from magstat.errors import InvalidInputError
from tests.conftest import DATA, ROOT

DEMO = ROOT / "src" / "magstat" / "demo"
STATUSES = {"excess", "deficient", "likely_deficient", "at_risk", "unlikely", "indeterminate"}


def run_json(capsys, *args: str) -> dict:
    assert 0 == main(["assess", *args, "--format", "json"])
    return json.loads(capsys.readouterr().out)


def test_json_contract(capsys, kb):
    """The JSON output has every key of the design contract, with the documented types."""
    data = run_json(capsys, str(DEMO / "case-01-ppi-diuretic-deficient.yaml"))
    assert data["status"] in STATUSES
    mds = data["mds"]
    assert {"score", "complete", "band", "components"} <= set(mds)
    assert {"diuretic", "ppi", "kidney", "alcohol"} == set(mds["components"])
    assert isinstance(mds["score"], int)
    assert mds["band"] in ("low", "middle", "high", None)
    assert {"value", "equation"} <= set(data["egfr"])
    assert {"mmol_l", "band"} <= set(data["serum_magnesium"])
    assert data["serum_magnesium"]["band"] in ("below_lab_range", "low_normal", "normal", "above_lab_range")
    assert {"percent", "interpretation"} <= set(data["femg"])
    for key in ("findings", "next_steps", "safety"):
        assert isinstance(data[key], list)
    for finding in data["findings"]:
        assert {"id", "category", "text", "inputs", "sources"} <= set(finding)
    for action in data["next_steps"] + data["safety"]:
        assert {"id", "text", "reason", "sources"} <= set(action)
    assert (kb.version, kb.sha256) == (data["knowledge_base"]["version"], data["knowledge_base"]["sha256"])


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("case-01-ppi-diuretic-deficient.yaml", "deficient"),
        ("case-02-grey-zone-diabetes.yaml", "likely_deficient"),
        ("case-03-ckd-supplement-excess.yaml", "excess"),
        ("case-04-healthy.yaml", "unlikely"),
        ("case-05-athlete.yaml", "at_risk"),
        ("case-06-alcohol.yaml", "at_risk"),
        ("case-07-little-known.yaml", "indeterminate"),
        ("case-08-cisplatin-renal-wasting.yaml", "deficient"),
    ],
)
def test_labelled_demo_cases(capsys, case, status):
    """Each labelled constructed case gets the status it was built to show."""
    assert status == run_json(capsys, str(DEMO / case))["status"]


def test_as_of_overrides_document(capsys):
    """--as-of moves the assessment date: five years later the serum value is no longer recent."""
    data = run_json(capsys, str(DEMO / "case-04-healthy.yaml"), "--as-of", "2029-05-01")
    assert "2029-05-01" == data["as_of"]
    assert data["serum_magnesium"]["current"] is False


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("malformed.json", "malformed JSON"),
        ("not_a_document.yaml", "not a FHIR resource or a magstat patient document"),
        ("json_list.json", "not a FHIR resource or a magstat patient document"),
        ("unknown_unit.yaml", "labs[0].unit"),
        ("implausible_value.yaml", "implausible"),
        ("birth_after_as_of.yaml", "birth_date"),
        ("unknown_field.yaml", "serum_magnesium"),
    ],
)
def test_invalid_inputs_exit_2(capsys, name, expect):
    """Each invalid input exits 2 with one line naming the problem, and no traceback."""
    assert 2 == main(["assess", str(DATA / "invalid" / name)])
    err = capsys.readouterr().err
    assert expect in err
    assert "Traceback" not in err
    assert 1 == len(err.strip().splitlines())


def test_missing_file_exit_2(capsys, tmp_path):
    """A file that does not exist is invalid input."""
    assert 2 == main(["assess", str(tmp_path / "nope.json")])
    assert "no such file" in capsys.readouterr().err


def test_bad_as_of_exit_2(capsys):
    """A malformed --as-of is a usage error with exit code 2."""
    with pytest.raises(SystemExit) as err:
        main(["assess", str(DEMO / "case-04-healthy.yaml"), "--as-of", "yesterday"])
    assert 2 == err.value.code
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_console_script_exit_codes(tmp_path):
    """The installed command exits 0 on good input and 2 on bad, reading standard input too."""
    good = subprocess.run(
        [sys.executable, "-m", "magstat", "assess", "-", "--format", "json"],
        input=(DEMO / "case-06-alcohol.yaml").read_bytes(),
        capture_output=True,
        check=False,
    )
    assert 0 == good.returncode, good.stderr
    assert "at_risk" == json.loads(good.stdout)["status"]
    bad = subprocess.run(
        [sys.executable, "-m", "magstat", "assess", "-"], input=b"{nope", capture_output=True, check=False
    )
    assert 2 == bad.returncode
    assert b"Traceback" not in bad.stderr


def test_text_and_html_output(capsys, tmp_path):
    """Text output is a readable summary; HTML is a standalone page with no external assets."""
    assert 0 == main(["assess", str(DEMO / "case-01-ppi-diuretic-deficient.yaml")])
    text = capsys.readouterr().out
    assert "Magnesium deficiency" in text
    assert "NEXT STEPS" in text
    out = tmp_path / "r.html"
    assert 0 == main(
        ["assess", str(DEMO / "case-01-ppi-diuretic-deficient.yaml"), "--format", "html", "-o", str(out)]
    )
    html = out.read_text()
    assert html.startswith("<!doctype html>")
    # Sources are cited with their addresses as text; nothing is loaded from them.
    assert re.search(r"""(src|href)=["']?https?:|url\(\s*["']?https?:|@import""", html) is None
    assert "<script" not in html


def test_kb_commands(capsys, kb):
    """kb show, validate and cite print the version, validate cleanly and resolve a citation."""
    assert 0 == main(["kb", "show"])
    assert kb.version in capsys.readouterr().out
    assert 0 == main(["kb", "validate"])
    assert "is valid" in capsys.readouterr().out
    assert 0 == main(["kb", "cite", "S99"])
    assert "Inker" in capsys.readouterr().out
    assert 0 == main(["kb", "cite", "ppi", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["resolved_sources"]
    assert 2 == main(["kb", "cite", "no-such-id"])


def test_kb_validate_refuses_broken_folder(capsys, tmp_path):
    """kb validate --dir on a folder with an uncited entry exits 3 and names the entry."""
    src = ROOT / "src" / "magstat" / "kb" / "data"
    for path in src.glob("*.toml"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "parameters.toml").write_text(
        (tmp_path / "parameters.toml").read_text()
        + '\n[parameters."x.uncited"]\nvalue = 1\nunit = "x"\ntext = "t"\n'
    )
    assert 3 == main(["kb", "validate", "--dir", str(tmp_path)])
    assert "x.uncited" in capsys.readouterr().err


def test_schema_is_valid_json_schema_and_accepts_demo_cases(capsys):
    """magstat schema prints a JSON Schema that the demo patient documents satisfy."""
    assert 0 == main(["schema"])
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for path in sorted(DEMO.glob("case-*.yaml")):
        doc = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
        assert [] == [e.message for e in validator.iter_errors(doc)], path.name


def test_demo(capsys, tmp_path):
    """magstat demo assesses every demo patient and writes reports on request."""
    assert 0 == main(["demo", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "case-01" in out
    assert len(list(Path(tmp_path).glob("*.html"))) >= 10


def test_deeply_nested_json_is_invalid_input():
    """JSON nested thousands deep is refused as invalid input, not a crash."""
    with pytest.raises(InvalidInputError):
        parse_bytes(b"[" * 100_000 + b"]" * 100_000)


def test_unwritable_output_names_the_path(capsys, tmp_path):
    """An output that cannot be written exits 4 and names the path it tried."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    target = blocker / "report.json"
    code = main(["assess", str(ROOT / "examples" / "patient.yaml"), "--format", "json", "-o", str(target)])
    err = capsys.readouterr().err
    assert (4, True) == (code, str(blocker) in err)


def test_version_names_the_build_of_the_core(capsys):
    """``magstat --version`` prints the version and whether the core runs compiled or as pure Python, and exits 0."""
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert 0 == stop.value.code
    build = "compiled core (mypyc)" if build_info.core_is_compiled() else "pure-Python core"
    assert f"magstat {__version__}, {build}\n" == capsys.readouterr().out
