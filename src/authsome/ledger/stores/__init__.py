"""Ledger stores: where plans, subscriptions and usage are persisted.

:class:`MemoryStore`, :class:`SQLiteStore` and :class:`PostgresStore` implement the
:class:`LedgerStore` Protocol; any other backend that follows its contract plugs in the
same way. :class:`PostgresStore` needs the optional ``postgres`` extra only when it is
instantiated: importing it never requires psycopg.
"""

from __future__ import annotations

from authsome.ledger.stores._protocol import (
    ConsumeRequest,
    ConsumeResult,
    EventIds,
    LedgerStore,
    UniqueUse,
    UsageBatch,
    UsageDelta,
    UsageRecord,
)
from authsome.ledger.stores.memory import MemoryStore
from authsome.ledger.stores.postgres import PostgresStore
from authsome.ledger.stores.sqlite import SQLiteStore

__all__ = [
    "ConsumeRequest",
    "ConsumeResult",
    "EventIds",
    "LedgerStore",
    "MemoryStore",
    "PostgresStore",
    "SQLiteStore",
    "UniqueUse",
    "UsageBatch",
    "UsageDelta",
    "UsageRecord",
]
