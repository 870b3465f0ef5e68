"""Lanes: the adapter's entry (``Engine._record``) appends the event ids of one
``(tenant, key, user_id, quantity)`` to a lane, and every guarantee of ``meter`` holds:
each event counted once, in its own period, within ``max_buffer``, nothing lost on a
plan change or at close (see :class:`authsome.ledger.meter.Lane`)."""

from __future__ import annotations

import random
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from ledger_doubles import FlakyStore

from authsome import ledger
from authsome.ledger import meter
from authsome.ledger.meter import Lane


def _engine(
    clock: ledger.ManualClock, starter: ledger.Plan, store: Any = None, **options: Any
) -> ledger.Engine:
    eng = ledger.Engine(
        store=store if store is not None else ledger.MemoryStore(),
        clock=clock,
        flush_interval=3600,
        **options,
    )
    eng.define_plan(starter)
    eng.subscribe("acme", "starter")
    eng.subscribe("beta", "starter")
    return eng


def _lane(eng: ledger.Engine, tenant: str, key: str, user: str | None = None) -> Lane | None:
    return eng._m.lanes.get((tenant, key, user, 1))


def _open(eng: ledger.Engine, tenant: str, key: str, user: str | None = None) -> Lane:
    """Load the tenant's view (lanes open from a cached one) and open the lane."""
    eng.period(tenant, key)
    eng._record(tenant, key, 1, user, f"opener-{tenant}-{key}-{user}")
    lane = _lane(eng, tenant, key, user)
    assert lane is not None
    return lane


def _caps_add_up(eng: ledger.Engine) -> bool:
    m = eng._m
    return m.lane_caps == sum(lane.cap for lane in m.lane_list)


def _store_down(
    clock: ledger.ManualClock, starter: ledger.Plan, **options: Any
) -> tuple[ledger.Engine, FlakyStore]:
    """An engine whose store refuses every flush, so the buffer fills."""
    store = FlakyStore(ledger.MemoryStore(), failures=10**9)
    return _engine(clock, starter, store, **options), store


def _fill(eng: ledger.Engine, user: str | None, limit: int) -> int:
    """Record on one combination until BufferFull: how many went in."""
    for i in range(limit):
        try:
            eng._record("acme", "exports", 1, user, f"fill-{user}-{i}")
        except ledger.BufferFull:
            return i
    pytest.fail("the buffer never filled")


def _store_back(eng: ledger.Engine, store: FlakyStore, *tenants: str) -> int:
    """Check the lanes' caps, bring the store back, flush: the usage of ``exports``."""
    assert _caps_add_up(eng)
    store.failures = 0
    eng.flush(timeout=5)
    return sum(eng.usage(tenant, "exports") for tenant in tenants or ("acme",))


def test_events_after_the_first_go_to_the_lane_and_count_like_meter(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    store = ledger.MemoryStore()
    eng = _engine(clock, starter, store)
    eng._record("acme", "exports", 1, None, "cold")  # no view cached yet: no lane
    assert _lane(eng, "acme", "exports") is None
    lane = _open(eng, "acme", "exports")
    for i in range(40):
        eng._record("acme", "exports", 1, None, f"e{i}")
    eng._record("acme", "exports", 1, None, "e7")  # a retry: counts once
    eng._record("acme", "exports", 1, None, None)  # without an id: counts
    assert len(lane.ids) == 42
    assert len(eng._m.raw) == 0 or len(eng._m.raw) == 2 * meter.FIELDS  # the first two
    assert eng.unflushed == 44
    assert eng.usage("acme", "exports") == 43  # pending, before any flush
    eng.flush()
    assert eng.unflushed == 0
    start = int(eng.period("acme", "exports").start.timestamp())
    assert store.get_usage("acme", "exports", start) == 43
    assert _caps_add_up(eng)
    eng.close()


def test_a_unique_key_counts_each_user_once(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    eng = _engine(clock, starter)
    _open(eng, "acme", "mau", "u1")
    for i in range(5):
        eng._record("acme", "mau", 1, "u1", f"s{i}")
    _open(eng, "acme", "mau", "u2")
    eng._record("acme", "mau", 1, "u2", "t1")
    assert eng.usage("acme", "mau") == 2
    eng.flush()
    assert eng.usage("acme", "mau") == 2
    eng.close()


def test_a_new_period_gets_a_new_lane(clock: ledger.ManualClock, starter: ledger.Plan) -> None:
    eng = _engine(clock, starter)
    first = _open(eng, "acme", "exports")
    eng._record("acme", "exports", 1, None, "a1")
    old_period = eng.period("acme", "exports")
    clock.set(old_period.end)  # the lane's window is over
    eng._record("acme", "exports", 1, None, "b1")  # the slow way, in the new period
    eng.period("acme", "exports")  # the view, reloaded
    eng._record("acme", "exports", 1, None, "b2")  # opens the new period's lane
    second = _lane(eng, "acme", "exports")
    assert second is not None and second is not first
    assert not first.open
    eng._record("acme", "exports", 1, None, "b3")
    eng.flush()
    assert eng.usage("acme", "exports", period=old_period.start) == 2
    assert eng.usage("acme", "exports") == 3
    assert first not in eng._m.lane_list  # drained a last time, then forgotten
    assert _caps_add_up(eng)
    eng.close()


def test_a_lane_ends_with_the_cached_view(clock: ledger.ManualClock, starter: ledger.Plan) -> None:
    eng = _engine(clock, starter, cache_ttl=5.0)
    lane = _open(eng, "acme", "exports")
    assert lane.hi <= clock().timestamp() + 5.0
    clock.advance(seconds=6)  # another process may have changed the plan meanwhile
    eng._record("acme", "exports", 1, None, "late")  # the slow way: the view is stale
    assert len(lane.ids) == 0
    assert "acme" in eng._wanted_views  # the flusher is asked to load it
    eng._refresh_views()  # what the flusher does before its next flush
    assert eng._views["acme"].expires > clock().timestamp()
    eng._record("acme", "exports", 1, None, "again")  # opens a lane from the new view
    assert _lane(eng, "acme", "exports") is not lane
    eng.flush()
    assert eng.usage("acme", "exports") == 3
    eng.close()


def test_the_flusher_reloads_a_view_before_its_lanes_expire(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    eng = _engine(clock, starter, cache_ttl=60.0)
    _open(eng, "acme", "exports")
    before = eng._views["acme"].expires
    eng._refresh_views()
    assert eng._views["acme"].expires == before  # far from expiry: left alone
    clock.advance(seconds=40)  # less than half the ttl left
    eng._refresh_views()
    assert eng._views["acme"].expires == clock().timestamp() + 60.0
    eng.close()


@pytest.mark.parametrize("change", ["define_plan", "subscribe", "cancel"])
def test_a_plan_or_subscription_change_retires_the_lanes_and_keeps_their_events(
    clock: ledger.ManualClock, starter: ledger.Plan, change: str
) -> None:
    eng = _engine(clock, starter)
    lane = _open(eng, "acme", "exports")
    eng._record("acme", "exports", 1, None, "before")
    if change == "define_plan":
        eng.define_plan(starter)
    elif change == "subscribe":
        eng.subscribe("beta", "starter")
    else:
        eng.cancel("beta")
    assert not lane.open
    assert eng._m.lanes == {}
    eng._record("acme", "exports", 1, None, "after")  # the slow way
    eng.flush()
    assert eng.usage("acme", "exports") == 3
    assert _caps_add_up(eng)
    eng.close()


def test_a_plan_that_makes_the_key_unique_refuses_events_without_a_user(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    eng = _engine(clock, starter)
    _open(eng, "acme", "exports")
    unique = ledger.Plan("starter", [ledger.Feature.metered("exports", aggregation="unique")])
    eng.define_plan(unique)
    with pytest.raises(ledger.InvalidArgument, match="user_id is required"):
        eng._record("acme", "exports", 1, None, "no-user")
    eng.close()


def test_close_drains_the_lanes_and_then_refuses(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    store = ledger.MemoryStore()
    eng = _engine(clock, starter, store)
    lane = _open(eng, "acme", "exports")
    for i in range(10):
        eng._record("acme", "exports", 1, None, f"e{i}")
    eng.close()
    assert not lane.open
    assert eng._m.lane_list == []
    start = int(eng.period("acme", "exports").start.timestamp())
    assert store.get_usage("acme", "exports", start) == 11
    with pytest.raises(ledger.LedgerClosed):
        eng._record("acme", "exports", 1, None, "late")


def test_lanes_respect_max_buffer_while_the_store_is_down(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    eng, store = _store_down(clock, starter, max_buffer=20, batch_size=5, buffer_timeout=0.05)
    eng.period("acme", "exports")
    acked = _fill(eng, None, 100)
    assert 20 <= acked <= 21  # one thread: at most max_buffer, plus the slow first event
    assert eng.unflushed == acked
    assert _store_back(eng, store) == acked
    eng.close()


def test_too_many_lanes_retire_them_all_and_nothing_is_lost(
    clock: ledger.ManualClock, starter: ledger.Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(meter, "MAX_LANES", 4)
    eng = _engine(clock, starter)
    eng.period("acme", "exports")
    for round_ in range(3):
        for user in range(6):
            for _ in range(2):  # the first opens the user's lane, the second uses it
                eng._record("acme", "exports", 1, f"u{user}", f"e{round_}-{user}-{_}")
    assert len(eng._m.lanes) <= 4
    eng.flush()
    assert eng.usage("acme", "exports") == 36
    assert _caps_add_up(eng)
    eng.close()


def test_no_lanes_without_a_view_cache_or_with_a_spool(
    clock: ledger.ManualClock, starter: ledger.Plan, tmp_path: Path
) -> None:
    for options in ({"cache_ttl": 0}, {"durability": "spool", "spool_path": tmp_path / "s"}):
        eng = _engine(clock, starter, **options)
        eng.period("acme", "exports")
        for i in range(3):
            eng._record("acme", "exports", 1, None, f"e{i}")
        assert eng._m.lanes == {}
        eng.flush()
        assert eng.usage("acme", "exports") == 3
        eng.close()


def test_lanes_under_threads_and_plan_changes_count_every_acknowledged_event(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    """Producers on lanes while plans change, the buffer fills and the engine closes:
    what ``_record`` acknowledged is what the store counts, exactly."""
    store = FlakyStore(ledger.MemoryStore())
    eng = _engine(clock, starter, store, max_buffer=400, batch_size=50, buffer_timeout=5.0)
    starts = {t: int(eng.period(t, "exports").start.timestamp()) for t in ("acme", "beta")}
    acked: dict[str, set[str]] = {"acme": set(), "beta": set()}
    lock = threading.Lock()
    go = threading.Event()

    def produce(n: int) -> None:
        rng = random.Random(n)
        go.wait()
        for i in range(3000):
            tenant = rng.choice(("acme", "beta"))
            event_id = f"w{n}-{rng.randrange(i + 1)}"  # many retries of earlier ids
            try:
                eng._record(tenant, "exports", 1, f"u{rng.randrange(3)}", event_id)
            except ledger.LedgerClosed:
                return
            with lock:
                acked[tenant].add(event_id)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        go.set()
        for i in range(30):
            [lambda: eng.define_plan(starter), lambda: eng.subscribe("beta", "starter")][i % 2]()
            if i % 5 == 0:
                store.failures = 2  # a couple of failed flushes: back-pressure builds up
            eng.flush(timeout=5)
            for tenant in ("acme", "beta"):
                eng.entitled(tenant, "exports")
                eng.period(tenant, "exports")
        threads[0].join(0.3)  # let them run a while; the others may still be at it
        eng.close()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    for tenant in ("acme", "beta"):
        assert store.inner.get_usage(tenant, "exports", starts[tenant]) == len(acked[tenant])
    assert sum(map(len, acked.values())) > 1000  # the producers did run before close
    assert eng._m.lane_list == []
    assert eng._m.lane_caps == 0


def test_raw_adds_and_lanes_together_stay_within_max_buffer(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    # The raw list reserves room up to its trigger and lanes reserve their caps: each
    # must count the other's reservation, or together they hold up to twice as much.
    eng, store = _store_down(clock, starter, max_buffer=100, batch_size=100, buffer_timeout=0.02)
    eng.period("acme", "exports")
    acked = refused = 0
    for i in range(300):
        for lane in (False, True):
            try:
                if lane:
                    eng._record("acme", "exports", 1, None, f"lane{i}")
                else:
                    eng.meter("acme", "exports", event_id=f"raw{i}")
                acked += 1
            except ledger.BufferFull:
                refused += 1
        if refused >= 4:
            break
    assert acked == eng.unflushed == 100  # all of max_buffer, and no more
    assert _store_back(eng, store) == 100
    eng.close()


def test_events_metered_before_a_plan_change_keep_their_periods(
    clock: ledger.ManualClock,
) -> None:
    yearly = ledger.Plan("starter", [ledger.Feature.metered("exports", period="yearly")])
    eng = _engine(clock, yearly)
    clock.advance(days=40)  # the monthly period no longer starts where the yearly one does
    _open(eng, "acme", "exports")
    eng.meter("acme", "exports", event_id="raw")  # a raw event, staged after the change
    eng._record("acme", "exports", 1, None, "lane")
    year = eng.period("acme", "exports")
    eng.define_plan(ledger.Plan("starter", [ledger.Feature.metered("exports")]))
    month = eng.period("acme", "exports")
    assert month.start != year.start
    eng._record("acme", "exports", 1, None, "after")
    eng.flush()
    assert eng.usage("acme", "exports", period=year) == 3
    assert eng.usage("acme", "exports") == 1
    eng.close()


class _MeteringWhileSaving(ledger.MemoryStore):
    """Records one event through the bridge's entry while the subscription is written,
    as another thread could."""

    engine: ledger.Engine | None = None

    def put_subscription(self, sub: ledger.Subscription) -> None:
        super().put_subscription(sub)
        if self.engine is not None:
            self.engine._record("acme", "exports", 1, None, "during")


def test_an_event_metered_during_a_subscription_change_gets_the_new_periods(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    store = _MeteringWhileSaving()
    eng = _engine(clock, starter, store)
    clock.advance(days=10)
    lane = _open(eng, "acme", "exports")
    store.engine = eng
    eng.subscribe("acme", "starter")  # a new anchor: now
    store.engine = None
    assert not lane.open
    eng.flush()
    assert eng.usage("acme", "exports") == 1  # "during", in the period from the new anchor
    eng.close()


def test_room_reserved_by_idle_lanes_goes_to_busy_ones(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    # Two lanes' reservations fill max_buffer long before their events do.
    eng, store = _store_down(clock, starter, max_buffer=100, batch_size=50, buffer_timeout=0.02)
    eng.period("acme", "exports")
    for user in range(5):
        _open(eng, "acme", "exports", f"u{user}")
    acked = 5 + _fill(eng, "u4", 200)
    assert acked == eng.unflushed == 100
    assert _store_back(eng, store) == 100
    eng.close()


def test_threads_adding_raw_and_lane_events_stay_near_max_buffer(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    eng, store = _store_down(clock, starter, max_buffer=300, batch_size=40, buffer_timeout=0.05)
    eng.period("acme", "exports")
    eng.period("beta", "exports")
    acked = [0] * 4

    def produce(n: int) -> None:
        tenant = "acme" if n % 2 else "beta"
        for i in range(400):
            try:
                if i % 3:
                    eng._record(tenant, "exports", 1, None, f"{n}-{i}")
                else:
                    eng.meter(tenant, "exports", event_id=f"{n}-{i}")
            except ledger.BufferFull:
                return  # the store is down: it stays full
            acked[n] += 1

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    # Lock-free appends racing at a lane's cap may each add one: at most one per thread.
    assert 300 - 4 <= eng.unflushed == sum(acked) <= 300 + 4
    assert _store_back(eng, store, "acme", "beta") == sum(acked)
    eng.close()


def test_an_event_on_a_lane_clears_the_cached_entitlement(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    eng = _engine(clock, starter)
    lane = _open(eng, "acme", "api")
    assert eng.entitled("acme", "api").used == 1  # staged: no lane has room now
    assert ("acme", "api") in eng._cache  # cached: a second call is a dict lookup
    with eng._m.lock:  # room, as a lane opened after that staging has
        eng._m.grow(lane)
    eng._record("acme", "api", 1, None, "on-the-lane")
    assert lane.ids == ["on-the-lane"]  # the lock-free append
    assert eng.entitled("acme", "api").used == 2
    eng.close()


def test_appends_racing_a_reclaim_do_not_pile_up_beyond_max_buffer(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    # Replays, step by step, a thread preempted between its room check and its append
    # while another thread's grow() reclaims that room, on ever new pairs of lanes:
    # each such append must be counted by the next reclaim, not ride on uncounted.
    eng, store = _store_down(clock, starter, max_buffer=100, batch_size=100, buffer_timeout=0.02)
    eng._m.stop()  # no flusher: the replay is deterministic
    eng.period("acme", "exports")
    for q in range(1, 41):  # 40 lanes: one raw event opens each, one lane event uses it
        eng._record("acme", "exports", q, None, f"open-{q}")
        eng._record("acme", "exports", q, None, f"use-{q}")
    lanes = [eng._m.lanes[("acme", "exports", None, q)] for q in range(1, 41)]
    acked, used = 80, set[Lane]()
    for step in range(100):
        preempted = next((lane for lane in lanes if len(lane.ids) < lane.cap), None)
        if preempted is None:
            break
        other = next(lane for lane in lanes if lane is not preempted and lane not in used)
        used |= {preempted, other}
        try:
            eng._record("acme", "exports", other.quantity, None, f"b{step}")
        except ledger.BufferFull:
            break
        preempted.ids.append(f"t{step}")  # the preempted thread's append lands now
        acked += 2
    assert acked == eng.unflushed <= 100 + 1  # one thread appends past its room at a time
    store.failures = 0
    eng.flush(timeout=5)
    assert eng.unflushed == 0
    eng.close()
