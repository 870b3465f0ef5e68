"""The engine every example app runs on, built the same way for all three frameworks.

Configured by environment variables, like the ``authsome`` command line:

``AUTHSOME_DB``
    The auth store's SQLite file (users, sessions, keys). Unset: in memory, per process.
``AUTHSOME_LEDGER_DB``
    The embedded ledger's SQLite file (plans, subscriptions, usage). Unset: the command
    line's default beside ``AUTHSOME_DB`` (``app.db`` → ``app.ledger.db``) if that file
    exists (``authsome migrate`` or ``authsome plans load`` made it).
``AUTHSOME_PLANS``
    A plans file (the format of ``authsome plans load``, e.g. ``examples/plans.toml``)
    loaded when the app starts; a plan identical to the stored one is left alone.

With a ledger, plan-gated operations are checked against the tenant's subscription
(``authsome subscribe <tenant> <plan> --db ...``) and usage is metered
(``authsome usage <tenant> --db ...``). Without one, every feature is allowed
(``NoopLedger``) and usage is discarded.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import Any

from authsome import Authsome, ledger
from authsome._cli_db import ledger_location, parse_db
from authsome._cli_ledger import define_plans
from authsome._plans_toml import load_plans_file
from authsome.bridge import Ledger, LedgerContext
from authsome.bridge.ledgeradapter import LedgerAdapter
from authsome.stores import MemoryStore, SQLiteStore, Store

__all__ = ["PerProcessLedger", "build_auth", "close_auth", "configured_ledger", "ledger_db_path"]

DB_ENV = "AUTHSOME_DB"
LEDGER_DB_ENV = "AUTHSOME_LEDGER_DB"
PLANS_ENV = "AUTHSOME_PLANS"

_LEDGER_OF: weakref.WeakKeyDictionary[Authsome, PerProcessLedger] = weakref.WeakKeyDictionary()


def build_auth(ledger: Ledger | None = None, **options: Any) -> Authsome:
    """The engine: SQLite at ``$AUTHSOME_DB`` (else in memory), reporting to ``ledger``
    (default: :func:`configured_ledger`). :func:`close_auth` closes it."""
    path = os.environ.get(DB_ENV)
    store: Store = SQLiteStore(path) if path else MemoryStore()
    ledger = ledger or configured_ledger()
    auth = Authsome(store=store, ledger=ledger, **options)
    if isinstance(ledger, PerProcessLedger):
        _LEDGER_OF[auth] = ledger
    return auth


def close_auth(auth: Authsome) -> None:
    """Drain the ledger :func:`build_auth` gave ``auth`` (in this process) and close
    the store. For a server's shutdown hook: a ledger also drains at interpreter exit,
    but a server that ends by re-raising its stop signal (uvicorn) skips that."""
    ledger = _LEDGER_OF.pop(auth, None)
    if ledger is not None:
        ledger.close()
    auth.close()


def ledger_db_path() -> str | None:
    """The ledger's SQLite file the environment names, or ``None`` for no ledger."""
    explicit = os.environ.get(LEDGER_DB_ENV)
    if explicit:
        return explicit
    auth_db = os.environ.get(DB_ENV)
    if not auth_db:
        return None
    beside = ledger_location(parse_db(auth_db)).target  # the command line's default
    return beside if Path(beside).is_file() else None


def configured_ledger() -> Ledger | None:
    """The embedded ledger on :func:`ledger_db_path`, with ``$AUTHSOME_PLANS`` loaded;
    ``None`` (the engine's ``NoopLedger``) when no ledger is configured."""
    path = ledger_db_path()
    if path is None:
        return None
    plans_file = os.environ.get(PLANS_ENV)
    if plans_file:
        plans = load_plans_file(plans_file)
        store = ledger.SQLiteStore(path)
        try:
            with ledger.Engine(store=store) as engine:
                define_plans(engine, plans)
        finally:
            store.close()  # nothing of it is left open to cross a fork
    return PerProcessLedger(path)


class PerProcessLedger:
    """The embedded ledger on the SQLite file at ``path``, opened in each process on
    its first use.

    Web servers often build the app before they fork their workers
    (``gunicorn --preload``). A :class:`ledger.Engine` buffers usage and flushes it from
    a thread of its own, neither of which crosses a fork, so each worker opens its own
    engine here, on its first request. It drains its buffer when the worker exits.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._pid = -1
        self._adapter: LedgerAdapter | None = None
        self._store: ledger.SQLiteStore | None = None

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        self._ledger().record_usage(ctx, feature_key, quantity)

    def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
        return self._ledger().check_entitlement(ctx, feature_key)

    def _ledger(self) -> LedgerAdapter:
        adapter = self._adapter
        if adapter is not None and self._pid == os.getpid():
            return adapter
        with self._lock:
            if self._adapter is None or self._pid != os.getpid():
                # The inherited engine (if any) is the parent's: left alone.
                self._store = ledger.SQLiteStore(self._path)
                engine = ledger.Engine(store=self._store)
                self._adapter, self._pid = LedgerAdapter(engine), os.getpid()
            return self._adapter

    def close(self) -> None:
        """Drain this process's engine into the ledger's file and close it."""
        with self._lock:
            if self._adapter is None or self._pid != os.getpid() or self._store is None:
                return
            engine = self._adapter.engine
            assert isinstance(engine, ledger.Engine)
            engine.close()
            self._store.close()
            self._adapter = self._store = None

    def __repr__(self) -> str:
        return f"PerProcessLedger({self._path!r})"
