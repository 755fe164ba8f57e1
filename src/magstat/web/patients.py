"""The patients the web app offers to pick: built-in demo patients and shared synthetic records.

The built-in demo patients (``magstat demo``) always work. A folder of further synthetic
records (``synthea/*.json`` and ``synthea-py/*.json.gz``, such as the repository's
``tests/data``) is listed when ``MAGSTAT_SHARED_DATA`` names it; its files are read when
picked, never at start-up.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magstat.adapters.read import parse_bytes
from magstat.demo import demo_patients

__all__ = ["DemoPatient", "catalogue", "end_of_record", "find", "shared_data_dir"]

_SHARED_SETS = (
    ("synthea", "*.json", "Shared Synthea patients"),
    ("synthea-py", "*.json.gz", "Shared synthetic patients with magnesium results (synthea-py)"),
)
_NOT_PATIENTS = ("hospital", "practitioner")  # Synthea writes these information bundles too


@dataclass(frozen=True, slots=True)
class DemoPatient:
    """One patient that can be picked by id.

    Attributes:
        id: stable id used in URLs (``case-01-ppi-diuretic-deficient``,
            ``shared-synthea-py-patient-07``).
        label: what the person picking sees.
        group: the heading the patient is listed under.
        path: the file of a shared patient; ``None`` for a built-in one.
        as_of: the date to assess at; ``None`` means the document's own date or, for FHIR,
            the end of the record.

    """

    id: str
    label: str
    group: str
    path: Path | None = None
    as_of: dt.date | None = None

    def load(self) -> Any:
        """The parsed input (FHIR Bundle or patient document)."""
        if self.path is None:
            return _builtin_data()[self.id]
        return parse_bytes(self.path.read_bytes(), self.path.name)


def shared_data_dir() -> Path | None:
    """The folder of further synthetic records named by ``MAGSTAT_SHARED_DATA``, if it exists.

    Never guessed from the project's surroundings: a user's clone has only what it ships.
    """
    value = os.environ.get("MAGSTAT_SHARED_DATA")
    folder = Path(value) if value else None
    return folder if folder is not None and folder.is_dir() else None


@functools.cache
def _builtin() -> tuple[DemoPatient, ...]:
    out = []
    for name, label, data, as_of in demo_patients():
        stem = name.split(".")[0]
        fhir = isinstance(data, Mapping) and "resourceType" in data
        group = (
            "Synthetic FHIR records (built in)" if fhir else "Constructed cases (labelled, not real patients)"
        )
        out.append(DemoPatient(stem, label, group, None, as_of))
    return tuple(out)


@functools.cache
def _builtin_data() -> dict[str, Any]:
    return {name.split(".")[0]: data for name, _label, data, _as_of in demo_patients()}


def _shared(folder: Path | None) -> list[DemoPatient]:
    if folder is None:
        return []
    out = []
    for sub, pattern, group in _SHARED_SETS:
        for path in sorted((folder / sub).glob(pattern)):
            if path.name.startswith(_NOT_PATIENTS):
                continue
            stem = path.name.split(".")[0]
            # Synthea names files Given_Family_uuid; show the name, keep the uuid in the id.
            label = " ".join(stem.split("_")[:2]) if "_" in stem else stem
            out.append(DemoPatient(f"shared-{sub}-{stem}", label, group, path, None))
    return out


def catalogue() -> list[DemoPatient]:
    """Every patient that can be picked: built-in first, then shared ones that are present."""
    return [*_builtin(), *_shared(shared_data_dir())]


def find(patient_id: str) -> DemoPatient | None:
    """The patient with this id, or ``None`` (ids are looked up, never used as paths)."""
    for patient in catalogue():
        if patient.id == patient_id:
            return patient
    return None


def end_of_record(data: Any) -> dt.date | None:
    """The latest clinical date in a FHIR Bundle: the as-of date at which a past record ends.

    Synthetic records end years ago; assessing them "today" would make every result stale.
    Returns ``None`` when the bundle carries no date.
    """
    latest = ""
    entries = data.get("entry", []) if isinstance(data, Mapping) else []
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource", {}) if isinstance(entry, Mapping) else {}
        if not isinstance(resource, Mapping):
            continue
        for key in ("effectiveDateTime", "authoredOn", "recordedDate", "issued"):
            value = resource.get(key)
            if isinstance(value, str) and value[:10] > latest:
                latest = value[:10]
    try:
        return dt.date.fromisoformat(latest) if latest else None
    except ValueError:
        return None
