"""Where the auth engine keeps its records: memory, SQLite and PostgreSQL.

All stores satisfy one :class:`Store` Protocol and pass one contract test suite.
:class:`PostgresStore` is loaded on first use, so importing this package does not
need psycopg (the ``postgres`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authsome.stores._protocol import Counter, Store
from authsome.stores.memory import MemoryStore
from authsome.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from authsome.stores.postgres import PostgresStore

__all__ = ["Counter", "MemoryStore", "PostgresStore", "SQLiteStore", "Store"]


def __getattr__(name: str) -> Any:
    """Import :class:`PostgresStore` (and psycopg with it) only when it is asked for."""
    if name == "PostgresStore":
        from authsome.stores.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
