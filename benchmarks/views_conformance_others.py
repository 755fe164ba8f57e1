"""Run the SQL on FHIR v2 conformance suite on other Python implementations, for comparison.

Runs in a separate virtual environment that has the implementation installed (not magstat's):

    python3 -m venv /tmp/othervenv
    /tmp/othervenv/bin/pip install fhir4ds==0.5.1 sqlonfhir==0.0.2
    /tmp/othervenv/bin/python benchmarks/views_conformance_others.py fhir4ds tests/data/sql-on-fhir-v2/*.json

A test passes when the rows equal the expected rows (in any order, numbers by value, keys in
column order not checked), or when the view is refused and the test expects an error. This is
the same comparison ``magstat views test`` makes.
"""

from __future__ import annotations

import contextlib
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


class _NoInstall:
    """A DuckDB connection that skips ``INSTALL json`` (JSON is built into DuckDB; the install
    step would try to download it, and this machine has no network)."""

    def __init__(self, con: Any) -> None:
        self._con = con

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.strip().upper().startswith("INSTALL JSON"):
            return self._con.execute("LOAD json;")
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _rows_fhir4ds(
    view: dict[str, Any], resources: list[dict[str, Any]]
) -> tuple[list[str], list[dict[str, Any]]]:
    import duckdb  # noqa: PLC0415 - only in the comparison venv
    from fhir4ds.dialects import duckdb as dialect_module  # noqa: PLC0415

    if not getattr(dialect_module, "_patched", False):
        real_connect = duckdb.connect
        dialect_module.duckdb.connect = lambda *a, **k: _NoInstall(real_connect(*a, **k))  # type: ignore[attr-defined]
        dialect_module._patched = True  # type: ignore[attr-defined]
    from fhir4ds.datastore import QuickConnect  # noqa: PLC0415

    db = QuickConnect.duckdb(":memory:")
    db.load_resources(resources, parallel=False)
    result = db.execute(view)
    rows = result.fetchall()
    names = [d[0] for d in result.description]
    out = []
    for row in rows:
        item = {}
        for name, raw in zip(names, row, strict=True):
            value = raw
            if isinstance(raw, str) and raw[:1] in "[{":
                with contextlib.suppress(ValueError):
                    value = json.loads(raw)
            item[name] = value
        out.append(item)
    return names, out


def _rows_sqlonfhir(
    view: dict[str, Any], resources: list[dict[str, Any]]
) -> tuple[list[str], list[dict[str, Any]]]:
    from sqlonfhir import evaluate  # noqa: PLC0415 - only in the comparison venv

    rows = list(evaluate(resources, view))
    return (list(rows[0]) if rows else []), rows


def main() -> int:
    """Run the files named on the command line; print the pass count and each failure."""
    impl = sys.argv[1]
    run = {"fhir4ds": _rows_fhir4ds, "sqlonfhir": _rows_sqlonfhir}[impl]
    passed = total = 0
    for path in sys.argv[2:]:
        suite = json.loads(Path(path).read_text(encoding="utf-8"))
        for test in suite["tests"]:
            total += 1
            try:
                names, rows = run(test["view"], suite["resources"])
            except Exception as exc:
                ok = bool(test.get("expectError"))
                reason = f"raised {type(exc).__name__}: {str(exc)[:120]}"
            else:
                if test.get("expectError"):
                    ok, reason = False, "accepted a view that must fail"
                elif "expectColumns" in test:
                    ok, reason = names == test["expectColumns"], f"columns {names}"
                else:
                    got = sorted(json.dumps(_canonical(r), sort_keys=True, default=str) for r in rows)
                    want = sorted(json.dumps(_canonical(r), sort_keys=True) for r in test["expect"])
                    ok, reason = got == want, "rows differ"
            passed += ok
            if not ok:
                print(f"FAIL {Path(path).name}: {test['title']}: {reason}")
    print(f"{impl}: {passed}/{total} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
