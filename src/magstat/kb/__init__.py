"""The knowledge base: cited clinical data files, checked on load, versioned and hashed.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from magstat.errors import KnowledgeBaseError
from magstat.kb.schema import FILES, VIEWS_PREFIX, KnowledgeBase, build

__all__ = ["FILES", "KnowledgeBase", "load", "load_dir"]


@functools.cache
def load() -> KnowledgeBase:
    """Load the knowledge base shipped inside the package (read once, then cached).

    Raises:
        KnowledgeBaseError: the shipped files are malformed or uncited.

    """
    folder = resources.files("magstat.kb") / "data"
    raw = {name: (folder / name).read_bytes() for name in FILES if (folder / name).is_file()}
    views = folder / "views"
    if views.is_dir():
        for item in views.iterdir():
            if item.is_file() and item.name.endswith(".json"):
                raw[VIEWS_PREFIX + item.name] = item.read_bytes()
    return _parse(raw)


def load_dir(path: str | Path) -> KnowledgeBase:
    """Load a knowledge base from a folder of the same TOML files (for review and tests).

    Raises:
        KnowledgeBaseError: a file is missing, malformed or uncited.

    """
    folder = Path(path)
    if not folder.is_dir():
        raise KnowledgeBaseError(f"{folder}: not a folder")
    raw = {p.name: p.read_bytes() for p in sorted(folder.glob("*.toml"))}
    raw.update({VIEWS_PREFIX + p.name: p.read_bytes() for p in sorted(folder.glob("views/*.json"))})
    return _parse(raw)


def _parse(raw: dict[str, bytes]) -> KnowledgeBase:
    documents: dict[str, dict[str, Any]] = {}
    for name, data in raw.items():
        if name.startswith(VIEWS_PREFIX):
            continue  # JSON, kept as text (KnowledgeBase.views)
        try:
            documents[name] = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise KnowledgeBaseError(f"{name}: not valid TOML: {exc}") from exc
    return build(documents, raw)
