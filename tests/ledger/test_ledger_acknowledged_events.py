"""Every event the bridge adapter acknowledged reaches the store, even across failed flushes.

Through public names only: ``LedgerAdapter`` over ``ledger.Engine`` on a store whose
``apply_usage`` fails, then ``close()``; the store must hold exactly what was
acknowledged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from authsome import ledger
from authsome.bridge import LedgerContext
from authsome.bridge.ledgeradapter import LedgerAdapter
from tests.ledger.conftest import START
from tests.ledger.ledger_doubles import FlakyStore

PLAN = ledger.Plan("metered", [ledger.Feature.metered("api.calls", limit=None)])


@pytest.fixture(params=["memory", "sqlite"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ledger.LedgerStore]:
    """The memory and SQLite ledger stores, fresh."""
    s: ledger.LedgerStore
    s = ledger.MemoryStore() if request.param == "memory" else ledger.SQLiteStore(tmp_path / "l.db")
    yield s
    s.close()


def _stored(eng_store: ledger.LedgerStore) -> int:
    return sum(r.used for r in eng_store.usage_records("acme") if r.feature == "api.calls")


def _engine(store: ledger.LedgerStore) -> ledger.Engine:
    eng = ledger.Engine(
        store=store,
        clock=ledger.ManualClock(START),
        flush_interval=60.0,
        retry_backoff=(0.001, 0.01),
    )
    eng.define_plan(PLAN)
    eng.subscribe("acme", "metered")
    assert eng.entitled("acme", "api.calls").allowed  # as the auth engine would ask first
    return eng


def test_events_recorded_after_a_failed_flush_are_all_stored_at_close(
    inner: ledger.LedgerStore,
) -> None:
    store = FlakyStore(inner, failures=1)
    eng = _engine(store)
    adapter = LedgerAdapter(eng)
    for i in range(2):
        adapter.record_usage(LedgerContext("acme", event_id=f"e{i}"), "api.calls")
    with pytest.raises(ledger.LedgerStoreError):
        eng.flush()
    for i in range(2, 6):
        adapter.record_usage(LedgerContext("acme", event_id=f"e{i}"), "api.calls")
    eng.close()
    assert _stored(inner) == 6


@pytest.mark.parametrize("threads", [4, 8])
def test_threads_recording_through_a_failing_flush_are_all_stored_at_close(
    inner: ledger.LedgerStore, threads: int
) -> None:
    store = FlakyStore(inner)
    eng = _engine(store)
    adapter = LedgerAdapter(eng)
    acknowledged = [0] * threads
    halfway = threading.Barrier(threads + 1)

    def record(n: int) -> None:
        for i in range(300):
            if i == 150:
                halfway.wait()  # the flush below fails while the second half goes on
            ctx = LedgerContext("acme", user_id=f"u{i % 3}", event_id=f"t{n}-{i}")
            adapter.record_usage(ctx, "api.calls")
            acknowledged[n] += 1

    workers = [threading.Thread(target=record, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    halfway.wait()
    store.failures = 1
    with pytest.raises(ledger.LedgerStoreError):
        eng.flush()
    for w in workers:
        w.join()
    eng.close()
    assert _stored(inner) == sum(acknowledged) == 300 * threads
