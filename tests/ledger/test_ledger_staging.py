"""Staging in bulk counts exactly what staging event by event counts.

The flusher folds runs of one ``(tenant, key)`` with C-level passes and sends event
ids to the store in bulk (:class:`~authsome.ledger.stores.EventIds`); these tests
hold it to the event-by-event model: every event id once (the first quantity),
events without an id summed, each in the period of its own timestamp.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_doubles import FlakyStore

from authsome import ledger
from authsome.ledger.meter import FIELDS, events_of
from authsome.ledger.stores import UsageBatch

Event = tuple[str, str, int, str | None, int, bool]


events_strategy = st.lists(
    st.tuples(
        st.sampled_from(["acme", "beta"]),
        st.sampled_from(["api", "exports"]),
        st.sampled_from([1, 1, 1, 2]),
        st.one_of(st.none(), st.sampled_from([f"e{i}" for i in range(12)])),
        st.sampled_from([0, 0, 0, 40]),  # 40 days back: the period before
        st.integers(0, 7).map(lambda n: n == 0),  # now and then, so runs stay long
    ),
    max_size=60,
)


def _engine(store: Any, clock: ledger.ManualClock, starter: ledger.Plan) -> ledger.Engine:
    eng = ledger.Engine(store=store, clock=clock, flush_interval=3600)
    eng.define_plan(starter)
    eng.subscribe("acme", "starter")
    eng.subscribe("beta", "starter")
    return eng


def _model(eng: ledger.Engine, events: list[Event], clock: ledger.ManualClock) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    seen: set[tuple[str, str, str]] = set()
    for tenant, key, qty, event_id, back, _ in events:
        if event_id is not None:
            if (tenant, key, event_id) in seen:
                continue
            seen.add((tenant, key, event_id))
        start = eng.period(tenant, key, at=clock() - timedelta(days=back)).start
        counts[(tenant, key, start)] = counts.get((tenant, key, start), 0) + qty
    return counts


def _usage(eng: ledger.Engine, model: dict[Any, int]) -> dict[Any, int]:
    return {c: eng.usage(c[0], c[1], period=c[2]) for c in model}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy, sqlite=st.booleans())
def test_bulk_staging_counts_like_the_model(
    events: list[Event], sqlite: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from conftest import START, STARTER

    clock = ledger.ManualClock(START)
    store = (
        ledger.SQLiteStore(tmp_path_factory.mktemp("bulk") / "l.db")
        if sqlite
        else ledger.MemoryStore()
    )
    eng = _engine(store, clock, STARTER)
    try:
        for tenant, key, qty, event_id, back, flush in events:
            at = None if back == 0 else clock() - timedelta(days=back)
            eng.meter(tenant, key, qty, event_id=event_id, at=at)
            if flush:
                eng.flush()
        model = _model(eng, events, clock)
        assert _usage(eng, model) == model  # pending and persisted, before the flush
        eng.flush()
        assert _usage(eng, model) == model
        for (tenant, key, start), n in model.items():
            assert store.get_usage(tenant, key, int(start.timestamp())) == n
    finally:
        eng.close()
        store.close()


def test_a_long_run_is_one_bulk_group_and_retries_count_once(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    store = FlakyStore(ledger.MemoryStore())
    batches: list[UsageBatch] = []
    inner = store.apply_usage

    def spy(batch: UsageBatch) -> None:
        batches.append(batch)
        inner(batch)

    store.apply_usage = spy  # type: ignore[method-assign]
    eng = _engine(store, clock, starter)
    ids = [f"ev-{i}" for i in range(1000)]
    for e in ids:
        eng.meter("acme", "api", event_id=e)
    store.failures = 1
    with pytest.raises(ledger.LedgerStoreError):
        eng.flush()  # in flight now
    for e in ids[:10]:  # a caller retries some, while the batch is in flight
        eng.meter("acme", "api", event_id=e)
    assert eng.usage("acme", "api") == 1000
    eng.flush()
    assert eng.usage("acme", "api") == 1000
    assert [len(g.event_ids) for g in batches[-1].events] == [1000]  # the retries: held
    assert not batches[-1].deltas
    eng.close()


@pytest.mark.parametrize("flush_between", [False, True])
def test_an_id_with_two_quantities_counts_the_same_before_and_after_the_flush(
    clock: ledger.ManualClock, starter: ledger.Plan, flush_between: bool
) -> None:
    eng = _engine(ledger.MemoryStore(), clock, starter)
    eng.meter("acme", "api", 1, event_id="other")
    eng.meter("acme", "api", 2, event_id="x")
    if flush_between:
        eng.flush()
    eng.meter("acme", "api", 1, event_id="x")
    before = eng.usage("acme", "api")
    eng.flush()
    assert eng.usage("acme", "api") == before
    assert before == 3  # "other" and x's first quantity
    eng.close()


class _OldStore:
    """A store written before UsageBatch.events: it only reads deltas and uniques."""

    def __init__(self) -> None:
        self.inner = ledger.MemoryStore()
        self.seen: list[UsageBatch] = []

    def apply_usage(self, batch: UsageBatch) -> None:
        self.seen.append(batch)
        self.inner.apply_usage(UsageBatch(batch.deltas, batch.uniques, batch.batch_id))

    accepts_event_ids = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_store_without_bulk_support_gets_deltas(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    store = _OldStore()
    eng = _engine(store, clock, starter)
    for i in range(50):
        eng.meter("acme", "api", event_id=f"e{i}")
    eng.flush()
    assert all(not b.events for b in store.seen)
    assert (
        store.inner.get_usage("acme", "api", int(eng.period("acme", "api").start.timestamp())) == 50
    )
    eng.close()


def test_events_of_turns_the_flat_buffer_back_into_events() -> None:
    first = (1.0, "acme", "api", 1, None, "e1", False)
    second = (2.0, "beta", "exports", 3, "u1", None, True)
    assert events_of([*first, *second]) == [first, second]
    assert events_of([]) == []
    with pytest.raises(ValueError, match="zip\\(\\) argument"):
        events_of([*first, 9.0])  # a torn event can never be taken for a whole one


def test_events_a_failed_staging_left_are_put_back_whole(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    store = ledger.MemoryStore()
    eng = _engine(store, clock, starter)
    resolve = eng._m.resolve
    calls = 0

    def flaky(tenant: str, key: str, ts: float) -> tuple[int, bool]:
        nonlocal calls
        calls += 1
        if tenant == "beta" and calls < 10:  # the store is down while beta is resolved
            raise ledger.LedgerStoreError("down (test)")
        return resolve(tenant, key, ts)

    eng._m.resolve = flaky
    try:
        for i in range(5):
            eng.meter("acme", "exports", 1, event_id=f"a{i}")
            eng.meter("beta", "exports", 2, event_id=f"b{i}")
        with pytest.raises(ledger.LedgerStoreError):
            eng.flush()
        assert eng.unflushed == 10
        assert len(eng._m.raw) % FIELDS == 0
        eng._m.resolve = resolve
        eng.flush()
        assert eng.usage("acme", "exports") == 5
        assert eng.usage("beta", "exports") == 10
        assert eng.unflushed == 0
    finally:
        eng.close()
