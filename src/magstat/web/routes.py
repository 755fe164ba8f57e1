"""The web app's routes: a FastAPI router of HTML pages, a PDF and JSON report, and static files.

Handlers parse, call :func:`magstat.core.assess` and render; they hold no clinical logic and
keep no patient data. A result page carries its own input (compressed, in hidden fields) so
that the PDF and JSON downloads assess it again instead of storing it on the server.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import gzip
import hashlib
import hmac
import json
import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from magstat.adapters.read import facts_from_data, parse_bytes
from magstat.core.assess import assess
from magstat.core.facts import PatientFacts
from magstat.core.result import Assessment
from magstat.errors import InvalidInputError
from magstat.kb import load
from magstat.kb.schema import KnowledgeBase
from magstat.render import render_json
from magstat.render.html import REPORT_CSS
from magstat.web import form as clinician_form
from magstat.web import patients, selfcheck
from magstat.web.pages import render
from magstat.web.pdf import render_pdf
from magstat.web.view import result_view

__all__ = ["MAX_UPLOAD_BYTES", "KBDep", "WebAccess", "get_kb", "require_web_user", "router"]

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
"""Largest upload (64 MiB): ten times a full synthetic lifetime record."""

_FORM_LIMITS = {"max_files": 2, "max_fields": 4000, "max_part_size": MAX_UPLOAD_BYTES}

SECURITY_HEADERS = {
    # Everything is served by the app itself: no CDN, no external fonts, no inline script.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Pages carry patient data: never keep them in a shared or browser cache.
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class WebAccess:
    """Who may use the clinician pages: anyone (``open``), or the holder of one Basic credential.

    Set by the service as ``app.state.web_access`` (see ``docs/web.md``, "Who may use the web
    app"). Not open and no credential: the clinician pages are disabled.
    """

    open: bool
    username: str | None = None
    password: str | None = None


def require_web_user(request: Request) -> None:
    """Let the request through only if the web access policy allows it.

    Raises:
        HTTPException: 401 with a Basic challenge (no or wrong credential), or 403 (the clinician
            pages are disabled with authentication on and no web credential configured).

    """
    access: WebAccess | None = getattr(request.app.state, "web_access", None)
    if access is None or access.open:
        return  # the web app on its own (development), or demo mode
    if not access.username or not access.password:
        raise HTTPException(
            status_code=403,
            detail="the clinician web app is disabled: authentication is on and no web credential is configured",
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    user = secret = b""
    if scheme.lower() == "basic":
        try:
            user, _, secret = base64.b64decode(given.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            user = secret = b""
    good_user = hmac.compare_digest(user, access.username.encode("utf-8"))
    good_secret = hmac.compare_digest(secret, access.password.encode("utf-8"))
    if not (good_user and good_secret):
        raise HTTPException(
            status_code=401,
            detail="authentication required",
            headers={"WWW-Authenticate": 'Basic realm="magstat", charset="UTF-8"'},
        )


_WEB_USER = [Depends(require_web_user)]


def get_kb(request: Request) -> KnowledgeBase:
    """The app's knowledge base (``app.state.kb``, as the service sets it), else the shipped one."""
    kb = getattr(request.app.state, "kb", None)
    return kb if isinstance(kb, KnowledgeBase) else load()


KBDep = Annotated[KnowledgeBase, Depends(get_kb)]


def _today() -> dt.date:
    """The server's local date: the default date of an assessment entered by hand."""
    return dt.datetime.now(dt.UTC).astimezone().date()


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _html(content: str, status: int = 200, timing: str = "") -> HTMLResponse:
    headers = dict(SECURITY_HEADERS)
    if timing:
        headers["Server-Timing"] = timing
    return HTMLResponse(content, status_code=status, headers=headers)


def _message(request: Request, kb: KnowledgeBase, heading: str, message: str, status: int) -> HTMLResponse:
    return _html(render("message.html", kb=kb, root=_root(request), heading=heading, message=message), status)


# --------------------------------------------------------------------------------------------
# Assessing, and carrying the input along for the downloads


@dataclass(frozen=True, slots=True)
class _Input:
    """An input to assess: the raw bytes (JSON/YAML, maybe gzip), its date and strictness."""

    raw: bytes
    name: str
    as_of: dt.date | None
    strict: bool


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: Assessment
    facts: PatientFacts
    as_of_note: str
    seconds: float


def _run(data: Any, kb: KnowledgeBase, as_of: dt.date | None, strict: bool) -> _Outcome:
    """Assess parsed input. A FHIR record without a date is assessed at its last date."""
    start = time.perf_counter()
    note = ""
    if as_of is None and isinstance(data, Mapping) and "resourceType" in data:
        as_of = patients.end_of_record(data) or _today()
        note = f"FHIR record, assessed as of its last date ({as_of.isoformat()})"
    facts = facts_from_data(data, kb, as_of=as_of, strict=strict)
    result = assess(facts, kb)
    return _Outcome(result, facts, note, time.perf_counter() - start)


def _pack(raw: bytes) -> str:
    """Compress input for a hidden field (gzip kept as it is)."""
    body = raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw, compresslevel=6, mtime=0)
    return base64.b64encode(body).decode("ascii")


def _unpack(text: str) -> bytes:
    """Undo :func:`_pack`, refusing damaged data and anything that inflates past the limit."""
    try:
        body = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError("payload", "damaged report data; assess the patient again") from None
    if body[:2] != b"\x1f\x8b":
        return body
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(body, MAX_UPLOAD_BYTES * 8)
    except zlib.error:
        raise InvalidInputError("payload", "damaged report data; assess the patient again") from None
    if inflater.unconsumed_tail:
        raise InvalidInputError(
            "payload", "input too large", allowed=f"at most {MAX_UPLOAD_BYTES * 8 // 2**20} MiB"
        )
    return raw


def _replay_fields(item: _Input, outcome: _Outcome) -> dict[str, str]:
    return {
        "payload": _pack(item.raw),
        "name": item.name,
        "as_of": outcome.result.as_of.isoformat(),
        "strict": "1" if item.strict else "",
    }


def _date_field(text: str, field: str) -> dt.date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(field, "not a date", value=text, allowed="YYYY-MM-DD") from None


def _result_page(
    request: Request,
    kb: KnowledgeBase,
    outcome: _Outcome,
    *,
    origin: str,
    replay: dict[str, str] | None = None,
    demo_id: str | None = None,
    started: float | None = None,
) -> HTMLResponse:
    start = time.perf_counter()
    root = _root(request)
    mds = next((f for f in outcome.result.findings if f.id == "mds"), None)
    base = f"{root}/ui/demo/{quote(demo_id)}" if demo_id else ""
    html = render(
        "result.html",
        kb=kb,
        root=root,
        view=result_view(outcome.result, outcome.facts, kb),
        origin=" · ".join(x for x in (origin, outcome.as_of_note) if x),
        mds_finding=mds,
        replay=replay or {},
        pdf_url=f"{base}/report.pdf" if demo_id else "",
        json_url=f"{base}/report.json" if demo_id else "",
    )
    now = time.perf_counter()
    timing = f"assess;dur={outcome.seconds * 1000:.1f}, render;dur={(now - start) * 1000:.1f}"
    if started is not None:  # from the request's arrival: reading, parsing, assessing, rendering
        timing += f", total;dur={(now - started) * 1000:.1f}"
    return _html(html, timing=timing)


def _download(outcome: _Outcome, kb: KnowledgeBase, kind: str) -> Response:
    result = outcome.result
    stem = re.sub(
        r"[^A-Za-z0-9._-]+", "-", f"magstat-{result.patient_id or 'patient'}-{result.as_of.isoformat()}"
    )
    headers = dict(SECURITY_HEADERS)
    if kind == "pdf":
        body = render_pdf(result_view(result, outcome.facts, kb))
        headers["Content-Disposition"] = f'attachment; filename="{stem}.pdf"'
        return Response(body, media_type="application/pdf", headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{stem}.json"'
    return Response(render_json(result), media_type="application/json", headers=headers)


# --------------------------------------------------------------------------------------------
# Clinician pages


def _form_defaults(kb: KnowledgeBase) -> dict[str, str]:
    values = {"as_of": _today().isoformat(), "lenient": "1"}
    for row in clinician_form.form_spec(kb).labs:
        values[f"{row.key}-unit"] = row.canonical_unit
    return values


def _demo_groups() -> list[tuple[str, list[patients.DemoPatient]]]:
    groups: dict[str, list[patients.DemoPatient]] = {}
    for patient in patients.catalogue():
        groups.setdefault(patient.group, []).append(patient)
    return list(groups.items())


def _row_range(values: Mapping[str, str], prefix: str, least: int) -> range:
    """Rows of a repeatable form section to draw: at least ``least``, and every posted one."""
    posted = clinician_form.rows(values, prefix)
    return range(max(least, (posted[-1] + 1) if posted else 0))


def _index(
    request: Request,
    kb: KnowledgeBase,
    values: Mapping[str, str],
    *,
    errors: Mapping[str, str] | None = None,
    form_problems: list[tuple[str, str, str]] | None = None,
    upload_problems: list[tuple[str, str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    spec = clinician_form.form_spec(kb)

    def count(prefix: str, least: int) -> range:
        return _row_range(values, prefix, least)

    html = render(
        "index.html",
        kb=kb,
        root=_root(request),
        spec=spec,
        values=values,
        errors=errors or {},
        form_problems=form_problems or [],
        upload_problems=upload_problems or [],
        demo_groups=_demo_groups(),
        med_rows=count("med", clinician_form.MEDICATION_ROWS),
        supp_rows=count("supp", clinician_form.SUPPLEMENT_ROWS),
        allergy_rows=count("allergy", clinician_form.ALLERGY_ROWS),
        allergy_types=clinician_form.ALLERGY_TYPES,
        condother_rows=count("condother", clinician_form.OTHER_CONDITION_ROWS),
        food_open=any(k.startswith("food-") and v for k, v in values.items()),
    )
    return _html(html, status)


@router.get("/", response_class=HTMLResponse, dependencies=_WEB_USER)
def index(request: Request, kb: KBDep) -> HTMLResponse:
    """The clinician's page: demo patients, upload, and the form."""
    return _index(request, kb, _form_defaults(kb))


@router.get("/ui/demo", response_model=None, dependencies=_WEB_USER)
def pick_demo(request: Request, kb: KBDep, patient: str = "") -> Response:
    """The demo picker's form: go to the chosen patient's result page."""
    if patients.find(patient) is None:
        return _message(request, kb, "No such demo patient", "Choose a patient from the list.", 404)
    return RedirectResponse(f"{_root(request)}/ui/demo/{quote(patient)}", status_code=303)


def _demo_outcome(patient_id: str, kb: KnowledgeBase) -> tuple[patients.DemoPatient, _Outcome] | None:
    patient = patients.find(patient_id)
    if patient is None:
        return None
    return patient, _run(patient.load(), kb, patient.as_of, strict=False)


@router.get("/ui/demo/{patient_id}", response_class=HTMLResponse, dependencies=_WEB_USER)
async def demo(request: Request, kb: KBDep, patient_id: str) -> HTMLResponse:
    """The result page of a demo patient."""
    started = time.perf_counter()
    found = await run_in_threadpool(_demo_outcome, patient_id, kb)
    if found is None:
        return _message(request, kb, "No such demo patient", f"There is no demo patient “{patient_id}”.", 404)
    patient, outcome = found
    return _result_page(
        request, kb, outcome, origin=f"Demo: {patient.label}", demo_id=patient.id, started=started
    )


@router.get("/ui/demo/{patient_id}/report.{kind}", response_model=None, dependencies=_WEB_USER)
async def demo_report(request: Request, kb: KBDep, patient_id: str, kind: str) -> Response:
    """A demo patient's report as PDF or JSON."""
    found = await run_in_threadpool(_demo_outcome, patient_id, kb) if kind in ("pdf", "json") else None
    if found is None:
        return _message(request, kb, "Not found", "There is no such report.", 404)
    return await run_in_threadpool(_download, found[1], kb, kind)


async def _read_upload(upload: UploadFile) -> bytes:
    raw = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(raw) > MAX_UPLOAD_BYTES:
        raise InvalidInputError("file", "file too large", allowed=f"at most {MAX_UPLOAD_BYTES // 2**20} MiB")
    if not raw:
        raise InvalidInputError("file", "no file chosen, or the file is empty", allowed="a JSON or YAML file")
    return raw


@router.post("/ui/assess", response_class=HTMLResponse, dependencies=_WEB_USER)
async def assess_posted(request: Request, kb: KBDep) -> HTMLResponse:
    """Assess an uploaded file or the form; show the result, or the form with its problems."""
    started = time.perf_counter()
    async with request.form(**_FORM_LIMITS) as posted:
        values = {k: v for k, v in posted.multi_items() if isinstance(v, str)}
        upload = posted.get("file")
        if values.get("source") == "upload":
            kept = {
                **_form_defaults(kb),
                "upload_as_of": values.get("upload_as_of", ""),
                "lenient": values.get("lenient", ""),
            }
            try:
                if not isinstance(upload, UploadFile):
                    raise InvalidInputError("file", "no file chosen", allowed="a JSON or YAML file")
                raw = await _read_upload(upload)
                name = upload.filename or "upload"
                item = _Input(
                    raw,
                    name,
                    _date_field(values.get("upload_as_of", ""), "upload_as_of"),
                    not values.get("lenient"),
                )
                outcome = await run_in_threadpool(
                    lambda: _run(parse_bytes(item.raw, item.name), kb, item.as_of, item.strict)
                )
            except InvalidInputError as error:
                control = "upload_as_of" if error.field in ("as_of", "upload_as_of") else "file"
                problem = (
                    control,
                    "Uploaded file" if control == "file" else "Assess as of",
                    _message_with_path(error),
                )
                return _index(
                    request, kb, kept, errors={control: problem[2]}, upload_problems=[problem], status=422
                )
            return _result_page(
                request,
                kb,
                outcome,
                origin=f"Uploaded file {name}",
                replay=_replay_fields(item, outcome),
                started=started,
            )
    return await _assess_form(request, kb, values)


def _message_with_path(error: InvalidInputError) -> str:
    """For a file: keep the field path, which says where in the file the problem is."""
    if error.field in ("file", "upload_as_of", "as_of", "payload"):
        return clinician_form.error_message(error)
    return f"{error.field}: {clinician_form.error_message(error)}"


async def _assess_form(request: Request, kb: KnowledgeBase, values: dict[str, str]) -> HTMLResponse:
    built = clinician_form.document_from_form(values, kb)
    raw = json.dumps(built.document, ensure_ascii=False).encode("utf-8")
    item = _Input(raw, "form", None, True)
    try:
        outcome = await run_in_threadpool(_run, built.document, kb, None, True)
    except InvalidInputError as error:
        spec = clinician_form.form_spec(kb)
        control = clinician_form.control_for(error, built.controls)
        message = clinician_form.error_message(error, kb, control)
        label = clinician_form.label_for(spec, control) if control else error.field
        return _index(
            request,
            kb,
            {**_form_defaults(kb), "lenient": "1", **values},
            errors={control: message} if control else {},
            form_problems=[(control or "", label, message)],
            status=422,
        )
    return _result_page(request, kb, outcome, origin="Entered by hand", replay=_replay_fields(item, outcome))


@router.post("/ui/report.{kind}", response_model=None, dependencies=_WEB_USER)
async def report(request: Request, kb: KBDep, kind: str) -> Response:
    """Assess the input carried by a result page again, and return it as PDF or JSON."""
    if kind not in ("pdf", "json"):
        return _message(request, kb, "Not found", "There is no such report.", 404)
    async with request.form(**_FORM_LIMITS) as posted:
        values = {k: v for k, v in posted.multi_items() if isinstance(v, str)}
    try:
        raw = _unpack(values.get("payload", ""))
        as_of = _date_field(values.get("as_of", ""), "as_of")
        strict = bool(values.get("strict"))
        outcome = await run_in_threadpool(
            lambda: _run(parse_bytes(raw, values.get("name") or "input"), kb, as_of, strict)
        )
    except InvalidInputError as error:
        return _message(request, kb, "The report could not be made", _message_with_path(error), 422)
    return await run_in_threadpool(_download, outcome, kb, kind)


# --------------------------------------------------------------------------------------------
# Self-check


def _selfcheck_page(
    request: Request,
    kb: KnowledgeBase,
    values: Mapping[str, str],
    *,
    errors: Mapping[str, str] | None = None,
    problems: list[tuple[str, str, str]] | None = None,
    status: int = 200,
) -> HTMLResponse:
    spec = selfcheck.selfcheck_spec(kb)

    def count(prefix: str, least: int) -> range:
        return _row_range(values, prefix, least)

    html = render(
        "selfcheck.html",
        kb=kb,
        root=_root(request),
        nav="self",
        spec=spec,
        spec_supplement_options=[(s.id, s.name) for s in spec.supplements],
        values=values,
        errors=errors or {},
        problems=problems or [],
        med_rows=count("med", selfcheck.MEDICINE_ROWS),
        supp_rows=count("supp", selfcheck.SUPPLEMENT_ROWS),
    )
    return _html(html, status)


@router.get("/self-check", response_class=HTMLResponse)
def self_check(request: Request, kb: KBDep) -> HTMLResponse:
    """The self-check questions."""
    return _selfcheck_page(request, kb, {})


_SELF_LABELS = {
    "age": "Your age",
    "alcohol_drinks_per_day": "Alcoholic drinks a day",
}


@router.post("/self-check", response_class=HTMLResponse)
async def self_check_answer(request: Request, kb: KBDep) -> HTMLResponse:
    """The self-check's answer in plain words, or the questions with what to correct."""
    async with request.form(**_FORM_LIMITS) as posted:
        values = {k: v for k, v in posted.multi_items() if isinstance(v, str)}
    built = selfcheck.document_from_answers(values, kb, _today())
    try:
        outcome = await run_in_threadpool(_run, built.document, kb, None, True)
    except InvalidInputError as error:
        control = clinician_form.control_for(error, built.controls)
        message = clinician_form.error_message(error)
        label = _SELF_LABELS.get(control or "", "This answer")
        if control and control.startswith("food-"):
            label = "Food"
        elif control and control.startswith("supp-"):
            label = "Supplement"
        return _selfcheck_page(
            request,
            kb,
            values,
            errors={control: message} if control else {},
            problems=[(control or "", label, message)],
            status=422,
        )
    plain = selfcheck.plain_result(outcome.result, kb)
    view_sources = result_view(outcome.result, outcome.facts, kb).sources
    html = render(
        "selfcheck_result.html",
        kb=kb,
        root=_root(request),
        nav="self",
        plain=plain,
        status_class=outcome.result.status,
        sources=view_sources,
    )
    return _html(html)


# --------------------------------------------------------------------------------------------
# Static files: a fixed set, read once from the package


_MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


@functools.cache
def _static_files() -> dict[str, tuple[bytes, str, str]]:
    folder = resources.files("magstat.web") / "static"
    shared = resources.files("magstat.render") / "templates" / REPORT_CSS  # the result's styles
    out = {}
    for entry in (*folder.iterdir(), shared):
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _MEDIA_TYPES:
            body = entry.read_bytes()
            out[entry.name] = (body, _MEDIA_TYPES[suffix], hashlib.sha256(body).hexdigest()[:16])
    return out


@router.get("/static/{name}", response_model=None)
def static(name: str, request: Request) -> Response:
    """A stylesheet or script of the app (only the files shipped in the package)."""
    found = _static_files().get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    body, media_type, etag = found
    headers = {
        "ETag": f'"{etag}"',
        "Cache-Control": "public, max-age=3600",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == f'"{etag}"':
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
