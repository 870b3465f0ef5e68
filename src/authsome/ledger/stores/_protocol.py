"""The ledger store Protocol and the records that cross it.

A store persists plans (every version), subscriptions and usage. Usage arrives in
batches that a store applies *atomically and idempotently*:

* a :class:`UsageDelta` with an ``event_id`` counts at most once per
  ``(tenant, feature, event_id)`` within the retention (below): the id is inserted
  under a unique key in the same transaction as the increment, so retried batches,
  replayed spools and (with a shared database) other processes never double-count it;
* a :class:`UniqueUse` adds a user to the distinct set of ``(tenant, feature,
  period_start)`` and bumps the counter only if the user was not in it yet;
* counters are updated as upserts (``used = used + delta``), never read-modify-write
  in Python, so several writers on one database add up exactly;
* a counter is clamped to ``0 <= used <= 2**63 - 1`` after adding the *net* delta a
  batch has for it: releasing more seats than are held leaves 0 (not a credit that
  would lift the limit later), and a counter saturates instead of overflowing. Each
  ``UsageDelta.quantity`` the engine sends fits in ``-(2**62)..2**62``;
* a record a store can never apply (a value out of its range, text it cannot
  encode) raises :class:`~authsome.ledger.errors.LedgerDataError`, and the
  transaction rolls back; any other failure raises
  :class:`~authsome.ledger.errors.LedgerStoreError` and is retried as transient.

:meth:`LedgerStore.consume` is the one conditional write: "record this use only if
the total stays within ``ceiling``", atomic in the database (a single transaction
holding the write lock, or a conditional ``UPDATE``), which is what makes
``Engine.consume`` exact across processes.

Event ids are remembered for a retention (see :meth:`LedgerStore.prune_event_ids`):
by default the longest period of any stored plan plus 35 days after the store
recorded the id, which is at least 35 days past the end of the period the event
counted in. A retry arriving after that counts again.

Periods are identified by ``period_start`` as integer seconds since the Unix epoch
(UTC); features whose usage never resets use ``0``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from authsome.ledger.plans import Plan, Subscription

__all__ = [
    "ConsumeRequest",
    "ConsumeResult",
    "EventIds",
    "LedgerStore",
    "UniqueUse",
    "UsageBatch",
    "UsageDelta",
    "UsageRecord",
]


class UsageDelta(NamedTuple):
    """Add ``quantity`` (negative to release seats) to a counter, once per ``event_id``."""

    tenant: str
    feature: str
    period_start: int
    quantity: int
    event_id: str | None = None


class EventIds(NamedTuple):
    """Many events of one counter and quantity: one ``UsageDelta(tenant, feature,
    period_start, quantity, event_id)`` for each of ``event_ids``, in bulk.

    It is how the engine sends the events it buffered (thousands per flush, nearly
    all with the same quantity) to stores that take it (see :class:`UsageBatch`).
    The same id twice counts once.
    """

    tenant: str
    feature: str
    period_start: int
    quantity: int
    event_ids: Sequence[str]


class UniqueUse(NamedTuple):
    """``user_id`` used ``feature`` in the period: counted once per period."""

    tenant: str
    feature: str
    period_start: int
    user_id: str


@dataclass(frozen=True, slots=True)
class UsageBatch:
    """What one flush writes, in one transaction.

    ``batch_id`` makes the whole batch idempotent: a store records it in the same
    transaction and applies a batch whose id it already recorded as a no-op. That is
    what keeps events *without* an event id from counting twice when a commit
    succeeded but its acknowledgement was lost and the engine retries. Stores keep
    batch ids for at least a day (retries happen within seconds).

    ``events`` holds event-id deltas in bulk (:class:`EventIds`). The engine fills it
    only for a store whose ``accepts_event_ids`` is true (:class:`LedgerStore`); any
    other store gets the same records as :class:`UsageDelta` in ``deltas``
    (:meth:`expanded`).
    """

    deltas: Sequence[UsageDelta] = ()
    uniques: Sequence[UniqueUse] = ()
    batch_id: str | None = None
    events: Sequence[EventIds] = ()

    def __len__(self) -> int:
        return len(self.deltas) + len(self.uniques) + sum(len(g.event_ids) for g in self.events)

    def expanded(self) -> UsageBatch:
        """The same batch with ``events`` as one :class:`UsageDelta` per event id."""
        if not self.events:
            return self
        deltas = list(self.deltas)
        for g in self.events:
            deltas.extend(
                UsageDelta(g.tenant, g.feature, g.period_start, g.quantity, e) for e in g.event_ids
            )
        return UsageBatch(deltas, self.uniques, self.batch_id)


class ConsumeRequest(NamedTuple):
    """Record one use if the period's total stays within ``ceiling``.

    ``ceiling`` is the feature's limit minus usage the caller still holds unflushed.
    With ``unique`` the use is ``user_id`` joining the distinct set (``quantity`` is
    ignored); a user already in it is always accepted without counting again. An
    ``event_id`` already recorded is accepted without counting again.
    """

    tenant: str
    feature: str
    period_start: int
    quantity: int
    ceiling: int
    unique: bool = False
    user_id: str | None = None
    event_id: str | None = None


class ConsumeResult(NamedTuple):
    """Whether the use was accepted, and the persisted usage after the call."""

    applied: bool
    used: int


class UsageRecord(NamedTuple):
    """A persisted counter, as listed by :meth:`LedgerStore.usage_records`."""

    feature: str
    period_start: int
    used: int


@runtime_checkable
class LedgerStore(Protocol):
    """Persistence of the ledger. Implementations must be safe to call from many threads."""

    accepts_event_ids: bool
    """Whether :meth:`apply_usage` takes ``UsageBatch.events``; if false the engine
    sends every event id as a :class:`UsageDelta` of its own."""

    def put_plan(self, plan: Plan) -> Plan:
        """Store ``plan`` as the newest version of its key; return it with that version."""
        ...

    def get_plan(self, key: str, version: int | None = None) -> Plan | None:
        """The newest (or the given) version of plan ``key``, or ``None``."""
        ...

    def plan_keys(self) -> list[str]:
        """The keys of every plan ever defined, sorted."""
        ...

    def plan_versions(self, key: str) -> list[Plan]:
        """Every stored version of plan ``key``, oldest first."""
        ...

    def put_subscription(self, sub: Subscription) -> None:
        """Create or replace the subscription of ``sub.tenant``."""
        ...

    def get_subscription(self, tenant: str) -> Subscription | None:
        """The tenant's subscription, or ``None``."""
        ...

    def apply_usage(self, batch: UsageBatch) -> None:
        """Apply ``batch`` atomically (all or nothing), idempotently per event id, and
        not at all if its ``batch_id`` was applied before."""
        ...

    def get_usage(self, tenant: str, feature: str, period_start: int) -> int:
        """The persisted usage of one period (0 when nothing was recorded)."""
        ...

    def known_events(self, tenant: str, feature: str, event_ids: Collection[str]) -> set[str]:
        """The subset of ``event_ids`` already recorded for ``(tenant, feature)``."""
        ...

    def known_users(
        self, tenant: str, feature: str, period_start: int, user_ids: Collection[str]
    ) -> set[str]:
        """The subset of ``user_ids`` already counted in the period's distinct set."""
        ...

    def consume(self, request: ConsumeRequest) -> ConsumeResult:
        """Conditionally record one use, atomically (see :class:`ConsumeRequest`)."""
        ...

    def usage_records(self, tenant: str) -> list[UsageRecord]:
        """Every persisted counter of ``tenant``, by feature then period."""
        ...

    def prune_event_ids(self, limit: int | None = None) -> int:
        """Forget the event ids recorded longer ago than the store's retention (at most
        ``limit`` of them); return how many were forgotten.

        Stores also prune on their own while applying batches, a bounded number of
        rows at a time, so calling this is never required.
        """
        ...

    def close(self) -> None:
        """Release connections and files. Idempotent."""
        ...
