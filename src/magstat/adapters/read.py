"""Reading an input file (JSON, YAML, gzip) and turning it into facts, FHIR or document.

The kind is detected from the content: an object with a ``resourceType`` is FHIR R4, any other
object is a magstat patient document.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path
from typing import IO, Any

import yaml

from magstat.adapters.document import facts_from_document
from magstat.core.facts import PatientFacts
from magstat.errors import InvalidInputError
from magstat.kb.schema import KnowledgeBase

__all__ = ["facts_from_data", "parse_bytes", "read_input"]

MAX_INPUT_BYTES = 512 * 1024 * 1024
"""Largest input read (512 MiB): far above any one patient's record, below memory trouble."""


def parse_bytes(raw: bytes, name: str = "input") -> Any:
    """Parse JSON or YAML (optionally gzip-compressed) bytes.

    Raises:
        InvalidInputError: the bytes are neither valid JSON nor valid YAML.

    """
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InvalidInputError(name, f"damaged gzip data: {exc}") from None
    text_start = raw.lstrip()[:1]
    if text_start in (b"{", b"["):
        try:
            return json.loads(raw)
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
    if not isinstance(data, dict):
        raise InvalidInputError(
            name,
            "not a FHIR resource or a magstat patient document",
            value=type(data).__name__,
            allowed="a JSON/YAML object: a FHIR R4 resource (with resourceType) or a patient document",
        )
    return data


def read_input(source: str | Path, stdin: IO[bytes] | None = None) -> Any:
    """Read and parse a file path, or ``-`` for standard input.

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
    return parse_bytes(raw, name)


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
