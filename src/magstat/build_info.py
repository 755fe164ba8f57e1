"""Which build of magstat is running: pure Python (the default) or compiled with mypyc (opt-in).

A wheel built with ``MAGSTAT_COMPILE_CORE=1`` carries compiled extension files beside some of
the core's modules and the FHIR reading's (see ``hatch_build.py`` at the project root); Python
imports them in place of the ``.py`` files. The assessments are the same either way; only the
speed differs.

.. versionadded:: 0.8.0
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys

__all__ = ["compiled_core_modules", "compiled_modules", "core_is_compiled"]


def _compiled(prefix: str) -> tuple[str, ...]:
    """The loaded modules whose name starts with ``prefix`` and that came from extension files, sorted."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return tuple(
        sorted(
            name
            for name, module in list(sys.modules.items())
            if name.startswith(prefix) and str(getattr(module, "__file__", None) or "").endswith(suffixes)
        )
    )


def compiled_core_modules() -> tuple[str, ...]:
    """The modules of ``magstat.core`` loaded in this process from compiled files, by name, sorted.

    ``assess`` and the rule modules it runs are loaded first; a compiled module that nothing
    has imported yet is not listed.

    Returns:
        An empty tuple for the pure-Python install; otherwise the compiled modules
        (``magstat.core.assess``, ``magstat.core.rules.labs`` ...).

    .. versionadded:: 0.8.0

    """
    importlib.import_module("magstat.core.assess")  # loads every rule module assess runs
    return _compiled("magstat.core.")


def compiled_modules() -> tuple[str, ...]:
    """Every module of magstat loaded in this process from compiled files, by name, sorted.

    The core's ``assess`` and the FHIR reading (``magstat.adapters.fhir.extract``, which loads
    ``flatten``) are loaded first; a compiled module that nothing has imported yet is not listed.

    Returns:
        An empty tuple for the pure-Python install; otherwise the compiled modules of the core
        and of the FHIR reading (``magstat.adapters.fhir.extract``, ``magstat.core.assess`` ...).

    .. versionadded:: 0.9.0

    """
    importlib.import_module("magstat.core.assess")
    importlib.import_module("magstat.adapters.fhir.extract")
    return _compiled("magstat.")


def core_is_compiled() -> bool:
    """Whether ``assess`` runs compiled (a wheel built with ``MAGSTAT_COMPILE_CORE=1``).

    .. versionadded:: 0.8.0

    """
    return "magstat.core.assess" in compiled_core_modules()
