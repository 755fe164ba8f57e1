"""Memoise work derived from a knowledge base, keyed by the content's SHA-256.

A knowledge base is immutable, so anything computed from it (indexes, lookup tables, form
specifications) can be built once per content and shared; a different content gets its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Concatenate, ParamSpec, TypeVar

from magstat.kb.schema import KnowledgeBase

__all__ = ["per_kb"]

P = ParamSpec("P")
R = TypeVar("R")


def per_kb(build: Callable[Concatenate[KnowledgeBase, P], R]) -> Callable[Concatenate[KnowledgeBase, P], R]:
    """Decorate ``build(kb, *args)`` so it runs once per knowledge-base content and ``args``.

    The extra positional arguments must be hashable; keyword arguments are not supported.
    """
    cache: dict[tuple[Hashable, ...], R] = {}

    def cached(kb: KnowledgeBase, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if kwargs:
            raise TypeError(f"{build.__name__}: per_kb functions take positional arguments only")
        key = (kb.sha256, *args)
        try:
            return cache[key]
        except KeyError:
            value = cache[key] = build(kb, *args, **kwargs)
            return value

    cached.__name__ = build.__name__
    cached.__qualname__ = build.__qualname__
    cached.__doc__ = build.__doc__
    cached.__module__ = build.__module__
    return cached
