"""``lowBoundary()`` and ``highBoundary()`` of decimals, dates, date-times and times (FHIRPath 3.0).

A value stands for every value it could be at its precision: ``1.0`` for [0.95, 1.05),
``1970-06`` for the whole of June 1970, a date-time without a zone for every zone (+14:00 to
-12:00). The Python evaluator calls these directly; the SQL back ends build the same strings in
SQL (see ``sql.py``), and the conformance suite checks that they agree.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import calendar
import re
from decimal import Decimal

__all__ = ["boundary", "classify"]

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DATETIME = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?T(\d{2})?(?::(\d{2}))?(?::(\d{2}))?(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$"
)
_TIME = re.compile(r"^(\d{2})(?::(\d{2}))?(?::(\d{2}))?(?:\.(\d+))?$")


def classify(value: object, hint: str | None) -> str | None:
    """The kind of a value for boundary purposes: decimal, date, dateTime, time or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return "decimal"
    if not isinstance(value, str):
        return None
    if hint in ("dateTime", "instant") and (_DATE.match(value) or _DATETIME.match(value)):
        return "dateTime"
    if hint == "time" and _TIME.match(value):
        return "time"
    if _DATE.match(value):
        return "date"
    if _DATETIME.match(value):
        return "dateTime"
    if _TIME.match(value):
        return "time"
    return None


def _decimal(value: float | int | Decimal, high: bool) -> float:
    text = repr(value) if isinstance(value, float) else str(value)
    scale = len(text.split(".")[1]) if "." in text and "e" not in text.lower() else 0
    half = Decimal(5) / (Decimal(10) ** (scale + 1))
    exact = Decimal(text)
    return float(exact + half if high else exact - half)


def _date_parts(year: str, month: str | None, day: str | None, high: bool) -> str:
    m = month or ("12" if high else "01")
    if day:
        d = day
    elif high:
        d = f"{calendar.monthrange(int(year), int(m))[1]:02d}"
    else:
        d = "01"
    return f"{year}-{m}-{d}"


def boundary(value: object, high: bool, hint: str | None = None) -> object:
    """The low or high boundary of ``value``, or None when it has none.

    Args:
        value: a number or a date/date-time/time string.
        high: True for ``highBoundary()``.
        hint: the FHIR type the expression selected with ``ofType`` (``dateTime``, ``time``).

    Returns:
        A float for decimals, an ISO string for the others, None when the value has no boundary.

    """
    kind = classify(value, hint)
    if kind == "decimal":
        return _decimal(value, high)  # type: ignore[arg-type]
    if not isinstance(value, str):
        return None
    if kind == "date":
        match = _DATE.match(value)
        assert match is not None
        return _date_parts(match[1], match[2], match[3], high)
    if kind == "dateTime":
        match = _DATETIME.match(value) or _DATE.match(value)
        assert match is not None
        groups = list(match.groups()) + [None] * (8 - len(match.groups()))
        date = _date_parts(str(groups[0]), groups[1], groups[2], high)
        hh = groups[3] or ("23" if high else "00")
        mm = groups[4] or ("59" if high else "00")
        ss = groups[5] or ("59" if high else "00")
        frac = (groups[6] or "").ljust(3, "9" if high else "0")[:3]
        zone = groups[7] or ("-12:00" if high else "+14:00")
        return f"{date}T{hh}:{mm}:{ss}.{frac}{zone}"
    if kind == "time":
        match = _TIME.match(value)
        assert match is not None
        mm = match[2] or ("59" if high else "00")
        ss = match[3] or ("59" if high else "00")
        frac = (match[4] or "").ljust(3, "9" if high else "0")[:3]
        return f"{match[1]}:{mm}:{ss}.{frac}"
    return None
