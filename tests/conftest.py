"""Shared fixtures: the knowledge base and the paths of the shared test data."""

from __future__ import annotations

from pathlib import Path

import pytest

from magstat.kb import KnowledgeBase, load

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    """The shipped knowledge base."""
    return load()
