"""One patient in, one result row out: the only place the batch path calls the core.

Every engine (DuckDB, Spark) and every input format (FHIR Bulk Data, NHANES, tables) ends in
the functions here, which call :func:`magstat.core.assess` through the same adapters as
``magstat assess``. An engine reads, groups, parallelises and writes; it never scores.

The row is taken from :meth:`Assessment.to_dict`, the stable JSON contract, so a row holds
exactly what ``magstat assess --format json`` prints for that patient, and
``assessment_sha256`` (a hash of that JSON) proves it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from magstat.batch.issues import Issue
from magstat.core import PatientFacts, assess
from magstat.errors import InvalidInputError
from magstat.kb import KnowledgeBase, load

__all__ = [
    "BASE_COLUMNS",
    "Job",
    "PatientResult",
    "assess_facts",
    "assess_row_group",
    "canonical_json",
    "gc_paused",
    "loads",
    "row_from_assessment",
    "screen_packed_chunk",
    "screen_record_chunk",
    "screen_rows_chunk",
]

try:  # orjson parses about twice as fast; the results are the same Python objects.
    import orjson as _orjson

    def _fast_loads(text: str | bytes) -> Any:
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:
            # orjson refuses a few things the standard library accepts (lone surrogates, very
            # large integers); the standard library decides, as it does for `magstat assess`.
            return json.loads(text)

    loads: Callable[[str | bytes], Any] = _fast_loads
except ImportError:  # pragma: no cover - depends on the environment
    loads = json.loads


BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("patient_id", "string"),
    ("as_of", "date"),
    ("status", "string"),
    ("severity", "string"),
    ("age_years", "float"),
    ("sex", "string"),
    ("deceased", "bool"),
    ("mds_score", "int"),
    ("mds_complete", "bool"),
    ("mds_band", "string"),
    ("mds_diuretic", "int"),
    ("mds_ppi", "int"),
    ("mds_kidney", "int"),
    ("mds_alcohol", "int"),
    ("egfr", "float"),
    ("egfr_comparator", "string"),
    ("egfr_equation", "string"),
    ("egfr_origin", "string"),
    ("serum_mg_mmol_l", "float"),
    ("serum_mg_band", "string"),
    ("serum_mg_date", "date"),
    ("femg_percent", "float"),
    ("diet_mg_per_day", "float"),
    ("diet_below_ear", "bool"),
    ("drug_classes", "list"),
    ("findings", "list"),
    ("missing_inputs", "list"),
    ("excluded_count", "int"),
    ("excluded", "list"),
    ("error", "string"),
    ("kb_version", "string"),
    ("kb_sha256", "string"),
    ("assessment_sha256", "string"),
)
"""The columns of every results row, with their kind (see ``output.arrow_schema``)."""


@dataclass(frozen=True, slots=True)
class Job:
    """The settings every worker needs, small and picklable (Spark ships it to executors).

    Attributes:
        as_of: the date of the assessments.
        strict: refuse the run at the first bad resource instead of leaving it out.
        details: also return each assessment's full JSON.
        kb_sha256: the knowledge base the driver loaded; a worker with another one refuses.

    """

    as_of: dt.date
    strict: bool
    details: bool
    kb_sha256: str

    def kb(self) -> KnowledgeBase:
        """The knowledge base, checked to be the driver's (a cluster could run another version)."""
        kb = load()
        if kb.sha256 != self.kb_sha256:
            raise RuntimeError(
                f"the knowledge base on this worker ({kb.version}, {kb.sha256[:12]}) differs from "
                f"the driver's ({self.kb_sha256[:12]}): install the same magstat everywhere"
            )
        return kb


@dataclass(frozen=True, slots=True)
class PatientResult:
    """The row of one patient, its full assessment JSON when details were asked for, or an issue.

    ``row`` is ``None`` only when there was no patient to assess (resources that name a
    Patient missing from the export); ``issues`` then says so. ``issues`` also holds lines
    that could not be parsed although the engine's scan let them through.
    """

    row: dict[str, Any] | None
    detail: str | None = None
    issues: tuple[Issue, ...] = ()


def canonical_json(data: Any) -> str:
    """The JSON text that is hashed: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_from_assessment(result: dict[str, Any]) -> dict[str, Any]:
    """The results row of one assessment, from its JSON contract (``Assessment.to_dict()``)."""
    mds = result["mds"]
    components = mds["components"]
    egfr = result["egfr"]
    serum = result["serum_magnesium"]
    intake = result["intake"]
    findings = [f["id"] for f in result["findings"]]
    drug_classes = sorted({fid.split(".", 1)[1] for fid in findings if fid.startswith("drug.")})
    return {
        "patient_id": result["patient"]["id"],
        "as_of": dt.date.fromisoformat(result["as_of"]),
        "status": result["status"],
        "severity": result["severity"],
        "age_years": result["patient"]["age_years"],
        "sex": result["patient"]["sex"],
        "deceased": bool(result.get("deceased")),
        "mds_score": mds["score"],
        "mds_complete": mds["complete"],
        "mds_band": mds["band"],
        "mds_diuretic": components.get("diuretic"),
        "mds_ppi": components.get("ppi"),
        "mds_kidney": components.get("kidney"),
        "mds_alcohol": components.get("alcohol"),
        "egfr": egfr["value"],
        "egfr_comparator": egfr["comparator"],
        "egfr_equation": egfr["equation"],
        "egfr_origin": egfr["origin"],
        "serum_mg_mmol_l": serum["mmol_l"],
        "serum_mg_band": serum["band"],
        "serum_mg_date": dt.date.fromisoformat(serum["date"]) if serum["date"] else None,
        "femg_percent": result["femg"]["percent"],
        "diet_mg_per_day": intake["mg_per_day"],
        "diet_below_ear": intake["below_ear"],
        "drug_classes": drug_classes,
        "findings": findings,
        "missing_inputs": list(result["missing_inputs"]),
        "excluded_count": len(result["excluded"]),
        "excluded": list(result["excluded"]),
        "error": None,
        "kb_version": result["knowledge_base"]["version"],
        "kb_sha256": result["knowledge_base"]["sha256"],
        "assessment_sha256": hashlib.sha256(canonical_json(result).encode("utf-8")).hexdigest(),
    }


def error_row(patient_id: str, as_of: dt.date, kb: KnowledgeBase, message: str) -> dict[str, Any]:
    """The row of a patient who could not be assessed: every result empty, ``error`` set."""
    row: dict[str, Any] = dict.fromkeys(name for name, _ in BASE_COLUMNS)
    row.update(
        patient_id=patient_id,
        as_of=as_of,
        drug_classes=[],
        findings=[],
        missing_inputs=[],
        excluded=[],
        excluded_count=0,
        error=message,
        kb_version=kb.version,
        kb_sha256=kb.sha256,
    )
    return row


def assess_facts(
    facts: PatientFacts, kb: KnowledgeBase, job: Job, extra: dict[str, Any] | None = None
) -> PatientResult:
    """Assess built facts and make the row (``extra`` columns are added as given)."""
    result = assess(facts, kb).to_dict()
    row = row_from_assessment(result)
    if extra:
        row.update(extra)
    return PatientResult(row, canonical_json(result) if job.details else None)


FhirGroup = tuple[str, Sequence[str], Sequence[str | bytes]]
"""One patient of a Bulk Data export: (patient id, resource types, the texts of their view rows), in order."""


def assess_row_group(
    patient_id: str,
    rtypes: Sequence[str],
    rows: Sequence[str | bytes],
    job: Job,
    kb: KnowledgeBase,
    *,
    projected: bool,
) -> PatientResult:
    """Assess one patient from the view rows of their resources (their Patient among them).

    The rows are the JSON texts an SQL engine makes with the knowledge base's views (the
    projection on ``FlatViews.keys`` when ``projected``, else the columns of
    :func:`magstat.adapters.fhir.flatten.row_sql`), in the order of a Bundle made of the
    resources (referenced Medications first, then input order); they are read by the same
    :func:`~magstat.adapters.fhir.facts_from_rows` as ``magstat assess --lenient``
    (``--strict`` makes a bad resource fatal), so the facts are those of that Bundle.

    Raises:
        InvalidInputError: ``job.strict`` and a resource fails the adapter's checks.

    """
    from magstat.adapters.fhir import ResourceRow, facts_from_rows, views_for_kb  # noqa: PLC0415

    flat = views_for_kb(kb)
    make = flat.row_from_projection if projected else flat.row_from_json
    resources: list[ResourceRow] = []
    problems: list[Issue] = []
    for rtype, text in zip(rtypes, rows, strict=True):
        try:
            resources.append(make(rtype, text, index=len(resources)))
        except (ValueError, RecursionError) as exc:
            problem = f"a row of this patient could not be read ({type(exc).__name__}); left out"
            if job.strict:
                raise InvalidInputError(f"Patient/{patient_id}", problem) from None
            problems.append(Issue("malformed_line", None, None, f"Patient/{patient_id}", problem))
    try:
        facts = facts_from_rows(resources, kb, as_of=job.as_of, strict=job.strict)
        result = assess_facts(facts, kb, job)
    except InvalidInputError as err:
        if job.strict:
            raise InvalidInputError(f"Patient/{patient_id}", err.message) from None
        result = PatientResult(error_row(patient_id, job.as_of, kb, err.message))
    return PatientResult(result.row, result.detail, tuple(problems)) if problems else result


def screen_rows_chunk(chunk: Sequence[FhirGroup], job: Job, *, projected: bool) -> list[PatientResult]:
    """Assess a chunk of patients given as view rows: ``(patient id, resource types, row texts)``.

    The rows of each patient are as :func:`assess_row_group` takes them, in Bundle order
    (referenced Medications first, then input order). Runs in a worker or in the driver, and
    gives the results ``magstat assess`` gives on a Bundle of the same resources.
    ``projected`` says which form the row texts have (an engine's projection on
    ``FlatViews.keys``, or :func:`magstat.adapters.fhir.flatten.row_sql` rows); it has no
    default, because read in the wrong form every patient looks empty.
    """
    kb = job.kb()
    results: list[PatientResult] = []
    with gc_paused():
        for patient_id, rtypes, rows in chunk:
            if "Patient" not in rtypes:
                problem = (
                    f"{len(rows)} resource(s) name Patient/{patient_id}, which is not in the export; "
                    "left out (no demographics to assess them with)"
                )
                issue = Issue("patient_not_in_export", None, None, f"Patient/{patient_id}", problem)
                results.append(PatientResult(None, issues=(issue,)))
                continue
            results.append(assess_row_group(patient_id, rtypes, rows, job, kb, projected=projected))
    return results


PackedUnit = tuple[list[str], bytes, tuple[str, ...], bytes, bytes, bytes]
"""A unit of sorted rows as a worker takes it without pyarrow: (the patient ids, in order; the end
of each patient's rows, as 64-bit machine integers; the resource type names; each row's type as
one byte, an index into those names; the row texts' end offsets as 64-bit machine integers; the
row texts' UTF-8 bytes end to end)."""


def screen_packed_chunk(unit: PackedUnit, job: Job, *, projected: bool) -> list[PatientResult]:
    """Assess a :data:`PackedUnit` of rows (patient id, resource type, row text): whole patients, sorted.

    Each patient's rows go to :func:`screen_rows_chunk`; a worker reads the unit with the
    standard library alone (importing pyarrow would cost each worker more than its reading).
    Runs in a worker or in the driver.
    """
    pids, patient_ends, names, types, ends, data = unit
    stops = memoryview(ends).cast("q").tolist()
    last_rows = memoryview(patient_ends).cast("q").tolist()
    if (
        len(pids) != len(last_rows)
        or len(types) != len(stops)
        or (last_rows and last_rows[-1] != len(stops))
        or (stops and stops[-1] != len(data))
        or any(t >= len(names) for t in set(types))
    ):
        raise ValueError("a unit's columns do not agree (lengths, ends or type numbers)")
    groups: list[FhirGroup] = []
    first = start = 0
    for pid, end in zip(pids, last_rows, strict=True):
        rows = stops[first:end]
        texts = [data[a:b] for a, b in zip([start, *rows[:-1]], rows, strict=True)]
        groups.append((pid, [names[t] for t in types[first:end]], texts))
        first, start = end, rows[-1] if rows else start
    return screen_rows_chunk(groups, job, projected=projected)


def screen_record_chunk(
    chunk: Sequence[tuple[str, Any]],
    function: Callable[[Any, Job, KnowledgeBase], PatientResult],
    job: Job,
) -> list[PatientResult]:
    """Assess a chunk of records (NHANES participants, table rows) with their format's function."""
    kb = job.kb()
    with gc_paused():
        return [function(record, job, kb) for _, record in chunk]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch of patients is read.

    Parsing JSON makes millions of short-lived containers; the collector's repeated passes over
    them cost more than the parsing itself. The records hold no reference cycles that need it,
    and it runs again as soon as the batch is done.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
