"""Metering loses nothing and counts each event once: retries, outages, full buffers, races."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_doubles import FlakyStore

from authsome import ledger
from authsome.ledger import Reason
from authsome.ledger.stores import UsageBatch

EngineFactory = Callable[..., ledger.Engine]


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll for a condition the background thread brings about (no timing is asserted)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def persisted(store: ledger.LedgerStore, engine: ledger.Engine, key: str) -> int:
    start = int(engine.period("acme", key).start.timestamp())
    return store.get_usage("acme", key, start)


def test_meter_does_not_touch_the_store_and_entitled_counts_pending(
    engine: ledger.Engine, store: ledger.LedgerStore
) -> None:
    engine.meter("acme", "api", 10)
    assert persisted(store, engine, "api") == 0
    assert engine.unflushed == 1
    assert engine.entitled("acme", "api").reason is Reason.LIMIT_REACHED  # before any flush
    engine.flush()
    assert persisted(store, engine, "api") == 10
    assert engine.entitled("acme", "api").used == 10


def test_event_id_counts_once_in_buffer_across_flushes_and_restarts(
    make_engine: EngineFactory, tmp_path: Path, starter: ledger.Plan
) -> None:
    s = ledger.SQLiteStore(tmp_path / "l.db")
    try:
        eng = make_engine(store=s)
        eng.define_plan(starter)
        eng.subscribe("acme", "starter")
        for _ in range(3):
            eng.meter("acme", "exports", 5, event_id="evt-1")  # retried while buffered
        assert eng.usage("acme", "exports") == 5
        eng.flush()
        eng.meter("acme", "exports", 5, event_id="evt-1")  # retried after the flush
        assert eng.usage("acme", "exports") == 5  # pending ids already stored are not counted
        eng.meter("acme", "exports", 2, event_id="evt-2")
        eng.close()
        again = make_engine(store=s)
        again.meter("acme", "exports", 5, event_id="evt-1")  # retried after a restart
        again.meter("acme", "exports", 2, event_id="evt-2")
        again.flush()
        assert again.usage("acme", "exports") == 7
        assert s.known_events("acme", "exports", ["evt-1", "evt-2", "evt-3"]) == {"evt-1", "evt-2"}
    finally:
        s.close()


class AmbiguousStore(FlakyStore):
    """Commits the batch, then reports a failure (a connection lost after COMMIT)."""

    def apply_usage(self, batch: UsageBatch) -> None:
        self.inner.apply_usage(batch)
        with self._lock:
            self.attempts += 1
            if self.failures > 0:
                self.failures -= 1
                raise ledger.LedgerStoreError("lost the answer (test)")


def test_retry_after_an_ambiguous_commit_does_not_double_count(
    make_engine: EngineFactory, starter: ledger.Plan
) -> None:
    inner = ledger.MemoryStore()
    eng = make_engine(store=AmbiguousStore(inner, failures=1))
    eng.define_plan(starter)
    eng.subscribe("acme", "starter")
    for i in range(20):
        eng.meter("acme", "exports", 3, event_id=f"e{i}")
    with pytest.raises(ledger.LedgerStoreError):
        eng.flush()
    eng.flush()
    assert eng.usage("acme", "exports") == 60


def test_explicit_flush_failure_keeps_events(
    make_engine: EngineFactory, starter: ledger.Plan
) -> None:
    inner = ledger.MemoryStore()
    flaky = FlakyStore(inner, failures=2)
    eng = make_engine(store=flaky)
    eng.define_plan(starter)
    eng.subscribe("acme", "starter")
    eng.meter("acme", "api", 4)
    eng.meter("acme", "mau", user_id="ann")
    for _ in range(2):
        with pytest.raises(ledger.LedgerStoreError):
            eng.flush()
        assert eng.unflushed == 2
        assert eng.entitled("acme", "api").used == 4  # still counted while held
    eng.meter("acme", "api", 1)  # arrives while a batch is held
    eng.flush()
    assert eng.unflushed == 0
    assert eng.usage("acme", "api") == 5
    assert eng.usage("acme", "mau") == 1
    assert flaky.attempts == 4  # two failures, the held batch, then the newer one


def test_background_flusher_retries_until_the_store_recovers(
    make_engine: EngineFactory, starter: ledger.Plan
) -> None:
    inner = ledger.MemoryStore()
    flaky = FlakyStore(inner, failures=5)
    eng = make_engine(store=flaky, flush_interval=0.01)
    eng.define_plan(starter)
    eng.subscribe("acme", "starter")
    for i in range(1000):
        eng.meter("acme", "exports", i % 7 + 1)
    wait_until(lambda: eng.unflushed == 0)
    assert flaky.attempts >= 6
    start = int(eng.period("acme", "exports").start.timestamp())
    assert inner.get_usage("acme", "exports", start) == sum(i % 7 + 1 for i in range(1000))


def test_full_buffer_blocks_then_raises_and_close_loses_nothing(
    make_engine: EngineFactory, starter: ledger.Plan
) -> None:
    inner = ledger.MemoryStore()
    flaky = FlakyStore(inner, failures=10**9)  # down until we say so
    eng = make_engine(store=flaky, max_buffer=100, batch_size=10, buffer_timeout=0.05)
    eng.define_plan(starter)
    eng.subscribe("acme", "starter")
    for _ in range(100):
        eng.meter("acme", "exports")
    with pytest.raises(ledger.BufferFull):
        eng.meter("acme", "exports")  # refused, not dropped: the caller knows
    with pytest.raises(TimeoutError):
        eng.meter("acme", "exports")
    assert eng.unflushed == 100
    assert eng.usage("acme", "exports") == 100
    flaky.failures = 3  # recovers after three more attempts
    eng.close(timeout=10)
    start = int(eng.period("acme", "exports").start.timestamp())
    assert inner.get_usage("acme", "exports", start) == 100


def test_blocked_meter_resumes_when_the_store_recovers(
    make_engine: EngineFactory, starter: ledger.Plan
) -> None:
    inner = ledger.MemoryStore()
    flaky = FlakyStore(inner, failures=10**9)
    eng = make_engine(store=flaky, max_buffer=50, batch_size=10, buffer_timeout=30)
    eng.define_plan(starter)
    eng.subscribe("acme", "starter")
    for _ in range(50):
        eng.meter("acme", "exports")
    done = threading.Event()

    def late_meter() -> None:
        eng.meter("acme", "exports")  # blocks: buffer full
        done.set()

    t = threading.Thread(target=late_meter)
    t.start()
    flaky.failures = 0
    t.join(timeout=30)
    assert done.is_set()
    eng.flush()
    assert eng.usage("acme", "exports") == 51


def test_close_with_store_down_raises_and_says_so(
    make_engine: EngineFactory, starter: ledger.Plan
) -> None:
    flaky = FlakyStore(ledger.MemoryStore(), failures=10**9)
    eng = make_engine(store=flaky)
    eng.define_plan(starter)
    eng.subscribe("acme", "starter")
    eng.meter("acme", "exports")
    with pytest.raises(ledger.LedgerStoreError):
        eng.close(timeout=0.05)


@pytest.mark.parametrize("unique", [False, True])
def test_consume_from_8_threads_lets_exactly_n_through(
    make_engine: EngineFactory, store: ledger.LedgerStore, unique: bool
) -> None:
    limit = 37
    feature = ledger.Feature.metered(
        "seats.api", limit=limit, aggregation="unique" if unique else "sum"
    )
    eng = make_engine(store=store, flush_interval=0.005)  # flushes race with the consumers
    eng.define_plan(ledger.Plan("p", [feature, ledger.Feature.metered("noise")]))
    eng.subscribe("acme", "p")
    barrier = threading.Barrier(8)
    allowed: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        barrier.wait()
        mine = 0
        for i in range(20):
            eng.meter("acme", "noise")
            user = f"u{n}-{i}" if unique else None
            if eng.consume("acme", "seats.api", user_id=user).allowed:
                mine += 1
        with lock:
            allowed.append(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == limit
    eng.flush()
    assert eng.usage("acme", "seats.api") == limit
    e = eng.entitled("acme", "seats.api")
    assert (e.allowed, e.reason, e.remaining) == (False, Reason.LIMIT_REACHED, 0)


def test_consume_counts_pending_meters_and_is_idempotent(engine: ledger.Engine) -> None:
    engine.meter("acme", "api", 8)  # buffered, not in the store
    first = engine.consume("acme", "api", 2, event_id="once")
    assert (first.allowed, first.used, first.remaining) == (True, 10, 0)
    again = engine.consume("acme", "api", 2, event_id="once")  # a retry: not counted again
    assert again.allowed
    assert engine.usage("acme", "api") == 10
    refused = engine.consume("acme", "api", 1)
    assert (refused.allowed, refused.reason) == (False, Reason.LIMIT_REACHED)
    assert engine.usage("acme", "api") == 10


def test_consume_unique_admits_known_users_at_the_limit(engine: ledger.Engine) -> None:
    for user in ["ann", "bob", "cid"]:
        assert engine.consume("acme", "mau", user_id=user).allowed
    assert not engine.consume("acme", "mau", user_id="dan").allowed
    assert engine.consume("acme", "mau", user_id="bob").allowed  # already active this month
    assert engine.usage("acme", "mau") == 3


def test_consume_reports_soft_limit_and_unlimited_and_denials(engine: ledger.Engine) -> None:
    assert engine.consume("acme", "api", 9).reason is Reason.SOFT_LIMIT
    assert engine.consume("acme", "exports", 5).reason is Reason.UNLIMITED
    assert engine.usage("acme", "exports") == 5
    assert engine.consume("acme", "sso").reason is Reason.DISABLED
    assert engine.consume("nobody", "api").reason is Reason.NO_SUBSCRIPTION


ops = st.lists(
    st.tuples(
        st.sampled_from(["acme", "beta"]),
        st.sampled_from(["exports", "api"]),
        st.integers(min_value=1, max_value=1000),
        st.none() | st.sampled_from([f"id{i}" for i in range(8)]),
        st.booleans(),  # flush after this call
    ),
    max_size=60,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(calls=ops)
def test_metered_totals_equal_the_sum_of_meter_calls(
    calls: list[tuple[str, str, int, str | None, bool]], starter: ledger.Plan
) -> None:
    expected: dict[tuple[str, str], int] = {}
    seen: set[tuple[str, str, str]] = set()
    with ledger.Engine(flush_interval=60) as eng:
        eng.define_plan(starter)
        for tenant in ("acme", "beta"):
            eng.subscribe(tenant, "starter")
        for tenant, key, qty, event_id, flush in calls:
            eng.meter(tenant, key, qty, event_id=event_id)
            if event_id is None or (tenant, key, event_id) not in seen:
                expected[tenant, key] = expected.get((tenant, key), 0) + qty
            if event_id is not None:
                seen.add((tenant, key, event_id))
            if flush:
                eng.flush()
        for (tenant, key), total in expected.items():
            assert eng.usage(tenant, key) == total  # persisted + pending
        eng.flush()
        assert eng.unflushed == 0
        for (tenant, key), total in expected.items():
            assert eng.usage(tenant, key) == total


class ReadFailingStore(FlakyStore):
    """Fails ``get_subscription`` ``read_failures`` times (staging needs it for new tenants)."""

    read_failures = 0

    def get_subscription(self, tenant: str) -> ledger.Subscription | None:
        with self._lock:
            if self.read_failures > 0:
                self.read_failures -= 1
                raise ledger.LedgerStoreError("read failed (test)")
        return self.inner.get_subscription(tenant)


@pytest.mark.parametrize("durability", ["memory", "spool"])
def test_a_failure_while_staging_keeps_every_event(
    make_engine: EngineFactory, starter: ledger.Plan, tmp_path: Path, durability: str
) -> None:
    inner = ledger.MemoryStore()
    store = ReadFailingStore(inner)
    spool = tmp_path / "spool" if durability == "spool" else None
    eng = make_engine(store=store, durability=durability, spool_path=spool)
    eng.define_plan(starter)
    for tenant in ("t1", "t2", "t3"):
        eng.subscribe(tenant, "starter")
    eng._changed()  # forget cached tenants, so staging must read each subscription
    for tenant in ("t1", "t2", "t3"):
        eng.meter(tenant, "exports", 5)
    store.read_failures = 2  # staging fails on the first tenant, then on the second
    for _ in range(2):
        with pytest.raises(ledger.LedgerStoreError):
            eng.flush()
        assert eng.unflushed == 3
    eng.flush()
    assert [eng.usage(t, "exports") for t in ("t1", "t2", "t3")] == [5, 5, 5]
    assert eng.unflushed == 0


def test_meter_for_an_undefined_default_plan_does_not_poison_the_flush(
    make_engine: EngineFactory,
) -> None:
    eng = make_engine(default_plan="later")
    eng.meter("walk-in", "exports", 2)
    eng.flush()
    eng.define_plan(ledger.Plan("later", [ledger.Feature.metered("exports")]))
    assert eng.usage("walk-in", "exports") == 2
