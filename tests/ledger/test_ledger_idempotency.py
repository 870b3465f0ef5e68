"""Batches and anonymous events count once, even when a commit's acknowledgement is lost."""

from __future__ import annotations

from typing import Any

import pytest

from authsome import ledger
from authsome.ledger.stores import UsageBatch, UsageDelta
from conftest import EngineFactory


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
