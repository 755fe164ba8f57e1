"""A seeded population generator: FHIR bundles to a Bulk Data NDJSON folder, replicated.

Each source bundle (a FHIR R4 Bundle of one patient, as Synthea writes them) is converted to
the shape of a FHIR Bulk Data export: one ``<Type>.ndjson`` file per resource type (or
``<Type>.<n>.ndjson`` parts, optionally gzip-compressed), with ``urn:uuid:`` references
rewritten to ``<Type>/<id>``. Replica 0 keeps the original ids; every further replica gives
every resource of every patient a fresh id derived from ``seed``, the replica number and the
old id, so that a population of any size is made of real-looking records whose per-patient
results are known: a replica's assessment is its source patient's, under another id.

The generator is for scale tests and benchmarks; it never alters clinical content.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from magstat.adapters.read import inflate_gzip
from magstat.errors import InvalidInputError

__all__ = ["Population", "bundle_lines", "read_bundle", "source_bundles", "write_bulk"]

_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Population:
    """What :func:`write_bulk` wrote."""

    patients: int = 0
    resources: int = 0
    bytes_written: int = 0
    files: list[str] = field(default_factory=list)
    patient_map: dict[str, str] = field(default_factory=dict)
    """Generated Patient id -> source Patient id."""


def read_bundle(path: Path) -> dict[str, Any]:
    """Read a bundle file (``.json`` or ``.json.gz``)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = inflate_gzip(raw, str(path))
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def source_bundles(*folders: Path) -> list[Path]:
    """Patient bundles of the given folders (``*.json``, ``*.json.gz``), in name order.

    Synthea's ``hospitalInformation`` and ``practitionerInformation`` bundles are included:
    their Organizations and Practitioners belong in an export too (and are not read by the
    screening, which is the point).
    """
    paths: list[Path] = []
    for folder in folders:
        paths.extend(p for p in folder.iterdir() if p.name.endswith((".json", ".json.gz")))
    return sorted(paths, key=lambda p: (str(p.parent), p.name))


def bundle_lines(bundle: Mapping[str, Any]) -> Iterator[tuple[str, bytes]]:
    """Yield (resource type, NDJSON line) for each resource, references made relative.

    ``urn:uuid:<id>`` references to resources of the bundle become ``<Type>/<id>``, as a
    Bulk Data export writes them.
    """
    entries = [
        e for e in bundle.get("entry", []) if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]
    types: dict[str, str] = {}
    for entry in entries:
        resource = entry["resource"]
        rid, rtype = resource.get("id"), resource.get("resourceType")
        if isinstance(rid, str) and isinstance(rtype, str):
            types[rid] = rtype
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str) and full_url.startswith("urn:uuid:"):
                types[full_url[9:]] = rtype
    for entry in entries:
        resource = entry["resource"]
        yield str(resource["resourceType"]), _dump(_relative(resource, types))


def _relative(value: Any, types: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item.startswith("urn:uuid:"):
                rid = item[9:]
                out[key] = f"{types[rid]}/{rid}" if rid in types else item
            else:
                out[key] = _relative(item, types)
        return out
    if isinstance(value, list):
        return [_relative(item, types) for item in value]
    return value


def _dump(resource: Any) -> bytes:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _fresh_id(seed: int, replica: int, old: bytes) -> bytes:
    digest = hashlib.blake2b(b"%d:%d:" % (seed, replica) + old, digest_size=16).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}".encode()


class _Writer:
    """Writes ``<Type>.ndjson`` files, split into numbered parts past a size."""

    def __init__(self, out: Path, compress: bool, max_file_bytes: int | None) -> None:
        self.out = out
        self.compress = compress
        self.max_file_bytes = max_file_bytes
        self.handles: dict[str, tuple[IO[bytes], Path, int, int]] = {}
        self.files: list[str] = []
        self.written = 0

    def _open(self, rtype: str, part: int) -> tuple[IO[bytes], Path]:
        suffix = ".ndjson.gz" if self.compress else ".ndjson"
        name = f"{rtype}{suffix}" if self.max_file_bytes is None else f"{rtype}.{part}{suffix}"
        path = self.out / name
        raw: IO[bytes] = path.open("wb")
        handle: IO[bytes] = (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)  # type: ignore[assignment]
            if self.compress
            else io.BufferedWriter(raw, 1 << 20)
        )
        self.files.append(name)
        return handle, path

    def write(self, rtype: str, line: bytes) -> None:
        current = self.handles.get(rtype)
        if current is None:
            handle, path = self._open(rtype, 1)
            current = (handle, path, 1, 0)
        handle, path, part, size = current
        if self.max_file_bytes is not None and size and size + len(line) + 1 > self.max_file_bytes:
            self._close(handle)
            handle, path = self._open(rtype, part + 1)
            part, size = part + 1, 0
        handle.write(line)
        handle.write(b"\n")
        self.written += len(line) + 1
        self.handles[rtype] = (handle, path, part, size + len(line) + 1)

    @staticmethod
    def _close(handle: IO[bytes]) -> None:
        raw = getattr(handle, "fileobj", None) or getattr(handle, "raw", None)
        handle.close()
        if raw is not None and not raw.closed:
            raw.close()

    def close(self) -> None:
        for handle, *_ in self.handles.values():
            self._close(handle)
        self.handles.clear()


def write_bulk(
    sources: Iterable[Path | Mapping[str, Any]],
    out: Path,
    *,
    replicas: int = 1,
    target_bytes: int | None = None,
    seed: int = 0,
    compress: bool = False,
    max_file_bytes: int | None = None,
) -> Population:
    """Write the source bundles as a Bulk Data NDJSON folder, replicated with fresh ids.

    Args:
        sources: bundle files or parsed bundles, one patient each (bundles without a Patient,
            such as Synthea's organisation and practitioner files, are written once).
        out: the folder to write (created; files in it are overwritten).
        replicas: how many copies of each patient to write (replica 0 keeps the ids).
        target_bytes: if given, keep adding replicas until at least this many bytes are written
            (``replicas`` is then the minimum).
        seed: the seed of the fresh ids; the same seed gives the same bytes.
        compress: write ``.ndjson.gz``.
        max_file_bytes: split each type into ``<Type>.<n>.ndjson`` parts of about this size.

    Returns:
        Counts, the files written and the map of generated to source Patient ids.

    """
    out.mkdir(parents=True, exist_ok=True)
    patients: list[tuple[list[tuple[str, bytes]], frozenset[bytes]]] = []
    shared: list[tuple[str, bytes]] = []
    for source in sources:
        bundle = read_bundle(source) if isinstance(source, Path) else source
        lines = list(bundle_lines(bundle))
        if any(rtype == "Patient" for rtype, _ in lines):
            # Only the ids of this patient's own resources are renewed; references to shared
            # resources (organisations, practitioners) keep pointing at them.
            own = frozenset(str(e["resource"].get("id", "")).encode() for e in bundle.get("entry", []))
            patients.append((lines, own))
        else:
            shared.extend(lines)
    writer = _Writer(out, compress, max_file_bytes)
    population = Population()
    try:
        for rtype, line in shared:
            writer.write(rtype, line)
            population.resources += 1
        replica = 0
        while replica < max(replicas, 1) or (target_bytes is not None and writer.written < target_bytes):
            for lines, own in patients:
                fresh: dict[bytes, bytes] = {}

                def swap(
                    match: re.Match[bytes],
                    fresh: dict[bytes, bytes] = fresh,
                    replica: int = replica,
                    own: frozenset[bytes] = own,
                ) -> bytes:
                    old = match.group(0)
                    if old not in own:
                        return old
                    new = fresh.get(old)
                    if new is None:
                        new = fresh[old] = _fresh_id(seed, replica, old)
                    return new

                for rtype, line in lines:
                    new_line = line if replica == 0 else _UUID.sub(swap, line)
                    writer.write(rtype, new_line)
                    population.resources += 1
                    if rtype == "Patient":
                        source_id = json.loads(line)["id"]
                        new_id = source_id if replica == 0 else json.loads(new_line)["id"]
                        population.patient_map[new_id] = source_id
                        population.patients += 1
            replica += 1
    finally:
        writer.close()
    population.bytes_written = writer.written
    population.files = sorted(set(writer.files))
    return population
