"""authsome.ledger: the embedded metering and entitlement engine.

Plans with boolean, metered and seat features; subscriptions with billing anchors,
trials and cancellation; metering that never drops an event; entitlement checks
that cost a dict lookup when cached. It imports nothing from the rest of authsome:
the bridge's ``LedgerAdapter`` is what connects the two.

>>> from authsome import ledger
>>> with ledger.Engine() as eng:
...     _ = eng.define_plan(ledger.Plan("starter", [ledger.Feature.metered("api.calls", 1000)]))
...     _ = eng.subscribe("acme", "starter")
...     eng.meter("acme", "api.calls", 3)
...     eng.entitled("acme", "api.calls").remaining
997
"""

from __future__ import annotations

from authsome.ledger.clock import Clock, ManualClock, system_clock
from authsome.ledger.engine import Durability, Engine
from authsome.ledger.errors import (
    BufferFull,
    InvalidArgument,
    InvalidArgumentType,
    LedgerClosed,
    LedgerDataError,
    LedgerError,
    LedgerStoreError,
    NoSubscription,
    SpoolError,
    UnflushedEvents,
    UnknownPlan,
)
from authsome.ledger.plans import (
    MAX_COUNTER,
    MAX_QUANTITY,
    Aggregation,
    BillingPeriod,
    Entitlement,
    Feature,
    FeatureKind,
    Period,
    Plan,
    Reason,
    ReportRow,
    Status,
    Subscription,
)
from authsome.ledger.stores import LedgerStore, MemoryStore, PostgresStore, SQLiteStore

# Names that do not collide with the auth stores of authsome.stores when both are
# imported by name (``from authsome.stores import SQLiteStore`` beside these).
MemoryLedgerStore = MemoryStore
PostgresLedgerStore = PostgresStore
SQLiteLedgerStore = SQLiteStore

__all__ = [
    "MAX_COUNTER",
    "MAX_QUANTITY",
    "Aggregation",
    "BillingPeriod",
    "BufferFull",
    "Clock",
    "Durability",
    "Engine",
    "Entitlement",
    "Feature",
    "FeatureKind",
    "InvalidArgument",
    "InvalidArgumentType",
    "LedgerClosed",
    "LedgerDataError",
    "LedgerError",
    "LedgerStore",
    "LedgerStoreError",
    "ManualClock",
    "MemoryLedgerStore",
    "MemoryStore",
    "NoSubscription",
    "Period",
    "Plan",
    "PostgresLedgerStore",
    "PostgresStore",
    "Reason",
    "ReportRow",
    "SQLiteLedgerStore",
    "SQLiteStore",
    "SpoolError",
    "Status",
    "Subscription",
    "UnflushedEvents",
    "UnknownPlan",
    "system_clock",
]
