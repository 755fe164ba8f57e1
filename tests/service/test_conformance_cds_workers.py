"""CDS Hooks 2.0 conformance with two worker processes: every test of test_conformance_cds.py that calls the service, again.

The service runs as uvicorn with two worker processes on one socket, as ``magstat serve
--workers 2`` runs it (settings through the environment, shared state in the database; see
:func:`tests.service.conftest.live_workers`), on 127.0.0.1. Each test here is the same function
as in ``test_conformance_cds.py``, imported, so that both modules always check the same
requirements; only the ``workers`` fixture differs. Tests that call no service (the card rules on
their own) are not repeated.
"""

from __future__ import annotations

import inspect
import sys

import pytest

from tests.service import test_conformance_cds as one_worker
from tests.service.test_conformance_cds import answers, auth, cards, server  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="worker processes are stopped by a signal")

SERVICE_FIXTURES = frozenset({"server", "answers", "cards", "auth"})
"""A test that takes one of these calls the service."""

REPEATED = sorted(
    name
    for name, test in inspect.getmembers(one_worker, inspect.isfunction)
    if name.startswith("test_") and SERVICE_FIXTURES & set(inspect.signature(test).parameters)
)
"""The tests of test_conformance_cds.py run here again."""

globals().update({name: getattr(one_worker, name) for name in REPEATED})


@pytest.fixture(scope="module")
def workers() -> int:
    """Two worker processes behind every service of this module."""
    return 2


def test_the_service_tests_are_repeated_with_two_workers():
    """Every conformance test that calls the service is collected here too, and the card rules alone are not."""
    assert len(REPEATED) >= 20
    assert "test_patient_view_answers_quickly" in REPEATED
    assert "test_critical_only_with_an_urgent_action" not in REPEATED
