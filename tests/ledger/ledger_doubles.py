"""Test doubles for the ledger tests (a module, not conftest, so tests can import it)."""

from __future__ import annotations

import os
import threading
from typing import Any

from authsome import ledger
from authsome.ledger.stores import UsageBatch


class FlakyStore:
    """Wraps a store; ``apply_usage`` raises for the next ``failures`` calls (thread-safe)."""

    def __init__(self, inner: ledger.LedgerStore, failures: int = 0) -> None:
        self.inner = inner
        self.failures = failures
        self.attempts = 0
        self._lock = threading.Lock()

    def apply_usage(self, batch: UsageBatch) -> None:
        with self._lock:
            self.attempts += 1
            if self.failures > 0:
                self.failures -= 1
                raise ledger.LedgerStoreError("store is down (test)")
        self.inner.apply_usage(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class PerProcessSQLiteStore:
    """A ``ledger.SQLiteStore`` on one file, opened anew in each process that uses it:
    what a fork-safe SQL store does, so the engine's own fork safety can be tested."""

    accepts_event_ids = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self._pid = -1
        self._store: ledger.SQLiteStore | None = None

    def _current(self) -> ledger.SQLiteStore:
        if self._pid != os.getpid() or self._store is None:
            self._store = ledger.SQLiteStore(self.path)
            self._pid = os.getpid()
        return self._store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current(), name)
