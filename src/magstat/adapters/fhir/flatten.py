"""magstat's flattening of FHIR: the knowledge base's views, run in process or compiled to SQL.

The FHIR adapter reads *rows*, not resources. A row is what one of the knowledge base's SQL on
FHIR views (:mod:`magstat.adapters.fhir.views`, shipped as ``kb/data/views/*.json``) gives for
one resource: its elements that the clinical reading needs, keyed by their FHIR JSON names.
Every path makes the same rows from the same views and hands them to the same reader,
:func:`magstat.adapters.fhir.extract.facts_from_rows`, so the CLI, the CDS Hooks service,
DuckDB and Spark give identical facts by construction:

- in process (``facts_from_fhir`` on a bundle): :func:`views_for_kb` compiles the views once
  per knowledge base; :meth:`FlatViews.row` runs the compiled closures on each resource;
- in SQL (``magstat screen`` on DuckDB): the scan extracts the JSON keys the view's columns
  read (:attr:`FlatViews.keys`: a projection, one compact JSON array per resource) and
  :meth:`FlatViews.row_from_projection` applies the same compiled columns to it; or, for any
  view, :func:`row_sql` compiles it into a query giving the columns themselves (``row``),
  which :meth:`FlatViews.row_from_json` reads. Both give the rows of the in-process path.

API for an engine (DuckDB, Spark)::

    flat = views_for_kb(kb)                            # cached per knowledge base
    flat.keys["Observation"]                           # ('id', 'status', 'code', ...)
    flat.row_from_projection("Observation", '["o1", "final", {...}, null, ...]', index=i)
    sql = row_sql(flat, "Observation", "spark", "staged", "parse_json(line)",
                  carry=("pid", "ord"))                # -> columns pid, ord, row
    rows = [flat.row_from_json(rtype, text, index=i) for i, (rtype, text) in enumerate(...)]
    facts = facts_from_rows(rows, kb, as_of=..., strict=...)   # magstat.adapters.fhir

or, for a whole chunk of patients, :func:`magstat.batch.rows.screen_rows_chunk` with groups
of ``(patient id, resource types, texts)`` (medications first, then input order) and
``projected=True`` for projections, ``False`` for :func:`row_sql` rows.

Each column is evaluated as a collection (so a repeated element never stops a SQL query);
:meth:`FlatViews.unwrap` then gives a column that is not a collection in the view its single
value, or the list when the resource repeats it (which the reader refuses, naming the element),
and leaves absent elements out, so ``"valueBoolean" in row`` means what it means on the JSON.

.. versionadded:: 0.3.0
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]

from magstat.adapters.fhir.views import ANALYST_COLUMNS
from magstat.errors import InvalidInputError
from magstat.kb.schema import KnowledgeBase
from magstat.views.definition import View, parse_view
from magstat.views.pyeval import CompiledView, compile_view

__all__ = ["READ_TYPES", "FlatViews", "ResourceRow", "row_sql", "views_for_kb"]

READ_TYPES: tuple[str, ...] = (
    "Patient",
    "Observation",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "AllergyIntolerance",
    "Medication",
)
"""The resource types magstat reads, one view each."""


def _loads(text: str | bytes) -> Any:
    """Parse JSON with orjson (about twice as fast), the standard library deciding odd cases."""
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(text)


class ResourceRow:
    """One resource as the reader sees it: its view row and where it sits in the input.

    A plain class with slots (not a frozen dataclass): the service makes hundreds per request.

    Attributes:
        rtype: the resource type.
        values: the row: element name -> value, absent elements left out.
        bundle: the Bundle path it came from (``"Bundle"``, ``"Bundle.entry[2].resource"``),
            or ``""`` for a single resource; errors name ``<bundle>.entry[<index>]``.
        index: its entry index in that Bundle.
        full_url: the entry's ``fullUrl``, if any.
        error: a problem found while making the row (the reader reports it as the resource's).

    """

    __slots__ = ("bundle", "error", "full_url", "index", "rtype", "values")

    def __init__(
        self,
        rtype: str,
        values: Mapping[str, Any],
        bundle: str = "Bundle",
        index: int = 0,
        full_url: str | None = None,
        *,
        error: InvalidInputError | None = None,
    ) -> None:
        self.rtype = rtype
        self.values = values
        self.bundle = bundle
        self.index = index
        self.full_url = full_url
        self.error = error

    def __repr__(self) -> str:
        return f"ResourceRow({self.rtype!r}, {self.values!r}, {self.bundle!r}, {self.index})"

    @property
    def label(self) -> str:
        """``Type/id``, or the type alone."""
        rid = self.values.get("id")
        return f"{self.rtype}/{rid}" if isinstance(rid, str) and rid else self.rtype

    @property
    def where(self) -> str:
        """The field-path prefix of errors about this resource."""
        if not self.bundle:
            return self.label
        return f"{self.bundle}.entry[{self.index}] ({self.label})"

    @property
    def origin(self) -> str:
        """What facts name as their source: ``Type/id``, else the fullUrl, else the position."""
        rid = self.values.get("id")
        if isinstance(rid, str) and rid:
            return f"{self.rtype}/{rid}"
        return self.full_url or self.where

    @property
    def note_label(self) -> str:
        """How notes about this resource name it."""
        rid = self.values.get("id")
        return self.label if isinstance(rid, str) and rid else self.where


_Getter = Callable[[Any], list[Any]]
_Spec = tuple[str, bool, str | None, str | None, _Getter]


def _row_function(specs: Sequence[_Spec]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """One resource's row as :meth:`FlatViews.unwrap` gives it, read straight from the JSON.

    Each spec is (column, holds one value, JSON key, plain key of a choice, getter). The
    resource's own keys are walked once (a resource has fewer keys than the view has columns):
    a key holding one value that is not a list (the usual case) fills its column directly;
    anything else (a list, a choice element next to its plain key) goes through the view's
    compiled getter, which gives the column's complete values. Columns that are not a plain
    element always use the getter. The row's key order carries no meaning.
    """
    # key -> (column, holds one value, plain key that forces the getter, always the getter)
    by_key: dict[str, list[tuple[str, bool, str | None, bool, _Getter]]] = {}
    always: list[tuple[str, bool, _Getter]] = []
    for name, one, key, plain, getter in specs:
        if key is None:
            always.append((name, one, getter))
            continue
        by_key.setdefault(key, []).append((name, one, plain, False, getter))
        if plain is not None:
            by_key.setdefault(plain, []).append((name, one, None, True, getter))

    # The usual key: one plain element, one column.
    single = {
        key: (entries[0][0], entries[0][1])
        for key, entries in by_key.items()
        if len(entries) == 1 and entries[0][2] is None and not entries[0][3]
    }

    def row(resource: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in resource.items():
            if value is None:
                continue
            plain_column = single.get(key)
            if plain_column is not None and type(value) is not list:
                out[plain_column[0]] = value if plain_column[1] else [value]
                continue
            entries = by_key.get(key)
            if entries is None:
                continue
            for name, one, plain, full, getter in entries:
                if not full and type(value) is not list and (plain is None or resource.get(plain) is None):
                    out[name] = value if one else [value]
                    continue
                values = getter(resource)
                if values:
                    out[name] = values[0] if one and len(values) == 1 else values
        for name, one, getter in always:
            values = getter(resource)
            if values:
                out[name] = values[0] if one and len(values) == 1 else values
        return out

    return row


_Plan = tuple[tuple[str, bool] | None, ...]


def _projection_plan(specs: Sequence[_Spec], keys: Sequence[str]) -> _Plan:
    """Per key of a projection: (column, holds one value) when a single value fills that column alone.

    ``None`` marks a key whose value, when present, needs :func:`_row_function` (the plain key
    of a choice element, a key read by several columns).
    """
    readers: dict[str, list[tuple[str, bool, str | None]]] = {}
    for name, one, key, plain, _getter in specs:
        if key is not None:
            readers.setdefault(key, []).append((name, one, plain))
        if plain is not None:
            readers.setdefault(plain, []).append((name, one, None))
    plain_keys = {plain for _, _, _, plain, _ in specs if plain is not None}
    plan: list[tuple[str, bool] | None] = []
    for key in keys:
        found = readers.get(key, [])
        if key in plain_keys or len(found) != 1:
            plan.append(None)
        else:
            plan.append((found[0][0], found[0][1]))
    return tuple(plan)


def collection_view(view: View, leave_out: frozenset[str] = frozenset()) -> View:
    """The same view with every column a collection (its rows never fail on a repeated element).

    Args:
        view: a checked view.
        leave_out: names of columns to drop.

    .. versionadded:: 0.3.0

    """

    def mark(select: Any) -> Any:
        if isinstance(select, dict):
            out = {k: mark(v) for k, v in select.items()}
            if "column" in out:
                out["column"] = [
                    {**c, "collection": True} for c in out["column"] if c.get("name") not in leave_out
                ]
            return out
        if isinstance(select, list):
            return [mark(s) for s in select]
        return select

    raw = dict(view.raw)
    raw["select"] = mark(raw.get("select", []))
    return parse_view(raw)


@dataclass(frozen=True)
class FlatViews:
    """The knowledge base's views, checked and compiled once.

    Attributes:
        kb_sha256: the knowledge base they came from.
        views: resource type -> the view as shipped (for analysts).
        read_views: resource type -> the columns the reading uses, every one a collection
            (what every path evaluates: in process, DuckDB, Spark).
        names: resource type -> the names of those columns.
        singular: resource type -> for each of them, whether the shipped view has it hold one value.
        compiled: resource type -> the view compiled for Python, every column a collection.
        row_functions: resource type -> the function making a resource's row in process.
        plans: resource type -> per key of :attr:`keys`, the column a single value fills
            (``None``: the value needs the row function); empty when ``keys`` is ``None``.
        keys: resource type -> the JSON keys its columns read, when every column the reading
            uses is a top-level element (``code``, ``value.ofType(Quantity)``); ``None`` otherwise.

    """

    kb_sha256: str
    views: Mapping[str, View]
    read_views: Mapping[str, View]
    names: Mapping[str, tuple[str, ...]]
    singular: Mapping[str, tuple[bool, ...]]
    compiled: Mapping[str, CompiledView]
    row_functions: Mapping[str, Callable[[Mapping[str, Any]], dict[str, Any]]]
    keys: Mapping[str, tuple[str, ...] | None]
    plans: Mapping[str, _Plan]

    def unwrap(self, rtype: str, columns: Sequence[Any]) -> dict[str, Any]:
        """Turn one row of collections into the reader's row (see the module documentation)."""
        row: dict[str, Any] = {}
        for name, one, values in zip(self.names[rtype], self.singular[rtype], columns, strict=True):
            if not values:
                continue
            if one and isinstance(values, list) and len(values) == 1:
                row[name] = values[0]
            else:
                row[name] = values
        return row

    def row(self, rtype: str, resource: Mapping[str, Any]) -> dict[str, Any]:
        """The row of one resource of a type magstat reads (the columns the reading uses).

        Raises:
            InvalidInputError: the view cannot be evaluated on this resource; the field names
                the view column.

        """
        return self.row_functions[rtype](resource)

    def row_from_projection(
        self, rtype: str, text: str | bytes, *, bundle: str = "Bundle", index: int = 0
    ) -> ResourceRow:
        """A row from the JSON array of the resource's values at :attr:`keys` (``null``: absent).

        The view's columns read those keys only, so the compiled row function gives on them
        the row it gives on the whole resource. An SQL engine extracts them in its scan
        (DuckDB: ``to_json(json_extract(json, ['$.id', ...]))``).

        Raises:
            ValueError: the text is not such an array, or the type has no :attr:`keys`.

        """
        keys = self.keys[rtype]
        try:  # as _loads, without a call per row
            values = _orjson.loads(text)
        except Exception:  # a decoding error, or no orjson: _loads decides
            values = _loads(text)
        if keys is None or type(values) is not list or len(values) != len(keys):
            raise ValueError(f"a {rtype} projection must be a JSON array of its {len(keys or ())} keys")
        # The usual projection: every value present fills its own column, as the row function
        # fills it; a value that needs more (the plain key of a choice) goes through that function.
        row: dict[str, Any] = {}
        # The plan has one entry per key, and the lengths were checked above: without the
        # keyword ``strict``, the compiled build (mypyc) runs this zip as a native loop.
        for column, value in zip(self.plans[rtype], values):  # noqa: B905 - lengths checked above
            if value is None:
                continue
            if column is None:
                resource = {k: v for k, v in zip(keys, values, strict=True) if v is not None}
                row = self.row_functions[rtype](resource)
                break
            if type(value) is list:
                found = [v for v in value if v is not None]
                if found:
                    row[column[0]] = found[0] if column[1] and len(found) == 1 else found
            else:
                row[column[0]] = value if column[1] else [value]
        return ResourceRow(rtype, row, bundle, index)

    def row_from_json(
        self, rtype: str, text: str | bytes, *, bundle: str = "Bundle", index: int = 0
    ) -> ResourceRow:
        """A row as an SQL engine gives it (:func:`row_sql`: a JSON array of column arrays).

        Raises:
            ValueError: the text is not such an array.

        """
        columns = _loads(text)
        if not isinstance(columns, list) or len(columns) != len(self.names[rtype]):
            raise ValueError(f"a {rtype} row must be a JSON array of {len(self.names[rtype])} columns")
        return ResourceRow(rtype, self.unwrap(rtype, columns), bundle, index)


_CACHE: dict[str, FlatViews] = {}


def views_for_kb(kb: KnowledgeBase) -> FlatViews:
    """The views shipped with ``kb``, checked and compiled once per knowledge base.

    Raises:
        InvalidInputError: the knowledge base lacks a view for a type magstat reads, or a view
            does not check.

    .. versionadded:: 0.3.0

    """
    found = _CACHE.get(kb.sha256)
    if found is not None:
        return found
    by_type: dict[str, View] = {}
    for name, text in sorted(kb.views.items()):
        view = parse_view(json.loads(text))
        if view.resource in by_type:
            raise InvalidInputError(f"views/{name}.json", "a second view of the same resource type")
        by_type[view.resource] = view
    missing = [t for t in READ_TYPES if t not in by_type]
    if missing:
        raise InvalidInputError("views", "the knowledge base has no view for " + ", ".join(missing))
    read_views = {t: collection_view(by_type[t], ANALYST_COLUMNS) for t in READ_TYPES}
    compiled = {t: compile_view(read_views[t]) for t in READ_TYPES}
    row_functions = {}
    keys: dict[str, tuple[str, ...] | None] = {}
    plans: dict[str, _Plan] = {}
    for t in READ_TYPES:
        found_getters, probes = compiled[t].getters, compiled[t].probes
        if found_getters is None or probes is None:
            raise InvalidInputError(
                f"views ({by_type[t].name})",
                "must be a plain projection (columns only: no forEach, nesting or unionAll)",
            )
        specs: list[_Spec] = []
        shipped = [c for c in by_type[t].columns if c.name not in ANALYST_COLUMNS]
        for column, get, probe in zip(shipped, found_getters, probes, strict=True):
            key, plain = probe if probe is not None else (None, None)
            specs.append((column.name, not column.collection, key, plain, get))
        row_functions[t] = _row_function(specs)
        if all(key is not None for _, _, key, _, _ in specs):
            read = [k for _, _, key, plain, _ in specs for k in (key, plain) if k is not None]
            projected = tuple(dict.fromkeys(read))
            keys[t] = projected
            plans[t] = _projection_plan(specs, projected)
        else:
            keys[t] = None
    flat = FlatViews(
        kb_sha256=kb.sha256,
        views={t: by_type[t] for t in READ_TYPES},
        read_views=read_views,
        names={t: read_views[t].root.names for t in READ_TYPES},
        singular={
            t: tuple(not c.collection for c in by_type[t].columns if c.name not in ANALYST_COLUMNS)
            for t in READ_TYPES
        },
        compiled=compiled,
        row_functions=row_functions,
        keys=keys,
        plans=plans,
    )
    if len(_CACHE) > 8:
        _CACHE.clear()
    _CACHE[kb.sha256] = flat
    return flat


def row_sql(
    flat: FlatViews, rtype: str, dialect: str, source: str, resource_column: str, *, carry: Sequence[str] = ()
) -> str:
    """SQL giving, per resource of ``source`` of type ``rtype``, the ``carry`` columns and ``row``.

    ``row`` is the JSON text of an array with one JSON array per column the reading uses
    (:attr:`FlatViews.read_views`, every column evaluated as a collection), which
    :meth:`FlatViews.row_from_json` reads.

    Args:
        flat: the views of the knowledge base (:func:`views_for_kb`).
        rtype: one of :data:`READ_TYPES`.
        dialect: ``"duckdb"`` or ``"spark"``.
        source: a table expression with one resource per row.
        resource_column: the SQL expression of the resource (DuckDB JSON, Spark VARIANT).
        carry: columns of ``source`` passed through (a patient key, an order).

    .. versionadded:: 0.3.0

    """
    from magstat.views.sql import DuckDBDialect, SparkDialect, compile_sql  # noqa: PLC0415

    view = flat.read_views[rtype]
    dialect_obj = DuckDBDialect() if dialect == "duckdb" else SparkDialect()
    inner = compile_sql(view, dialect_obj, source, resource_column, carry=carry)
    quote = '"' if dialect == "duckdb" else "`"
    parts = ", ".join(f"coalesce({quote}{n}{quote}, '[]')" for n in view.root.names)
    kept = "".join(f"{quote}{c}{quote}, " for c in carry)
    return f"SELECT {kept}concat('[', concat_ws(',', {parts}), ']') AS row FROM ({inner}) AS flat_"  # noqa: S608
