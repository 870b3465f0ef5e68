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
``AUTHSOME_EXAMPLE_BASE_URL``
    The public URL of the SSO and social sign-in routes (``https://app.example.com/auth``):
    set, each app mounts the ready routes of its framework at that URL's path
    (``POST /auth/sso/start``, ``GET /auth/sso/callback``, ...). Unset: no sign-in routes.
``AUTHSOME_SSO_ALLOW_INSECURE_LOOPBACK``
    ``1`` lets SSO and social sign-in talk to an ``http://`` identity provider on a
    loopback address: a provider on the developer's machine, never in production.

With a ledger, plan-gated operations are checked against the tenant's subscription
(``authsome subscribe <tenant> <plan> --db ...``) and usage is metered
(``authsome usage <tenant> --db ...``). Without one, every feature is allowed
(``NoopLedger``) and usage is discarded.

The ledger engine is built once, with the app, and may be built before a server forks
its workers (``gunicorn --preload``): a :class:`authsome.ledger.Engine` restarts itself
in each child (an empty buffer, new locks, a flusher of its own) and its SQLite store
reconnects there, so each worker meters into the shared ledger file and drains what
it buffered when it exits.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authsome import Authsome
from authsome import ledger as embedded
from authsome._cli_db import ledger_location, parse_db
from authsome._cli_ledger import define_plans
from authsome._plans_toml import load_plans_file
from authsome.bridge import Ledger
from authsome.stores import MemoryStore, SQLiteStore, Store

__all__ = [
    "build_auth",
    "close_auth",
    "configured_ledger",
    "ledger_db_path",
    "sign_in_base_url",
    "sign_in_mount_path",
]

DB_ENV = "AUTHSOME_DB"
LEDGER_DB_ENV = "AUTHSOME_LEDGER_DB"
PLANS_ENV = "AUTHSOME_PLANS"
BASE_URL_ENV = "AUTHSOME_EXAMPLE_BASE_URL"
INSECURE_LOOPBACK_ENV = "AUTHSOME_SSO_ALLOW_INSECURE_LOOPBACK"

# The ledger engine build_auth opened for an app, for close_auth: only that one (an
# engine the caller passed in is the caller's to close).
_OPENED_FOR: weakref.WeakKeyDictionary[Authsome, embedded.Engine] = weakref.WeakKeyDictionary()


def build_auth(ledger: Ledger | embedded.Engine | None = None, **options: Any) -> Authsome:
    """The engine: SQLite at ``$AUTHSOME_DB`` (else in memory), reporting to ``ledger``
    (default: :func:`configured_ledger`, closed by :func:`close_auth`)."""
    path = os.environ.get(DB_ENV)
    store: Store = SQLiteStore(path) if path else MemoryStore()
    if os.environ.get(INSECURE_LOOPBACK_ENV) == "1":
        options.setdefault("sso_allow_insecure_loopback", True)
    if ledger is not None:
        return Authsome(store=store, ledger=ledger, **options)
    opened = configured_ledger()
    auth = Authsome(store=store, ledger=opened, **options)  # wraps an Engine in an adapter
    if opened is not None:
        _OPENED_FOR[auth] = opened
    return auth


def close_auth(auth: Authsome) -> None:
    """Drain the ledger engine :func:`build_auth` opened for ``auth`` into its file,
    then close the stores. For a server's shutdown hook: an engine also drains at
    interpreter exit, but a server that ends by re-raising its stop signal (uvicorn)
    skips that."""
    engine = _OPENED_FOR.pop(auth, None)
    if engine is not None:
        engine.close()
        engine.store.close()  # an engine leaves its store open: it belongs to the opener
    auth.close()


def sign_in_base_url() -> str | None:
    """Where the sign-in routes are mounted as the browser sees them, or ``None``
    (no sign-in routes). The routes redirect to providers and register callbacks at
    this URL, so it is configured, never read from a request."""
    url = os.environ.get(BASE_URL_ENV, "").strip().rstrip("/")
    if not url:
        return None
    if not url.startswith(("https://", "http://")):
        # Refused when the app starts, not at its first sign-in.
        raise ValueError(f"{BASE_URL_ENV} must be an absolute http(s) URL")
    return url


def sign_in_mount_path(base_url: str) -> str:
    """The path the app mounts the routes at: the base URL's (``""`` for its root)."""
    return urlsplit(base_url).path.rstrip("/")


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


def configured_ledger() -> embedded.Engine | None:
    """The embedded ledger engine on :func:`ledger_db_path`, with ``$AUTHSOME_PLANS``
    loaded; ``None`` (the auth engine's ``NoopLedger``) when no ledger is configured.

    Safe to build before a fork: each child process gets a fresh engine of its own."""
    path = ledger_db_path()
    if path is None:
        return None
    plans_file = os.environ.get(PLANS_ENV)
    plans = load_plans_file(plans_file) if plans_file else []
    store = embedded.SQLiteStore(path)
    engine = embedded.Engine(store=store)
    try:
        define_plans(engine, plans)
    except BaseException:
        engine.close()
        store.close()
        raise
    return engine
