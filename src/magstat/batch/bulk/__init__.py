"""FHIR Bulk Data client for screening: ``$export`` with SMART Backend Services authorisation.

``magstat screen --fhir-server BASE_URL --out DIR`` kicks off an export, polls it, downloads
and verifies its files into ``DIR/export/`` and screens that folder as any other Bulk Data
folder. Needs the ``bulk`` extra (httpx and PyJWT with ``cryptography``) besides ``batch``.

.. versionadded:: 0.1.0
"""

from magstat.batch.bulk.auth import BackendServicesAuth, ClientKey, NoAuth, load_client_key
from magstat.batch.bulk.errors import EXIT_AUTH, EXIT_EXPORT, BulkAuthError, BulkExportError
from magstat.batch.bulk.export import ExportRequest, ExportResult, run_export
from magstat.batch.bulk.http import BulkHttp, RetryPolicy
from magstat.batch.bulk.screening import EXPORT_FOLDER, ServerScreening, default_scope, screen_from_server

__all__ = [
    "EXIT_AUTH",
    "EXIT_EXPORT",
    "EXPORT_FOLDER",
    "BackendServicesAuth",
    "BulkAuthError",
    "BulkExportError",
    "BulkHttp",
    "ClientKey",
    "ExportRequest",
    "ExportResult",
    "NoAuth",
    "RetryPolicy",
    "ServerScreening",
    "default_scope",
    "load_client_key",
    "run_export",
    "screen_from_server",
]
