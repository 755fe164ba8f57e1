"""A FHIR Bulk Data ``$export``, from kick-off to a verified folder of NDJSON files.

The flow follows Bulk Data Access 2.0: kick-off (``Prefer: respond-async``), status polling
until the manifest, download of the files it lists, then a ``DELETE`` on the status URL to tell
the server the files may go. The folder is kept with the server's ``manifest.json`` and
``magstat-export.json`` (what was asked, what arrived, each file's line count and SHA-256), so
that a rerun with the same request reuses a complete export, resumes an incomplete download
(files already verified are not fetched again) or goes on polling an export still being built.

Files are named ``<Type>.<n>.ndjson`` (``.ndjson.gz`` when the server sent gzip bytes) so that
the folder reads exactly like any other Bulk Data folder; the manifest's ``error`` files go to
``errors/``, its ``deleted`` files to ``deleted/``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal
from urllib.parse import quote, urlencode, urljoin, urlsplit

import httpx

from magstat.batch.bulk.errors import BulkExportError
from magstat.batch.bulk.http import BulkHttp, outcome_text, parse_retry_after, transient_outcome
from magstat.errors import InvalidInputError

__all__ = ["STATE_FILE", "ExportRequest", "ExportResult", "run_export"]

STATE_FILE = "magstat-export.json"
"""What magstat asked and received, kept in the export folder."""

MANIFEST_FILE = "manifest.json"
"""The server's manifest, as received."""

STATE_MARKER = "magstat bulk export"

Level = Literal["system", "patient", "group"]


@dataclass(frozen=True)
class ExportRequest:
    """One ``$export`` request.

    Attributes:
        base_url: the FHIR base URL.
        level: ``system`` (``[base]/$export``), ``patient`` (``[base]/Patient/$export``) or
            ``group`` (``[base]/Group/[id]/$export``).
        group: the Group id, for a group-level export.
        since: ``_since`` as a FHIR instant, or ``None``.
        types: ``_type``: the resource types to export.
        type_filter: ``_typeFilter`` queries (``Observation?code=...``); empty for none.

    """

    base_url: str
    level: Level = "system"
    group: str | None = None
    since: str | None = None
    types: tuple[str, ...] = ()
    type_filter: tuple[str, ...] = ()

    def url(self) -> str:
        """The kick-off endpoint."""
        base = self.base_url.rstrip("/")
        if self.level == "group":
            return f"{base}/Group/{self.group}/$export"
        if self.level == "patient":
            return f"{base}/Patient/$export"
        return f"{base}/$export"

    def query(self, with_type_filter: bool = True, types: tuple[str, ...] | None = None) -> str:
        """The kick-off query string (``types`` replaces the request's ``_type`` when given).

        Each ``_typeFilter`` query is percent-encoded on its own and the queries are joined with
        literal commas, as the specification asks, so that a server can split them before decoding.
        """
        params = {"_outputFormat": "application/fhir+ndjson"}
        types = self.types if types is None else types
        if types:
            params["_type"] = ",".join(types)
        if self.since:
            params["_since"] = self.since
        text = urlencode(params, safe=",")
        if with_type_filter and self.type_filter:
            text += "&_typeFilter=" + ",".join(quote(q, safe="") for q in self.type_filter)
        return text

    def key(self) -> dict[str, Any]:
        """What makes two requests the same export (compared with the kept one)."""
        return {
            "base_url": self.base_url.rstrip("/"),
            "level": self.level,
            "group": self.group,
            "since": self.since,
            "types": list(self.types),
            "type_filter": list(self.type_filter),
        }


@dataclass
class FileRecord:
    """One file of the manifest and what became of it."""

    kind: Literal["output", "error", "deleted"]
    rtype: str
    url: str
    name: str
    count: int | None = None
    lines: int | None = None
    malformed: int = 0
    bytes: int | None = None
    sha256: str | None = None
    problem: str | None = None

    @property
    def done(self) -> bool:
        """Downloaded and verified."""
        return self.sha256 is not None and self.problem is None


@dataclass
class ExportResult:
    """A complete export on disk.

    Attributes:
        folder: where the files are.
        transaction_time: the manifest's ``transactionTime``.
        reused: the export was already complete on disk; nothing was fetched.
        type_filter_used: ``_typeFilter`` was sent and accepted.
        files: every file of the manifest, downloaded or not.
        skipped: output files not fetched because magstat does not read their type.
        error_resources: OperationOutcome resources in the manifest's error files.
        error_issues: their issues, counted by ``severity/code``.

    """

    folder: Path
    transaction_time: str
    reused: bool
    type_filter_used: bool
    files: list[FileRecord]
    skipped: list[FileRecord] = field(default_factory=list)
    error_resources: int = 0
    error_issues: dict[str, int] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, int]:
        """Lines downloaded, by resource type (output files only)."""
        counts: Counter[str] = Counter()
        for f in self.files:
            if f.kind == "output":
                counts[f.rtype] += f.lines or 0
        return dict(sorted(counts.items()))


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a temporary file renamed over the target)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_state(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == STATE_MARKER else None


def prepare_folder(folder: Path) -> None:
    """Refuse an export folder that holds anything but an earlier magstat export.

    Raises:
        InvalidInputError: the folder exists, is not empty and is not a magstat export.

    """
    if not folder.exists():
        return
    if not folder.is_dir():
        raise InvalidInputError(str(folder), "exists and is not a folder", allowed="a folder for the export")
    if any(folder.iterdir()) and _read_state(folder) is None:
        raise InvalidInputError(
            str(folder),
            f"holds files that are not a magstat export (no {STATE_FILE}); refusing to replace them",
            allowed="a new or empty folder, or the folder of an earlier `magstat screen --fhir-server`",
        )


def _clear(folder: Path) -> None:
    """Empty an export folder (checked to be ours by :func:`prepare_folder`)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


_loads: Callable[[bytes], Any] = json.loads
try:  # orjson (the batch extra) parses several times faster; the standard library is the fallback
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - the batch extra brings orjson
    pass


def _open_lines(path: Path) -> Any:
    return gzip.open(path, "rb") if _is_gzip(path) else path.open("rb")


def _verify(path: Path, record: FileRecord) -> tuple[int, int, str | None]:
    """Count a downloaded file's lines and check their resource type against the manifest.

    Returns:
        (lines, malformed lines, problem or ``None``). A malformed line is left for screening to
        count and report; a resource of another type, or a line count that differs from the
        manifest's ``count``, is a problem with the file.

    """
    lines = malformed = 0
    wrong: Counter[str] = Counter()
    first_wrong: int | None = None
    try:
        with _open_lines(path) as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                lines += 1
                try:
                    rtype = _loads(raw).get("resourceType")
                except (ValueError, AttributeError, RecursionError):
                    malformed += 1
                    continue
                if rtype != record.rtype:
                    wrong[str(rtype)] += 1
                    first_wrong = first_wrong or number
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return lines, malformed, f"cannot be read as NDJSON ({type(exc).__name__})"
    if wrong:
        kinds = ", ".join(f"{n} {t}" for t, n in sorted(wrong.items()))
        return (
            lines,
            malformed,
            (f"the manifest says {record.rtype}, but the file holds {kinds} (first at line {first_wrong})"),
        )
    if record.count is not None and record.count != lines:
        return lines, malformed, f"the manifest says {record.count} resources, the file has {lines} lines"
    return lines, malformed, None


def _records_from_manifest(
    manifest: dict[str, Any], wanted: set[str]
) -> tuple[list[FileRecord], list[FileRecord]]:
    """The files to fetch (output of a wanted type, every error and deleted file) and the rest."""
    fetch: list[FileRecord] = []
    skipped: list[FileRecord] = []
    numbers: Counter[str] = Counter()

    def items(key: str) -> list[dict[str, Any]]:
        value = manifest.get(key) or []
        if not isinstance(value, list) or not all(
            isinstance(i, dict) and isinstance(i.get("url"), str) for i in value
        ):
            raise BulkExportError(f"the manifest's {key!r} is not a list of file items with a url")
        return value

    if not isinstance(manifest.get("output"), list):
        raise BulkExportError(
            "the manifest has no 'output' list (Bulk Data requires one, empty when nothing matched)"
        )
    kinds: tuple[tuple[Literal["output", "error", "deleted"], str, str | None], ...] = (
        ("output", "", None),
        ("error", "errors/", "OperationOutcome"),
        ("deleted", "deleted/", "Bundle"),
    )
    for kind, folder, default in kinds:
        key = kind
        for item in items(key):
            rtype = item.get("type") if isinstance(item.get("type"), str) else default
            if not rtype or not rtype.isalnum():
                raise BulkExportError(f"a file item of the manifest's {key!r} has no usable resource type")
            count = item.get("count")
            numbers[folder + rtype] += 1
            record = FileRecord(
                kind,
                rtype,
                item["url"],
                f"{folder}{rtype}.{numbers[folder + rtype]}.ndjson",
                count=count if isinstance(count, int) and not isinstance(count, bool) else None,
            )
            if kind == "output" and wanted and rtype not in wanted:
                skipped.append(record)
            else:
                fetch.append(record)
    return fetch, skipped


@contextmanager
def _cancel_on_signal(cancel: Callable[[], None]) -> Iterator[None]:
    """On Ctrl-C or SIGTERM inside the block, cancel the export (``DELETE``) and re-raise."""

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: Ctrl-C and SIGTERM are someone else's
        previous = None
    try:
        yield
    except KeyboardInterrupt:
        cancel()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Exporter:
    def __init__(
        self,
        request: ExportRequest,
        folder: Path,
        client: BulkHttp,
        *,
        say: Callable[[str], None],
        clock: Callable[[], float],
    ) -> None:
        self.request = request
        self.folder = folder
        self.client = client
        self.say = say
        self.clock = clock
        self.state: dict[str, Any] = {}

    # -- state -----------------------------------------------------------------------------
    def save(self) -> None:
        _write_json(self.folder / STATE_FILE, self.state)

    def fresh_state(self) -> None:
        _clear(self.folder)
        self.state = {
            "tool": STATE_MARKER,
            "request": self.request.key(),
            "status_url": None,
            "kickoff": None,
            "type_filter_used": None,
            "manifest": None,
            "expires": None,
            "files": [],
            "skipped": [],
            "complete": False,
        }
        self.save()

    # -- kick-off and polling --------------------------------------------------------------
    def kickoff(self) -> str:
        """Start the export; drop a refused ``_typeFilter``, then types the server says it lacks.

        A server answers a ``_type`` it does not hold with a 4xx whose OperationOutcome names the
        type (the SMART reference server does so for MedicationStatement, for example). Such a
        type is dropped and the kick-off sent again, announced each time: a type the server does
        not have holds no data to miss. Any other refusal ends the run.
        """
        url = self.request.url()
        headers = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
        use_filter = bool(self.request.type_filter)
        if use_filter:
            declared = self.type_filter_declared()
            if not declared:
                why = "does not list it" if declared is False else "does not say"
                self.say(
                    f"export: the server's CapabilityStatement {why} whether $export supports _typeFilter; "
                    "not sending it (every Observation will be exported)"
                )
                use_filter = False
        types = tuple(self.request.types)
        level = self.request.level + (f" (Group/{self.request.group})" if self.request.group else "")
        self.say(f"export: kick-off at {url} ({level} level, _type={','.join(types)})")
        for _ in range(len(types) + 2):
            response = self.client.request(
                "GET", f"{url}?{self.request.query(use_filter, types)}", headers=headers, what="kick-off"
            )
            if response.status_code == 202 or not (400 <= response.status_code < 500):
                break
            if response.status_code in (401, 403, 404, 429):
                break
            if use_filter:
                self.say(
                    f"export: the server refused _typeFilter ({outcome_text(response)}); "
                    "asking again without it (every Observation will be exported)"
                )
                use_filter = False
                continue
            text = outcome_text(response)
            named = tuple(t for t in types if re.search(rf"\b{t}\b", text) and t != "Patient")
            if not named or len(named) == len(types):
                break
            types = tuple(t for t in types if t not in named)
            self.say(f"export: the server refused _type {','.join(named)} ({text}); asking again without it")
        if response.status_code != 202:
            raise BulkExportError(f"the server did not start the export at {url}: {outcome_text(response)}")
        location = response.headers.get("Content-Location")
        if not location:
            raise BulkExportError(
                f"the server accepted the export at {url} but gave no Content-Location to poll"
            )
        status_url = str(urljoin(url, location))
        self.state.update(
            status_url=status_url,
            kickoff=dt.datetime.fromtimestamp(self.clock(), dt.UTC).isoformat(timespec="seconds"),
            type_filter_used=use_filter,
            types_requested=list(types),
        )
        self.save()
        return status_url

    def type_filter_declared(self) -> bool | None:
        """Whether the server's CapabilityStatement declares ``_typeFilter`` for this ``$export``.

        Bulk Data 2.0 leaves ``_typeFilter`` optional for servers and asks them to describe the
        parameters of each export operation in their CapabilityStatement. The statement names an
        ``OperationDefinition`` for ``export`` (at the system level, or on ``Patient`` or
        ``Group``); only a definition the server itself hosts says what it supports (the IG's own
        canonical lists every optional parameter). Returns ``True`` when such a definition lists
        ``_typeFilter``, ``False`` when the server's definitions leave it out, ``None`` when the
        statement or a hosted definition cannot be read. Both are read without the token: they
        describe the server, not a patient.
        """
        base = self.request.base_url.rstrip("/")
        capability = self._json(f"{base}/metadata", "metadata")
        if capability is None:
            return None
        scope = {"system": None, "patient": "Patient", "group": "Group"}[self.request.level]
        at_level: list[str] = []
        anywhere: list[str] = []
        for rest in capability.get("rest") or []:
            if not isinstance(rest, dict):
                continue
            places: list[tuple[str | None, Any]] = [(None, rest.get("operation"))]
            places += [
                (r.get("type"), r.get("operation")) for r in rest.get("resource") or [] if isinstance(r, dict)
            ]
            for rtype, operations in places:
                for op in operations or []:
                    if not isinstance(op, dict) or str(op.get("name", "")).lstrip("$") != "export":
                        continue
                    definition = op.get("definition")
                    if isinstance(definition, str) and definition:
                        (at_level if rtype == scope else anywhere).append(definition.partition("|")[0])
        origin = urlsplit(base)[:2]
        hosted = [d for d in at_level or anywhere if urlsplit(d)[:2] == origin]
        answers = []
        for definition in dict.fromkeys(hosted):
            operation = self._json(definition, "operation definition")
            if operation is None or operation.get("resourceType") != "OperationDefinition":
                continue
            names = {p.get("name") for p in operation.get("parameter") or [] if isinstance(p, dict)}
            answers.append("_typeFilter" in names)
        return any(answers) if answers else None

    def _json(self, url: str, what: str) -> dict[str, Any] | None:
        """A JSON object from ``url`` read without the token, or ``None`` when it cannot be had."""
        try:
            response = self.client.request(
                "GET", url, headers={"Accept": "application/fhir+json"}, use_auth=False, what=what
            )
            data = response.json() if response.status_code == 200 else None
        except (BulkExportError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def poll(self, status_url: str) -> tuple[dict[str, Any], str | None]:
        """Poll the status URL until the manifest; honour Retry-After, else back off exponentially."""
        policy = self.client.policy
        deadline = time.monotonic() + policy.timeout
        interval = policy.poll_start
        last_note = ""
        last_said = 0.0
        started = time.monotonic()
        transient = 0
        while True:
            response = self.client.request(
                "GET", status_url, headers={"Accept": "application/json"}, what="status", retry_429=False
            )
            status = response.status_code
            now = time.monotonic()
            if status == 429:
                # Polling too often (Bulk Data: 429 with Retry-After): wait as told, then go on.
                wait = parse_retry_after(response.headers.get("Retry-After"))
                if wait is None:
                    wait = interval
                    interval = min(policy.poll_cap, interval * 2)
                wait = min(wait, policy.max_retry_after)
                self.say(f"status: HTTP 429 (polling too often), waiting {wait:g} s")
                self._pause(now, wait, deadline)
                continue
            if status == 200:
                try:
                    manifest = response.json()
                except ValueError:
                    manifest = None
                if not isinstance(manifest, dict):
                    raise BulkExportError("the export finished but its manifest is not a JSON object")
                return manifest, response.headers.get("Expires")
            if status == 404:
                raise BulkExportError(
                    f"the export at {status_url} is gone (cancelled, expired or unknown): {outcome_text(response)}"
                )
            if 400 <= status < 500 and transient_outcome(response) and transient + 1 < policy.attempts:
                # A failed status request, not a failed export (a transient issue code): later.
                wait = parse_retry_after(response.headers.get("Retry-After"))
                wait = policy.backoff(transient) if wait is None else min(wait, policy.max_retry_after)
                transient += 1
                self.say(f"status: {outcome_text(response)}; trying again in {wait:g} s")
                self._pause(now, wait, deadline)
                continue
            if status != 202:
                raise BulkExportError(f"the export failed: {outcome_text(response)}")
            transient = 0
            progress = " ".join((response.headers.get("X-Progress") or "in progress").split())[:100]
            progress = "".join(c for c in progress if c.isprintable())
            if progress != last_note or now - last_said >= 60:
                self.say(f"export: {progress} ({now - started:.0f} s)")
                last_note, last_said = progress, now
            wait = parse_retry_after(response.headers.get("Retry-After"))
            if wait is None:
                wait = interval
                interval = min(policy.poll_cap, interval * 2)
            else:
                wait = min(wait, policy.max_retry_after)
            self._pause(now, wait, deadline)

    def _pause(self, now: float, wait: float, deadline: float) -> None:
        """Wait before the next status poll, or cancel the export when the wait would pass the deadline."""
        if now + wait > deadline:
            self.cancel()
            raise BulkExportError(
                f"the export was not ready after {self.client.policy.timeout:g} s (--export-timeout); "
                "it was cancelled"
            )
        self.client.sleep(max(wait, 0.05))

    def whole_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Follow a paged manifest's ``link`` (relation ``next``) and join its pages into one.

        Bulk Data allows a server to split a long manifest into pages; reading only the first
        would drop files silently.
        """
        pages = 1
        current = manifest
        joined = dict(manifest)
        for key in ("output", "error", "deleted"):
            joined[key] = list(manifest.get(key) or [])
        while True:
            links = current.get("link") or []
            after = next(
                (
                    link.get("url")
                    for link in links
                    if isinstance(link, dict)
                    and link.get("relation") == "next"
                    and isinstance(link.get("url"), str)
                ),
                None,
            )
            if not after:
                break
            if pages >= 10_000:
                raise BulkExportError("the manifest has more than 10,000 pages; refusing to follow more")
            response = self.client.request(
                "GET", after, headers={"Accept": "application/json"}, what="manifest page"
            )
            page: Any = None
            try:
                page = response.json() if response.status_code == 200 else None
            except ValueError:
                page = None
            if not isinstance(page, dict):
                raise BulkExportError(
                    f"the manifest page {after} could not be read: {outcome_text(response)}"
                )
            current = page
            for key in ("output", "error", "deleted"):
                joined[key].extend(current.get(key) or [])
            pages += 1
        if pages > 1:
            joined.pop("link", None)
            self.say(f"export: the manifest came in {pages} pages")
        return joined

    def cancel(self) -> None:
        status_url = self.state.get("status_url")
        if not status_url or self.state.get("manifest"):
            return
        try:
            response = self.client.http.delete(
                status_url,
                headers={"Accept": "application/fhir+json", **self.client.auth.header()},
                timeout=10,
            )
            self.say(f"export: cancelled at the server (DELETE: HTTP {response.status_code})")
        except (httpx.HTTPError, BulkExportError) as exc:
            self.say(f"export: could not cancel at the server ({type(exc).__name__})")
        self.state["status_url"] = None
        self.save()

    def done_signal(self) -> None:
        """Tell the server the files have been fetched (a DELETE after completion; best effort)."""
        status_url = self.state.get("status_url")
        if not status_url:
            return
        try:
            self.client.http.delete(
                status_url,
                headers={"Accept": "application/fhir+json", **self.client.auth.header()},
                timeout=10,
            )
        except (httpx.HTTPError, BulkExportError):
            return

    # -- download --------------------------------------------------------------------------
    def _send_token(self, url: str) -> bool:
        flag = self.state["manifest"].get("requiresAccessToken")
        if isinstance(flag, bool):
            return flag
        # Absent (a server error): send the token only to the FHIR server's own origin.
        return urlsplit(url)[:2] == urlsplit(self.request.base_url)[:2]

    def download(self, record: FileRecord) -> None:
        target = self.folder / record.name
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.part")
        headers = {"Accept": "application/fhir+ndjson", "Accept-Encoding": "gzip"}
        try:
            self._download(record, part, headers)
        finally:
            part.unlink(missing_ok=True)

    def _download(self, record: FileRecord, part: Path, headers: dict[str, str]) -> None:
        for attempt in range(2):
            with self.client.stream(
                record.url, headers=headers, use_auth=self._send_token(record.url), what=f"file {record.name}"
            ) as response:
                if response.status_code != 200:
                    response.read()
                    record.problem = f"{outcome_text(response)} for {record.url}"
                    return
                with part.open("wb") as handle:
                    try:
                        for chunk in response.iter_bytes(1 << 20):
                            handle.write(chunk)
                    except httpx.HTTPError as exc:
                        record.problem = f"the download broke off ({type(exc).__name__})"
                        continue
            name = record.name
            if _is_gzip(part) and not name.endswith(".gz"):
                name += ".gz"
            lines, malformed, problem = _verify(part, record)
            if problem is None:
                final = self.folder / name
                os.replace(part, final)
                record.name = name
                record.lines, record.malformed, record.problem = lines, malformed, None
                record.bytes = final.stat().st_size
                record.sha256 = _sha256(final)
                return
            record.problem = problem
            if attempt == 0:
                self.say(f"download: {record.name}: {problem}; downloading it once more")

    def _verified_on_disk(self, record: FileRecord) -> bool:
        path = self.folder / record.name
        return record.sha256 is not None and path.is_file() and _sha256(path) == record.sha256

    # -- the whole flow --------------------------------------------------------------------
    def run(self, new_export: bool) -> ExportResult:
        prepare_folder(self.folder)
        previous = _read_state(self.folder)
        reused = False
        if previous is not None and not new_export and previous.get("request") == self.request.key():
            self.state = previous
            files = [FileRecord(**f) for f in self.state.get("files", [])]
            if self.state.get("complete") and all(self._verified_on_disk(f) for f in files):
                self.say(
                    f"export: reusing the complete export in {self.folder} "
                    f"(transactionTime {self.state['manifest'].get('transactionTime')}); "
                    "--new-export fetches a new one"
                )
                reused = True
            elif self.state.get("manifest"):
                self.say(f"export: resuming the download of the export in {self.folder}")
            elif self.state.get("status_url"):
                self.say("export: polling the export started by the previous run")
        else:
            if previous is not None:
                why = "--new-export" if new_export else "the request differs from the kept export"
                self.say(f"export: replacing the kept export in {self.folder} ({why})")
            self.fresh_state()

        if not reused:
            with _cancel_on_signal(self.cancel):
                if not self.state.get("manifest"):
                    status_url = self.state.get("status_url")
                    manifest: dict[str, Any] | None = None
                    if status_url:
                        try:
                            manifest, expires = self.poll(status_url)
                        except BulkExportError as exc:
                            self.say(f"export: {exc}; starting a new export")
                            self.fresh_state()
                    if manifest is None:
                        manifest, expires = self.poll(self.kickoff())
                    manifest = self.whole_manifest(manifest)
                    fetch, skipped = _records_from_manifest(manifest, set(self.request.types))
                    _write_json(self.folder / MANIFEST_FILE, manifest)
                    self.state.update(
                        manifest=manifest,
                        expires=expires,
                        files=[vars(f) for f in fetch],
                        skipped=[vars(f) for f in skipped],
                    )
                    self.save()
            self.fetch_all()
        return self.result(reused)

    def fetch_all(self) -> None:
        files = [FileRecord(**f) for f in self.state["files"]]
        todo = [f for f in files if not self._verified_on_disk(f)]
        kept = len(files) - len(todo)
        total = len(files)
        if kept:
            self.say(f"download: {kept} of {total} files already downloaded and verified")
        for record in todo:
            record.sha256 = None
            record.problem = None
            self.download(record)
            if record.done:
                done = sum(1 for f in files if f.done)
                self.say(
                    f"download: {done}/{total} {record.name} ({record.lines} resources, {record.bytes} bytes)"
                )
            else:
                self.say(f"download: {record.name} FAILED: {record.problem}")
            self.state["files"] = [vars(f) for f in files]
            self.save()
        failed = [f for f in files if not f.done]
        if failed:
            names = "; ".join(f"{f.name}: {f.problem}" for f in failed)
            raise BulkExportError(
                f"{len(failed)} of {total} files of the export could not be downloaded intact ({names}). "
                f"The other files are kept in {self.folder}: run the same command again to retry only "
                "these, or add --new-export for a new export. Nothing was screened."
            )
        self.state["complete"] = True
        self.save()
        self.done_signal()

    def result(self, reused: bool) -> ExportResult:
        files = [FileRecord(**f) for f in self.state["files"]]
        skipped = [FileRecord(**f) for f in self.state.get("skipped", [])]
        resources = 0
        issues: Counter[str] = Counter()
        for f in files:
            if f.kind != "error":
                continue
            with _open_lines(self.folder / f.name) as handle:
                for raw in handle:
                    if not raw.strip():
                        continue
                    resources += 1
                    try:
                        outcome = json.loads(raw)
                    except ValueError:
                        issues["unreadable"] += 1
                        continue
                    for issue in outcome.get("issue") or [] if isinstance(outcome, dict) else []:
                        if isinstance(issue, dict):
                            issues[f"{issue.get('severity', '?')}/{issue.get('code', '?')}"] += 1
        return ExportResult(
            folder=self.folder,
            transaction_time=str(self.state["manifest"].get("transactionTime", "")),
            reused=reused,
            type_filter_used=bool(self.state.get("type_filter_used")),
            files=files,
            skipped=skipped,
            error_resources=resources,
            error_issues=dict(sorted(issues.items())),
        )


def run_export(
    request: ExportRequest,
    folder: Path,
    client: BulkHttp,
    *,
    new_export: bool = False,
    say: Callable[[str], None] = lambda _line: None,
    clock: Callable[[], float] = time.time,
) -> ExportResult:
    """Export from a Bulk Data server into ``folder`` (or reuse or resume what is there).

    Args:
        request: what to export.
        folder: the export folder (new, empty, or an earlier magstat export).
        client: the HTTP client with its retry policy and authorisation.
        new_export: ignore a kept export and start a new one.
        say: where progress lines go (no patient data, no token).
        clock: seconds since the epoch.

    Returns:
        The export on disk, every file verified against the manifest.

    Raises:
        BulkExportError: the export failed or a file could not be downloaded intact.
        BulkAuthError: the server refused the client.
        InvalidInputError: the folder holds something else.
        KeyboardInterrupt: Ctrl-C or SIGTERM; an export still being built was cancelled.

    """
    return _Exporter(request, folder, client, say=say, clock=clock).run(new_export)
