"""Reading an input file (JSON, YAML, gzip) and turning it into facts, FHIR or document.

The kind is detected from the content: an object with a ``resourceType`` is FHIR R4, any other
object is a magstat patient document.

Compressed input is inflated by :func:`inflate_gzip` only, which stops at a limit instead of
growing memory without bound (a few hundred kilobytes of gzip can inflate to gigabytes): every
surface that reads whole gzip input (CLI, service, web app, batch population files) uses it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
import re
import zlib
from datetime import date
from pathlib import Path
from typing import IO, Any

import yaml

from magstat.adapters.document import facts_from_document
from magstat.core.facts import PatientFacts
from magstat.errors import InvalidInputError
from magstat.kb.schema import KnowledgeBase

__all__ = [
    "MAX_INFLATED_BYTES",
    "MAX_INPUT_BYTES",
    "facts_from_data",
    "inflate_gzip",
    "parse_bytes",
    "read_input",
]

MAX_INPUT_BYTES = 512 * 1024 * 1024
"""Largest input read (512 MiB): far above any one patient's record, below memory trouble."""

MAX_INFLATED_BYTES = 256 * 1024 * 1024
"""Largest input once decompressed (256 MiB), unless the caller sets a smaller limit."""

_CHUNK = 1024 * 1024

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
"""A JSON or YAML escape of a UTF-16 surrogate: the input may hold a lone one (checked then)."""


def inflate_gzip(raw: bytes, name: str, limit: int = MAX_INFLATED_BYTES) -> bytes:
    """Decompress gzip data (one or more members), refusing output larger than ``limit`` bytes.

    The data are inflated a chunk at a time and the work stops as soon as the output passes the
    limit, so that a small compressed file cannot take gigabytes of memory.

    Args:
        raw: the gzip bytes.
        name: the input's name, for the error.
        limit: the most bytes the output may have.

    Raises:
        InvalidInputError: the data are damaged or truncated, or inflate past the limit.

    """
    out = bytearray()
    rest = raw
    while rest:
        inflater = zlib.decompressobj(wbits=31)
        pending = rest
        try:
            while pending:
                out += inflater.decompress(pending, _CHUNK)
                if len(out) > limit:
                    raise InvalidInputError(
                        name,
                        "too large once decompressed",
                        allowed=f"at most {limit // 2**20} MiB of uncompressed data",
                    )
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
            while not inflater.eof:
                chunk = inflater.decompress(b"", _CHUNK)
                if not chunk:
                    break
                out += chunk
                if len(out) > limit:
                    raise InvalidInputError(
                        name,
                        "too large once decompressed",
                        allowed=f"at most {limit // 2**20} MiB of uncompressed data",
                    )
        except zlib.error as exc:
            raise InvalidInputError(name, f"damaged gzip data: {exc}") from None
        if not inflater.eof:
            raise InvalidInputError(name, "damaged gzip data: the compressed data end too soon (truncated)")
        rest = inflater.unused_data.lstrip(b"\x00")  # members may be followed by padding
    return bytes(out)


def parse_bytes(raw: bytes, name: str = "input", *, max_inflated: int = MAX_INFLATED_BYTES) -> Any:
    """Parse JSON or YAML (optionally gzip-compressed) bytes.

    Args:
        raw: the bytes.
        name: the input's name, for errors.
        max_inflated: the most bytes gzip input may inflate to.

    Raises:
        InvalidInputError: the bytes are neither valid JSON nor valid YAML, or the gzip data
            are damaged or inflate past ``max_inflated``.

    """
    if raw[:2] == b"\x1f\x8b":
        raw = inflate_gzip(raw, name, max_inflated)
    text_start = raw.lstrip()[:1]
    if text_start in (b"{", b"["):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                name, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        except UnicodeDecodeError:
            raise InvalidInputError(name, "not UTF-8 text") from None
        except RecursionError:
            raise InvalidInputError(
                name, "JSON nested too deeply", allowed="a FHIR resource or patient document"
            ) from None
        if _SURROGATE_ESCAPE.search(raw):
            _refuse_lone_surrogates(data, name)
        return data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(name, "not UTF-8 text", allowed="JSON or YAML") from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise InvalidInputError(
            name, "YAML nested too deeply", allowed="a FHIR resource or patient document"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidInputError(name, f"malformed YAML{where}", allowed="JSON or YAML") from None
    if _SURROGATE_ESCAPE.search(raw):
        _refuse_lone_surrogates(data, name)
    if not isinstance(data, dict):
        raise InvalidInputError(
            name,
            "not a FHIR resource or a magstat patient document",
            value=type(data).__name__,
            allowed="a JSON/YAML object: a FHIR R4 resource (with resourceType) or a patient document",
        )
    return data


def _refuse_lone_surrogates(data: Any, name: str) -> None:
    """Refuse text holding a lone UTF-16 surrogate (an escape such as backslash-u-d800): not Unicode.

    Such a string cannot be written back as UTF-8, so every echo of it (a JSON answer, a page)
    would fail; the field is named instead.
    """
    stack: list[tuple[str, Any]] = [(name, data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            texts = [(path, value)]
        elif isinstance(value, dict):
            keys = {key: f"{path}.{_printable(str(key))}" for key in value}
            texts = [(keys[key], str(key)) for key in value]
            stack.extend((keys[key], item) for key, item in value.items())
        elif isinstance(value, list):
            texts = []
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        else:
            texts = []
        for where, text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInputError(
                    where, "is not valid Unicode text (a lone surrogate escape such as \\ud800)"
                ) from None


def _printable(text: str) -> str:
    """Text safe to write as UTF-8: a lone surrogate becomes its escape (for error messages)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def read_input(
    source: str | Path, stdin: IO[bytes] | None = None, *, max_inflated: int = MAX_INFLATED_BYTES
) -> Any:
    """Read and parse a file path, or ``-`` for standard input (gzip inflated up to ``max_inflated``).

    Raises:
        InvalidInputError: the file cannot be read or parsed.

    """
    name = str(source)
    try:
        if name == "-":
            if stdin is None:
                raise InvalidInputError("-", "no standard input to read")
            raw = stdin.read(MAX_INPUT_BYTES + 1)
        else:
            path = Path(name)
            if not path.is_file():
                raise InvalidInputError(name, "no such file")
            with path.open("rb") as handle:
                raw = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise InvalidInputError(name, f"cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_INPUT_BYTES:
        raise InvalidInputError(name, "input too large", allowed=f"at most {MAX_INPUT_BYTES // 2**20} MiB")
    return parse_bytes(raw, name, max_inflated=max_inflated)


def facts_from_data(
    data: Any,
    kb: KnowledgeBase,
    *,
    as_of: date | None,
    strict: bool = True,
    patient_id: str | None = None,
) -> PatientFacts:
    """Turn a parsed input into facts: FHIR R4 when it has ``resourceType``, else a document.

    Raises:
        InvalidInputError: the input is neither, or fails its adapter's checks.

    """
    if not isinstance(data, dict):
        raise InvalidInputError(
            "input",
            "not a FHIR resource or a magstat patient document",
            allowed="a JSON/YAML object",
        )
    if "resourceType" in data:
        from magstat.adapters.fhir import facts_from_fhir  # noqa: PLC0415 - FHIR code loads on demand

        if as_of is None:
            raise InvalidInputError("as_of", "is required for FHIR input", allowed="YYYY-MM-DD")
        return facts_from_fhir(data, kb, as_of=as_of, strict=strict, patient_id=patient_id)
    return facts_from_document(data, kb, as_of=as_of)
