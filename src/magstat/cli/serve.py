"""``magstat serve``: run the HTTP service (REST and CDS Hooks 2.0) with uvicorn.

Settings come from ``--config FILE`` (else the ``MAGSTAT_CONFIG`` variable), then ``MAGSTAT_*``
environment variables, then the options here. Without trusted EHRs in the configuration the
service refuses to start, unless ``--demo`` asks for a demonstration without authentication.

``--workers N`` (default: the number of CPUs) runs N worker processes on one listening socket.
The configuration is checked here first (a bad one stops before any worker starts); the workers
then build the service from the environment (:func:`magstat.service.main.create_app_from_environment`),
into which this command puts ``--config`` and ``--demo``, and, when the configuration does not
set them, one random ``cds.suppression_secret`` and ``cds.report_secret`` for all workers (so
that each recognises what another stored). What the workers share lives in the database
(:mod:`magstat.service.store`). With several workers the Prometheus client's multiprocess
mode is used, in a temporary folder made here and deleted on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import os
import secrets
import shutil
import socket
import sys
import tempfile
from typing import Any

__all__ = ["define_parser", "run"]

_EXIT_OK = 0
_EXIT_INVALID = 2  # invalid configuration or usage (magstat.cli.EXIT_INVALID)
_EXIT_KB = 3  # knowledge base invalid (magstat.cli.EXIT_KB)


def define_parser(sub: Any) -> None:
    """Add the ``serve`` subcommand."""
    parser = sub.add_parser(
        "serve",
        help="run the HTTP service (REST and CDS Hooks) for EHRs",
        description=(
            "Run the HTTP service: POST /assess, CDS Hooks 2.0 at /cds-services, /healthz and the "
            "OpenAPI document at /openapi.json. Configuration: --config FILE or MAGSTAT_CONFIG "
            "(TOML; see docs/service.md), then MAGSTAT_* environment variables."
        ),
    )
    parser.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: server.port, 8080)")
    parser.add_argument("--config", help="TOML config file (default: $MAGSTAT_CONFIG)")
    parser.add_argument(
        "--workers",
        type=int,
        help="worker processes (default: the number of CPUs); they share state through the database",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="DEMONSTRATION ONLY: no authentication of callers (logged loudly, marked on every response)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``magstat serve`` until interrupted."""
    try:
        import uvicorn  # noqa: PLC0415 - the service extra is optional

        from magstat.service import ConfigError, create_app, load_settings  # noqa: PLC0415
        from magstat.service.accesslog import logging_config  # noqa: PLC0415
    except ImportError as exc:
        sys.stderr.write(
            f"magstat serve: the service extra is not installed ({exc.name}); pip install 'magstat[service]'\n"
        )
        return _EXIT_INVALID
    from magstat.errors import KnowledgeBaseError  # noqa: PLC0415

    overrides: dict[str, Any] = {}
    if args.demo:
        overrides["demo"] = True
    workers = getattr(args, "workers", None)
    if workers is None:
        workers = os.cpu_count() or 1
    try:
        if not 1 <= workers <= 256:
            raise ConfigError(f"--workers: {workers} is not allowed; allowed: 1-256")
        settings = load_settings(args.config, **overrides)
        server = settings.server.model_copy(
            update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        )
        settings = settings.model_copy(update={"server": server})
        if args.port is not None and not 1 <= args.port <= 65535:
            raise ConfigError(f"--port: {args.port} is not a port number; allowed: 1-65535")
        problem = _listen_problem(settings.server.host, settings.server.port)
        if problem is not None:
            raise ConfigError(problem)
        app = create_app(settings) if workers == 1 else None
        if app is None:
            settings.check()
            from magstat.kb import load  # noqa: PLC0415 - refuse a broken knowledge base before forking

            load()
    except ConfigError as exc:
        sys.stderr.write(f"magstat serve: configuration error: {exc}\n")
        return _EXIT_INVALID
    except KnowledgeBaseError as exc:
        sys.stderr.write(f"magstat serve: knowledge base error: {exc}\n")
        return _EXIT_KB
    options: dict[str, Any] = {
        "host": settings.server.host,
        "port": settings.server.port,
        "log_config": logging_config(settings.server.log_level),
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": 5,
    }
    if app is not None:
        # Each request parses a FHIR record into many short-lived objects; collecting the young
        # generation less often shortens the pauses that make the latency tail (see benchmarks/).
        gc.set_threshold(20_000, 20, 20)
        uvicorn.run(app, **options)
        return _EXIT_OK
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        # A worker loads the knowledge base before it answers the supervisor's first check; on a
        # busy machine that takes longer than uvicorn's 5 s, which would kill and restart it.
        options["timeout_worker_healthcheck"] = 60
    with _worker_environment(args, settings):
        uvicorn.run(
            "magstat.service.main:create_app_from_environment", factory=True, workers=workers, **options
        )
    return _EXIT_OK


def _listen_problem(host: str, port: int) -> str | None:
    """Why the service could not listen on ``host:port``, found before it starts; ``None`` if it can.

    Without this, uvicorn reports a host this machine does not have, or a port in use, by
    exiting with 3, which for magstat means an invalid knowledge base.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        return f"--host: cannot listen on {host!r} ({reason}); allowed: an address of this machine, such as 127.0.0.1"
    family, kind, proto, _, address = found[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return f"cannot listen on {host}:{port} ({exc.strerror}); allowed: a free port (--port) on an address of this machine (--host)"
    return None


@contextlib.contextmanager
def _worker_environment(args: argparse.Namespace, settings: Any) -> Any:
    """Put what every worker needs in the environment; restore it and delete the metrics folder after."""
    saved = dict(os.environ)
    metrics_dir = tempfile.mkdtemp(prefix="magstat-metrics-")
    try:
        if args.config:
            os.environ["MAGSTAT_CONFIG"] = os.path.abspath(args.config)
        if args.demo:
            os.environ["MAGSTAT_DEMO"] = "true"
        if settings.cds.suppression_secret is None:
            os.environ["MAGSTAT_CDS__SUPPRESSION_SECRET"] = secrets.token_urlsafe(32)
        if settings.cds.report_secret is None:
            os.environ["MAGSTAT_CDS__REPORT_SECRET"] = secrets.token_urlsafe(32)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(metrics_dir, ignore_errors=True)
