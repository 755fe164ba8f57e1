"""``magstat screen --fhir-server``: export from a FHIR server, then screen the export as a folder.

The output folder holds the usual screening outputs and, beside them, ``export/`` (the NDJSON
files, ``manifest.json`` and ``magstat-export.json``). Screening reads ``export/`` through
:func:`magstat.batch.screen` exactly as ``magstat screen DIR/export`` would, so both give the
same bytes. The outputs are first written to a hidden folder inside the output folder and then
moved into place one by one, ``summary.json`` last, so that a folder with a ``summary.json``
always holds a finished screening.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from magstat.batch.bulk.auth import BackendServicesAuth, ClientKey, NoAuth
from magstat.batch.bulk.export import ExportRequest, ExportResult, prepare_folder, run_export
from magstat.batch.bulk.http import Auth, BulkHttp, RetryPolicy
from magstat.batch.output import check_target
from magstat.batch.pipeline import ScreenOptions, ScreenOutcome, screen
from magstat.errors import InvalidInputError
from magstat.kb import KnowledgeBase

__all__ = ["EXPORT_FOLDER", "ServerScreening", "default_scope", "screen_from_server"]

EXPORT_FOLDER = "export"
"""The export's folder inside the output folder."""

_STAGE = ".magstat-screen"


@dataclass(frozen=True)
class ServerScreening:
    """Where to export from and how to authorise.

    Attributes:
        request: the ``$export`` request.
        client_id: the Backend Services client id, or ``None`` for an open server.
        key: the client's private key (with ``client_id``).
        scope: the scopes to ask for.
        policy: retries, back-off and the export timeout.
        new_export: ignore a kept export.
        timeout: seconds for one HTTP exchange.
        jku: the client's registered JWK Set URL, sent in the assertion header (optional).

    """

    request: ExportRequest
    client_id: str | None = None
    key: ClientKey | None = None
    scope: str = ""
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    new_export: bool = False
    timeout: float = 60.0
    jku: str | None = None


def default_scope(types: tuple[str, ...]) -> str:
    """SMART v2 system scopes to read and search each exported type (``system/Patient.rs`` ...)."""
    return " ".join(f"system/{t}.rs" for t in types)


def _say(line: str) -> None:
    sys.stderr.write(f"magstat screen: {line}\n")
    sys.stderr.flush()


def _prepare_out(out: Path) -> None:
    """Refuse an output folder that holds anything but an earlier screening and its export."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InvalidInputError(str(out), "exists and is not a folder", allowed="a new or empty folder")
    others = [
        p for p in out.iterdir() if p.name not in (EXPORT_FOLDER, _STAGE) and not p.name.startswith(".")
    ]
    if others:
        check_target(out)
    prepare_folder(out / EXPORT_FOLDER)


def _place_outputs(stage: Path, out: Path) -> None:
    """Move the outputs from the staging folder into ``out``; remove outputs of an earlier run it lacks."""
    new = json.loads((stage / "summary.json").read_text(encoding="utf-8"))["outputs"]
    try:
        old = json.loads((out / "summary.json").read_text(encoding="utf-8")).get("outputs", [])
    except (OSError, ValueError):
        old = []
    # The old summary goes first, so that a folder is never a mix under a summary that lists it.
    (out / "summary.json").unlink(missing_ok=True)
    for name in old:
        if name not in new and "/" not in name:
            (out / name).unlink(missing_ok=True)
    for name in sorted(new, key=lambda n: n == "summary.json"):
        os.replace(stage / name, out / name)
    shutil.rmtree(stage, ignore_errors=True)


def screen_from_server(
    config: ServerScreening,
    options: ScreenOptions,
    kb: KnowledgeBase | None = None,
    *,
    say: Callable[[str], None] = _say,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[ScreenOutcome, ExportResult]:
    """Export from the FHIR server into ``options.out / export``, then screen that folder.

    Args:
        config: the server, the request and the authorisation.
        options: the screening options (``input`` is replaced by the export folder).
        kb: the knowledge base (default: the shipped one).
        say: where progress lines go.
        sleep: how to wait between polls and retries.

    Returns:
        The screening outcome (``out`` is the output folder) and the export.

    Raises:
        BulkExportError: the export could not be completed (nothing is screened).
        BulkAuthError: the server refused the client.
        InvalidInputError: the output folder holds something else, or the screening refused
            the input.

    """
    out = options.out
    _prepare_out(out)
    out.mkdir(parents=True, exist_ok=True)
    folder = out / EXPORT_FOLDER
    with httpx.Client(timeout=config.timeout, follow_redirects=True) as http:
        auth: Auth = NoAuth()
        if config.client_id and config.key:
            auth = BackendServicesAuth(
                config.request.base_url,
                config.client_id,
                config.key,
                config.scope,
                http,
                say=say,
                jku=config.jku,
                policy=config.policy,
                sleep=sleep,
            )
        client = BulkHttp(http, auth, config.policy, sleep=sleep, say=say)
        started = time.monotonic()
        export = run_export(config.request, folder, client, new_export=config.new_export, say=say)
    if not export.reused:
        say(f"export: done in {time.monotonic() - started:.0f} s")
    if export.skipped:
        kinds = ", ".join(sorted({f.rtype for f in export.skipped}))
        say(
            f"export: {len(export.skipped)} file(s) of types magstat does not read were not downloaded ({kinds})"
        )
    if export.error_resources:
        issues = ", ".join(f"{k} {v}" for k, v in export.error_issues.items())
        say(
            f"export: the server reported {export.error_resources} OperationOutcome(s) in its error files "
            f"({issues}); kept in {folder / 'errors'}"
        )
    read = sum(export.resources.values())
    say(f"screen: {read} resources in {len(export.files)} files; screening {folder}")
    stage = out / _STAGE
    shutil.rmtree(stage, ignore_errors=True)
    outcome = screen(replace(options, input=folder, input_format="fhir", out=stage), kb)
    _place_outputs(stage, out)
    say(f"screen: done, {outcome.summary['patients']} patients")
    return ScreenOutcome(out, outcome.summary, outcome.issues), export
