"""Ledger stores: where plans, subscriptions and usage are persisted.

:class:`MemoryStore` and :class:`SQLiteStore` implement the :class:`LedgerStore`
Protocol; any other backend that follows its contract plugs in the same way.
"""

from __future__ import annotations

from authsome.ledger.stores._protocol import (
    ConsumeRequest,
    ConsumeResult,
    LedgerStore,
    UniqueUse,
    UsageBatch,
    UsageDelta,
    UsageRecord,
)
from authsome.ledger.stores.memory import MemoryStore
from authsome.ledger.stores.sqlite import SQLiteStore

__all__ = [
    "ConsumeRequest",
    "ConsumeResult",
    "LedgerStore",
    "MemoryStore",
    "SQLiteStore",
    "UniqueUse",
    "UsageBatch",
    "UsageDelta",
    "UsageRecord",
]
