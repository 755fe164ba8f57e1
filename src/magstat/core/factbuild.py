"""Fast construction of the frozen fact classes, for adapters that make many of them.

A frozen dataclass sets each field in its ``__init__`` through ``object.__setattr__``, which
costs about as much as the reading that found the value when a screening makes a fact per
resource. The builders here make the same objects by another road: ``object.__new__`` and the
class's own slot descriptors, with the parameters, order and defaults (``default_factory``
called afresh) of the class's ``__init__``, so ``lab(...) == Lab(...)`` for any arguments.

They are made from :func:`dataclasses.fields` when this module is imported, so a field added to
a class is built too. A class the road does not fit (no slots, ``__post_init__``, a field left
out of ``__init__`` or keyword-only) is built by its own constructor instead.

.. versionadded:: 0.5.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from magstat.core.facts import ConditionFact, Lab, Medication, Origin, SignFact

__all__ = ["builder", "condition_fact", "lab", "medication", "origin", "sign_fact"]

T = TypeVar("T")


class _Missing:
    """Marks a parameter left out, whose field takes its ``default_factory``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<default>"


_MISSING: Any = _Missing()


def _fits(cls: type) -> bool:
    """Whether ``cls`` can be built through its slot descriptors with its ``__init__``'s meaning."""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        return False
    for f in dataclasses.fields(cls):
        if not f.init or f.kw_only or not f.name.isidentifier():
            return False
        if type(cls.__dict__.get(f.name)).__name__ != "member_descriptor":
            return False
    return True


def builder(cls: type[T]) -> Callable[..., T]:
    """A function taking the arguments of ``cls.__init__`` and returning an equal instance, faster.

    Args:
        cls: a dataclass with slots (``frozen=True`` or not).

    Returns:
        the builder; ``cls`` itself when the class does not fit (see the module documentation).

    """
    if not _fits(cls):
        return cls
    fields = dataclasses.fields(cls)  # type: ignore[arg-type] # _fits checked it is a dataclass
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_MISSING": _MISSING}
    params: list[str] = []
    body: list[str] = ["    made = _new(_cls)"]
    for i, f in enumerate(fields):
        setter = f"_set{i}"
        namespace[setter] = cls.__dict__[f.name].__set__
        if f.default is not dataclasses.MISSING:
            namespace[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
            body.append(f"    {setter}(made, {f.name})")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory{i}"] = f.default_factory
            params.append(f"{f.name}=_MISSING")
            body.append(f"    {setter}(made, _factory{i}() if {f.name} is _MISSING else {f.name})")
        else:
            params.append(f.name)
            body.append(f"    {setter}(made, {f.name})")
    source = f"def build({', '.join(params)}):\n" + "\n".join(body) + "\n    return made\n"
    # The source is made from the class's own field names (checked to be identifiers) only.
    exec(source, namespace)  # noqa: S102
    build: Callable[..., T] = namespace["build"]
    build.__name__ = build.__qualname__ = f"build_{cls.__name__}"
    build.__doc__ = f"Make a :class:`{cls.__name__}` equal to ``{cls.__name__}(...)`` of the same arguments."
    return build


origin: Callable[..., Origin] = builder(Origin)
"""``Origin(...)``, faster."""
lab: Callable[..., Lab] = builder(Lab)
"""``Lab(...)``, faster."""
medication: Callable[..., Medication] = builder(Medication)
"""``Medication(...)``, faster."""
condition_fact: Callable[..., ConditionFact] = builder(ConditionFact)
"""``ConditionFact(...)``, faster."""
sign_fact: Callable[..., SignFact] = builder(SignFact)
"""``SignFact(...)``, faster."""
