"""The adapter's fast path into the engine (``Engine._record``) keeps every guarantee
of ``meter``: found by a review of the metering-cost pass."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from authsome import ledger
from authsome.bridge import LedgerContext
from authsome.bridge.ledgeradapter import LedgerAdapter
from authsome.ledger.stores import UsageBatch


def _engine(store: ledger.LedgerStore | None = None, **options: Any) -> ledger.Engine:
    eng = ledger.Engine(store=store, flush_interval=3600, **options)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api")]))
    eng.subscribe("acme", "p")
    eng.subscribe("bad", "p")
    return eng


class _Picky(ledger.MemoryStore):
    """Refuses every record of tenant "bad" for good, like a store with a data error."""

    def apply_usage(self, batch: UsageBatch) -> None:
        records = [*batch.deltas, *batch.uniques, *getattr(batch, "events", ())]
        if any(r.tenant == "bad" for r in records):
            raise ledger.LedgerDataError("value out of range (test)")
        super().apply_usage(batch)


class _PickyOldStyle(_Picky):
    accepts_event_ids = False  # a store written before grouped event ids


@pytest.mark.parametrize("store_class", [_Picky, _PickyOldStyle])
def test_a_lone_refused_event_with_an_id_is_quarantined(store_class: type[_Picky]) -> None:
    eng = _engine(store_class())
    try:
        eng.meter("bad", "api", 5, event_id="e1")  # the whole batch: one event with an id
        eng.flush()
        eng.meter("acme", "api", 2, event_id="e2")
        eng.flush()
        assert eng.unflushed == 0
        (quarantined,) = eng.quarantined
        assert quarantined.record.tenant == "bad"
        assert eng.usage("acme", "api") == 2
    finally:
        eng.close(timeout=1)


class _TenantId(str):
    __slots__ = ()


def test_a_str_subclass_goes_through_the_full_checks() -> None:
    eng = _engine()
    adapter = LedgerAdapter(eng)
    adapter.record_usage(LedgerContext("acme", event_id="e0"), "api")  # "acme" now trusted
    with pytest.raises((TypeError, ValueError)):
        adapter.record_usage(LedgerContext(_TenantId("acme"), event_id="e1"), "api")
    assert eng.usage("acme", "api") == 1
    eng.close()


class _AuditingEngine(ledger.Engine):
    calls = 0

    def meter(self, *args: Any, **kwargs: Any) -> None:
        type(self).calls += 1
        super().meter(*args, **kwargs)


def test_an_engine_subclass_overriding_meter_sees_every_event() -> None:
    eng = _AuditingEngine(flush_interval=3600)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api")]))
    eng.subscribe("acme", "p")
    adapter = LedgerAdapter(eng)
    for i in range(3):
        adapter.record_usage(LedgerContext("acme", event_id=f"e{i}"), "api")
    eng.close()
    assert _AuditingEngine.calls == 3


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
    eng._cache = cache
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


class _Count(int):
    pass


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((_TenantId("acme"), "api", 1), "tenant"),
        (("acme", _TenantId("api"), 1), "key"),
        (("acme", "api", _Count(1)), "quantity"),
    ],
)
def test_a_subclass_argument_is_named_in_the_error(args: tuple[Any, ...], name: str) -> None:
    eng = _engine()
    try:
        with pytest.raises(ledger.InvalidArgumentType, match=f"^{name} must be exactly"):
            eng.meter(*args)
        assert eng.unflushed == 0
    finally:
        eng.close()


def test_a_key_that_becomes_unique_is_refused_without_a_user_at_once() -> None:
    eng = _engine()
    try:
        eng._record("acme", "api", 1, None, "e1")  # ("acme", "api", None, 1) now trusted
        eng._record("acme", "api", 1, None, "e2")
        eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api", aggregation="unique")]))
        with pytest.raises(ledger.InvalidArgument, match="user_id is required"):
            eng._record("acme", "api", 1, None, "e3")
        eng._record("acme", "api", 1, "ann", "e4")
    finally:
        eng.close()


def test_an_int_subclass_quantity_goes_through_the_full_checks() -> None:
    eng = _engine()
    try:
        eng._record("acme", "api", 1, None, "e1")  # quantity 1 now trusted
        with pytest.raises(ledger.InvalidArgumentType, match=r"^quantity must be exactly"):
            eng._record("acme", "api", _Count(1), None, "e2")
        with pytest.raises(ledger.InvalidArgumentType):
            eng._record("acme", "api", True, None, "e3")
        eng.flush()
        assert eng.usage("acme", "api") == 1
    finally:
        eng.close()


def test_a_lane_planned_while_define_plan_ran_is_never_opened() -> None:
    """A thread switch in _record's slow path, after meter() took the event while
    "api" was not unique and before the lane opens: the lane must not open, or a
    call that starts after define_plan would be taken without a user."""
    eng = _engine()
    m = eng._m
    open_lane = m.open_lane
    before_open, plan_changed, opened = threading.Event(), threading.Event(), []

    def pausing_open_lane(lane: Any, epoch: int) -> bool:
        if threading.current_thread().name == "slow":
            before_open.set()
            plan_changed.wait(5)
            opened.append(open_lane(lane, epoch))
            return opened[-1]
        return open_lane(lane, epoch)

    m.open_lane = pausing_open_lane  # type: ignore[method-assign]
    eng.period("acme", "api")  # a cached view: lanes open from it
    slow = threading.Thread(target=eng._record, args=("acme", "api", 1, None, "t1"), name="slow")
    try:
        slow.start()
        assert before_open.wait(5)  # meter() took it while "api" was not unique
        eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api", aggregation="unique")]))
        plan_changed.set()
        slow.join(5)
        assert opened == [False]
        assert m.lanes == {}
        with pytest.raises(ledger.InvalidArgument, match="user_id is required"):
            eng._record("acme", "api", 1, None, "after")  # started after define_plan
    finally:
        plan_changed.set()
        slow.join(5)
        eng.close()
