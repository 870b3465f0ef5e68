"""Regressions of reviewed bugs: each test failed before its fix."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from authsome import ledger
from authsome.ledger.plans import check_key
from authsome.ledger.stores import UsageBatch, UsageDelta
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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenant": "a" * 257},
        {"key": "k" * 257},
        {"user_id": "   "},
        {"user_id": ""},
        {"event_id": " "},
        {"user_id": "u" * 10_000},
        {"event_id": "e" * 257},
    ],
)
def test_meter_validates_like_every_other_entry_point(
    make_engine: EngineFactory, kwargs: dict[str, Any]
) -> None:
    eng = make_engine()
    args = {"tenant": "acme", "key": "api", **kwargs}
    with pytest.raises(ledger.InvalidArgument):
        eng.meter(args.pop("tenant"), args.pop("key"), **args)
    with pytest.raises(ledger.InvalidArgument):
        eng.consume(**{"tenant": "acme", "key": "api", **kwargs})
    assert eng.unflushed == 0
    eng.meter("a" * 256, "k" * 256, user_id="u" * 256, event_id="e" * 256)  # the bound itself
    assert eng.unflushed == 1


def test_quantities_are_capped_with_a_typed_error(make_engine: EngineFactory) -> None:
    eng = make_engine()
    eng.define_plan(
        ledger.Plan("p", [ledger.Feature.metered("api", 10), ledger.Feature.seat("seats", 5)])
    )
    eng.subscribe("acme", "p")
    for call in (eng.meter, eng.consume, eng.release):
        with pytest.raises(ledger.InvalidArgument):
            call("acme", "api", 2**63)
        with pytest.raises(ledger.InvalidArgument):
            call("acme", "api", ledger.MAX_QUANTITY + 1)
    assert eng.unflushed == 0


@pytest.mark.parametrize("where", ["tenant", "key", "user_id", "event_id"])
def test_text_utf8_cannot_encode_is_refused_at_the_door(
    make_engine: EngineFactory, tmp_path: Path, where: str
) -> None:
    args: dict[str, Any] = {"tenant": "acme", "key": "api"}
    args[where] = "bad\ud800"
    for eng in (make_engine(), make_engine(durability="spool", spool_path=tmp_path / "sp")):
        with pytest.raises(ledger.InvalidArgument):
            eng.meter(**args)
        with pytest.raises(ledger.InvalidArgument):
            eng.consume(**args)
        assert eng.unflushed == 0
    with pytest.raises(ledger.InvalidArgument):
        ledger.Plan("bad\ud800")


@pytest.mark.parametrize("where", ["tenant", "key", "user_id", "event_id"])
@pytest.mark.parametrize("text", ["bad\x00", "\x00", "caf\xe9\x00"])
def test_nul_characters_are_refused_at_the_door(
    make_engine: EngineFactory, tmp_path: Path, where: str, text: str
) -> None:
    """PostgreSQL text cannot hold NUL: refuse it up front, for every store alike."""
    eng_plan = ledger.Plan("p", [ledger.Feature.metered("api"), ledger.Feature.seat("seats", 5)])
    args: dict[str, Any] = {"tenant": "acme", "key": "api"}
    args[where] = text
    for eng in (make_engine(), make_engine(durability="spool", spool_path=tmp_path / "sp")):
        eng.define_plan(eng_plan)
        eng.subscribe("acme", "p")
        with pytest.raises(ledger.InvalidArgument, match="NUL"):
            eng.meter(**args)
        with pytest.raises(ledger.InvalidArgument, match="NUL"):
            eng.consume(**args)
        if where != "user_id":
            release = {**args, "key": "seats"} if where != "key" else args
            with pytest.raises(ledger.InvalidArgument, match="NUL"):
                eng.release(**release)
        assert eng.unflushed == 0
    for make in (
        lambda: ledger.Plan(text),
        lambda: ledger.Feature.metered(text),
        lambda: check_key(text),
    ):
        with pytest.raises(ledger.InvalidArgument, match="NUL"):
            make()


def test_huge_pending_sums_do_not_overflow_the_store(
    make_engine: EngineFactory, store: ledger.LedgerStore
) -> None:
    """1,025 events of MAX_QUANTITY sum past 2**63 in one bucket: the batch splits the
    sum into 64-bit deltas and the store counter saturates, the flush goes through."""
    eng = make_engine(store=store)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api")]))
    eng.subscribe("acme", "p")
    eng.subscribe("other", "p")
    eng.meter("other", "api", 7)
    for _ in range(1025):
        eng.meter("acme", "api", ledger.MAX_QUANTITY)
    eng.flush()
    assert eng.unflushed == 0
    assert eng.usage("acme", "api") == ledger.MAX_COUNTER
    assert eng.usage("other", "api") == 7


class PickyStore(ledger.MemoryStore):
    """Refuses, for good, any batch holding a record of tenant ``bad``."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def apply_usage(self, batch: UsageBatch) -> None:
        self.attempts += 1
        if any(r.tenant == "bad" for r in [*batch.deltas, *batch.uniques]):
            raise ledger.LedgerDataError("value out of range (test)")
        super().apply_usage(batch)


@pytest.mark.parametrize("error", [ledger.LedgerDataError, OverflowError])
def test_one_bad_record_is_quarantined_and_does_not_block_the_others(
    make_engine: EngineFactory, error: type[Exception]
) -> None:
    store = PickyStore()
    if error is OverflowError:  # a foreign store that does not map its driver's errors

        def apply_usage(batch: UsageBatch) -> None:
            try:
                PickyStore.apply_usage(store, batch)
            except ledger.LedgerDataError as exc:
                raise OverflowError("int too large") from exc

        store.apply_usage = apply_usage  # type: ignore[method-assign]
    eng = make_engine(store=store)
    eng.define_plan(
        ledger.Plan(
            "p",
            [
                ledger.Feature.metered("api"),
                ledger.Feature.metered("mau", None, aggregation="unique"),
            ],
        )
    )
    for tenant in ("a", "bad", "b", "c"):
        eng.subscribe(tenant, "p")
    for i in range(20):
        eng.meter(("a", "b", "c")[i % 3], "api", event_id=f"e{i}")
        eng.meter("a", "mau", user_id=f"u{i}")
    eng.meter("bad", "api", 5)
    eng.flush()  # does not raise, and does not retry forever
    assert eng.unflushed == 0
    assert [eng.usage(t, "api") for t in ("a", "b", "c")] == [7, 7, 6]
    assert eng.usage("a", "mau") == 20
    (q,) = eng.quarantined
    assert (q.record.tenant, q.record.feature, q.record.quantity) == ("bad", "api", 5)
    assert "out of range" in q.error or "too large" in q.error
    attempts = store.attempts
    eng.meter("a", "api", event_id="later")
    eng.flush()
    assert store.attempts == attempts + 1  # the quarantined record is not retried
    assert eng.usage("a", "api") == 8


def test_sqlite_maps_data_errors_to_ledger_data_error(tmp_path: Path) -> None:
    s = ledger.SQLiteStore(tmp_path / "l.db")
    try:
        with pytest.raises(ledger.LedgerDataError):
            s.apply_usage(UsageBatch([UsageDelta("t", "f\ud800", 0, 1)]))
        with pytest.raises(ledger.LedgerDataError):
            s.apply_usage(UsageBatch([UsageDelta("t", "f", 1 << 70, 1)]))  # period overflows
        s.apply_usage(UsageBatch([UsageDelta("t", "f", 0, 1 << 62)] * 3))  # saturates
        assert s.get_usage("t", "f", 0) == ledger.MAX_COUNTER
        s.apply_usage(UsageBatch([UsageDelta("t", "f", 0, 1 << 62)]))
        assert s.get_usage("t", "f", 0) == ledger.MAX_COUNTER
    finally:
        s.close()


def test_over_release_does_not_lift_the_seat_limit(
    make_engine: EngineFactory, store: ledger.LedgerStore
) -> None:
    eng = make_engine(store=store)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.seat("members", limit=2)]))
    eng.subscribe("acme", "p")
    eng.release("acme", "members", 5)  # e.g. a retried "member removed" hook
    assert eng.usage("acme", "members") == 0
    eng.flush()
    assert sum(eng.consume("acme", "members").allowed for _ in range(10)) == 2
    eng.release("acme", "members", 5)  # unflushed this time: still only what is held
    assert eng.usage("acme", "members") == 0
    assert sum(eng.consume("acme", "members").allowed for _ in range(10)) == 2
    eng.flush()
    assert eng.usage("acme", "members") == 2


def test_seat_limit_holds_through_consume_and_release(
    make_engine: EngineFactory, store: ledger.LedgerStore
) -> None:
    eng = make_engine(store=store)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.seat("members", limit=2)]))
    eng.subscribe("acme", "p")
    assert eng.consume("acme", "members").allowed
    assert eng.consume("acme", "members").allowed
    refused = eng.consume("acme", "members")
    assert (refused.allowed, refused.reason) == (False, ledger.Reason.LIMIT_REACHED)
    eng.release("acme", "members")
    assert eng.consume("acme", "members").allowed  # the freed seat, before any flush
    assert not eng.consume("acme", "members").allowed
    eng.flush()
    assert eng.usage("acme", "members") == 2


def test_store_counters_never_go_below_zero(store: ledger.LedgerStore) -> None:
    """Protocol: a batch's net delta per counter is clamped at 0 (releases from other
    processes can still race past what one engine saw)."""
    store.apply_usage(UsageBatch([UsageDelta("t", "seats", 0, 1)]))
    store.apply_usage(UsageBatch([UsageDelta("t", "seats", 0, -3)]))
    assert store.get_usage("t", "seats", 0) == 0
    store.apply_usage(UsageBatch([UsageDelta("t", "fresh", 0, -2)]))
    assert store.get_usage("t", "fresh", 0) == 0
    store.apply_usage(UsageBatch([UsageDelta("t", "seats", 0, 2)]))
    assert store.get_usage("t", "seats", 0) == 2


class AmbiguousCommit:
    """Wraps a store: the first ``apply_usage`` commits, then reports a lost connection."""

    def __init__(self, inner: ledger.LedgerStore) -> None:
        self.inner = inner
        self.fail_once = True

    def apply_usage(self, batch: UsageBatch) -> None:
        self.inner.apply_usage(batch)
        if self.fail_once:
            self.fail_once = False
            raise ledger.LedgerStoreError("connection lost after COMMIT (test)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_anonymous_events_count_once_after_an_ambiguous_commit(
    make_engine: EngineFactory, store: ledger.LedgerStore
) -> None:
    eng = make_engine(store=AmbiguousCommit(store))
    eng.define_plan(
        ledger.Plan("p", [ledger.Feature.metered("api"), ledger.Feature.seat("seats", 9)])
    )
    eng.subscribe("acme", "p")
    eng.meter("acme", "api", 3)  # no event id
    eng.meter("acme", "seats", 4)
    with pytest.raises(ledger.LedgerStoreError):
        eng.flush()
    eng.flush()  # the retry of a batch the store already has
    assert eng.usage("acme", "api") == 3
    assert eng.usage("acme", "seats") == 4


def test_a_batch_id_is_applied_once(store: ledger.LedgerStore) -> None:
    batch = UsageBatch([UsageDelta("t", "f", 0, 2)], batch_id="b-1")
    store.apply_usage(batch)
    store.apply_usage(batch)
    store.apply_usage(UsageBatch([UsageDelta("t", "f", 0, 5)], batch_id="b-2"))
    store.apply_usage(UsageBatch([UsageDelta("t", "f", 0, 1)]))  # no id: always applied
    store.apply_usage(UsageBatch([UsageDelta("t", "f", 0, 1)]))
    assert store.get_usage("t", "f", 0) == 9


def test_cache_ttl_of_the_wrong_type_is_a_typed_error() -> None:
    with pytest.raises(ledger.InvalidArgumentType):
        ledger.Engine(cache_ttl="5")  # type: ignore[arg-type]


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
