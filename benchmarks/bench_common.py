"""What the benchmark scripts share: the shared patients' bundles, seeded populations, warm files.

Imported by the scripts in this folder (``python benchmarks/bench_*.py`` puts the folder on the
path). It imports magstat only inside :func:`population`, so that a script timing another
checkout through ``PYTHONPATH`` can load it before choosing which magstat to import.
"""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any


def bundle_files(roots: list[Path]) -> list[tuple[Path, bytes]]:
    """Every patient bundle in the ``synthea/`` and ``synthea-py/`` folders of ``roots``, as (path, raw JSON).

    ``.json`` or ``.json.gz`` files; the hospital and practitioner bundles are left out.
    """
    out = []
    for root in roots:
        for name in ("synthea", "synthea-py"):
            for path in sorted((root / name).glob("*.json*")):
                if path.name.startswith(("hospital", "practitioner")) or not path.name.endswith(
                    (".json", ".gz")
                ):
                    continue
                raw = path.read_bytes()
                out.append((path, gzip.decompress(raw) if path.name.endswith(".gz") else raw))
    if not out:
        raise SystemExit(f"no FHIR bundles in the synthea or synthea-py folders of {roots}")
    return out


def last_date(bundle: dict[str, Any]) -> dt.date:
    """The latest clinical date in a bundle: a meaningful as-of date for a record that ended."""
    latest = "1900-01-01"
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        for key in ("effectiveDateTime", "authoredOn", "recordedDate", "issued"):
            value = resource.get(key)
            if isinstance(value, str) and value > latest:
                latest = value
    return dt.date.fromisoformat(latest[:10])


def population(size_mb: int, folder: Path, patients: Path, *, compress: bool = False) -> tuple[int, int]:
    """Write (or reuse) a seeded Bulk Data export of about ``size_mb`` MB; its bytes and patients.

    Made by ``magstat.batch.popgen`` from the bundles in ``patients`` (seed 2024), so the same
    size gives the same export; a marker file records a finished one, which is then reused.
    """
    from magstat.batch.popgen import source_bundles, write_bulk  # noqa: PLC0415 - see the module

    marker = folder / ".population.json"
    if marker.exists():
        info = json.loads(marker.read_text(encoding="utf-8"))
        return info["bytes"], info["patients"]
    shutil.rmtree(folder, ignore_errors=True)
    made = write_bulk(
        source_bundles(patients / "synthea", patients / "synthea-py"),
        folder,
        target_bytes=size_mb * 10**6,
        seed=2024,
        compress=compress,
    )
    marker.write_text(json.dumps({"bytes": made.bytes_written, "patients": made.patients}), encoding="utf-8")
    return made.bytes_written, made.patients


def warm(folder: Path) -> None:
    """Read every file once, so that each run finds them in the page cache."""
    for path in folder.iterdir():
        with path.open("rb") as handle:
            while handle.read(1 << 24):
                pass


def build_compiled(target: Path) -> Path:
    """Copy the checkout's ``src`` to ``target/src`` and compile it there as the build hook does.

    The core and the FHIR reading are compiled with mypyc (``hatch_build.compile_core``; mypy
    and a C compiler are needed). Returns the compiled ``src``.
    """
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("magstat_hatch_build", root / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    src = target / "src"
    if src.exists():
        shutil.rmtree(src)
    hook.compile_core(root / "src", src)
    return src
