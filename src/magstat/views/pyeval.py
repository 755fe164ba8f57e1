"""The in-process back end: a view compiled once into Python closures, then run per resource.

Every FHIRPath node becomes a function ``f(items, row_index) -> list`` that takes the input
collection and the current ``%rowIndex``; every select becomes a function from one element to
its rows. Nothing is parsed or looked up by name while resources are evaluated, which keeps one
patient's chart (the CLI, the CDS Hooks service) fast.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from magstat.errors import InvalidInputError
from magstat.views.boundary import boundary
from magstat.views.definition import INTEGER_TYPES, STRING_TYPES, Select, View
from magstat.views.fhirpath import Node

__all__ = ["CompiledView", "compile_view"]

Fn = Callable[[list[Any], int], list[Any]]
RowsFn = Callable[[Any, int], list[tuple[Any, ...]]]


_ABSENT = object()


def _is_type(value: Any, name: str) -> bool:
    short = name.rsplit(".", maxsplit=1)[-1]
    if short in ("boolean", "Boolean"):
        return isinstance(value, bool)
    if short in INTEGER_TYPES or short == "Integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if short in ("decimal", "Decimal"):
        return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
    if short in STRING_TYPES or short in ("String", "Date", "DateTime", "Time"):
        return isinstance(value, str)
    return isinstance(value, dict)


def _children(items: Iterable[Any], key: str) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            value = item.get(key)
            if value is None:
                continue
            if isinstance(value, list):
                out.extend(v for v in value if v is not None)
            else:
                out.append(value)
    return out


def _truth(items: list[Any]) -> bool | None:
    """FHIRPath singleton evaluation of a collection as a boolean (None when empty)."""
    if not items:
        return None
    if len(items) > 1:
        raise InvalidInputError(
            "path", "a boolean was expected but the expression gave several values", value=items
        )
    value = items[0]
    return value if isinstance(value, bool) else True


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    if _number(a) and _number(b):
        return bool(a == b)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _compare(op: str, a: Any, b: Any) -> bool | None:
    if not ((_number(a) and _number(b)) or (isinstance(a, str) and isinstance(b, str))):
        return None
    if op == "<":
        return bool(a < b)
    if op == ">":
        return bool(a > b)
    if op == "<=":
        return bool(a <= b)
    return bool(a >= b)


def _reference_key(item: Any, kind: str | None) -> str | None:
    if not isinstance(item, dict):
        return None
    ref = item.get("reference")
    if not isinstance(ref, str) or ref.startswith("#"):
        return None
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-1]:
        return None
    if kind is not None and parts[-2] != kind:
        return None
    return parts[-1]


class _Compiler:
    def __init__(self, view: View) -> None:
        self.constants = {name: [c.value] for name, c in view.constants.items()}

    def node(self, node: Node) -> Fn:
        fn = self._node(node)
        if _static(node):
            # Literals only (a list of codes joined by |): computed once, here.
            value = fn([], 0)

            def constant(items: list[Any], idx: int) -> list[Any]:
                return value

            constant.static = True  # type: ignore[attr-defined]
            return constant
        return fn

    def _node(self, node: Node) -> Fn:
        kind = node[0]
        if kind == "lit":
            if node[1] == "empty":
                return lambda items, idx: []
            literal = [node[2]]
            return lambda items, idx: literal
        if kind == "const":
            name = node[1]
            if name == "rowIndex":
                return lambda items, idx: [idx]
            value = self.constants[name]
            return lambda items, idx: value
        if kind == "this":
            return lambda items, idx: items
        if kind == "member":
            key = node[2]
            base = self.base(node[1])
            if base is None:
                return lambda items, idx: _children(items, key)
            return lambda items, idx: _children(base(items, idx), key)
        if kind == "index":
            base_fn = self.node(node[1])
            index_fn = self.node(node[2])

            def index(items: list[Any], idx: int) -> list[Any]:
                values = base_fn(items, idx)
                at = index_fn(items, idx)
                if not at or not isinstance(at[0], int) or at[0] < 0 or at[0] >= len(values):
                    return []
                return [values[at[0]]]

            return index
        if kind == "neg":
            operand = self.node(node[1])
            return lambda items, idx: [-v for v in operand(items, idx) if _number(v)]
        if kind == "binop":
            return self.binop(node[1], self.node(node[2]), self.node(node[3]))
        if kind == "call":
            return self.call(node)
        raise InvalidInputError("path", f"unsupported FHIRPath element {kind}")

    def base(self, node: Node | None) -> Fn | None:
        return None if node is None else self.node(node)

    def binop(self, op: str, left: Fn, right: Fn) -> Fn:
        if op in ("and", "or", "xor", "implies"):

            def logic(items: list[Any], idx: int) -> list[Any]:
                a = _truth(left(items, idx))
                b = _truth(right(items, idx))
                if op == "and":
                    result = False if a is False or b is False else (None if a is None or b is None else True)
                elif op == "or":
                    result = True if a is True or b is True else (None if a is None or b is None else False)
                elif op == "xor":
                    result = None if a is None or b is None else a != b
                else:
                    result = True if a is False or b is True else (None if a is None or b is None else False)
                return [] if result is None else [result]

            return logic
        if op in ("=", "!=", "~", "!~"):
            negate = op.startswith("!")

            def equality(items: list[Any], idx: int) -> list[Any]:
                a = left(items, idx)
                b = right(items, idx)
                if not a or not b:
                    return []
                same = len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
                return [same != negate]

            return equality
        if op in ("<", ">", "<=", ">="):

            def comparison(items: list[Any], idx: int) -> list[Any]:
                a = left(items, idx)
                b = right(items, idx)
                if len(a) != 1 or len(b) != 1:
                    return []
                result = _compare(op, a[0], b[0])
                return [] if result is None else [result]

            return comparison
        if op == "|":

            def union(items: list[Any], idx: int) -> list[Any]:
                out: list[Any] = []
                for value in itertools.chain(left(items, idx), right(items, idx)):
                    if not any(_equal(value, seen) for seen in out):
                        out.append(value)
                return out

            return union
        if op in ("in", "contains"):
            fast = self.set_membership(op, left, right)
            if fast is not None:
                return fast

            def membership(items: list[Any], idx: int) -> list[Any]:
                a = left(items, idx)
                b = right(items, idx)
                needle, haystack = (a, b) if op == "in" else (b, a)
                if not needle:
                    return []
                return [any(_equal(needle[0], v) for v in haystack)]

            return membership
        return self.arithmetic(op, left, right)

    @staticmethod
    def set_membership(op: str, left: Fn, right: Fn) -> Fn | None:
        """``x in (literal strings)`` as a set lookup, when the list side is static strings."""
        haystack_fn = right if op == "in" else left
        needle_fn = left if op == "in" else right
        if getattr(haystack_fn, "static", None) is None:
            return None
        values = haystack_fn([], 0)
        if not all(isinstance(v, str) for v in values):
            return None
        strings = frozenset(values)

        def member(items: list[Any], idx: int) -> list[Any]:
            needle = needle_fn(items, idx)
            if not needle:
                return []
            first = needle[0]
            return [isinstance(first, str) and first in strings]

        return member

    def arithmetic(self, op: str, left: Fn, right: Fn) -> Fn:
        def apply(items: list[Any], idx: int) -> list[Any]:
            a = left(items, idx)
            b = right(items, idx)
            if op == "&":
                return ["".join(str(v[0]) if v else "" for v in (a, b))]
            if len(a) != 1 or len(b) != 1:
                return []
            x, y = a[0], b[0]
            if op == "+" and isinstance(x, str) and isinstance(y, str):
                return [x + y]
            if not (_number(x) and _number(y)):
                return []
            if op == "+":
                return [x + y]
            if op == "-":
                return [x - y]
            if op == "*":
                return [x * y]
            if y == 0:
                return []
            if op == "/":
                return [x / y]
            if op == "div":
                return [int(x // y)]
            return [x % y]

        return apply

    def call(self, node: Node) -> Fn:
        _, base_node, name, args = node
        if name == "ofType" and base_node is not None and base_node[0] == "member":
            # A choice element (value[x]) is stored under valueQuantity, valueString, ...
            type_name = args[0][1]
            key = base_node[2]
            choice = key + type_name[:1].upper() + type_name[1:]
            owner = self.base(base_node[1])

            def of_type_member(items: list[Any], idx: int) -> list[Any]:
                source = items if owner is None else owner(items, idx)
                return _children(source, choice) + [
                    v for v in _children(source, key) if _is_type(v, type_name)
                ]

            return of_type_member
        base = self.base(base_node)

        def source(items: list[Any], idx: int) -> list[Any]:
            return items if base is None else base(items, idx)

        if name == "ofType":
            type_name = args[0][1]
            return lambda items, idx: [v for v in source(items, idx) if _is_type(v, type_name)]
        if name in ("where", "exists", "all", "select") and args:
            cond = self.node(args[0])
            if name == "select":
                return lambda items, idx: [r for v in source(items, idx) for r in cond([v], idx)]
            if name == "all":
                return lambda items, idx: [all(_truth(cond([v], idx)) is True for v in source(items, idx))]

            def where(items: list[Any], idx: int) -> list[Any]:
                return [v for v in source(items, idx) if _truth(cond([v], idx)) is True]

            if name == "where":
                return where
            return lambda items, idx: [bool(where(items, idx))]
        if args and name not in ("join", "extension", "getReferenceKey", "skip", "take"):
            raise InvalidInputError("path", f"{name}() does not take arguments here", value=len(args))
        if name == "exists":
            return lambda items, idx: [bool(source(items, idx))]
        if name == "empty":
            return lambda items, idx: [not source(items, idx)]
        if name == "hasValue":
            return lambda items, idx: [len(v := source(items, idx)) == 1 and not isinstance(v[0], dict)]
        if name == "count":
            return lambda items, idx: [len(source(items, idx))]
        if name == "first":
            return lambda items, idx: source(items, idx)[:1]
        if name == "last":
            return lambda items, idx: source(items, idx)[-1:]
        if name == "tail":
            return lambda items, idx: source(items, idx)[1:]
        if name == "single":

            def single(items: list[Any], idx: int) -> list[Any]:
                values = source(items, idx)
                if len(values) > 1:
                    raise InvalidInputError("path", "single() found several values", value=len(values))
                return values

            return single
        if name == "not":

            def negate(items: list[Any], idx: int) -> list[Any]:
                value = _truth(source(items, idx))
                return [] if value is None else [not value]

            return negate
        if name == "distinct":

            def distinct(items: list[Any], idx: int) -> list[Any]:
                out: list[Any] = []
                for value in source(items, idx):
                    if not any(_equal(value, seen) for seen in out):
                        out.append(value)
                return out

            return distinct
        if name == "join":
            sep_fn = self.node(args[0]) if args else None

            def join(items: list[Any], idx: int) -> list[Any]:
                sep = sep_fn(items, idx) if sep_fn is not None else [""]
                return [str(sep[0] if sep else "").join(str(v) for v in source(items, idx))]

            return join
        if name == "extension":
            url_fn = self.node(args[0])

            def extension(items: list[Any], idx: int) -> list[Any]:
                url = url_fn(items, idx)
                wanted = url[0] if url else None
                return [e for e in _children(source(items, idx), "extension") if e.get("url") == wanted]

            return extension
        if name == "getResourceKey":
            return lambda items, idx: [
                v["id"] for v in source(items, idx) if isinstance(v, dict) and "id" in v
            ]
        if name == "getReferenceKey":
            ref_type = args[0][1] if args else None

            def reference_key(items: list[Any], idx: int) -> list[Any]:
                keys = (_reference_key(v, ref_type) for v in source(items, idx))
                return [k for k in keys if k is not None]

            return reference_key
        if name in ("lowBoundary", "highBoundary"):
            high = name == "highBoundary"
            hint = None
            if base_node is not None and base_node[0] == "call" and base_node[2] == "ofType":
                hint = base_node[3][0][1]

            def bound(items: list[Any], idx: int) -> list[Any]:
                out = (boundary(v, high, hint) for v in source(items, idx))
                return [v for v in out if v is not None]

            return bound
        if name in ("toString", "string"):
            return lambda items, idx: [_to_string(v) for v in source(items, idx) if not isinstance(v, dict)]
        raise InvalidInputError("path", f"the function {name}() is not supported in views", value=name)


def _probe(node: Node) -> tuple[str, str | None] | None:
    """The JSON keys a top-level element column reads: (key, the plain key of a choice) or ``None``.

    ``code`` reads ``code``; ``value.ofType(Quantity)`` reads ``valueQuantity``, and also
    ``value`` (kept when it is of the type). A caller that finds the first key absent or a
    single non-list value (and the second absent) knows the column's values without the getter.
    """
    if node[0] == "member" and node[1] is None:
        return node[2], None
    if (
        node[0] == "call"
        and node[2] == "ofType"
        and node[1] is not None
        and node[1][0] == "member"
        and node[1][1] is None
        and node[3]
        and isinstance(node[3][0][1], str)
    ):
        type_name = node[3][0][1]
        key = node[1][2]
        return key + type_name[:1].upper() + type_name[1:], key
    return None


def _direct(node: Node) -> Callable[[Any], list[Any]] | None:
    """A getter for a top-level element (``code``, ``value.ofType(Quantity)``), else ``None``."""
    probe = _probe(node)
    if probe is None:
        return None
    first, plain = probe
    if plain is None:
        key = first

        def member(element: Any) -> list[Any]:
            value = element.get(key) if isinstance(element, dict) else None
            if value is None:
                return []
            if isinstance(value, list):
                return [v for v in value if v is not None]
            return [value]

        return member
    type_name: str = node[3][0][1]
    choice, key = first, plain

    def choice_getter(element: Any) -> list[Any]:
        if not isinstance(element, dict):
            return []
        value = element.get(choice)
        if value is None:
            found = []
        elif isinstance(value, list):
            found = [v for v in value if v is not None]
        else:
            found = [value]
        if element.get(key) is not None:
            found += [v for v in _children((element,), key) if _is_type(v, type_name)]
        return found

    return choice_getter


def _static(node: Node) -> bool:
    """Whether a FHIRPath node is made of literals only (its value never changes)."""
    kind = node[0]
    if kind == "lit":
        return True
    if kind == "binop" and node[1] == "|":
        return _static(node[2]) and _static(node[3])
    return False


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _cross(parts: Sequence[list[tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = [()]
    for part in parts:
        rows = [a + b for a in rows for b in part]
        if not rows:
            return rows
    return rows


class CompiledView:
    """A view compiled to closures; call :meth:`rows` for each resource.

    .. versionadded:: 0.2.0
    """

    def __init__(self, view: View) -> None:
        self.view = view
        self.names = view.root.names
        compiler = _Compiler(view)
        self._where = [compiler.node(w) for w in view.where]
        self._where_text = [str(w.get("path")) for w in view.raw.get("where", [])]
        self._rows = self._select(view.root, compiler)
        self.getters = self._getters(view.root, compiler)
        self.probes = (
            tuple(_probe(c.node) for c in view.root.selects[0].columns) if self.getters is not None else None
        )

    @staticmethod
    def _getters(root: Select, compiler: _Compiler) -> tuple[Callable[[Any], list[Any]], ...] | None:
        """Per-column functions ``f(resource) -> values``, for a view that is a plain projection.

        A view whose selects have columns only (no ``forEach``, nesting or ``unionAll``) gives
        one row per resource, and each column depends on the resource alone: its values can
        be computed one column at a time, only when asked for. ``None`` for other views.
        """
        if root.iterate is not None or root.union or root.columns or len(root.selects) != 1:
            return None
        select = root.selects[0]
        if select.iterate is not None or select.selects or select.union:
            return None
        getters: list[Callable[[Any], list[Any]]] = []
        for column in select.columns:
            get = _direct(column.node)
            if get is None:
                fn = compiler.node(column.node)

                def get(element: Any, fn: Fn = fn) -> list[Any]:
                    return fn([element], 0)

            getters.append(get)
        return tuple(getters)

    def _select(self, select: Select, compiler: _Compiler) -> RowsFn:
        columns = [(c.name, c.collection, compiler.node(c.node)) for c in select.columns]
        children = [self._select(s, compiler) for s in select.selects]
        branches = [self._select(s, compiler) for s in select.union]
        nested_widths = [len(s.names) for s in select.selects] + (
            [len(select.union[0].names)] if select.union else []
        )

        if not children and not branches and columns:
            # A plain projection (no nesting): one row per element, top-level elements read
            # straight from the dict. The same values as the general body below, faster.
            direct = [_direct(c.node) for c in select.columns]
            plan = [(name, coll, fn, get) for (name, coll, fn), get in zip(columns, direct, strict=True)]
            general = self._body(columns, children, branches, nested_widths)

            def flat(element: Any, idx: int) -> list[tuple[Any, ...]]:
                if element is _ABSENT:
                    return general(element, idx)
                row: list[Any] = []
                context = [element]
                for name, collection, fn, get in plan:
                    values = get(element) if get is not None else fn(context, idx)
                    if collection:
                        row.append(values)
                    elif len(values) > 1:
                        raise InvalidInputError(
                            f"column {name}",
                            "the path gave several values but the column is not a collection",
                            value=values,
                            allowed='one value, or "collection": true',
                        )
                    else:
                        row.append(values[0] if values else None)
                return [tuple(row)]

            body_fn: RowsFn = flat
        else:
            body_fn = self._body(columns, children, branches, nested_widths)
        return self._iterate(select, compiler, body_fn)

    def _body(
        self,
        columns: list[tuple[str, bool, Fn]],
        children: list[RowsFn],
        branches: list[RowsFn],
        nested_widths: list[int],
    ) -> RowsFn:
        def body(element: Any, idx: int) -> list[tuple[Any, ...]]:
            parts: list[list[tuple[Any, ...]]] = []
            if columns:
                row: list[Any] = []
                context = [] if element is _ABSENT else [element]
                for name, collection, fn in columns:
                    values = fn(context, idx)
                    if collection:
                        row.append(values)
                    elif len(values) > 1:
                        raise InvalidInputError(
                            f"column {name}",
                            "the path gave several values but the column is not a collection",
                            value=values,
                            allowed='one value, or "collection": true',
                        )
                    else:
                        row.append(values[0] if values else None)
                parts.append([tuple(row)])
            if element is _ABSENT:
                # Inside the null row of a forEachOrNull every nested column is null too.
                parts.extend([(None,) * width] for width in nested_widths)
                return _cross(parts)
            parts.extend(child(element, idx) for child in children)
            if branches:
                parts.append([r for branch in branches for r in branch(element, idx)])
            return _cross(parts)

        return body

    def _iterate(self, select: Select, compiler: _Compiler, body: RowsFn) -> RowsFn:
        if select.iterate is None:
            return body
        paths = [compiler.node(p) for p in select.paths]
        if select.iterate == "repeat":

            def walk(element: Any, idx: int) -> Iterator[Any]:
                for path in paths:
                    for child in path([element], idx):
                        yield child
                        yield from walk(child, idx)

            def repeat(element: Any, idx: int) -> list[tuple[Any, ...]]:
                return [r for i, v in enumerate(walk(element, idx)) for r in body(v, i)]

            return repeat
        path = paths[0]
        or_null = select.iterate == "forEachOrNull"

        def for_each(element: Any, idx: int) -> list[tuple[Any, ...]]:
            values = path([element], idx)
            if not values and or_null:
                # The row of nulls still has a %rowIndex (0), like any first row.
                return body(_ABSENT, 0)
            return [r for i, v in enumerate(values) for r in body(v, i)]

        return for_each

    def keep(self, resource: dict[str, Any]) -> bool:
        """Whether the resource passes every ``where`` of the view."""
        for i, fn in enumerate(self._where):
            values = fn([resource], 0)
            if len(values) > 1 or (values and not isinstance(values[0], bool)):
                raise InvalidInputError(
                    f"where[{i}].path",
                    "must give a boolean",
                    value=self._where_text[i] if i < len(self._where_text) else None,
                    allowed="an expression that is true, false or empty",
                )
            if values != [True]:
                return False
        return True

    def rows(self, resource: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of one resource (none when it is another type or fails ``where``)."""
        if not isinstance(resource, dict) or resource.get("resourceType") != self.view.resource:
            return []
        if not self.keep(resource):
            return []
        return self._rows(resource, 0)

    def run(self, resources: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Rows of every resource, as dicts in column order."""
        names = self.names
        for resource in resources:
            for row in self.rows(resource):
                yield dict(zip(names, row, strict=True))


def compile_view(view: View) -> CompiledView:
    """Compile a checked view into closures.

    .. versionadded:: 0.2.0
    """
    return CompiledView(view)
