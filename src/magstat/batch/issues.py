"""What went wrong with the input, counted and located: nothing is left out silently.

Every malformed line, every resource that names no patient, every resource the adapter left
out and every patient that could not be assessed is one :class:`Issue`. They are all counted
(by kind and by file) in ``summary.json`` and listed in ``issues.csv``; ``--strict`` turns the
first one into an error.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from magstat.errors import InvalidInputError
from magstat.views.engines import HALF_SURROGATE, holds_half_a_surrogate_pair

__all__ = ["Issue", "IssueLog", "StrictError", "locate_malformed", "open_text"]

KINDS = (
    "unreadable_file",
    "resource_in_wrong_file",
    "malformed_line",
    "not_a_resource",
    "no_patient_reference",
    "patient_not_in_export",
    "resource_excluded",
    "patient_not_assessed",
    "nhanes_value",
    "table_value",
)
"""Issue kinds, in the order they are reported."""


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem with the input.

    Attributes:
        kind: one of :data:`KINDS`.
        file: the input file (name relative to the input folder), if known.
        line: the 1-based line number in that file, if known.
        resource: the resource (``Observation/abc``) or patient it concerns, if known.
        problem: what is wrong, in words.

    """

    kind: str
    file: str | None
    line: int | None
    resource: str | None
    problem: str

    def text(self) -> str:
        """One line for messages: ``file:line (resource): problem``."""
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        if self.resource:
            where = f"{where} ({self.resource})" if where else self.resource
        return f"{where}: {self.problem}" if where else self.problem


class StrictError(InvalidInputError):
    """``--strict`` and the input has a problem: the run stops and writes nothing."""


@dataclass
class IssueLog:
    """Counts every issue; keeps each one for ``issues.csv`` up to ``limit`` (then only counts)."""

    strict: bool = False
    limit: int = 100_000
    issues: list[Issue] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    by_file: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, issue: Issue, count: int = 1) -> None:
        """Record ``count`` occurrences of an issue (one row in ``issues.csv``).

        Raises:
            StrictError: in strict mode.

        """
        if self.strict:
            raise StrictError(issue.file or issue.resource or issue.kind, issue.text())
        self.counts[issue.kind] += count
        if issue.file:
            self.by_file.setdefault(issue.file, Counter())[issue.kind] += count
        if len(self.issues) < self.limit:
            self.issues.append(issue)

    @property
    def total(self) -> int:
        """How many problems were counted."""
        return sum(self.counts.values())

    def sorted(self) -> list[Issue]:
        """The kept issues in a stable order (file, line, kind, resource, problem)."""
        return sorted(
            self.issues,
            key=lambda i: (i.file or "", i.line or 0, KINDS.index(i.kind), i.resource or "", i.problem),
        )


def open_text(path: Path) -> IO[bytes]:
    """Open a file for reading bytes, gzip or plain (told by its first two bytes)."""
    handle = path.open("rb")
    magic = handle.read(2)
    handle.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    return handle


def _problem(line: bytes) -> str | None:
    """Why an NDJSON line is not a FHIR resource, or ``None`` when it is one."""
    try:
        data = json.loads(line)
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return f"malformed JSON at column {exc.colno}: {exc.msg}"
    except RecursionError:
        return "JSON nested too deeply"
    if b"\\u" in line and holds_half_a_surrogate_pair(data):  # DuckDB refuses such a line: named here
        return f"malformed JSON: {HALF_SURROGATE}"
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not a FHIR resource"
    if not isinstance(data.get("resourceType"), str) or not data["resourceType"]:
        return "no resourceType: not a FHIR resource"
    return None


def locate_malformed(path: Path) -> Iterator[tuple[int, str]]:
    """Find the malformed lines of one NDJSON file: yield (1-based line number, problem).

    The engines count malformed lines while they scan in parallel, which loses line numbers;
    this second, sequential pass over a file known to hold some finds them. Blank lines are
    allowed and skipped, as the engines skip them.
    """
    with open_text(path) as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            problem = _problem(line)
            if problem is not None:
                yield number, problem
