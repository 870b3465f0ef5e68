"""An engine created before ``fork()`` (``gunicorn --preload``): each process flushes
only its own events, so totals are exact, anonymous events included; with a spool,
a child gets a spool of its own, and what a killed child left is counted later."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from authsome import ledger
from tests.ledger.ledger_doubles import PerProcessSQLiteStore

PLAN = ledger.Plan("p", [ledger.Feature.metered("api", limit=None)])
fork = multiprocessing.get_context("fork")


def _engine(path: Path, **options: Any) -> ledger.Engine:
    eng = ledger.Engine(store=PerProcessSQLiteStore(path), **options)
    eng.define_plan(PLAN)
    eng.subscribe("acme", "p")
    return eng


def _stored(path: Path) -> int:
    store = ledger.SQLiteStore(path)
    try:
        return sum(r.used for r in store.usage_records("acme"))
    finally:
        store.close()


def _wait_until_some_flushed(eng: ledger.Engine, metered: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while eng.unflushed == metered and time.monotonic() < deadline:
        time.sleep(0.01)
    return eng.unflushed < metered


def _child_meters(eng: ledger.Engine, result: Any) -> None:
    empty = eng.unflushed == 0  # the parent's buffered events are not the child's
    for _ in range(7):
        eng.meter("acme", "api")  # anonymous
    for i in range(3):
        eng.meter("acme", "api", event_id=f"child-{i}")
    # A batch (8) woke the child's own flusher; what came after waits for close().
    flushed = _wait_until_some_flushed(eng, 10)
    eng.close()
    result.put((empty, flushed))


@pytest.mark.parametrize("durability", ["memory", "spool"])
def test_parent_and_child_each_flush_their_own_events_once(tmp_path: Path, durability: str) -> None:
    options: dict[str, Any] = {}
    if durability == "spool":
        options = {"durability": "spool", "spool_path": tmp_path / "spool"}
    # Less than a batch (8) waits for the next interval: the parent holds it at the fork.
    eng = _engine(tmp_path / "l.db", flush_interval=3600, batch_size=8, **options)
    for i in range(3):
        eng.meter("acme", "api")  # anonymous, buffered when the child is forked
        eng.meter("acme", "api", event_id=f"parent-{i}")
    eng.meter("acme", "api")
    result = fork.Queue()
    child = fork.Process(target=_child_meters, args=(eng, result))
    child.start()
    empty, flushed = result.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert empty and flushed
    assert eng.unflushed == 7  # the parent still holds its own
    eng.meter("acme", "api", event_id="parent-after")
    eng.close()
    assert _stored(tmp_path / "l.db") == 7 + 10 + 1
    if durability == "spool":
        assert not list((tmp_path / "spool").rglob("*.log"))  # everything released


def _child_killed_with_spooled_events(eng: ledger.Engine, ready: Any) -> None:
    for i in range(4):
        eng.meter("acme", "api", event_id=f"killed-{i}")
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)  # never flushed, never closed


def test_what_a_killed_child_left_in_its_spool_is_counted_at_the_next_start(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    db = tmp_path / "l.db"
    eng = _engine(db, durability="spool", spool_path=spool, flush_interval=3600)
    ready = fork.Event()
    child = fork.Process(target=_child_killed_with_spooled_events, args=(eng, ready))
    child.start()
    assert ready.wait(60)
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert list(spool.glob("worker-*/*.log"))  # the child's own spool, not the parent's
    eng.meter("acme", "api", event_id="parent")
    eng.close()
    assert _stored(db) == 1
    again = _engine(db, durability="spool", spool_path=spool)  # adopts the orphaned spool
    again.close()
    assert _stored(db) == 1 + 4
    assert not list(spool.glob("worker-*"))
