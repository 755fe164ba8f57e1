"""Writing a screening's outputs: atomically, deterministically, with bounded memory.

Everything is written into a staging folder beside the target, which is renamed into place
only when every file is complete: an interrupted run leaves the target as it was. Rows are
written in fixed-size row groups in patient-id order, and nothing in any output depends on
the clock, the machine or how the work was split, so a rerun gives the same bytes.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import array
import csv
import datetime as dt
import gzip
import io
import json
import os
import secrets
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from magstat.batch.issues import Issue
from magstat.batch.rows import BASE_COLUMNS
from magstat.errors import InvalidInputError
from magstat.kb import KnowledgeBase

__all__ = [
    "MARKER",
    "ROW_GROUP",
    "ResultWriter",
    "StagedOutput",
    "Summary",
    "arrow_column",
    "arrow_schema",
    "remove_stale_staging",
    "write_issues",
    "write_json",
]

MARKER = "magstat screen"
"""``summary.json`` ``tool`` value that marks a folder as a screening's output (safe to replace)."""

ROW_GROUP = 65_536
"""Rows per Parquet row group, fixed so that the file does not depend on how work was split."""

_KINDS = {
    "string": pa.string(),
    "date": pa.date32(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "list": pa.list_(pa.string()),
}

STATUS_ORDER = ("deficient", "likely_deficient", "at_risk", "indeterminate", "unlikely", "excess")
AGE_BANDS = ((0, 18, "0-17"), (18, 40, "18-39"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+"))
SERUM_BINS = [round(0.30 + 0.05 * i, 2) for i in range(27)]  # 0.30 .. 1.60 mmol/L
COMPLETENESS = (
    ("age", "age known"),
    ("sex", "sex known"),
    ("medications", "medication list"),
    ("egfr", "eGFR or creatinine"),
    ("serum_mg", "serum magnesium"),
    ("alcohol", "alcohol"),
    ("diet", "dietary magnesium"),
    ("mds_complete", "complete MDS"),
)


def arrow_schema(extra: Sequence[tuple[str, str]] = ()) -> pa.Schema:
    """The results schema: the base columns, then the input format's own."""
    return pa.schema([pa.field(name, _KINDS[kind]) for name, kind in (*BASE_COLUMNS, *extra)])


_EPOCH = dt.date(1970, 1, 1)
_FLOAT_EXACT = 2**53
_INT64 = 2**63


class _Unusual(Exception):  # noqa: N818 - a signal inside arrow_column, never raised out of it
    """A value :func:`arrow_column` leaves to ``pyarrow.array``."""


def arrow_column(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    """``pyarrow.array(values, kind)`` for the results' column types, built from buffers.

    ``pyarrow.array`` on Python objects first imports pandas when it is installed (to ask
    whether a value is a pandas object): about 0.15 CPU seconds, with the interpreter lock
    held, for a run that never uses pandas. The usual values of the results' columns (``str``,
    ``int``, ``float``, ``bool``, ``datetime.date``, lists of ``str``, or ``None``) are put
    in Arrow buffers directly instead; the array equals ``pyarrow.array``'s. Any other value
    (a ``datetime``, an integer a float cannot hold exactly, a list holding ``None``), or
    another type, goes through ``pyarrow.array`` as before, with its conversions and errors.

    .. versionadded:: 0.6.0
    """
    try:
        return _build(values, kind)
    except _Unusual:
        return pa.array(values, kind)


def _validity(values: Sequence[Any]) -> tuple[pa.Buffer | None, int]:
    """The validity bitmap of ``values`` (``None`` when none is null) and the null count."""
    nulls = 0
    bits = bytearray((len(values) + 7) // 8)
    for i, value in enumerate(values):
        if value is None:
            nulls += 1
        else:
            bits[i >> 3] |= 1 << (i & 7)
    return (pa.py_buffer(bits) if nulls else None), nulls


def _strings(values: Sequence[Any]) -> pa.Array:
    ends = array.array("i", [0])
    parts: list[bytes] = []
    size = 0
    for value in values:
        if value is not None:
            if type(value) is not str:
                raise _Unusual
            try:
                encoded = value.encode("utf-8")
            except UnicodeEncodeError:
                raise _Unusual from None
            parts.append(encoded)
            size += len(encoded)
            if size >= 2**31:
                raise _Unusual
        ends.append(size)
    validity, nulls = _validity(values)
    return pa.Array.from_buffers(
        pa.string(), len(values), [validity, pa.py_buffer(ends), pa.py_buffer(b"".join(parts))], nulls
    )


def _build(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    n = len(values)
    if kind == pa.string():
        return _strings(values)
    validity, nulls = _validity(values)
    if kind == pa.list_(pa.string()):
        ends = array.array("i", [0])
        items: list[Any] = []
        for value in values:
            if value is not None:
                if type(value) is not list or any(type(item) is not str for item in value):
                    raise _Unusual
                items.extend(value)
            ends.append(len(items))
        child = _strings(items)
        return pa.Array.from_buffers(kind, n, [validity, pa.py_buffer(ends)], nulls, children=[child])
    if kind == pa.bool_():
        bits = bytearray((n + 7) // 8)
        for i, value in enumerate(values):
            if value is None:
                continue
            if type(value) is not bool:
                raise _Unusual
            if value:
                bits[i >> 3] |= 1 << (i & 7)
        return pa.Array.from_buffers(kind, n, [validity, pa.py_buffer(bits)], nulls)
    data: array.array[Any]
    if kind == pa.int64():
        if any(v is not None and (type(v) is not int or not -_INT64 <= v < _INT64) for v in values):
            raise _Unusual
        data = array.array("q", [0 if v is None else v for v in values])
    elif kind == pa.float64():
        if any(
            v is not None
            and type(v) is not float
            and (type(v) is not int or not -_FLOAT_EXACT <= v <= _FLOAT_EXACT)
            for v in values
        ):
            raise _Unusual
        data = array.array("d", [0.0 if v is None else float(v) for v in values])
    elif kind == pa.date32():
        if any(v is not None and type(v) is not dt.date for v in values):
            raise _Unusual
        data = array.array("i", [0 if v is None else (v - _EPOCH).days for v in values])
    else:
        raise _Unusual
    return pa.Array.from_buffers(kind, n, [validity, pa.py_buffer(data)], nulls)


class StagedOutput:
    """A staging folder that becomes ``target`` on :meth:`commit`, or vanishes on :meth:`abort`.

    The target must not exist, be empty, or hold an earlier screening's output (its
    ``summary.json`` says so); anything else is refused, so no unrelated folder is replaced.

    A run that is killed (SIGKILL, power loss) cannot remove its hidden staging folder; the next
    run for the same target removes it (:func:`remove_stale_staging`). Each staging folder holds
    a ``.lock`` file locked for the life of its run, so a folder still in use is never removed.
    """

    def __init__(self, target: Path) -> None:
        self.target = target.resolve()
        check_target(self.target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(self.target)
        self.path = self.target.parent / f".{self.target.name}{_STAGING}{secrets.token_hex(4)}"
        self.path.mkdir()
        self._lock = _hold_lock(self.path / _LOCK)
        self.work = self.path / ".work"
        self.work.mkdir()

    def commit(self) -> None:
        """Put the finished outputs in place: one rename when the target is new."""
        shutil.rmtree(self.work, ignore_errors=True)
        check_target(self.target)
        (self.path / _LOCK).unlink(missing_ok=True)  # still locked (open) until the rename is done
        try:
            if self.target.exists():
                old = self.target.parent / f".{self.target.name}{_OLD}{secrets.token_hex(4)}"
                os.replace(self.target, old)
                os.replace(self.path, self.target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(self.path, self.target)
        finally:
            self._release()

    def abort(self) -> None:
        """Remove the staging folder and everything in it."""
        shutil.rmtree(self.path, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


_STAGING = ".magstat-tmp-"
_OLD = ".magstat-old-"
_LOCK = ".lock"
_UNLOCKED_STALE_SECONDS = 24 * 3600
"""A staging folder without a lock file (being committed, or from an older magstat) is left
alone unless it is this old."""


def _hold_lock(path: Path) -> Any:
    """Create and lock ``path`` for this process (the lock ends when the process does)."""
    handle = path.open("wb")
    try:
        import fcntl  # noqa: PLC0415 - POSIX only; elsewhere the age rule alone applies

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:
        pass
    return handle


def _abandoned(folder: Path) -> bool:
    """Whether a staging folder's run has ended without removing it."""
    lock = folder / _LOCK
    if lock.exists():
        try:
            import fcntl  # noqa: PLC0415
        except ImportError:
            fcntl = None  # type: ignore[assignment]
        if fcntl is not None:
            try:
                with lock.open("rb") as handle:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False  # locked: its run is alive
            return True
    try:
        age = time.time() - folder.stat().st_mtime
    except OSError:
        return False
    return age > _UNLOCKED_STALE_SECONDS


def remove_stale_staging(target: Path) -> list[Path]:
    """Remove hidden staging folders of ``target`` left by runs that were killed; return them.

    A folder whose lock is held by a live run is kept; a previous output set aside during a
    commit (``.magstat-old-``) is removed only once the target is in place.
    """
    removed: list[Path] = []
    parent = target.parent
    if not parent.is_dir():
        return removed
    for prefix in (_STAGING, _OLD):
        for folder in parent.glob(f".{glob_escape(target.name)}{prefix}*"):
            if not folder.is_dir() or folder.is_symlink():
                continue
            if prefix == _OLD and not target.exists():
                continue
            if prefix == _OLD or _abandoned(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def check_target(target: Path) -> None:
    """Refuse an output folder that holds something other than a screening's output.

    Raises:
        InvalidInputError: the folder exists and is not empty nor a previous output.

    """
    if not target.exists():
        return
    if not target.is_dir():
        raise InvalidInputError(str(target), "exists and is not a folder", allowed="a new or empty folder")
    entries = list(target.iterdir())
    if not entries:
        return
    summary = target / "summary.json"
    try:
        marker = json.loads(summary.read_text(encoding="utf-8")).get("tool")
    except (OSError, ValueError, AttributeError):
        marker = None
    if marker != MARKER:
        raise InvalidInputError(
            str(target),
            "holds files that are not a magstat screening output; refusing to replace them",
            allowed="a new or empty folder, or the folder of an earlier `magstat screen`",
        )


def write_json(path: Path, data: Any) -> None:
    """Write JSON with sorted keys and a final newline (stable bytes)."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_issues(path: Path, issues: Sequence[Issue]) -> None:
    """Write ``issues.csv``: kind, file, line, resource, problem."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["kind", "file", "line", "resource", "problem"])
        for issue in issues:
            writer.writerow(
                [issue.kind, issue.file or "", issue.line or "", issue.resource or "", issue.problem]
            )


class ResultWriter:
    """Streams rows to ``results.parquet`` (and ``results.csv``, ``assessments.ndjson.gz``)."""

    def __init__(
        self, folder: Path, schema: pa.Schema, *, csv_out: bool, details: bool, metadata: dict[str, str]
    ) -> None:
        self.schema = schema.with_metadata({k.encode(): v.encode() for k, v in metadata.items()})
        self.parquet = pq.ParquetWriter(
            folder / "results.parquet", self.schema, compression="zstd", use_dictionary=True
        )
        self.csv_schema = pa.schema(
            [pa.field(f.name, pa.string() if pa.types.is_list(f.type) else f.type) for f in schema]
        )
        self.csv: pa_csv.CSVWriter | None = (
            pa_csv.CSVWriter(str(folder / "results.csv"), self.csv_schema) if csv_out else None
        )
        self.details: io.BufferedWriter | None = None
        self._details_raw: io.BufferedWriter | None = None
        if details:
            self._details_raw = (folder / "assessments.ndjson.gz").open("wb")
            self.details = gzip.GzipFile(filename="", mode="wb", fileobj=self._details_raw, mtime=0)  # type: ignore[assignment]
        self.buffer: list[dict[str, Any]] = []
        self.rows = 0

    def write(self, row: dict[str, Any], detail: str | None) -> None:
        """Add one row (in patient-id order)."""
        self.buffer.append(row)
        self.rows += 1
        if self.details is not None and detail is not None:
            self.details.write(detail.encode("utf-8") + b"\n")
        if len(self.buffer) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        table = pa.Table.from_arrays(
            [arrow_column([row.get(f.name) for row in self.buffer], f.type) for f in self.schema],
            schema=self.schema,
        )
        self.parquet.write_table(table, row_group_size=ROW_GROUP)
        if self.csv is not None:
            columns = []
            for field in self.csv_schema:
                column = table.column(field.name)
                if pa.types.is_list(table.schema.field(field.name).type):
                    column = arrow_column(
                        ["; ".join(v) if v is not None else None for v in column.to_pylist()], pa.string()
                    )
                columns.append(column)
            self.csv.write_table(pa.Table.from_arrays(columns, schema=self.csv_schema))
        self.buffer = []

    def close(self) -> None:
        """Write what is buffered and close every file."""
        self._flush()
        self.parquet.close()
        if self.csv is not None:
            self.csv.close()
        if self.details is not None:
            self.details.close()
        if self._details_raw is not None:
            self._details_raw.close()


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def age_band(age: float | None) -> str:
    """The report's age band of an age in years (``unknown`` when not known)."""
    if age is None:
        return "unknown"
    for low, high, label in AGE_BANDS:
        if low <= age < high:
            return label
    return "unknown"


class Summary:
    """Aggregates the rows as they stream past (memory does not grow with the patients)."""

    def __init__(self, kb: KnowledgeBase, *, cohort: bool) -> None:
        self.kb = kb
        self.cohort = cohort
        self.patients = 0
        self.errors = 0
        self.deceased = 0
        self.status: Counter[str] = Counter()
        self.mds_complete: Counter[int] = Counter()
        self.mds_known: Counter[int] = Counter()
        self.mds_incomplete = 0
        self.cohort_n = 0
        self.cohort_scores: Counter[int] = Counter()
        self.cohort_weights: defaultdict[int, float] = defaultdict(float)
        self.exclusions: Counter[str] = Counter()
        self.by_age_sex: Counter[tuple[str, str, str]] = Counter()
        self.drug_classes: Counter[str] = Counter()
        self.serum_bins: Counter[int] = Counter()
        self.serum_n = 0
        self.serum_bands: Counter[str] = Counter()
        self.complete: Counter[str] = Counter()
        self.agreement: Counter[str] = Counter()

    def add(self, row: dict[str, Any]) -> None:
        """Count one results row."""
        self.patients += 1
        if row.get("error"):
            self.errors += 1
            self.status["not assessed"] += 1
            return
        if row.get("deceased"):
            # Died at or before the as-of date: counted apart, in none of the figures below.
            self.deceased += 1
            return
        status = row["status"]
        self.status[status] += 1
        score = row["mds_score"]
        if row["mds_complete"]:
            self.mds_complete[score] += 1
        else:
            self.mds_incomplete += 1
        if score is not None:
            self.mds_known[score] += 1
        if self.cohort:
            if row.get("in_cohort"):
                self.cohort_n += 1
                self.cohort_scores[score] += 1
                self.cohort_weights[score] += float(row["survey_weight"])
            else:
                reason = str(row.get("cohort_exclusion") or "")
                self.exclusions[reason.split(":", maxsplit=1)[0]] += 1
            for component in ("diuretic", "ppi"):
                multum = row.get(f"{component}_multum")
                core = row.get(f"mds_{component}")
                if multum is not None and core is not None:
                    self.agreement[f"{component}_{'agree' if bool(core) == multum else 'disagree'}"] += 1
        self.by_age_sex[(age_band(row["age_years"]), row["sex"] or "unknown", status)] += 1
        for name in row["drug_classes"]:
            self.drug_classes[name] += 1
        serum = row["serum_mg_mmol_l"]
        if serum is not None:
            self.serum_n += 1
            self.serum_bands[row["serum_mg_band"] or "unknown"] += 1
            index = max(0, min(len(SERUM_BINS) - 2, int((serum - SERUM_BINS[0]) / 0.05)))
            self.serum_bins[index] += 1
        missing = set(row["missing_inputs"])
        known = {
            "age": row["age_years"] is not None,
            "sex": row["sex"] is not None,
            "medications": "medications" not in missing,
            "egfr": row["egfr"] is not None,
            "serum_mg": serum is not None,
            "alcohol": row["mds_alcohol"] is not None,
            "diet": row["diet_mg_per_day"] is not None,
            "mds_complete": bool(row["mds_complete"]),
        }
        for key, value in known.items():
            if value:
                self.complete[key] += 1

    def to_dict(self) -> dict[str, Any]:
        """The aggregate part of ``summary.json``."""
        assessed = self.patients - self.errors - self.deceased
        if self.cohort:
            base_counts, base_label = self.cohort_scores, "participants in the study cohort (see cohort)"
        else:
            base_counts, base_label = self.mds_complete, "patients whose MDS is complete"
        base = sum(base_counts.values())
        known = sum(self.mds_known.values())
        data: dict[str, Any] = {
            "patients": self.patients,
            "not_assessed": self.errors,
            "deceased": self.deceased,
            "status_counts": {s: self.status.get(s, 0) for s in (*STATUS_ORDER, "not assessed")},
            "mds_distribution": {str(s): _pct(base_counts.get(s, 0), base) for s in range(6)},
            "mds_distribution_base": {"description": base_label, "n": base},
            "mds_counts": {str(s): base_counts.get(s, 0) for s in range(6)},
            "mds_complete": sum(self.mds_complete.values()),
            "mds_incomplete": self.mds_incomplete,
            "mds_distribution_known_components": {
                str(s): _pct(self.mds_known.get(s, 0), known) for s in range(6)
            },
            "drug_class_prevalence": {
                name: {"patients": n, "percent": _pct(n, assessed)}
                for name, n in sorted(self.drug_classes.items())
            },
            "serum_mg": {
                "patients_with_result": self.serum_n,
                "bands": dict(sorted(self.serum_bands.items())),
                "histogram_mmol_l": {
                    f"{SERUM_BINS[i]:.2f}": self.serum_bins.get(i, 0) for i in range(len(SERUM_BINS) - 1)
                },
            },
            "completeness_percent": {
                key: _pct(self.complete.get(key, 0), assessed) for key, _ in COMPLETENESS
            },
            "status_by_age_band_and_sex": [
                {"age_band": a, "sex": s, "status": st, "patients": n}
                for (a, s, st), n in sorted(self.by_age_sex.items())
            ],
        }
        if self.cohort:
            total_weight = sum(self.cohort_weights.values())
            data["mds_distribution_weighted"] = {
                str(s): _pct(self.cohort_weights.get(s, 0.0), total_weight) for s in range(6)
            }
            data["cohort_exclusions"] = dict(sorted(self.exclusions.items()))
            data["multum_agreement"] = dict(sorted(self.agreement.items()))
        return data
