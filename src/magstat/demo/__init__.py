"""The built-in demo patients: constructed cases and two synthetic FHIR records.

The catalogue sits below the surfaces that show it: ``magstat demo`` (the CLI) and the web
app's patient picker both read it from here, so neither imports the other. The files and
their labels are listed in ``manifest.toml`` beside this module.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import datetime as dt
import tomllib
from importlib import resources
from typing import Any

from magstat.adapters.read import parse_bytes

__all__ = ["demo_patients"]


def demo_patients() -> list[tuple[str, str, Any, dt.date | None]]:
    """The demo patients, in the manifest's order.

    Returns:
        One ``(file name, label, parsed data, as-of date or None)`` per patient; ``None``
        means the document's own date or, for a FHIR record, the end of the record.

    """
    folder = resources.files(__name__)
    manifest = tomllib.loads((folder / "manifest.toml").read_text(encoding="utf-8"))
    out = []
    for row in manifest["patients"]:
        data = parse_bytes((folder / row["file"]).read_bytes(), row["file"])
        as_of = dt.date.fromisoformat(row["as_of"]) if "as_of" in row else None
        out.append((row["file"], row["label"], data, as_of))
    return out
