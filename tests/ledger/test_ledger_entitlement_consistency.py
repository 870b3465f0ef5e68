"""Entitlements never answer from stale plans, subscriptions or usage of this process."""

from __future__ import annotations

import threading
from typing import Any

from authsome import ledger
from authsome.bridge import LedgerContext
from authsome.bridge.ledgeradapter import LedgerAdapter
from conftest import EngineFactory


class GatedStore(ledger.MemoryStore):
    """``get_plan`` from the thread named ``reader`` pauses (once) after reading."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.reading = threading.Event()
        self.release = threading.Event()

    def get_plan(self, key: str, version: int | None = None) -> Any:
        plan = super().get_plan(key, version)
        if self.armed and threading.current_thread().name == "reader":
            self.armed = False
            self.reading.set()
            self.release.wait(5)
        return plan


def test_define_plan_racing_a_reader_is_not_overwritten_by_the_old_plan(
    make_engine: EngineFactory,
) -> None:
    store = GatedStore()
    eng = make_engine(store=store, cache_ttl=5)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api", limit=100)]))
    eng.subscribe("acme", "p")
    eng._changed()  # nothing cached, as at process start
    store.armed = True
    reader = threading.Thread(target=lambda: eng.entitled("acme", "api"), name="reader")
    reader.start()
    assert store.reading.wait(5)  # the reader holds plan v1 now
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api", limit=1)]))
    store.release.set()
    reader.join(5)
    assert not eng.consume("acme", "api", 5).allowed
    e = eng.entitled("acme", "api")
    assert (e.limit, e.used, e.allowed) == (1, 0, True)  # the refused 5 were not recorded
    assert not eng.entitled("acme", "api", requested=2).allowed


def test_report_of_a_canceled_or_expired_tenant_shows_the_period_usage(
    make_engine: EngineFactory, clock: ledger.ManualClock
) -> None:
    eng = make_engine()
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api", limit=100)]))
    eng.subscribe("acme", "p")
    eng.subscribe("trial", "p", trial_days=1)
    eng.meter("acme", "api", 42)
    eng.meter("trial", "api", 5)
    eng.flush()
    eng.cancel("acme")
    clock.advance(days=2)
    (row,) = eng.report("acme")
    assert (row.used, row.reason) == (42, ledger.Reason.CANCELED)
    (row,) = eng.report("trial")
    assert (row.used, row.reason) == (5, ledger.Reason.TRIAL_EXPIRED)


def test_cancel_and_subscribe_invalidate_a_cached_entitlement(make_engine: EngineFactory) -> None:
    eng = make_engine(cache_ttl=3600)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.boolean("sso", True)]))
    eng.define_plan(ledger.Plan("q", [ledger.Feature.boolean("sso", False)]))
    eng.subscribe("acme", "p")
    assert eng.entitled("acme", "sso").allowed  # cached now
    eng.cancel("acme")
    assert eng.entitled("acme", "sso").reason is ledger.Reason.CANCELED
    eng.subscribe("acme", "p")
    assert eng.entitled("acme", "sso").allowed
    eng.subscribe("acme", "q")
    assert eng.entitled("acme", "sso").reason is ledger.Reason.DISABLED


def test_consume_unlimited_with_a_full_buffer_waits_for_the_flusher(
    make_engine: EngineFactory,
) -> None:
    """consume() used to hold the state lock while meter() waited for room: the flusher
    needs that lock, so it waited for itself until BufferFull."""
    eng = make_engine(max_buffer=10, batch_size=10, buffer_timeout=30.0, flush_interval=30.0)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("exports")]))
    eng.subscribe("acme", "p")
    for _ in range(10):
        eng.meter("acme", "exports")  # the buffer is full, the store healthy
    assert eng.consume("acme", "exports").allowed  # returns once the flusher made room
    assert eng.usage("acme", "exports") == 11


def test_consume_unique_admits_a_pending_known_user_at_the_limit(
    make_engine: EngineFactory, store: ledger.LedgerStore
) -> None:
    eng = make_engine(store=store)
    eng.define_plan(
        ledger.Plan("p", [ledger.Feature.metered("mau", limit=2, aggregation="unique")])
    )
    eng.subscribe("acme", "p")
    eng.meter("acme", "mau", user_id="ann")  # buffered, not flushed
    eng.meter("acme", "mau", user_id="bob")
    e = eng.consume("acme", "mau", user_id="ann")  # ann is active this month already
    assert (e.allowed, e.used, e.remaining) == (True, 2, 0)  # counted once, not twice
    assert not eng.consume("acme", "mau", user_id="cat").allowed
    eng.flush()
    assert eng.consume("acme", "mau", user_id="ann").allowed
    assert eng.usage("acme", "mau") == 2


def _engine(store: ledger.LedgerStore | None = None, **options: Any) -> ledger.Engine:
    eng = ledger.Engine(store=store, flush_interval=3600, **options)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api")]))
    eng.subscribe("acme", "p")
    eng.subscribe("bad", "p")
    return eng


class _PausingCache(dict[Any, Any]):
    """Stands in for a thread switch right after the slow path read its cache slot."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.armed = False
        self.paused = threading.Event()

    def get(self, key: Any, default: Any = None) -> Any:
        value = super().get(key, default)
        # Pause at the slow path's check-then-store: its slot holds a (None, token)
        # placeholder while the entitlement is being computed.
        placeholder = isinstance(value, tuple) and value[0] is None
        if self.armed and placeholder and threading.current_thread().name == "entitled":
            self.armed = False
            self.paused.set()
            threading.Event().wait(0.3)  # the window in which a fast-path meter lands
        return value


def test_a_meter_during_an_entitlement_computation_never_leaves_it_cached_stale() -> None:
    eng = _engine(cache_ttl=60)
    adapter = LedgerAdapter(eng)
    adapter.record_usage(LedgerContext("acme", event_id="warm"), "api")
    eng.entitled("acme", "api")  # the key is cached once, so the fast path must clear it
    cache = _PausingCache(eng._cache)
    eng._cache = eng._m.cache = cache  # the one dict the engine and its buffer share
    eng._cache.pop(("acme", "api"), None)
    cache.armed = True
    reader = threading.Thread(target=lambda: eng.entitled("acme", "api"), name="entitled")
    reader.start()
    assert cache.paused.wait(2)
    adapter.record_usage(LedgerContext("acme", event_id="e1"), "api")
    reader.join()
    assert eng.usage("acme", "api") == 2
    assert eng.entitled("acme", "api").used == 2
    eng.close()
