"""Seat features: consume and release keep the limit, and usage never goes below zero."""

from __future__ import annotations

from authsome import ledger
from authsome.ledger.stores import UsageBatch, UsageDelta
from conftest import EngineFactory


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
