"""FHIR Bulk Data input: which files to read, which lines matter, whose they are.

A Bulk Data export is a folder of ``<Type>.ndjson`` files, or ``<Type>.<n>.ndjson`` parts,
plain or gzip-compressed (``.ndjson.gz``), one resource per line. Only the types the FHIR
adapter reads are opened; the others (Claims, Encounters ...) are listed and passed over,
which is most of an export's bytes.

Within those files, an Observation whose ``code`` names nothing the knowledge base knows is
passed over unparsed by Python. The test is written so that it can only err on the side of
keeping: an Observation is dropped only when its ``code`` is absent, or has the plain shape
the adapter reads without complaint *and* contains none of the knowledge base's test and sign
codes or names (as regular expressions that tolerate the spacing the matcher tolerates). Such
an Observation gives the adapter nothing, so the result is the same as reading it; every
other line goes to the adapter, which decides as ``magstat assess`` does.

The engines implement the scan in their own SQL with the expressions defined here, so that
DuckDB and Spark select the same lines.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from magstat.kb import KnowledgeBase

__all__ = [
    "MEDICATION_LINKED",
    "NEEDED_TYPES",
    "TYPE_ORDER",
    "BulkFile",
    "BulkSource",
    "FileProblem",
    "check_file",
    "check_files",
    "code_keyword_alternatives",
    "code_keyword_anchors",
    "code_keyword_patterns",
    "discover",
    "plain_code_pattern",
]

NEEDED_TYPES: tuple[str, ...] = (
    "Patient",
    "Medication",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "AllergyIntolerance",
    "Observation",
)
"""The resource types the FHIR adapter reads (``magstat.adapters.fhir``); the rest are passed over."""

TYPE_ORDER: dict[str, int] = {name: i for i, name in enumerate(NEEDED_TYPES)}
"""The order in which a patient's resources are handed to the adapter: by type, then file order."""

PATIENT_LINKED: tuple[str, ...] = (
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "AllergyIntolerance",
    "Observation",
)
"""Types that belong to a patient through ``subject`` (``patient`` for AllergyIntolerance)."""

MEDICATION_LINKED: tuple[str, ...] = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
"""Types that may name a Medication by ``medicationReference``."""

_NAME = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)(?:\.(?P<part>\d+))?\.ndjson(?P<gz>\.gz)?$")


@dataclass(frozen=True, slots=True)
class BulkFile:
    """One file of the export.

    Attributes:
        path: where it is.
        name: its name relative to the input folder (as reported).
        rtype: the resource type its name gives, or ``None`` when the name says none.
        part: the part number of ``<Type>.<n>.ndjson``, 0 for ``<Type>.ndjson``.
        size: bytes on disk.

    """

    path: Path
    name: str
    rtype: str | None
    part: int
    size: int

    @property
    def needed(self) -> bool:
        """Whether the file is read: a needed type, or a name that does not tell the type."""
        return self.rtype is None or self.rtype in TYPE_ORDER


@dataclass(frozen=True, slots=True)
class BulkSource:
    """The files of one export folder, in the order they are read.

    Attributes:
        root: the input folder (or the single file given).
        files: every ``.ndjson`` / ``.ndjson.gz`` file, needed ones first in a stable order.
        ignored: other files in the folder (a manifest, notes), listed in the summary.

    """

    root: Path
    files: tuple[BulkFile, ...]
    ignored: tuple[str, ...]

    @property
    def read(self) -> tuple[BulkFile, ...]:
        """The files that are read."""
        return tuple(f for f in self.files if f.needed)

    @property
    def skipped(self) -> tuple[BulkFile, ...]:
        """The files passed over because their type is not needed."""
        return tuple(f for f in self.files if not f.needed)

    @property
    def total_bytes(self) -> int:
        """Bytes of every NDJSON file of the export (read or not)."""
        return sum(f.size for f in self.files)


def _file_key(f: BulkFile) -> tuple[int, str, int, str]:
    rank = TYPE_ORDER.get(f.rtype, len(TYPE_ORDER)) if f.rtype else len(TYPE_ORDER)
    return (rank, f.rtype or "~", f.part, f.name)


def discover(path: Path, *, exclude: Path | None = None) -> BulkSource:
    """List an export folder (searched recursively, hidden files and folders left out) or take one NDJSON file.

    ``exclude`` is a folder not to read: the screening's own output, when it lies inside the
    export folder (its files are not input on a second run).

    Raises:
        FileNotFoundError: the path does not exist.

    .. versionchanged:: 0.6.0 hidden folders and ``exclude`` are left out.

    """
    if not path.exists():
        raise FileNotFoundError(str(path))
    single = path.is_file()
    candidates = [path] if single else sorted(p for p in path.rglob("*") if p.is_file())
    if exclude is not None and not single:
        skip = exclude.resolve()
        candidates = [p for p in candidates if not p.resolve().is_relative_to(skip)]
    files: list[BulkFile] = []
    ignored: list[str] = []
    for p in candidates:
        parts = (p.name,) if single else p.relative_to(path).parts
        if any(part.startswith(".") for part in parts):
            continue  # hidden files and folders (an output being written inside the folder, say)
        name = "/".join(parts)
        if not p.name.endswith((".ndjson", ".ndjson.gz")):
            ignored.append(name)
            continue
        found = _NAME.match(p.name)
        rtype = found.group("type") if found else None
        part = int(found.group("part")) if found and found.group("part") else 0
        files.append(BulkFile(p, name, rtype, part, p.stat().st_size))
    files.sort(key=_file_key)
    return BulkSource(path, tuple(files), tuple(ignored))


# --------------------------------------------------------------------------------------------
# Which Observations can matter: regular expressions over the serialised ``code`` element.
# They use the syntax that RE2 (DuckDB) and java.util.regex (Spark) share.

_JSON_STRING = r'"(?:[^"\\]|\\.)*"'
_SCALAR = rf"(?:{_JSON_STRING}|true|false|null|-?[0-9][0-9.eE+\-]*)"
_CODING_FIELD = (
    rf'(?:"(?:system|code|display)":(?:{_JSON_STRING}|null)|"(?:version|userSelected|id)":{_SCALAR})'
)
_CODING = rf"\{{(?:{_CODING_FIELD}(?:,{_CODING_FIELD})*)?\}}"
_CODE_MEMBER = rf'(?:"coding":(?:\[(?:{_CODING}(?:,{_CODING})*)?\]|null)|"text":(?:{_JSON_STRING}|null)|"id":{_JSON_STRING})'
# Between the words of a name the matcher accepts any run of spaces and hyphens; in JSON text
# that may also be an escape (\n, \t, \u00a0) or a Unicode space.
_GAP = r"(?:[\s\-\p{Z}]|\\[tnrfb]|\\u[0-9a-fA-F]{4})+"


def plain_code_pattern() -> str:
    """A regular expression for a ``code`` that the adapter reads without any complaint.

    Compact JSON (as both engines serialise an element): an object of ``coding`` (a list of
    codings whose system, code and display are strings) and ``text`` (a string). Anything else
    (an extension, a number where a string belongs) is kept for the adapter to judge.
    """
    return rf"^\{{(?:{_CODE_MEMBER}(?:,{_CODE_MEMBER})*)?\}}$"


def _name_pattern(name: str) -> str:
    words = [w for w in name.lower().split() if w]
    return _GAP.join(re.escape(w).replace("/", r"\\?/") for w in words)


KEYWORD_CHUNK = 512
"""Names per regular expression: one large alternation outgrows RE2's fast automaton memory
and falls back to a slow matcher, so the names are split over several expressions. Each
expression is one more pass over every code: the knowledge base's 263 names in one
expression scan in half the time of the same names split 256 + 7 (DuckDB 2.0)."""


def code_keyword_alternatives(kb: KnowledgeBase) -> list[str]:
    """The regular expressions (without flags) of every test and sign the KB can recognise.

    Built from the knowledge base exactly as the matcher indexes it: tests by LOINC code and
    text pattern; signs by SNOMED CT code, ICD-10 code (its first three characters, the part
    before any dot, since the matcher compares prefixes without dots), name and synonym.
    Matching is a superset of :func:`magstat.core.match.match_test` and ``match_sign``: no word
    boundaries, any letter case.
    """
    alternatives: set[str] = set()

    def codes(values: Iterable[str]) -> None:
        alternatives.update(re.escape(v.strip()) for v in values if v.strip())

    def names(values: Iterable[str]) -> None:
        alternatives.update(p for p in (_name_pattern(v) for v in values) if p)

    for test in kb.tests.values():
        codes(c.code for c in test.loinc)
        names(test.text_patterns)
    for sign in kb.signs.values():
        codes(sign.snomed)
        codes(c.replace(".", "")[:3] for c in sign.icd10)
        names([sign.name, *sign.synonyms])
    return sorted(alternatives)


_TOKEN = re.compile(r"[a-z0-9]+")


def code_keyword_tokens(kb: KnowledgeBase) -> tuple[list[list[str]], list[str]]:
    """What the KB can recognise, as words: (token lists, ICD-10 prefixes).

    The matcher finds a name only as whole words (nothing alphanumeric on either side, words
    separated by spaces or hyphens) and a code only whole, so every alphanumeric run of a
    name or code is a whole token of any text it matches. An Observation whose ``code`` holds
    every token of one list (or a token starting with one of the ICD-10 prefixes, which the
    matcher compares without dots) may be recognised; no other can. Tokens are lowercase ASCII
    letters and digits: split the lowercased text on everything else, after turning JSON
    escapes into spaces.
    """
    lists: set[tuple[str, ...]] = set()

    def add(values: Iterable[str]) -> None:
        for value in values:
            tokens = tuple(dict.fromkeys(_TOKEN.findall(value.lower())))
            if tokens:
                lists.add(tokens)

    for test in kb.tests.values():
        add(c.code for c in test.loinc)
        add(test.text_patterns)
    prefixes: set[str] = set()
    for sign in kb.signs.values():
        add(sign.snomed)
        add([sign.name, *sign.synonyms])
        prefixes.update(c.replace(".", "").lower()[:3] for c in sign.icd10)
    return sorted(list(t) for t in lists), sorted(prefixes)


def code_keyword_anchors(kb: KnowledgeBase) -> tuple[list[str], list[str]]:
    """One token of each token list (its longest), and the ICD-10 prefixes.

    A code that contains none of these tokens cannot hold a whole token list, so it names
    nothing the knowledge base knows: a cheaper, looser test than the regular expressions,
    for engines whose regular expressions are slow (Spark's backtracking ``java.util.regex``).
    """
    lists, prefixes = code_keyword_tokens(kb)
    return sorted({max(tokens, key=lambda t: (len(t), t)) for tokens in lists}), prefixes


JSON_ESCAPE = r"\\(u[0-9a-f]{4}|.)"
"""A JSON escape (a backslash and a letter, or a backslash, u and four hex digits), as a regular expression."""
WORD_SEPARATOR = "[^a-z0-9]+"
"""What separates the tokens of lowercased text, as a regular expression."""


def code_keyword_patterns(kb: KnowledgeBase, flags: str = "(?i)") -> list[str]:
    """:func:`code_keyword_alternatives` as a few regular expressions; a code matching any matters.

    Use ``flags="(?i)"`` for RE2 (DuckDB) and ``"(?iu)"`` for java.util.regex (Spark), whose
    ``(?i)`` alone folds ASCII letters only.
    """
    alternatives = code_keyword_alternatives(kb)
    return [
        flags + "(?:" + "|".join(alternatives[i : i + KEYWORD_CHUNK]) + ")"
        for i in range(0, len(alternatives), KEYWORD_CHUNK)
    ]


# --------------------------------------------------------------------------------------------
# A check of every file before the scan: damaged gzip streams, resources in another type's file.

_RESOURCE_TYPE = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]+)"')
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FileProblem:
    """A problem :func:`check_files` found in one file.

    Attributes:
        file: the file.
        line: the 1-based line, or ``None`` for the whole file.
        kind: ``unreadable_file`` (the file is not read at all) or ``resource_in_wrong_file``.
        problem: what is wrong, in words.

    """

    file: BulkFile
    line: int | None
    kind: str
    problem: str


def check_file(f: BulkFile, max_wrong_type: int = 1000, *, types: bool = True) -> list[FileProblem]:
    """Read one file through once: check that its gzip stream is whole and each line is its type.

    The Bulk Data specification puts each resource type in its own files; a line whose
    ``resourceType`` differs from the type the file name gives is reported (its resource is
    still read, as the engines read every line). A gzip file that is damaged or truncated is
    reported as unreadable as a whole. Memory stays bounded (one chunk and one line at a time).

    Args:
        f: the file.
        max_wrong_type: the most wrong-type lines reported one by one (then one summary line).
        types: check each line's type; ``False`` checks only that the file can be read (the
            gzip stream decompressed, the lines not looked at), for an engine whose scan
            counts the lines of another type itself (then this runs again on those files).

    """
    if not types:
        return _check_readable(f)
    problems: list[FileProblem] = []
    wrong = 0
    line_no = 0
    pending = b""

    def lines(data: bytes, final: bool) -> bytes:
        nonlocal line_no, wrong
        parts = data.split(b"\n")
        rest = b"" if final else parts.pop()
        for line in parts:
            line_no += 1
            if f.rtype is None or not line.strip():
                continue
            found = _RESOURCE_TYPE.search(line)
            if found is not None and found.group(1).decode("ascii") != f.rtype:
                wrong += 1
                if wrong <= max_wrong_type:
                    problems.append(
                        FileProblem(
                            f,
                            line_no,
                            "resource_in_wrong_file",
                            f"a {found.group(1).decode('ascii')} resource in a file of {f.rtype} resources "
                            "(Bulk Data puts each type in its own files); read as its own type",
                        )
                    )
        return rest

    def feed(block: bytes) -> None:
        nonlocal pending
        pending = lines(pending + block, final=False)

    unreadable = _read_through(f, feed)
    if unreadable:
        return unreadable
    lines(pending, final=True)
    if wrong > max_wrong_type:
        problems.append(
            FileProblem(
                f, None, "resource_in_wrong_file", f"{wrong - max_wrong_type} more line(s) of another type"
            )
        )
    return problems


def _check_readable(f: BulkFile) -> list[FileProblem]:
    """:func:`check_file` without the lines: the file opens, and a gzip stream is whole."""
    return _read_through(f, None, plain=False)


def _read_through(
    f: BulkFile, consume: Callable[[bytes], object] | None, *, plain: bool = True
) -> list[FileProblem]:
    """Read a file block by block (inflated when gzip, member after member) into ``consume``.

    A plain file is read only when ``plain`` (a gzip file always, to check its stream is
    whole). Returns the file's problem (damaged gzip data, or a read error), or nothing.
    """
    try:
        with f.path.open("rb") as handle:
            gz = handle.read(2) == b"\x1f\x8b"
            if not gz and not plain:
                return []
            handle.seek(0)
            inflater = zlib.decompressobj(wbits=31)
            in_member = False
            while block := handle.read(_CHUNK):
                if not gz:
                    if consume is not None:
                        consume(block)
                    continue
                while block:
                    in_member = True
                    data = inflater.decompress(block, _CHUNK)
                    if consume is not None:
                        consume(data)
                    block = inflater.unconsumed_tail
                    if inflater.eof:  # a member ends; another may follow (after padding)
                        in_member = False
                        block = inflater.unused_data.lstrip(b"\x00")
                        inflater = zlib.decompressobj(wbits=31)
            if in_member:
                raise zlib.error("the compressed data end too soon (truncated)")
    except zlib.error as exc:
        return [FileProblem(f, None, "unreadable_file", f"damaged gzip data ({exc}); the file was not read")]
    except OSError as exc:
        return [
            FileProblem(f, None, "unreadable_file", f"cannot be read ({exc.strerror}); the file was not read")
        ]
    return []


def check_files(files: Iterable[BulkFile], threads: int = 1, *, types: bool = True) -> list[FileProblem]:
    """:func:`check_file` on every file (in threads: decompression runs outside the GIL), in file order."""
    chosen = list(files)
    check = functools.partial(check_file, types=types)
    if threads <= 1 or len(chosen) <= 1:
        found = [check(f) for f in chosen]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            found = list(pool.map(check, chosen))
    return [p for problems in found for p in problems]
