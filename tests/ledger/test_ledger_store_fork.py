"""SQL ledger stores opened before ``fork()`` work in the children (forking servers).

Each child opens its own connection (SQLite) or pool (PostgreSQL) on first use and
leaves the parent's alone, so the parent keeps working after its children exit, and
event ids still count once across all the processes.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg_pool
import pytest

from authsome import ledger
from authsome.ledger.stores import ConsumeRequest, EventIds, UsageBatch, UsageDelta
from tests.support.pgschema import drop_schema

T0 = 1_706_702_400
FORK = multiprocessing.get_context("fork")
CHILDREN = 3
IDS = [f"e{i}" for i in range(200)]


@pytest.fixture(params=["sqlite", "postgres"])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ledger.LedgerStore]:
    """A SQL store opened (and used) in the parent, before any fork."""
    s: ledger.LedgerStore
    if request.param == "postgres":
        dsn, schema = request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schema")
        s = ledger.PostgresStore(dsn, schema=schema, max_size=2)
    else:
        s = ledger.SQLiteStore(tmp_path / "l.db")
    s.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1, "parent-1")]))
    yield s
    s.close()
    if request.param == "postgres":
        drop_schema(dsn, schema)


def in_children(work: Callable[[int], None], count: int = CHILDREN) -> list[int]:
    """Run ``work(n)`` in ``count`` forked children at once; their exit codes."""
    procs = [FORK.Process(target=work, args=(n,)) for n in range(count)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    return [p.exitcode if p.exitcode is not None else -1 for p in procs]


def test_children_use_a_store_opened_before_fork_and_ids_count_once(
    opened: ledger.LedgerStore,
) -> None:
    def child(n: int) -> None:
        # Every child sends the same ids (a retried spool, say) and some of its own.
        opened.apply_usage(UsageBatch(events=[EventIds("t", "f", T0, 1, IDS)]))
        opened.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1, f"child-{n}")]))
        result = opened.consume(ConsumeRequest("t", "g", T0, 1, ceiling=100, event_id="c"))
        assert result.applied
        opened.close()  # closes the child's own connection only

    assert in_children(child) == [0] * CHILDREN
    # The parent's connection survived its children, and every id counted once.
    opened.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1, "parent-2")]))
    assert opened.get_usage("t", "f", T0) == 2 + len(IDS) + CHILDREN
    assert opened.get_usage("t", "g", T0) == 1
    assert opened.known_events("t", "f", ["parent-1", "child-0", "e199"]) == {
        "parent-1",
        "child-0",
        "e199",
    }


def test_a_store_closed_before_fork_stays_closed_in_the_child(
    opened: ledger.LedgerStore,
) -> None:
    opened.close()

    def child(n: int) -> None:
        with pytest.raises(ledger.LedgerStoreError, match="closed"):
            opened.get_usage("t", "f", T0)

    assert in_children(child, 1) == [0]


def test_a_pool_given_to_the_store_is_not_reused_in_a_child(pg_dsn: str, pg_schema: str) -> None:
    pool: psycopg_pool.ConnectionPool[object] = psycopg_pool.ConnectionPool(  # type: ignore[type-var]
        pg_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True
    )
    store = ledger.PostgresStore(pool=pool, schema=pg_schema)
    try:

        def child(n: int) -> None:
            with pytest.raises(ledger.LedgerStoreError, match="open it after fork"):
                store.get_usage("t", "f", T0)

        assert in_children(child, 1) == [0]
        assert store.get_usage("t", "f", T0) == 0  # the parent's pool is intact
    finally:
        store.close()
        pool.close()
        drop_schema(pg_dsn, pg_schema)


class _SlowIds(list[str]):
    """Event ids whose iteration waits for ``go``: holds a store's lock meanwhile."""

    def __init__(self, ids: list[str], inside: threading.Event, go: threading.Event) -> None:
        super().__init__(ids)
        self.inside, self.go = inside, go

    def __iter__(self) -> Iterator[str]:
        self.inside.set()
        self.go.wait(30)
        return super().__iter__()


def test_a_child_does_not_wait_for_a_lock_a_parent_thread_held_at_fork(tmp_path: Path) -> None:
    store = ledger.SQLiteStore(tmp_path / "l.db")
    inside, go = threading.Event(), threading.Event()
    batch = UsageBatch(events=[EventIds("t", "f", T0, 1, _SlowIds(["a", "b"], inside, go))])
    writer = threading.Thread(target=store.apply_usage, args=(batch,))
    writer.start()
    try:
        assert inside.wait(10)  # the writer is inside the store, holding its lock

        def child(n: int) -> None:
            assert store.get_usage("t", "f", T0) == 0

        procs = [FORK.Process(target=child, args=(0,))]
        procs[0].start()
        procs[0].join(10)
        alive = procs[0].is_alive()
        if alive:
            procs[0].kill()
            procs[0].join()
        assert not alive and procs[0].exitcode == 0
    finally:
        go.set()
        writer.join(30)
        store.close()
