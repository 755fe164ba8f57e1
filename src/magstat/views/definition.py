"""A ViewDefinition, checked and parsed once: the plan every back end compiles.

Checks follow the SQL on FHIR v2 specification: a view names its ``resource``; has at least one
``select``; each select has at most one of ``forEach``, ``forEachOrNull`` and ``repeat``; column
names are unique and every ``unionAll`` branch has the same columns in the same order; every
constant has exactly one ``value[x]``; every ``%name`` used is defined. FHIRPath is parsed here,
once, so a syntax error fails the view before any data is read.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magstat.errors import InvalidInputError
from magstat.views.fhirpath import Node, parse

__all__ = ["Column", "Constant", "Select", "View", "load_view", "parse_view"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

# FHIR primitive types by the value they carry, for ofType() and a column's declared type; every
# back end reads these two sets.
STRING_TYPES = frozenset(
    {
        "string",
        "code",
        "id",
        "uri",
        "url",
        "canonical",
        "oid",
        "uuid",
        "markdown",
        "base64Binary",
        "date",
        "dateTime",
        "instant",
        "time",
        "xhtml",
    }
)
INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})

# value[x] of ViewDefinition.constant and the FHIRPath literal kind each gives.
_CONSTANT_TYPES = {
    "valueBase64Binary": "string",
    "valueBoolean": "bool",
    "valueCanonical": "string",
    "valueCode": "string",
    "valueDate": "date",
    "valueDateTime": "datetime",
    "valueDecimal": "number",
    "valueId": "string",
    "valueInstant": "datetime",
    "valueInteger": "number",
    "valueInteger64": "number",
    "valueOid": "string",
    "valuePositiveInt": "number",
    "valueString": "string",
    "valueTime": "time",
    "valueUnsignedInt": "number",
    "valueUri": "string",
    "valueUrl": "string",
    "valueUuid": "string",
}

# Variables the runner itself provides.
BUILTIN_CONSTANTS = frozenset({"rowIndex"})


@dataclass(frozen=True)
class Constant:
    """A ``ViewDefinition.constant``: its literal kind and value."""

    name: str
    kind: str
    value: Any


@dataclass(frozen=True)
class Column:
    """One output column."""

    name: str
    path: str
    node: Node
    type: str | None
    collection: bool


@dataclass(frozen=True)
class Select:
    """One ``select`` (the view itself is the root select, without columns of its own)."""

    columns: tuple[Column, ...]
    selects: tuple[Select, ...]
    union: tuple[Select, ...]
    iterate: str | None  # "forEach", "forEachOrNull", "repeat" or None
    paths: tuple[Node, ...]  # the forEach path, or the repeat paths

    @property
    def names(self) -> tuple[str, ...]:
        """Column names in output order: own columns, nested selects, then ``unionAll``."""
        out = [c.name for c in self.columns]
        for child in self.selects:
            out.extend(child.names)
        if self.union:
            out.extend(self.union[0].names)
        return tuple(out)


@dataclass(frozen=True)
class View:
    """A checked ViewDefinition."""

    name: str | None
    resource: str
    constants: Mapping[str, Constant]
    root: Select
    where: tuple[Node, ...]
    raw: Mapping[str, Any]

    @property
    def columns(self) -> tuple[Column, ...]:
        """Every column of the view in output order (the first ``unionAll`` branch stands for all)."""
        return tuple(_columns(self.root))


def _columns(select: Select) -> Iterator[Column]:
    yield from select.columns
    for child in select.selects:
        yield from _columns(child)
    if select.union:
        yield from _columns(select.union[0])


def _constants_used(node: Any) -> Iterator[str]:
    if isinstance(node, tuple):
        if node and node[0] == "const":
            yield node[1]
            return
        for part in node:
            yield from _constants_used(part)
    elif isinstance(node, list):
        for part in node:
            yield from _constants_used(part)


class _Builder:
    def __init__(self, constants: Mapping[str, Constant]) -> None:
        self.constants = constants

    def path(self, value: object, field: str) -> Node:
        node = parse(value, field)
        for name in _constants_used(node):
            if name not in self.constants and name not in BUILTIN_CONSTANTS:
                raise InvalidInputError(
                    field,
                    f"uses the constant %{name}, which the view does not define",
                    value=value,
                    allowed=", ".join(f"%{n}" for n in sorted(self.constants)) or "no constants are defined",
                )
        return node

    def column(self, raw: object, field: str) -> Column:
        if not isinstance(raw, dict):
            raise InvalidInputError(field, "must be an object with name and path", value=raw)
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInputError(
                f"{field}.name",
                "is not a valid column name",
                value=name,
                allowed="a letter, then letters, digits or _",
            )
        kind = raw.get("type")
        if kind is not None and not isinstance(kind, str):
            raise InvalidInputError(f"{field}.type", "must be a FHIR type name", value=kind)
        collection = raw.get("collection", False)
        if not isinstance(collection, bool):
            raise InvalidInputError(f"{field}.collection", "must be true or false", value=collection)
        path = raw.get("path")
        return Column(name, str(path), self.path(path, f"{field}.path"), kind, collection)

    def select(self, raw: object, field: str) -> Select:
        if not isinstance(raw, dict):
            raise InvalidInputError(field, "must be an object", value=raw)
        present = [k for k in ("forEach", "forEachOrNull", "repeat") if k in raw]
        if len(present) > 1:
            raise InvalidInputError(
                field, f"has both {present[0]} and {present[1]}", allowed="at most one of them"
            )
        iterate = present[0] if present else None
        paths: tuple[Node, ...] = ()
        if iterate == "repeat":
            value = raw["repeat"]
            if not isinstance(value, list) or not value:
                raise InvalidInputError(
                    f"{field}.repeat", "must be a non-empty list of FHIRPath expressions", value=value
                )
            paths = tuple(self.path(p, f"{field}.repeat[{i}]") for i, p in enumerate(value))
        elif iterate is not None:
            paths = (self.path(raw[iterate], f"{field}.{iterate}"),)
        columns = tuple(
            self.column(c, f"{field}.column[{i}]") for i, c in enumerate(_list(raw, "column", field))
        )
        selects = tuple(
            self.select(s, f"{field}.select[{i}]") for i, s in enumerate(_list(raw, "select", field))
        )
        union = tuple(
            self.select(s, f"{field}.unionAll[{i}]") for i, s in enumerate(_list(raw, "unionAll", field))
        )
        if "unionAll" in raw and not union:
            raise InvalidInputError(
                f"{field}.unionAll", "must list at least one select", value=raw["unionAll"]
            )
        for i, branch in enumerate(union[1:], start=1):
            if branch.names != union[0].names:
                raise InvalidInputError(
                    f"{field}.unionAll[{i}]",
                    "has different columns from unionAll[0]",
                    value=list(branch.names),
                    allowed=f"the same names in the same order: {list(union[0].names)}",
                )
        if not columns and not selects and not union:
            raise InvalidInputError(field, "has no column, select or unionAll")
        return Select(columns, selects, union, iterate, paths)


def _list(raw: Mapping[str, Any], key: str, field: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise InvalidInputError(f"{field}.{key}", "must be a list", value=value)
    return value


def _constant(raw: object, field: str) -> Constant:
    if not isinstance(raw, dict):
        raise InvalidInputError(field, "must be an object with name and value[x]", value=raw)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(f"{field}.name", "is not a valid constant name", value=name)
    values = [k for k in raw if k.startswith("value")]
    if len(values) != 1 or values[0] not in _CONSTANT_TYPES:
        raise InvalidInputError(
            field,
            f"constant {name!r} must have exactly one value[x]",
            value=values or None,
            allowed=", ".join(sorted(_CONSTANT_TYPES)),
        )
    key = values[0]
    value = raw[key]
    kind = _CONSTANT_TYPES[key]
    expected: tuple[type, ...] = {"bool": (bool,), "number": (int, float)}.get(kind, (str,))
    if not isinstance(value, expected) or (kind == "number" and isinstance(value, bool)):
        raise InvalidInputError(f"{field}.{key}", f"is not a valid {key[5:]}", value=value)
    return Constant(name, kind, value)


def parse_view(raw: object) -> View:
    """Check a ViewDefinition and parse its FHIRPath.

    Args:
        raw: the ViewDefinition as decoded JSON.

    Returns:
        The checked view.

    Raises:
        InvalidInputError: the view breaks a rule of the specification (the message names the
            element, the value and what is allowed).

    """
    if not isinstance(raw, dict):
        raise InvalidInputError("ViewDefinition", "must be a JSON object", value=type(raw).__name__)
    if raw.get("resourceType", "ViewDefinition") != "ViewDefinition":
        raise InvalidInputError("resourceType", "is not ViewDefinition", value=raw.get("resourceType"))
    resource = raw.get("resource")
    if not isinstance(resource, str) or not re.match(r"^[A-Z][A-Za-z]*$", resource):
        raise InvalidInputError(
            "resource", "must name a FHIR resource type", value=resource, allowed="e.g. Patient"
        )
    constants: dict[str, Constant] = {}
    for i, item in enumerate(_list(raw, "constant", "ViewDefinition")):
        constant = _constant(item, f"constant[{i}]")
        if constant.name in constants:
            raise InvalidInputError(f"constant[{i}].name", "is defined twice", value=constant.name)
        constants[constant.name] = constant
    builder = _Builder(constants)
    selects = _list(raw, "select", "ViewDefinition")
    if not selects:
        raise InvalidInputError("select", "a view needs at least one select", value=raw.get("select"))
    root = Select((), tuple(builder.select(s, f"select[{i}]") for i, s in enumerate(selects)), (), None, ())
    names = root.names
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInputError("column", "column names must be unique in a view", value=name)
        seen.add(name)
    where = []
    for i, item in enumerate(_list(raw, "where", "ViewDefinition")):
        if not isinstance(item, dict):
            raise InvalidInputError(f"where[{i}]", "must be an object with a path", value=item)
        where.append(builder.path(item.get("path"), f"where[{i}].path"))
    label = raw.get("name")
    return View(label if isinstance(label, str) else None, resource, constants, root, tuple(where), raw)


def load_view(path: str | Path) -> View:
    """Read and check a ViewDefinition JSON file.

    Raises:
        InvalidInputError: the file is missing, not JSON, or not a valid view.

    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(str(path), f"cannot read the view: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(str(path), f"is not JSON: {exc}") from exc
    try:
        return parse_view(raw)
    except InvalidInputError as exc:
        raise exc.at(Path(path).name) from None
