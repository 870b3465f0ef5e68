"""Closing, context managers and early flushes: the engine drains what it holds."""

from __future__ import annotations

import threading

from authsome import ledger
from conftest import EngineFactory


def test_close_from_many_threads_drains_once(make_engine: EngineFactory) -> None:
    eng = make_engine()
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api")]))
    eng.subscribe("acme", "p")
    eng.meter("acme", "api", 3)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            eng.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=close) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert eng.store.get_usage("acme", "api", eng.store.usage_records("acme")[0].period_start) == 3


def test_context_manager_drains(clock: ledger.ManualClock) -> None:
    store = ledger.MemoryStore()
    with ledger.Engine(store=store, clock=clock, flush_interval=60) as eng:
        eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api")]))
        eng.subscribe("acme", "p")
        eng.meter("acme", "api", 4)
    assert [r.used for r in store.usage_records("acme")] == [4]


def test_batch_size_triggers_an_early_flush(make_engine: EngineFactory) -> None:
    store = ledger.MemoryStore()
    eng = make_engine(store=store, batch_size=5, flush_interval=3600)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api")]))
    eng.subscribe("acme", "p")
    for _ in range(6):  # the 6th finds 5 waiting and wakes the flusher
        eng.meter("acme", "api")
    for _ in range(500):  # no timing assertion: wait for the effect, bounded
        if store.usage_records("acme"):
            break
        threading.Event().wait(0.01)
    assert store.usage_records("acme")[0].used >= 5
