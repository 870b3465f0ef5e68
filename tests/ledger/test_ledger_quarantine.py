"""A record the store can never take is set aside (quarantined), never blocking the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from authsome import ledger
from authsome.ledger.stores import UsageBatch, UsageDelta
from conftest import EngineFactory


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
