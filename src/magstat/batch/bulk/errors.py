"""Errors of the Bulk Data client, each with the exit code ``magstat screen`` gives for it."""

from __future__ import annotations

from magstat.errors import MagstatError

__all__ = ["EXIT_AUTH", "EXIT_EXPORT", "BulkAuthError", "BulkExportError"]

EXIT_EXPORT = 5
"""Exit code: the FHIR server could not give a complete export (an error status, a file missing
or not matching the manifest, the server unreachable after the retries, the export timed out)."""

EXIT_AUTH = 6
"""Exit code: the server refused the client's authorisation (wrong key, unknown client, scope)."""


class BulkExportError(MagstatError):
    """The export could not be completed; nothing was screened. The message says what and where."""

    exit_code = EXIT_EXPORT


class BulkAuthError(BulkExportError):
    """The authorisation server or the FHIR server refused the client."""

    exit_code = EXIT_AUTH
