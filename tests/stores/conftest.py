"""The ``store`` fixture: every contract test runs once per store implementation.

A new implementation joins the contract suite with one entry in ``STORE_FACTORIES``;
its factory gets the pytest request, so it can ask for any fixture it needs (a
temporary directory, a database server).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from authsome.stores import MemoryStore, SQLiteStore, Store
from tests.support.stores import postgres_store

__all__ = ["STORE_FACTORIES", "StoreFactory", "postgres_store"]

StoreFactory = Callable[[pytest.FixtureRequest], Store]


def _sqlite_file(request: pytest.FixtureRequest) -> Store:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return SQLiteStore(tmp_path / "auth.db")


STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": lambda _request: MemoryStore(),
    "postgres": postgres_store,
    "sqlite": _sqlite_file,
    "sqlite-memory": lambda _request: SQLiteStore(":memory:"),
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """A fresh, empty store of each kind; closed after the test."""
    created = STORE_FACTORIES[request.param](request)
    yield created
    created.close()
