"""An uncached entitlement reads a running total of pending usage: each pending event
id (and user) is looked up in the store once, not on every check."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from authsome import ledger

PLAN = ledger.Plan(
    "p",
    [
        ledger.Feature.metered("api", limit=None),
        ledger.Feature.metered("mau", limit=None, aggregation="unique"),
    ],
)


class _CountingStore(ledger.MemoryStore):
    """Counts the ids and users the engine asks the store about."""

    asked = 0

    def known_events(self, tenant: str, feature: str, event_ids: Collection[str]) -> set[str]:
        self.asked += len(event_ids)
        return super().known_events(tenant, feature, event_ids)

    def known_users(
        self, tenant: str, feature: str, period_start: int, user_ids: Collection[str]
    ) -> set[str]:
        self.asked += len(user_ids)
        return super().known_users(tenant, feature, period_start, user_ids)


def _engine(store: Any) -> ledger.Engine:
    eng = ledger.Engine(store=store, flush_interval=3600, cache_ttl=0)  # every check uncached
    eng.define_plan(PLAN)
    eng.subscribe("acme", "p")
    return eng


def test_each_pending_id_is_looked_up_once_however_many_checks() -> None:
    store = _CountingStore()
    eng = _engine(store)
    for i in range(1_000):
        eng.meter("acme", "api", event_id=f"e{i}")
    for _ in range(20):
        assert eng.entitled("acme", "api").used == 1_000
    assert store.asked == 1_000
    eng.meter("acme", "api", event_id="one-more")
    assert eng.entitled("acme", "api").used == 1_001
    assert store.asked == 1_001
    eng.close()


def test_retries_of_stored_ids_and_users_are_not_counted_again_while_pending() -> None:
    store = _CountingStore()
    eng = _engine(store)
    for i in range(10):
        eng.meter("acme", "api", event_id=f"e{i}")
    eng.meter("acme", "mau", user_id="ann")
    eng.flush()
    for i in range(5, 15):  # five retries of stored ids, five new ones
        eng.meter("acme", "api", event_id=f"e{i}")
    eng.meter("acme", "mau", user_id="ann")
    eng.meter("acme", "mau", user_id="bob")
    for _ in range(3):
        assert eng.entitled("acme", "api").used == 15
        assert eng.entitled("acme", "mau").used == 2
    eng.flush()
    assert eng.usage("acme", "api") == 15
    assert eng.usage("acme", "mau") == 2
    eng.close()
