"""The engine every example app runs on, built the same way for all three frameworks."""

from __future__ import annotations

import os
from typing import Any

from authsome import Authsome
from authsome.bridge import Ledger
from authsome.stores import MemoryStore, SQLiteStore, Store

__all__ = ["build_auth"]


def build_auth(ledger: Ledger | None = None, **options: Any) -> Authsome:
    """The engine: SQLite at ``$AUTHSOME_DB`` (else in memory), reporting to ``ledger``.

    Every feature is allowed (``NoopLedger``) unless a real ledger is passed.
    """
    path = os.environ.get("AUTHSOME_DB")
    store: Store = SQLiteStore(path) if path else MemoryStore()
    return Authsome(store=store, ledger=ledger, **options)
