"""The HTTP service: REST ``/assess`` and CDS Hooks 2.0 for EHRs (the ``service`` extra).

Wiring only: handlers parse, call the FHIR adapter and :func:`magstat.core.assess`, and render
with :mod:`magstat.adapters.cds_hooks`. Start it with ``magstat serve``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from magstat.service.main import create_app
from magstat.service.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "create_app", "load_settings"]
