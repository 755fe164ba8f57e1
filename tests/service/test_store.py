"""The shared key/value store: expiry, atomic add across connections, purge; SQLite always, PostgreSQL when set."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
import uuid

import pytest

from magstat.service.feedback import WAL_AUTOCHECKPOINT_PAGES, StorageError
from magstat.service.store import SharedStore, WalCheckpointer, sqlite_path
from tests.service.conftest import hook_request, live, post

PG_URL = os.environ.get("MAGSTAT_TEST_POSTGRES_URL")


class Clock:
    """A clock the test moves by hand (Unix seconds)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param(
            "postgresql",
            id="postgresql",
            marks=pytest.mark.skipif(
                not PG_URL, reason="MAGSTAT_TEST_POSTGRES_URL is not set (CI starts PostgreSQL and sets it)"
            ),
        ),
    ]
)
def url(request, tmp_path):
    """A database of each kind (PostgreSQL items are kept apart by a fresh namespace per test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    return PG_URL


@pytest.fixture
def ns():
    """A namespace no other test uses (PostgreSQL is one database for every test)."""
    return "t" + uuid.uuid4().hex[:16]


def test_put_get_delete(url, ns):
    """A value written is read back as bytes until it is deleted; an unknown key reads as None."""
    store = SharedStore(url)
    store.put(ns, "a", b"\x00\x01value", 60)
    assert b"\x00\x01value" == store.get(ns, "a")
    assert None is store.get(ns, "b")
    store.put(ns, "a", b"second", 60)
    assert b"second" == store.get(ns, "a")
    assert True is store.delete(ns, "a")
    assert None is store.get(ns, "a")
    assert False is store.delete(ns, "a")
    store.close()


def test_items_expire(url, ns):
    """An item is not returned once its time to live has passed, and its key can be added again."""
    clock = Clock()
    store = SharedStore(url, clock=clock)
    store.put(ns, "r", b"report", 30)
    assert True is store.add(ns, "j", b"", 10)
    clock.now += 9.999
    assert None is not store.get(ns, "r")
    assert False is store.add(ns, "j", b"", 10)  # still live
    clock.now += 0.001
    assert True is store.add(ns, "j", b"", 10)  # expired at its expiry time: absent, taken over
    clock.now += 20
    assert None is store.get(ns, "r")
    store.close()


def test_add_is_once(url, ns):
    """add writes a key once: the second add of a live key is refused and leaves the value alone."""
    store = SharedStore(url)
    assert True is store.add(ns, "iss\x1fjti-1", b"first", 60)
    assert False is store.add(ns, "iss\x1fjti-1", b"second", 60)
    assert b"first" == store.get(ns, "iss\x1fjti-1")
    assert True is store.add(ns, "iss\x1fjti-2", b"", 60)
    store.close()


def test_add_is_atomic_across_connections(url, ns):
    """Of several connections adding the same keys at once, exactly one wins each key."""
    keys = [f"k{i}" for i in range(40)]
    stores = [SharedStore(url) for _ in range(4)]
    wins: list[list[str]] = [[] for _ in stores]
    barrier = threading.Barrier(len(stores))

    def race(i: int) -> None:
        barrier.wait(timeout=10)
        for key in keys:
            if stores[i].add(ns, key, str(i).encode(), 60):
                wins[i].append(key)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(keys) == sorted(k for won in wins for k in won)
    for store in stores:
        store.close()


def test_purge_deletes_expired_rows(url, ns):
    """purge deletes the expired rows and keeps the live ones; writes purge by themselves now and then."""
    clock = Clock()
    store = SharedStore(url, clock=clock, purge_every_seconds=5)
    store.purge()  # other tests' expired rows in a shared PostgreSQL, if any
    for i in range(5):
        store.put(ns, f"old{i}", b"x", 1)
    store.put(ns, "live", b"x", 100)
    clock.now += 2
    assert 5 <= store.purge()
    assert 1 == store.count(ns)
    for i in range(3):
        store.put(ns, f"old{i}", b"x", 1)
    clock.now += 6  # past the purge interval: the next write purges in its transaction
    store.put(ns, "other", b"x", 100)
    assert 0 == store.purge()
    assert 2 == store.count(ns)
    store.close()


def test_second_store_on_same_database_creates_nothing_twice(url, ns):
    """Workers starting together may all create the table: the creation is idempotent."""
    first, second = SharedStore(url), SharedStore(url)
    first.initialise()
    second.initialise()
    first.put(ns, "a", b"1", 60)
    assert b"1" == second.get(ns, "a")
    first.close()
    second.close()


@pytest.mark.parametrize(
    ("namespace", "key", "ttl"),
    [("Bad", "k", 1), ("", "k", 1), ("jti", "", 1), ("jti", "x" * 513, 1), ("jti", "k", 0), ("jti", "k", -5)],
)
def test_refuses_bad_names_and_ttl(tmp_path, namespace, key, ttl):
    """A namespace, key or time to live outside what is allowed is a ValueError naming it."""
    store = SharedStore(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(ValueError, match=r"namespace|key|ttl_seconds"):
        store.put(namespace, key, b"", ttl)


def test_unreachable_database_is_a_storage_error():
    """A database that cannot be reached is a StorageError, within the timeout."""
    store = SharedStore("postgresql://nobody@127.0.0.1:9/none", timeout_seconds=1)
    with pytest.raises(StorageError, match="shared store"):
        store.get("jti", "k")
    assert False is store.ping()


def test_trim_keeps_the_newest(url, ns):
    """trim keeps the items of a namespace that expire last and deletes the older ones."""
    clock = Clock()
    store = SharedStore(url, clock=clock)
    for i in range(6):
        store.put(ns, f"r{i}", b"x", 100 + i)
    store.trim(ns, 4)
    assert 4 == store.count(ns)
    assert None is store.get(ns, "r1")
    assert b"x" == store.get(ns, "r2")
    assert b"x" == store.get(ns, "r5")
    store.close()


def test_replay_check_fails_closed_when_the_store_is_down(make_settings, signer):
    """With the shared store unreachable a hook call is refused (503), never served unchecked for replay."""
    settings = make_settings(database="postgresql://nobody@127.0.0.1:9/none")
    with live(settings) as server:
        url = server.url("/cds-services/magstat-patient-view")
        response = post(
            server,
            "/cds-services/magstat-patient-view",
            hook_request("patient-view", "p1"),
            signer.token(url),
        )
    assert 503 == response.status_code
    assert "OperationOutcome" == response.json()["resourceType"]


def test_the_checkpoint_thread_moves_the_log_into_the_database_file(tmp_path):
    """With the checkpoint thread running, the database file alone (its log left behind) holds every committed item."""
    path = tmp_path / "shared.sqlite3"
    store = SharedStore(f"sqlite:///{path}")
    for i in range(300):
        store.put("report", f"k{i}", b"x" * 500, 60)
    assert WAL_AUTOCHECKPOINT_PAGES == store._connect().execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    checkpointer = WalCheckpointer(str(path), every_seconds=0.02)
    checkpointer.start()
    deadline = time.monotonic() + 10
    while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    checkpointer.stop()
    assert checkpointer.checkpoints >= 2
    copy = tmp_path / "copy.sqlite3"
    shutil.copyfile(path, copy)  # the file only, without shared.sqlite3-wal
    conn = sqlite3.connect(copy)
    try:
        assert 300 == conn.execute("SELECT COUNT(*) FROM magstat_kv").fetchone()[0]
    finally:
        conn.close()
        store.close()


def test_only_a_sqlite_file_gets_a_checkpoint_thread():
    """A SQLite file URL names its file; memory and PostgreSQL URLs name none."""
    assert "/var/lib/magstat/db.sqlite3" == sqlite_path("sqlite:////var/lib/magstat/db.sqlite3")
    assert "fb.sqlite3" == sqlite_path("sqlite:///fb.sqlite3")
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://u@db/magstat") is None
