"""An in-memory ledger store: exact, thread-safe, gone when the process ends."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable
from itertools import repeat

from authsome.ledger.plans import MAX_COUNTER, Plan, Subscription
from authsome.ledger.stores._protocol import (
    ConsumeRequest,
    ConsumeResult,
    UsageBatch,
    UsageRecord,
)

__all__ = ["MemoryStore"]

_Counter = tuple[str, str, int]


def _all_str(items: Iterable[object]) -> bool:
    return all(map(isinstance, items, repeat(str)))


class MemoryStore:
    """A :class:`~authsome.ledger.stores.LedgerStore` in dictionaries, behind one lock.

    For tests, demos and single-process tools. It follows the same contract as the
    SQLite store (one contract test suite runs on both).
    """

    accepts_event_ids = True  # apply_usage takes UsageBatch.events

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, list[Plan]] = {}
        self._subs: dict[str, Subscription] = {}
        self._usage: dict[_Counter, int] = {}
        self._events: dict[tuple[str, str], set[str]] = {}  # (tenant, feature) -> ids
        self._batches: set[str] = set()
        self._users: dict[_Counter, set[str]] = {}

    def put_plan(self, plan: Plan) -> Plan:
        """Store ``plan`` as the newest version of its key."""
        with self._lock:
            versions = self._plans.setdefault(plan.key, [])
            stored = plan.with_version(len(versions) + 1)
            versions.append(stored)
            return stored

    def get_plan(self, key: str, version: int | None = None) -> Plan | None:
        """The newest (or the given) version of plan ``key``."""
        with self._lock:
            versions = self._plans.get(key, [])
            if version is None:
                return versions[-1] if versions else None
            return versions[version - 1] if 0 < version <= len(versions) else None

    def plan_keys(self) -> list[str]:
        """The keys of every plan ever defined."""
        with self._lock:
            return sorted(self._plans)

    def plan_versions(self, key: str) -> list[Plan]:
        """Every version of plan ``key``, oldest first."""
        with self._lock:
            return list(self._plans.get(key, []))

    def put_subscription(self, sub: Subscription) -> None:
        """Create or replace the tenant's subscription."""
        with self._lock:
            self._subs[sub.tenant] = sub

    def get_subscription(self, tenant: str) -> Subscription | None:
        """The tenant's subscription, or ``None``."""
        with self._lock:
            return self._subs.get(tenant)

    def apply_usage(self, batch: UsageBatch) -> None:
        """Apply ``batch``; under the lock it is trivially all-or-nothing."""
        # Checked before anything changes, so a bad id cannot leave half a batch behind.
        if not _all_str(d.event_id for d in batch.deltas if d.event_id is not None) or not all(
            _all_str(g.event_ids) for g in batch.events
        ):
            raise TypeError("event ids must be str")
        increments: dict[_Counter, int] = {}
        with self._lock:
            if batch.batch_id is not None:
                if batch.batch_id in self._batches:
                    return  # applied before; its acknowledgement was lost
                self._batches.add(batch.batch_id)
            for d in batch.deltas:
                if d.event_id is not None:
                    ids = self._ids(d.tenant, d.feature)
                    if d.event_id in ids:
                        continue
                    ids.add(d.event_id)
                counter = (d.tenant, d.feature, d.period_start)
                increments[counter] = increments.get(counter, 0) + d.quantity
            for g in batch.events:  # in bulk: how many ids are new is all that counts
                ids = self._ids(g.tenant, g.feature)
                before = len(ids)
                ids.update(g.event_ids)
                new = len(ids) - before
                counter = (g.tenant, g.feature, g.period_start)
                increments[counter] = increments.get(counter, 0) + new * g.quantity
            for u in batch.uniques:
                counter = (u.tenant, u.feature, u.period_start)
                users = self._users.setdefault(counter, set())
                if u.user_id not in users:
                    users.add(u.user_id)
                    increments[counter] = increments.get(counter, 0) + 1
            usage = self._usage
            for counter, n in increments.items():  # net per counter, like the SQL stores
                usage[counter] = max(0, min(usage.get(counter, 0) + n, MAX_COUNTER))

    def get_usage(self, tenant: str, feature: str, period_start: int) -> int:
        """The persisted usage of one period."""
        with self._lock:
            return self._usage.get((tenant, feature, period_start), 0)

    def known_events(self, tenant: str, feature: str, event_ids: Collection[str]) -> set[str]:
        """The ``event_ids`` already recorded."""
        with self._lock:
            known = self._events.get((tenant, feature))
            return set() if known is None else {e for e in event_ids if e in known}

    def known_users(
        self, tenant: str, feature: str, period_start: int, user_ids: Collection[str]
    ) -> set[str]:
        """The ``user_ids`` already counted in the period."""
        with self._lock:
            users = self._users.get((tenant, feature, period_start), set())
            return {u for u in user_ids if u in users}

    def consume(self, request: ConsumeRequest) -> ConsumeResult:
        """Record one use if it fits under ``request.ceiling``."""
        r = request
        counter = (r.tenant, r.feature, r.period_start)
        with self._lock:
            used = self._usage.get(counter, 0)
            known = self._ids(r.tenant, r.feature)
            if r.event_id is not None and r.event_id in known:
                return ConsumeResult(True, used)
            if r.unique:
                users = self._users.setdefault(counter, set())
                if r.user_id in users:
                    return ConsumeResult(True, used)
                if used + 1 > r.ceiling or r.user_id is None:
                    return ConsumeResult(False, used)
                users.add(r.user_id)
                used += 1
            else:
                if used + r.quantity > r.ceiling:
                    return ConsumeResult(False, used)
                used += r.quantity
            if r.event_id is not None:
                known.add(r.event_id)
            self._usage[counter] = used
            return ConsumeResult(True, used)

    def _ids(self, tenant: str, feature: str) -> set[str]:
        """The event ids of ``(tenant, feature)`` (call with the lock held)."""
        ids = self._events.get((tenant, feature))
        if ids is None:
            ids = self._events[(tenant, feature)] = set()
        return ids

    def usage_records(self, tenant: str) -> list[UsageRecord]:
        """Every counter of ``tenant``."""
        with self._lock:
            rows = [UsageRecord(f, p, n) for (t, f, p), n in self._usage.items() if t == tenant]
        return sorted(rows)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return "MemoryStore()"
