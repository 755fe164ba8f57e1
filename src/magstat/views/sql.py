"""The SQL back ends: a view compiled to one query, for DuckDB and for Spark SQL.

Every FHIRPath collection is an SQL list of JSON values (DuckDB ``JSON[]``, Spark
``ARRAY<VARIANT>``); navigation, ``where``, ``forEach`` and the cross-join of selects are list
functions with lambdas (``list_transform``/``transform``, ``flatten``, ``filter``), so the
engine evaluates the whole view and no Python runs per row. Each row is a list of column
values, exploded once at the end. The two dialects differ only in the primitives of
:class:`Dialect`.

``repeat`` is unrolled to :data:`REPEAT_DEPTH` levels (SQL has no recursive expressions, and
DuckDB's planning time doubles with each level); a resource nested deeper makes the query fail
with a message saying so, never a silent cut.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import json
import re
import uuid
import zlib
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from magstat.errors import InvalidInputError
from magstat.views.definition import INTEGER_TYPES, STRING_TYPES, Select, View, parse_view
from magstat.views.engines import _LONG_INTEGER, ndjson_files, read_resources, write_temp_ndjson
from magstat.views.fhirpath import Node

__all__ = ["REPEAT_DEPTH", "DuckDBEngine", "SparkEngine", "compile_sql"]

REPEAT_DEPTH = 8

_ERROR_MARK = "magstat-view-error: "


def _q(text: str) -> str:
    """An SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


class Dialect(ABC):
    """The primitives one SQL engine needs; subclasses fill them in."""

    name = ""
    base = 0  # index of the first list element

    @abstractmethod
    def lam(self, params: Sequence[str], body: str) -> str: ...

    @abstractmethod
    def transform(self, items: str, params: Sequence[str], body: str) -> str: ...

    @abstractmethod
    def filter(self, items: str, param: str, body: str) -> str: ...

    @abstractmethod
    def empty(self) -> str: ...

    @abstractmethod
    def array(self, items: Sequence[str]) -> str: ...

    @abstractmethod
    def size(self, items: str) -> str: ...

    @abstractmethod
    def at(self, items: str, index: str) -> str:
        """Element ``index`` (0-based SQL integer), NULL when out of range."""

    @abstractmethod
    def child(self, elem: str, key: str) -> str: ...

    @abstractmethod
    def kind(self, elem: str) -> str:
        """'object', 'array', 'string', 'number', 'boolean' or 'null'."""

    @abstractmethod
    def as_str(self, elem: str) -> str: ...

    @abstractmethod
    def as_num(self, elem: str) -> str: ...

    @abstractmethod
    def as_bool(self, elem: str) -> str: ...

    @abstractmethod
    def text(self, elem: str) -> str:
        """The JSON text of an element."""

    @abstractmethod
    def from_sql(self, value: str) -> str:
        """An element from an SQL string, number or boolean."""

    @abstractmethod
    def literal(self, value: Any) -> str: ...

    @abstractmethod
    def json_array(self, items: str) -> str:
        """One element holding the list as a JSON array."""

    @abstractmethod
    def error(self, message: str, type_of: str) -> str: ...

    @abstractmethod
    def decimal_scale(self, elem: str) -> str:
        """The number of decimal places a JSON number was written with."""

    def concat(self, a: str, b: str) -> str:
        return f"concat({a}, {b})"

    def flatten(self, items: str) -> str:
        return f"flatten({items})"

    @abstractmethod
    def slice(self, items: str, start: int, length: int) -> str: ...

    @abstractmethod
    def regex_matches(self, text: str, pattern: str) -> str: ...

    @abstractmethod
    def last_day(self, date_text: str) -> str: ...

    @abstractmethod
    def join(self, strings: str, sep: str) -> str: ...

    @abstractmethod
    def elem_type(self) -> str: ...

    def root_members(self, keys: str, key: str, at: int) -> str | None:
        """A member of the resource, read from its members extracted once per resource.

        ``None`` where reading it from the resource costs no more (Spark's parsed VARIANT).
        ``keys`` is the column of those members, ``at`` the 0-based position of ``key``.
        """
        return None

    def extract_members(self, resource: str, keys: Sequence[str]) -> str | None:
        """SQL: the members ``keys`` of ``resource``, in one parse (see :meth:`root_members`).

        ``None`` where the dialect reads members from the resource itself.
        """
        return None

    def type_is_member(self, value: str, rtype: str) -> str:
        """SQL: whether a ``resourceType`` value extracted by :meth:`extract_members` is ``rtype``."""
        return f"{self.as_str(value)} = {_q(rtype)}"

    @abstractmethod
    def type_is(self, resource: str, rtype: str) -> str:
        """SQL: whether the resource's ``resourceType`` is the string ``rtype``."""


class DuckDBDialect(Dialect):
    """DuckDB: elements are ``JSON``, lists are 1-based, lambdas are ``lambda x: ...``."""

    name = "duckdb"
    base = 1

    def lam(self, params: Sequence[str], body: str) -> str:
        return f"lambda {', '.join(params)}: {body}"

    def transform(self, items: str, params: Sequence[str], body: str) -> str:
        return f"list_transform({items}, {self.lam(params, body)})"

    def filter(self, items: str, param: str, body: str) -> str:
        return f"list_filter({items}, {self.lam([param], body)})"

    def empty(self) -> str:
        return "CAST([] AS JSON[])"

    def array(self, items: Sequence[str]) -> str:
        return "[" + ", ".join(items) + "]"

    def size(self, items: str) -> str:
        return f"len({items})"

    def at(self, items: str, index: str) -> str:
        return f"list_extract({items}, ({index}) + 1)"

    def concat(self, a: str, b: str) -> str:
        return f"list_concat({a}, {b})"

    def child(self, elem: str, key: str) -> str:
        # The element is parsed once for the key (a JSON text is parsed again by every function
        # that reads it); the value found, much smaller, is then judged by its type.
        name = f"x_{elem}" if elem.isidentifier() else f"x_{zlib.crc32(elem.encode())}"
        return self.members(f"json_extract({elem}, {self.key_path(key)})", name)

    def root_members(self, keys: str, key: str, at: int) -> str | None:
        return self.members(self.at(keys, str(at)), f"x_{keys}")

    def extract_members(self, resource: str, keys: Sequence[str]) -> str | None:
        return f"json_extract({resource}, [{', '.join(self.key_path(k) for k in keys)}])"

    def type_is(self, resource: str, rtype: str) -> str:
        # A string gives its characters, anything else its JSON text, which is never a type name.
        return f"json_extract_string({resource}, {self.key_path('resourceType')}) = {_q(rtype)}"

    @staticmethod
    def key_path(key: str) -> str:
        """The JSON path of one member, quoted as an SQL literal."""
        return _q('$."' + key.replace('"', '\\"') + '"')

    def members(self, value: str, name: str) -> str:
        """The collection a member's value gives.

        Nothing when absent or null, an array's items (nulls left out), else the value alone.
        ``name`` is the lambda parameter it is bound to.
        """
        kind = f"coalesce(json_type({name}), 'NULL')"
        return self.at(
            self.transform(
                f"[{value}]",
                [name],
                f"CASE {kind} WHEN 'NULL' THEN {self.empty()} "
                f"WHEN 'ARRAY' THEN list_filter(CAST(json_extract({name}, '$[*]') AS JSON[]), "
                f"lambda n: json_type(n) <> 'NULL') ELSE [{name}] END",
            ),
            "0",
        )

    def kind(self, elem: str) -> str:
        return (
            f"CASE json_type({elem}) WHEN 'VARCHAR' THEN 'string' WHEN 'BOOLEAN' THEN 'boolean' "
            f"WHEN 'OBJECT' THEN 'object' WHEN 'ARRAY' THEN 'array' WHEN 'NULL' THEN 'null' ELSE 'number' END"
        )

    def as_str(self, elem: str) -> str:
        return f"json_extract_string({elem}, '$')"

    def as_num(self, elem: str) -> str:
        return f"TRY_CAST(json_extract_string({elem}, '$') AS DOUBLE)"

    def as_bool(self, elem: str) -> str:
        return f"TRY_CAST(json_extract_string({elem}, '$') AS BOOLEAN)"

    def text(self, elem: str) -> str:
        return f"CAST({elem} AS VARCHAR)"

    def from_sql(self, value: str) -> str:
        return f"to_json({value})"

    def literal(self, value: Any) -> str:
        # Written as DuckDB writes JSON it extracts (UTF-8 kept), so that texts compare equal.
        return f"CAST({_q(json.dumps(value, ensure_ascii=False))} AS JSON)"

    def json_array(self, items: str) -> str:
        return f"to_json({items})"

    def decimal_scale(self, elem: str) -> str:
        text = self.text(elem)
        return f"(CASE WHEN contains({text}, '.') THEN length({text}) - strpos({text}, '.') ELSE 0 END)"

    def error(self, message: str, type_of: str) -> str:
        return f"CAST(error({_q(_ERROR_MARK + message)}) AS {type_of})"

    def flatten(self, items: str) -> str:
        return f"flatten({items})"

    def slice(self, items: str, start: int, length: int) -> str:
        if start < 0:
            return f"({items})[{start}:]"
        return f"({items})[{start + 1}:{start + length}]"

    def regex_matches(self, text: str, pattern: str) -> str:
        return f"regexp_full_match({text}, {_q(pattern)})"

    def last_day(self, date_text: str) -> str:
        return f"CAST(last_day(CAST({date_text} AS DATE)) AS VARCHAR)"

    def join(self, strings: str, sep: str) -> str:
        return f"array_to_string({strings}, {sep})"

    def elem_type(self) -> str:
        return "JSON"


class SparkDialect(Dialect):
    """Spark SQL: elements are ``VARIANT``, lists are 0-based, lambdas are ``x -> ...``."""

    name = "spark"
    base = 0

    def lam(self, params: Sequence[str], body: str) -> str:
        if len(params) == 1:
            return f"{params[0]} -> {body}"
        return f"({', '.join(params)}) -> {body}"

    def transform(self, items: str, params: Sequence[str], body: str) -> str:
        return f"transform({items}, {self.lam(params, body)})"

    def filter(self, items: str, param: str, body: str) -> str:
        return f"filter({items}, {self.lam([param], body)})"

    def empty(self) -> str:
        return "CAST(array() AS ARRAY<VARIANT>)"

    def array(self, items: Sequence[str]) -> str:
        return "array(" + ", ".join(items) + ")"

    def size(self, items: str) -> str:
        return f"size({items})"

    def at(self, items: str, index: str) -> str:
        return f"get({items}, {index})"

    def child(self, elem: str, key: str) -> str:
        path = _q("$['" + key + "']")
        value = f"variant_get({elem}, {path})"
        # An array casts to ARRAY<VARIANT>; anything else gives NULL, then becomes a one-item list.
        return (
            f"coalesce(try_variant_get({elem}, {path}, 'ARRAY<VARIANT>'), "
            f"CASE WHEN {value} IS NULL OR is_variant_null({value}) THEN {self.empty()} ELSE array({value}) END)"
        )

    def type_is(self, resource: str, rtype: str) -> str:
        return (
            f"(schema_of_variant(variant_get({resource}, '$.resourceType')) = 'STRING' AND "
            f"try_variant_get({resource}, '$.resourceType', 'string') = {_q(rtype)})"
        )

    def kind(self, elem: str) -> str:
        s = f"schema_of_variant({elem})"
        return (
            f"CASE WHEN {s} = 'STRING' THEN 'string' WHEN {s} = 'BOOLEAN' THEN 'boolean' "
            f"WHEN startswith({s}, 'OBJECT') THEN 'object' WHEN startswith({s}, 'ARRAY') THEN 'array' "
            f"WHEN is_variant_null({elem}) THEN 'null' ELSE 'number' END"
        )

    def as_str(self, elem: str) -> str:
        return f"variant_get({elem}, '$', 'string')"

    def as_num(self, elem: str) -> str:
        return f"try_variant_get({elem}, '$', 'double')"

    def as_bool(self, elem: str) -> str:
        return f"try_variant_get({elem}, '$', 'boolean')"

    def text(self, elem: str) -> str:
        return f"to_json({elem})"

    def from_sql(self, value: str) -> str:
        return f"CAST({value} AS VARIANT)"

    def literal(self, value: Any) -> str:
        return f"parse_json({_q(json.dumps(value))})"

    def json_array(self, items: str) -> str:
        return f"parse_json(concat('[', array_join(transform({items}, j -> to_json(j)), ','), ']'))"

    def decimal_scale(self, elem: str) -> str:
        # A variant keeps 1.0 as DECIMAL(2,1) but prints it as 1: the scale is in its type.
        schema = f"schema_of_variant({elem})"
        text = self.text(elem)
        return (
            f"(CASE WHEN startswith({schema}, 'DECIMAL') THEN CAST(regexp_extract({schema}, ',([0-9]+)', 1) AS INT) "
            f"WHEN contains({text}, '.') THEN length({text}) - instr({text}, '.') ELSE 0 END)"
        )

    def error(self, message: str, type_of: str) -> str:
        return f"CAST(raise_error({_q(_ERROR_MARK + message)}) AS {type_of})"

    def slice(self, items: str, start: int, length: int) -> str:
        if start < 0:
            return (
                f"CASE WHEN size({items}) = 0 THEN {self.empty()} ELSE slice({items}, {start}, {length}) END"
            )
        return f"slice({items}, {start + 1}, {length})"

    def regex_matches(self, text: str, pattern: str) -> str:
        return f"({text} RLIKE {_q('^' + pattern + '$')})"

    def last_day(self, date_text: str) -> str:
        return f"CAST(last_day(CAST({date_text} AS DATE)) AS STRING)"

    def join(self, strings: str, sep: str) -> str:
        return f"array_join({strings}, {sep})"

    def elem_type(self) -> str:
        return "VARIANT"


ROOT = "r"
"""The column (and lambda-free name) of the resource in a compiled view."""
ROOT_KEYS = "rk_"
"""The column of the resource's members the view reads, where the dialect extracts them once."""


class _Compiler:
    """FHIRPath tree -> SQL list expression, for one dialect."""

    def __init__(self, dialect: Dialect, view: View) -> None:
        self.d = dialect
        self.view = view
        self.counter = 0
        self.booleans: dict[str, str] = {}
        """The SQL boolean behind each collection :meth:`bool_coll` made, for :meth:`truth`."""
        self.root_keys: list[str] = []
        """Members of the resource the view reads, in first-use order (see :meth:`member`)."""

    def var(self, prefix: str = "v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def let(self, value: str, body: Any) -> str:
        """Bind ``value`` to a fresh name once, for a body that uses it several times."""
        name = self.var("t")
        return f"{self.d.at(self.d.transform(self.d.array([value]), [name], body(name)), '0')}"

    def root_member(self, key: str) -> str:
        """A member of the resource itself (``id``, ``code`` ...), the start of most paths.

        Where the dialect asks for it, every member the view reads is extracted from the
        resource in one parse (:meth:`Dialect.extract_members`, named ``ROOT_KEYS``) and read
        from there, instead of each path parsing the whole resource again.
        """
        if key not in self.root_keys:
            self.root_keys.append(key)
        found = self.d.root_members(ROOT_KEYS, key, self.root_keys.index(key))
        return found if found is not None else self.d.child(ROOT, key)

    def member_of(self, elem: str, key: str) -> str:
        """Member ``key`` of ``elem``: of the resource through :meth:`root_member`."""
        return self.root_member(key) if elem == ROOT else self.d.child(elem, key)

    def bool_coll(self, value: str) -> str:
        coll = self.let(
            value,
            lambda b: (
                f"CASE WHEN {b} IS NULL THEN {self.d.empty()} ELSE {self.d.array([self.d.from_sql(b)])} END"
            ),
        )
        self.booleans[coll] = value
        return coll

    def truth(self, coll: str) -> str:
        d = self.d
        known = self.booleans.get(coll)
        if known is not None:  # the collection of an SQL boolean: its truth is that boolean
            return f"({known})"
        return self.let(
            coll,
            lambda c: (
                f"CASE WHEN {d.size(c)} = 0 THEN NULL "
                f"WHEN {d.kind(d.at(c, '0'))} = 'boolean' THEN {d.as_bool(d.at(c, '0'))} ELSE true END"
            ),
        )

    def map_flat(self, coll: str, body: Any) -> str:
        v = self.var()
        return self.d.flatten(self.d.transform(coll, [v], body(v)))

    def type_check(self, elem: str, type_name: str) -> str:
        d = self.d
        short = type_name.rsplit(".", maxsplit=1)[-1]
        if short in ("boolean", "Boolean"):
            return f"({d.kind(elem)} = 'boolean')"
        if short in INTEGER_TYPES or short == "Integer":
            return f"({d.kind(elem)} = 'number' AND NOT contains({d.text(elem)}, '.'))"
        if short in ("decimal", "Decimal"):
            return f"({d.kind(elem)} = 'number')"
        if short in STRING_TYPES or short in ("String", "Date", "DateTime", "Time"):
            return f"({d.kind(elem)} = 'string')"
        return f"({d.kind(elem)} = 'object')"

    def node(self, node: Node, ctx: str, idx: str) -> str:
        d = self.d
        kind = node[0]
        if kind == "lit":
            if node[1] == "empty":
                return d.empty()
            return d.array([d.literal(node[2])])
        if kind == "const":
            if node[1] == "rowIndex":
                return d.array([d.from_sql(f"CAST({idx} AS BIGINT)")])
            return d.array([d.literal(self.view.constants[node[1]].value)])
        if kind == "this":
            return ctx
        if kind == "member":
            if node[1] is None and ctx == d.array([ROOT]):
                return self.root_member(node[2])
            source = ctx if node[1] is None else self.node(node[1], ctx, idx)
            return self.map_flat(source, lambda v: d.child(v, node[2]))
        if kind == "index":
            source = self.node(node[1], ctx, idx)
            at = self.node(node[2], ctx, idx)
            position = f"CAST({d.as_num(d.at(at, '0'))} AS INTEGER)"
            return self.let(
                d.at(source, position),
                lambda e: f"CASE WHEN {e} IS NULL THEN {d.empty()} ELSE {d.array([e])} END",
            )
        if kind == "neg":
            source = self.node(node[1], ctx, idx)
            v = self.var()
            return d.transform(source, [v], d.from_sql(f"-({d.as_num(v)})"))
        if kind == "binop":
            strings = self.string_literals(node[3])
            if strings is not None and (node[1] == "in" or (node[1] in ("=", "!=") and len(strings) == 1)):
                return self.compare_strings(node[1], self.node(node[2], ctx, idx), strings)
            return self.binop(node[1], self.node(node[2], ctx, idx), self.node(node[3], ctx, idx))
        return self.call(node, ctx, idx)

    def string_literals(self, node: Node) -> list[str] | None:
        """The strings of a string literal or a union of them (``'a' | 'b'``), else ``None``."""
        if node[0] == "lit" and node[1] == "string":
            return [node[2]]
        if node[0] == "binop" and node[1] == "|":
            left, right = self.string_literals(node[2]), self.string_literals(node[3])
            if left is not None and right is not None:
                return left + right
        return None

    def compare_strings(self, op: str, left: str, values: list[str]) -> str:
        """``left = 'x'``, ``left != 'x'`` or ``left in ('x' | 'y' ...)``, the strings known here.

        As :meth:`binop` gives them (a string equals only a string of the same characters;
        empty when ``left`` is; several items compared as lists, so never equal), without
        building the literals' collection on every row.
        """
        d = self.d
        listed = ", ".join(_q(v) for v in dict.fromkeys(values))

        def test(a: str) -> str:
            x = d.at(a, "0")
            if op == "in":  # the first item, as membership in binop
                hit = f"({d.kind(x)} = 'string' AND {d.as_str(x)} IN ({listed}))"
                return f"CASE WHEN {d.size(a)} = 0 THEN NULL ELSE {hit} END"
            negate = "NOT " if op == "!=" else ""
            hit = f"({d.kind(x)} = 'string' AND {d.as_str(x)} = {listed})"
            return (
                f"CASE WHEN {d.size(a)} = 0 THEN NULL WHEN {d.size(a)} = 1 THEN {negate}{hit} "
                f"ELSE {negate}false END"
            )

        return self.bool_coll(self.let(left, test))

    def elem_eq(self, x: str, y: str) -> str:
        d = self.d
        return (
            f"(CASE WHEN {d.kind(x)} = 'number' AND {d.kind(y)} = 'number' THEN {d.as_num(x)} = {d.as_num(y)} "
            f"WHEN {d.kind(x)} = 'string' AND {d.kind(y)} = 'string' THEN {d.as_str(x)} = {d.as_str(y)} "
            f"ELSE {d.text(x)} = {d.text(y)} END)"
        )

    def binop(self, op: str, left: str, right: str) -> str:
        d = self.d
        if op in ("and", "or", "xor", "implies"):
            a, b = self.truth(left), self.truth(right)
            sql = {
                "and": f"({a}) AND ({b})",
                "or": f"({a}) OR ({b})",
                "xor": f"({a}) <> ({b})",
                "implies": f"(NOT ({a})) OR ({b})",
            }[op]
            return self.bool_coll(sql)
        if op in ("=", "!=", "~", "!~"):
            negate = "NOT " if op.startswith("!") else ""

            def equality(a: str, b: str) -> str:
                v = self.var()
                texts_a = d.transform(a, [v], d.text(v))
                w = self.var()
                texts_b = d.transform(b, [w], d.text(w))
                return (
                    f"CASE WHEN {d.size(a)} = 0 OR {d.size(b)} = 0 THEN NULL "
                    f"WHEN {d.size(a)} = 1 AND {d.size(b)} = 1 THEN {negate}{self.elem_eq(d.at(a, '0'), d.at(b, '0'))} "
                    f"ELSE {negate}({texts_a} = {texts_b}) END"
                )

            return self.bool_coll(self.let(left, lambda a: self.let(right, lambda b: equality(a, b))))
        if op in ("<", ">", "<=", ">="):

            def comparison(a: str, b: str) -> str:
                x, y = d.at(a, "0"), d.at(b, "0")
                return (
                    f"CASE WHEN {d.size(a)} <> 1 OR {d.size(b)} <> 1 THEN NULL "
                    f"WHEN {d.kind(x)} = 'number' AND {d.kind(y)} = 'number' THEN {d.as_num(x)} {op} {d.as_num(y)} "
                    f"WHEN {d.kind(x)} = 'string' AND {d.kind(y)} = 'string' THEN {d.as_str(x)} {op} {d.as_str(y)} "
                    "ELSE NULL END"
                )

            return self.bool_coll(self.let(left, lambda a: self.let(right, lambda b: comparison(a, b))))
        if op == "|":
            return d.concat(left, right)
        if op in ("in", "contains"):
            needle, haystack = (left, right) if op == "in" else (right, left)

            def membership(n: str, h: str) -> str:
                v = self.var()
                texts = d.transform(h, [v], d.text(v))
                contains = "list_contains" if d.name == "duckdb" else "array_contains"
                return f"CASE WHEN {d.size(n)} = 0 THEN NULL ELSE {contains}({texts}, {d.text(d.at(n, '0'))}) END"

            return self.bool_coll(self.let(needle, lambda n: self.let(haystack, lambda h: membership(n, h))))
        return self.arithmetic(op, left, right)

    def arithmetic(self, op: str, left: str, right: str) -> str:
        d = self.d

        def apply(a: str, b: str) -> str:
            x, y = d.at(a, "0"), d.at(b, "0")
            if op == "&":
                sx = f"coalesce({d.as_str(x)}, '')"
                sy = f"coalesce({d.as_str(y)}, '')"
                return d.array([d.from_sql(f"concat({sx}, {sy})")])
            both_int = (
                f"{d.kind(x)} = 'number' AND {d.kind(y)} = 'number' "
                f"AND NOT contains({d.text(x)}, '.') AND NOT contains({d.text(y)}, '.')"
            )
            nx, ny = d.as_num(x), d.as_num(y)
            ix, iy = f"CAST({nx} AS BIGINT)", f"CAST({ny} AS BIGINT)"
            if op in ("+", "-", "*"):
                value = f"CASE WHEN {both_int} THEN {d.from_sql(f'{ix} {op} {iy}')} ELSE {d.from_sql(f'{nx} {op} {ny}')} END"
            elif op == "/":
                value = f"CASE WHEN {ny} = 0 THEN NULL ELSE {d.from_sql(f'{nx} / {ny}')} END"
            elif op == "div":
                value = f"CASE WHEN {ny} = 0 THEN NULL ELSE {d.from_sql(f'CAST(floor({nx} / {ny}) AS BIGINT)')} END"
            else:
                value = (
                    f"CASE WHEN {ny} = 0 THEN NULL ELSE {d.from_sql(f'{nx} - {ny} * floor({nx} / {ny})')} END"
                )
            if op == "+":
                strings = f"{d.kind(x)} = 'string' AND {d.kind(y)} = 'string'"
                value = f"CASE WHEN {strings} THEN {d.from_sql(f'concat({d.as_str(x)}, {d.as_str(y)})')} ELSE {value} END"
            numbers = f"{d.kind(x)} = 'number' AND {d.kind(y)} = 'number'"
            if op == "+":
                numbers = f"({numbers}) OR ({d.kind(x)} = 'string' AND {d.kind(y)} = 'string')"
            return (
                f"CASE WHEN {d.size(a)} <> 1 OR {d.size(b)} <> 1 OR NOT ({numbers}) THEN {d.empty()} "
                f"ELSE coalesce({d.array([value])}, {d.empty()}) END"
            )

        if op == "&":
            return self.let(left, lambda a: self.let(right, lambda b: apply_concat(a, b)))

        def apply_concat(a: str, b: str) -> str:
            sa = f"CASE WHEN {d.size(a)} = 0 THEN '' ELSE {d.as_str(d.at(a, '0'))} END"
            sb = f"CASE WHEN {d.size(b)} = 0 THEN '' ELSE {d.as_str(d.at(b, '0'))} END"
            return d.array([d.from_sql(f"concat({sa}, {sb})")])

        return self.let(left, lambda a: self.let(right, lambda b: apply(a, b)))

    def call(self, node: Node, ctx: str, idx: str) -> str:
        d = self.d
        _, base_node, name, args = node
        if name == "ofType" and base_node is not None and base_node[0] == "member":
            type_name = args[0][1]
            key = base_node[2]
            choice = key + type_name[:1].upper() + type_name[1:]
            owner = ctx if base_node[1] is None else self.node(base_node[1], ctx, idx)

            def fused(v: str) -> str:
                e = self.var("e")
                return d.concat(
                    self.member_of(v, choice),
                    d.filter(self.member_of(v, key), e, self.type_check(e, type_name)),
                )

            if owner == d.array([ROOT]):
                return fused(ROOT)  # a choice of the resource itself (Observation.value[x])
            return self.map_flat(owner, fused)
        source = ctx if base_node is None else self.node(base_node, ctx, idx)
        if name == "ofType":
            e = self.var("e")
            return d.filter(source, e, self.type_check(e, args[0][1]))
        if name in ("where", "exists", "all") and args:
            v = self.var()
            cond = self.truth(self.node(args[0], d.array([v]), idx))
            if name == "all":
                failing = d.filter(source, v, f"coalesce({cond}, false) = false")
                return self.bool_coll(f"{d.size(failing)} = 0")
            kept = d.filter(source, v, f"coalesce({cond}, false)")
            if name == "where":
                return kept
            return self.bool_coll(f"{d.size(kept)} > 0")
        if name == "select" and args:
            return self.map_flat(source, lambda v: self.node(args[0], d.array([v]), idx))
        if name == "exists":
            return self.bool_coll(f"{d.size(source)} > 0")
        if name == "empty":
            return self.bool_coll(f"{d.size(source)} = 0")
        if name == "count":
            return d.array([d.from_sql(f"CAST({d.size(source)} AS BIGINT)")])
        if name == "first":
            return d.slice(source, 0, 1)
        if name == "last":
            return d.slice(source, -1, 1)
        if name == "not":
            return self.bool_coll(f"NOT ({self.truth(source)})")
        if name == "join":
            if args and args[0][0] != "lit":
                raise InvalidInputError(
                    "path", "join() takes a literal separator in the SQL back ends", value=args[0]
                )
            sep = _q(str(args[0][2])) if args else "''"
            v = self.var()
            return d.array([d.from_sql(d.join(d.transform(source, [v], d.as_str(v)), sep))])
        if name == "extension":
            if not args or args[0][0] != "lit":
                raise InvalidInputError("path", "extension() takes a literal URL", value=args)
            url = _q(str(args[0][2]))
            extensions = self.map_flat(source, lambda v: d.child(v, "extension"))
            e = self.var("e")
            url_of = self.map_flat(d.array([e]), lambda u: d.child(u, "url"))
            return d.filter(extensions, e, f"coalesce({d.as_str(d.at(url_of, '0'))} = {url}, false)")
        if name == "getResourceKey":
            return self.map_flat(source, lambda v: d.child(v, "id"))
        if name == "getReferenceKey":
            return self.reference_key(source, args[0][1] if args else None)
        if name in ("lowBoundary", "highBoundary"):
            hint = None
            if base_node is not None and base_node[0] == "call" and base_node[2] == "ofType":
                hint = base_node[3][0][1]
            v = self.var()
            bounded = d.transform(source, [v], self.boundary(v, name == "highBoundary", hint))
            e = self.var("e")
            return d.filter(bounded, e, f"{e} IS NOT NULL")
        raise InvalidInputError("path", f"the function {name}() is not supported in views", value=name)

    def reference_key(self, source: str, ref_type: str | None) -> str:
        d = self.d
        pattern = "^(.*/)?([A-Za-z]+)/([^/]+)$"

        def key(v: str) -> str:
            refs = d.child(v, "reference")

            def pick(r: str) -> str:
                def parts(ref: str) -> str:
                    # The id is the pattern's last group, never empty where it matches: an empty
                    # id is no match. Each regular expression runs once, on the bound reference.
                    rid = f"regexp_extract({ref}, {_q(pattern)}, 3)"
                    type_ok = (
                        "true"
                        if ref_type is None
                        else f"regexp_extract({ref}, {_q(pattern)}, 2) = {_q(ref_type)}"
                    )
                    return self.let(
                        rid,
                        lambda i: (
                            f"CASE WHEN {i} <> '' AND {type_ok} THEN {d.array([d.from_sql(i)])} ELSE {d.empty()} END"
                        ),
                    )

                ref = f"regexp_replace({d.as_str(d.at(r, '0'))}, '/_history/[^/]*$', '')"
                return f"CASE WHEN {d.size(r)} = 1 THEN {self.let(ref, parts)} ELSE {d.empty()} END"

            return self.let(refs, pick)

        return self.map_flat(source, key)

    def boundary(self, elem: str, high: bool, hint: str | None) -> str:
        d = self.d
        s = d.as_str(elem)
        date_re = r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?"
        time_re = r"[0-9]{2}(:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"
        datetime_full = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})?"

        def date_of(text: str) -> str:
            month_start = f"concat({text}, '-01')"
            if high:
                return (
                    f"CASE WHEN length({text}) = 4 THEN concat({text}, '-12-31') "
                    f"WHEN length({text}) = 7 THEN {d.last_day(month_start)} ELSE {text} END"
                )
            return (
                f"CASE WHEN length({text}) = 4 THEN concat({text}, '-01-01') "
                f"WHEN length({text}) = 7 THEN concat({text}, '-01') ELSE {text} END"
            )

        fill = "23:59:59.999" if high else "00:00:00.000"
        zone = "-12:00" if high else "+14:00"
        frac = ".999" if high else ".000"
        date_time = (
            f"CASE WHEN {d.regex_matches(s, date_re)} THEN concat({date_of(s)}, 'T{fill}{zone}') "
            f"WHEN {d.regex_matches(s, datetime_full)} THEN "
            f"CASE WHEN length({s}) = 19 THEN concat({s}, '{frac}{zone}') "
            f"ELSE concat(substr({s}, 1, 19), '{frac}', substr({s}, 20)) END "
            "ELSE NULL END"
        )
        time_end = "59.999" if high else "00.000"
        minute_end = "59:59.999" if high else "00:00.000"
        time = (
            f"CASE WHEN length({s}) = 8 THEN concat({s}, '{frac}') "
            f"WHEN length({s}) = 5 THEN concat({s}, ':{time_end}') "
            f"WHEN length({s}) = 2 THEN concat({s}, ':{minute_end}') ELSE NULL END"
        )
        scale = d.decimal_scale(elem)
        # round(x * 10^(s+1)) +/- 5, over 10^(s+1): exact for the digits given, with no
        # run-time scale argument to round() (Spark wants that one constant).
        power = f"power(10, {scale} + 1)"
        number = d.from_sql(f"(round({d.as_num(elem)} * {power}) {'+' if high else '-'} 5) / {power}")
        if hint in ("dateTime", "instant"):
            return f"CASE WHEN {d.kind(elem)} = 'string' THEN {d.from_sql(date_time)} END"
        if hint == "time":
            return f"CASE WHEN {d.kind(elem)} = 'string' AND {d.regex_matches(s, time_re)} THEN {d.from_sql(time)} END"
        return (
            f"CASE WHEN {d.kind(elem)} = 'number' THEN {number} "
            f"WHEN {d.kind(elem)} <> 'string' THEN NULL "
            f"WHEN {d.regex_matches(s, date_re)} THEN {d.from_sql(date_of(s))} "
            f"WHEN contains({s}, 'T') THEN {d.from_sql(date_time)} "
            f"WHEN {d.regex_matches(s, time_re)} THEN {d.from_sql(time)} ELSE NULL END"
        )

    # Rows -------------------------------------------------------------------------------

    def cross(self, parts: list[str]) -> str:
        d = self.d
        rows = parts[0]
        for part in parts[1:]:
            a, b = self.var("a"), self.var("b")
            rows = d.flatten(d.transform(rows, [a], d.transform(part, [b], d.concat(a, b))))
        return rows

    def null_row(self, width: int) -> str:
        return self.d.array([self.d.array([f"CAST(NULL AS {self.d.elem_type()})"] * width)])

    def column_value(self, column: Any, ctx: str, idx: str) -> str:
        d = self.d
        coll = self.node(column.node, ctx, idx)
        if column.collection:
            return d.json_array(coll)
        message = f"column {column.name}: the path gave several values but the column is not a collection"
        return self.let(
            coll,
            lambda c: (
                f"CASE WHEN {d.size(c)} > 1 THEN {d.error(message, d.elem_type())} ELSE {d.at(c, '0')} END"
            ),
        )

    def body(self, select: Select, elem: str | None, idx: str) -> str:
        d = self.d
        ctx = d.empty() if elem is None else d.array([elem])
        parts: list[str] = []
        if select.columns:
            parts.append(d.array([d.array([self.column_value(c, ctx, idx) for c in select.columns])]))
        if elem is None:
            parts.extend(self.null_row(len(s.names)) for s in select.selects)
            if select.union:
                parts.append(self.null_row(len(select.union[0].names)))
        else:
            parts.extend(self.select(s, elem, idx) for s in select.selects)
            if select.union:
                branches = [self.select(s, elem, idx) for s in select.union]
                union = branches[0]
                for branch in branches[1:]:
                    union = d.concat(union, branch)
                parts.append(union)
        return self.cross(parts)

    def select(self, select: Select, elem: str, idx: str) -> str:
        d = self.d
        if select.iterate is None:
            return self.body(select, elem, idx)
        ctx = d.array([elem])
        if select.iterate == "repeat":
            items = self.repeat(select, elem, idx, REPEAT_DEPTH)
        else:
            items = self.node(select.paths[0], ctx, idx)
        v, i = self.var(), self.var("i")
        index = f"({i} - 1)" if d.base == 1 else i
        body = self.body(select, v, index)
        if select.iterate == "forEachOrNull":
            null_rows = self.body(select, None, "0")
            return self.let(
                items,
                lambda t: (
                    f"CASE WHEN {d.size(t)} = 0 THEN {null_rows} ELSE {d.flatten(d.transform(t, [v, i], body))} END"
                ),
            )
        return d.flatten(d.transform(items, [v, i], body))

    def repeat(self, select: Select, elem: str, idx: str, depth: int) -> str:
        d = self.d

        def children(x: str) -> str:
            colls = [self.node(p, d.array([x]), idx) for p in select.paths]
            out = colls[0]
            for coll in colls[1:]:
                out = d.concat(out, coll)
            return out

        def level(x: str, remaining: int) -> str:
            if remaining == 0:
                message = f"repeat goes deeper than {REPEAT_DEPTH} levels, the limit of the SQL back ends"
                return (
                    f"CASE WHEN {d.size(children(x))} > 0 THEN "
                    f"{d.error(message, d.elem_type() + '[]' if d.name == 'duckdb' else 'ARRAY<VARIANT>')} "
                    f"ELSE {d.empty()} END"
                )
            c = self.var("c")
            return d.flatten(d.transform(children(x), [c], d.concat(d.array([c]), level(c, remaining - 1))))

        return level(elem, depth)

    def where(self, node: Node, elem: str) -> str:
        d = self.d
        coll = self.node(node, d.array([elem]), "0")
        message = "where: the path must give a boolean"

        def check(c: str) -> str:
            first = d.at(c, "0")
            return (
                f"CASE WHEN {d.size(c)} = 0 THEN false "
                f"WHEN {d.size(c)} > 1 OR {d.kind(first)} <> 'boolean' THEN {d.error(message, 'BOOLEAN')} "
                f"ELSE {d.as_bool(first)} END"
            )

        return self.let(coll, check)


def compile_sql(
    view: View, dialect: Dialect, source: str, resource_column: str, carry: Sequence[str] = ()
) -> str:
    """One query giving the view's rows, one JSON value (text) per column, in column order.

    Args:
        view: the checked view.
        dialect: DuckDB or Spark.
        source: a table expression with one resource per row.
        resource_column: the column of ``source`` holding the resource (JSON or VARIANT).
        carry: columns of ``source`` passed through unchanged, before the view's columns
            (a patient key, an input order); plain SQL names chosen by the caller.

    Returns:
        The SQL text.

    """
    compiler = _Compiler(dialect, view)
    elem = ROOT
    rows = compiler.select(view.root, elem, "0")
    extracts = dialect.root_members(ROOT_KEYS, "resourceType", 0) is not None
    # The type must be that string, as in the Python evaluator (not a list holding it). Where the
    # members are extracted, the type is tested first, by itself: lines of other types (most of
    # an export's) are not parsed for the view's members.
    type_test = dialect.type_is(ROOT, view.resource)
    wheres = [compiler.where(w, elem) for w in view.where]
    if extracts and wheres:
        # The view's where paths run only on its type even if the optimiser moves them next to
        # the first test: the chain below starts with the type again, from the extracted member.
        compiler.root_member("resourceType")
        at = compiler.root_keys.index("resourceType")
        filters = [dialect.type_is_member(dialect.at(ROOT_KEYS, str(at)), view.resource), *wheres]
    else:
        filters = [*([] if extracts else [type_test]), *wheres]
    names = view.root.names
    # A WHERE clause of several conditions may be evaluated in any order; CASE keeps the
    # resource-type test first so that other resources never reach the view's paths.
    condition = "true"
    for f in reversed(filters):
        condition = f"CASE WHEN {f} THEN {condition} ELSE false END"
    quote = '"' if dialect.name == "duckdb" else "`"
    columns = ", ".join(
        f"{dialect.text(dialect.at('row_', str(i)))} AS {quote}{n}{quote}" for i, n in enumerate(names)
    )
    explode = "unnest" if dialect.name == "duckdb" else "explode"
    kept = "".join(f"{quote}{c}{quote}, " for c in carry)
    resources = f"SELECT {kept}{resource_column} AS {ROOT} FROM {source}"  # noqa: S608
    if extracts:
        members = dialect.extract_members(ROOT, compiler.root_keys or ["resourceType"])
        resources = (
            f"SELECT {kept}{ROOT}, {members} AS {ROOT_KEYS} FROM ({resources}) AS typed_ "  # noqa: S608
            f"WHERE {type_test}"
        )
    # The query is built from the parsed view: names are checked, literals quoted by _q().
    return (
        f"SELECT {kept}{columns} FROM (SELECT {kept}{explode}({rows}) AS row_ "  # noqa: S608
        f"FROM ({resources}) AS resources_ WHERE {condition}) AS rows_"
    )


def _decode(row: Sequence[Any], names: Sequence[str]) -> dict[str, Any]:
    return {n: (None if v is None else json.loads(v)) for n, v in zip(names, row, strict=True)}


def _decode_array(text: str, names: Sequence[str]) -> dict[str, Any]:
    """A row given as the JSON array of its column values (:meth:`DuckDBEngine.query`).

    A row with twenty digits in a row goes to ``json.loads``, which keeps every digit of an
    integer beyond 64 bits (orjson would make it a float), as the Python engine does.
    """
    if _LONG_INTEGER.search(text) is None:
        try:
            return dict(zip(names, orjson.loads(text), strict=True))
        except orjson.JSONDecodeError:
            pass
    return dict(zip(names, json.loads(text), strict=True))


def _view_error(exc: Exception) -> InvalidInputError | None:
    # Only the first line is the error: the rest may quote the plan, which holds every message.
    text = str(exc).strip().split("\n")[0]
    if _ERROR_MARK in text:
        message = text.split(_ERROR_MARK, 1)[1].split("\n")[0].strip().rstrip("'\"")
        message = re.sub(r"\s+SQLSTATE: \w+$", "", message)  # Spark's error class code
        field, _, problem = message.partition(": ")
        return InvalidInputError(field, problem or message)
    return None


class DuckDBEngine:
    """Views on DuckDB, over NDJSON (plain or gzip) read by ``read_json_objects``, or Parquet."""

    name = "duckdb"

    def __init__(self) -> None:
        import duckdb  # noqa: PLC0415 - optional extra

        self._duckdb = duckdb
        self.con = duckdb.connect()
        self.dialect = DuckDBDialect()

    def sql(self, view: View, files: Sequence[Path]) -> str:
        """The query of ``view`` over NDJSON or Parquet files."""
        listing = "[" + ", ".join(_q(str(f)) for f in files) + "]"
        if files and all(f.suffix == ".parquet" for f in files):
            source = f"(SELECT CAST(resource AS JSON) AS json FROM read_parquet({listing}))"  # noqa: S608
        else:
            source = f"read_json_objects({listing}, format = 'newline_delimited')"
        return compile_sql(view, self.dialect, source, "json")

    def query(self, view: View, files: Sequence[Path]) -> str:
        """:meth:`sql` with each row as one text, the JSON array of its values in column order.

        Python then parses a row once, not once per column.
        """
        cells = ", ',', ".join(f"""coalesce("{n}", 'null')""" for n in view.root.names)
        return f"SELECT concat('[', {cells}, ']') AS row_json FROM ({self.sql(view, files)})"  # noqa: S608

    def _translate(self, exc: Exception) -> Exception:
        """The error to raise for a DuckDB error met running a view.

        An error met while the rows stream reaches Python as the Arrow stream's ``OSError``,
        with DuckDB's message.
        """
        error = _view_error(exc)
        if error is not None:
            return error
        if isinstance(exc, self._duckdb.InvalidInputException) or (
            type(exc) is OSError and str(exc).startswith("Invalid Input Error")
        ):
            # Malformed input (a line that is not JSON). DuckDB names the file, but counts its
            # lines one too far: the line is found again here and named as the Python engine does.
            first = str(exc).strip().split("\n")[0]
            named = re.search(r'in file "([^"]+)"', first)
            found = _first_malformed_line(Path(named.group(1))) if named else None
            return found or InvalidInputError("--input", first)
        if isinstance(exc, self._duckdb.IOException) or (
            type(exc) is OSError and str(exc).startswith("IO Error")
        ):
            # A file that cannot be read (a damaged gzip stream): DuckDB names it.
            first = str(exc).strip().split("\n")[0]
            return InvalidInputError("--input", f"a file could not be read: {first}")
        return exc

    def _rows(self, view: View, files: Sequence[Path], batch: int = 8192) -> Iterator[dict[str, Any]]:
        """The rows of ``view`` over ``files``, streamed in batches (memory does not grow with them)."""
        names = list(view.root.names)
        try:
            reader = self.con.sql(self.query(view, files)).to_arrow_reader(batch_size=batch)
            for chunk in reader:
                for text in chunk.column(0).to_pylist():
                    yield _decode_array(text, names)
        except (self._duckdb.Error, OSError) as exc:
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from None

    def evaluate(
        self, raw_view: object, resources: Sequence[dict[str, Any]]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """Rows of a view over resources in memory (written to a temporary NDJSON file)."""
        view = parse_view(raw_view)
        path = write_temp_ndjson(resources)
        try:
            rows = list(self._rows(view, [path]))
        finally:
            path.unlink()
        return list(view.root.names), rows

    def run(self, view: View, source: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
        """Rows of a view over NDJSON/Parquet files (a JSON array or Bundle goes through a temporary file).

        The rows are streamed as the caller reads them; a temporary file lives until then.
        """
        files, temp = _source_files(source)

        def rows() -> Generator[dict[str, Any], None, None]:
            try:
                yield from self._rows(view, files)
            finally:
                if temp is not None:
                    temp.unlink(missing_ok=True)

        return list(view.root.names), _streamed(rows())

    def close(self) -> None:
        """Close the connection."""
        self.con.close()


def _java_view_error(exc: Exception) -> InvalidInputError | None:
    """:func:`_view_error` of the Java exceptions behind a Py4J error, cause by cause.

    An error met while ``toLocalIterator`` streams the rows arrives wrapped ("Exception thrown
    in awaitResult"), the view's message in one of its causes.
    """
    cause = getattr(exc, "java_exception", None)
    for _ in range(20):
        if cause is None:
            return None
        error = _view_error(Exception(str(cause.getMessage() or "")))
        if error is not None:
            return error
        cause = cause.getCause()
    return None


def _first_malformed_line(path: Path) -> InvalidInputError | None:
    """The error naming the first line of an NDJSON file that is not JSON, or the file if unreadable.

    Worded as the Python engine words it (:func:`~magstat.views.engines.read_resources`);
    ``None`` if there is none. Read only after an engine (DuckDB, Spark) refused the input.
    """
    try:
        for _ in read_resources(path):
            pass
    except InvalidInputError as err:
        return err
    except (OSError, UnicodeDecodeError, EOFError):
        return None
    return None


_SPARK_CHECKED_LINE = (
    "parse_json(CASE WHEN is_valid_utf8(value) THEN value ELSE raise_error(concat("
    f"{_q(_ERROR_MARK)}, regexp_extract(input_file_name(), '[^/]*$', 0), "
    "': cannot be read: it holds bytes that are not UTF-8')) END)"
)
"""A line of text as Spark's resource: bytes that are not UTF-8 are refused (Spark's text source
would replace them silently), worded as the Python engine words it."""


def _input_problem(files: Sequence[Path]) -> InvalidInputError | None:
    """The first input problem the Python engine's reader finds in NDJSON ``files`` (after Spark failed)."""
    for path in files:
        if path.suffix != ".parquet":
            found = _first_malformed_line(path)
            if found is not None:
                return found
    return None


def _streamed(rows: Generator[dict[str, Any], None, None]) -> Iterator[dict[str, Any]]:
    """``rows`` with its first row read now, the rest as the caller reads them.

    An error in the view itself is raised here, before the caller writes anything.
    """
    try:
        first = next(rows, None)
    except BaseException:
        rows.close()
        raise
    return _chain(first, rows)


def _chain(first: dict[str, Any] | None, rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    if first is not None:
        yield first
        yield from rest


def _source_files(source: Path) -> tuple[list[Path], Path | None]:
    if source.is_file() and source.name.endswith((".json", ".json.gz")):
        from magstat.views.engines import read_resources  # noqa: PLC0415 - avoids an import cycle

        temp = write_temp_ndjson(list(read_resources(source)))
        return [temp], temp
    if source.is_dir():
        parquet = sorted(source.glob("*.parquet"))
        if parquet:
            return parquet, None
    if source.suffix == ".parquet":
        return [source], None
    return ndjson_files(source), None


_SESSION_SQL_SETTINGS = {
    "spark.sql.shuffle.partitions": "2",
    # A view compiles to large nested lambda expressions that exceed the JVM's 64 KB method
    # limit; Spark would compile, fail and fall back to interpreting them anyway, so skip the
    # doomed code generation.
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}
"""The SQL settings of a views session, local, on a cluster or over Spark Connect."""


class SparkEngine:
    """Views on Spark SQL (local or a cluster): the same compiled query, over ``VARIANT``."""

    name = "spark"

    def __init__(self, master: str = "local[2]", remote: str | None = None, session: Any = None) -> None:
        if session is None and remote is not None:
            from pyspark.sql import SparkSession  # noqa: PLC0415 - optional extra

            # Over Spark Connect the server owns the session's static settings; only SQL settings
            # of this session can be given (the same ones as below).
            session = SparkSession.builder.remote(remote).appName("magstat-views").getOrCreate()
            for key, value in _SESSION_SQL_SETTINGS.items():
                session.conf.set(key, value)
        if session is None:
            import os  # noqa: PLC0415
            import sys  # noqa: PLC0415

            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            # Python workers must run this interpreter (with magstat importable), as the screening
            # engine's do: a session made here may be reused by a screening run in the same process.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            from pyspark.sql import SparkSession  # noqa: PLC0415 - optional extra

            builder = (
                SparkSession.builder.master(master)
                .appName("magstat-views")
                .config("spark.ui.enabled", "false")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.ui.showConsoleProgress", "false")
            )
            for key, value in _SESSION_SQL_SETTINGS.items():
                builder = builder.config(key, value)
            session = builder.getOrCreate()
            # As the screening engine: warnings are Spark's business; an error reaches the user as
            # the exception this engine translates (exit 2 for input and view problems).
            session.sparkContext.setLogLevel("ERROR")
        self.spark = session
        self.dialect = SparkDialect()

    def _fetch(self, view: View, frame: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
        from pyspark.errors import PySparkException  # noqa: PLC0415 - optional extra

        name = f"magstat_resources_{abs(hash(id(frame)))}"
        frame.createOrReplaceTempView(name)
        query = compile_sql(view, self.dialect, name, "parse_json(value)")
        try:
            rows = [tuple(r) for r in self.spark.sql(query).collect()]
        except (PySparkException, Exception) as exc:  # Py4J errors are not PySparkException subclasses
            error = _view_error(exc)
            if error is not None:
                raise error from None
            raise
        finally:
            self.spark.catalog.dropTempView(name)
        return list(view.root.names), rows

    def evaluate(
        self, raw_view: object, resources: Sequence[dict[str, Any]]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """Rows of a view over resources in memory."""
        view = parse_view(raw_view)
        frame = self.spark.createDataFrame([(json.dumps(r),) for r in resources], "value STRING")
        names, rows = self._fetch(view, frame)
        return names, [_decode(r, names) for r in rows]

    def run(self, view: View, source: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
        """Rows of a view over NDJSON files (plain or gzip), a JSON array or a Bundle.

        The rows come to the driver a partition at a time as the caller reads them
        (``toLocalIterator``), not all at once; a temporary file lives until then.
        """
        from pyspark.errors import PySparkException  # noqa: PLC0415 - optional extra

        files, temp = _source_files(source)
        names = list(view.root.names)
        name = f"magstat_resources_{uuid.uuid4().hex}"

        def rows() -> Generator[dict[str, Any], None, None]:
            try:
                self.spark.read.text([str(f) for f in files]).createOrReplaceTempView(name)
                query = compile_sql(view, self.dialect, name, _SPARK_CHECKED_LINE)
                for row in self.spark.sql(query).toLocalIterator():
                    yield _decode(tuple(row), names)
            except (PySparkException, Exception) as exc:  # Py4J errors are not PySparkException subclasses
                # A line Spark cannot parse (or a damaged file) is found again and named as the
                # Python engine names it.
                error = _view_error(exc) or _java_view_error(exc) or _input_problem(files)
                if error is not None:
                    raise error from None
                raise
            finally:
                self.spark.catalog.dropTempView(name)
                if temp is not None:
                    temp.unlink(missing_ok=True)

        return names, _streamed(rows())

    def close(self) -> None:
        """Leave the session to its owner (tests share one); nothing to release here."""
