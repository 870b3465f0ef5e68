"""Stores for tests that need a particular kind (the contract suite's ``store``
fixture runs every kind)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from authsome import ledger
from authsome.stores import MemoryStore, PostgresStore, SQLiteStore, Store
from tests.support.pgschema import drop_schema


def postgres_store(request: pytest.FixtureRequest) -> Store:
    """A store in a schema of its own on the suite's server, closed and dropped after
    the test.

    Closed here whoever else closes it (closing is idempotent): a pool left to the
    garbage collector is collected in whatever thread runs then, possibly one of its
    own workers, which cannot join itself and fails a later, unrelated test.
    """
    dsn: str = request.getfixturevalue("pg_dsn")
    schema: str = request.getfixturevalue("pg_schema")
    request.addfinalizer(lambda: drop_schema(dsn, schema))
    store = PostgresStore(dsn, schema=schema, max_size=4)
    request.addfinalizer(store.close)  # runs first: finalizers run last-in, first-out
    return store


STORE_KINDS: dict[str, Callable[[pytest.FixtureRequest], Store]] = {
    "memory": lambda _: MemoryStore(),
    "sqlite": lambda _: SQLiteStore(":memory:"),
    "postgres": postgres_store,
}
"""A fresh store of each kind, by name (parametrize over ``sorted(STORE_KINDS)``)."""

AuthAndLedgerStores = tuple[Callable[[], Store], Callable[[], ledger.LedgerStore]]


@contextmanager
def auth_and_ledger_stores(
    request: pytest.FixtureRequest, tmp_path: Path, *, pool_size: int
) -> Iterator[AuthAndLedgerStores]:
    """Makers of an auth store and a ledger store of the kind ``request.param`` names
    (``"memory"``, ``"sqlite"`` or ``"postgres"``): each call opens another store on
    the same data, as another process would; PostgreSQL stores (pools of
    ``pool_size``) are closed and their schemas dropped afterwards."""
    if request.param == "memory":
        yield MemoryStore, ledger.MemoryLedgerStore
        return
    if request.param == "sqlite":
        yield (
            lambda: SQLiteStore(str(tmp_path / "auth.db")),
            lambda: ledger.SQLiteLedgerStore(str(tmp_path / "ledger.db")),
        )
        return
    dsn: str = request.getfixturevalue("pg_dsn")
    schema: str = request.getfixturevalue("pg_schema")
    opened: list[PostgresStore | ledger.PostgresLedgerStore] = []

    def auth_store() -> Store:
        opened.append(PostgresStore(dsn, schema=f"{schema}_auth", max_size=pool_size))
        return opened[-1]  # type: ignore[return-value]

    def ledger_store() -> ledger.LedgerStore:
        opened.append(
            ledger.PostgresLedgerStore(dsn, schema=f"{schema}_ledger", max_size=pool_size)
        )
        return opened[-1]  # type: ignore[return-value]

    yield auth_store, ledger_store
    for store in opened:
        store.close()
    drop_schema(dsn, f"{schema}_auth")
    drop_schema(dsn, f"{schema}_ledger")
