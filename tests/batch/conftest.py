"""Fixtures of the screening tests: the synthetic patients of tests/data as a Bulk Data export.

With ``MAGSTAT_FULL_DATA`` set (see tests/conftest.py) the parity tests run on that larger set.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path

import pytest

from magstat.adapters.fhir import facts_from_fhir
from magstat.batch.popgen import read_bundle, write_bulk
from magstat.batch.rows import canonical_json
from magstat.core import assess
from tests.conftest import every_patient

AS_OF = dt.date(2020, 1, 1)
"""A date inside every test record (the Synthea sets end in 2019 and later)."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spark: runs Apache Spark in local mode (needs Java)")
    config.addinivalue_line(
        "markers",
        "spark_cluster: starts a Spark standalone cluster or Connect server on 127.0.0.1 (needs Java)",
    )


def synthea_set_files() -> list[Path]:
    """The Synthea set: its patient bundles and its organisation/practitioner bundles."""
    return every_patient("synthea", patients_only=False)


def synthea_py_files() -> list[Path]:
    """The synthea-py set's patient bundles (these carry serum magnesium and PPIs)."""
    return every_patient("synthea-py")


def synthea_files() -> list[Path]:
    """Every bundle of both sets: Synthea (with its organisation/practitioner files), then synthea-py."""
    return synthea_set_files() + synthea_py_files()


@pytest.fixture(scope="session")
def bundles() -> dict[str, dict]:
    """Patient id -> the original bundle (both sets)."""
    out = {}
    for path in synthea_files():
        bundle = read_bundle(path)
        patient = next(
            (e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"), None
        )
        if patient is not None:
            out[patient["id"]] = bundle
    return out


@pytest.fixture(scope="session")
def expected(bundles, kb) -> dict[str, dict]:
    """Patient id -> ``magstat assess --lenient --format json`` of the original bundle."""
    return {
        pid: assess(facts_from_fhir(bundle, kb, as_of=AS_OF, strict=False), kb).to_dict()
        for pid, bundle in bundles.items()
    }


def sha(result: dict) -> str:
    """The ``assessment_sha256`` of an assessment's JSON."""
    return hashlib.sha256(canonical_json(result).encode("utf-8")).hexdigest()


@pytest.fixture(scope="session")
def bulk(tmp_path_factory) -> Path:
    """Both sets as one Bulk Data export: Synthea plain, the Python set gzip in parts."""
    root = tmp_path_factory.mktemp("bulk")
    write_bulk(synthea_set_files(), root)
    parts = tmp_path_factory.mktemp("bulk-py")
    # Parts small enough that the repository's few patients still span several files per type.
    write_bulk(synthea_py_files(), parts, compress=True, max_file_bytes=1_000_000)
    for path in parts.iterdir():
        # Same type names in both: the second set's files are parts 101, 102 ...
        rtype, _, rest = path.name.partition(".")
        number, _, suffix = rest.partition(".")
        target = root / f"{rtype}.{100 + int(number)}.{suffix}"
        path.rename(target)
    return root


def read_ndjson(path: Path) -> list[str]:
    """The lines of a plain or gzip NDJSON file."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return [line for line in raw.decode("utf-8").split("\n") if line]


def dumps(resource: dict) -> str:
    """One NDJSON line."""
    return json.dumps(resource, separators=(",", ":"))
