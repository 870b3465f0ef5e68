"""Where the auth engine keeps its records: memory, SQLite (and PostgreSQL later).

All stores satisfy one :class:`Store` Protocol and pass one contract test suite.
"""

from __future__ import annotations

from authsome.stores._protocol import Counter, Store
from authsome.stores.memory import MemoryStore
from authsome.stores.sqlite import SQLiteStore

__all__ = ["Counter", "MemoryStore", "SQLiteStore", "Store"]
