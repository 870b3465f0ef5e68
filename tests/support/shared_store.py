"""One database opened twice, as two workers of one application would: the
``shared_store`` fixture of the tests that need every store kind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from authsome.stores import MemoryStore, PostgresStore, SQLiteStore, Store
from tests.support.pgschema import drop_schema

__all__ = ["SharedStore", "shared_store"]


@dataclass
class SharedStore:
    """``open()`` gives one more handle on the same data (for memory, the same object,
    the only way two engines share it); every handle is closed after the test."""

    kind: str
    _opener: Callable[[], Store]
    _opened: list[Store] = field(default_factory=list)

    def open(self) -> Store:
        store = self._opener()
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in self._opened:
            store.close()


@pytest.fixture(params=["memory", "postgres", "sqlite"])
def shared_store(request: pytest.FixtureRequest) -> Iterator[SharedStore]:
    kind: str = request.param
    cleanup: Callable[[], None] = lambda: None  # noqa: E731 - replaced for postgres
    if kind == "memory":
        memory = MemoryStore()
        shared = SharedStore(kind, lambda: memory)
    elif kind == "sqlite":
        path = request.getfixturevalue("tmp_path") / "auth.db"
        shared = SharedStore(kind, lambda: SQLiteStore(path))
    else:
        dsn: str = request.getfixturevalue("pg_dsn")
        schema: str = request.getfixturevalue("pg_schema")
        shared = SharedStore(kind, lambda: PostgresStore(dsn, schema=schema, max_size=2))
        cleanup = lambda: drop_schema(dsn, schema)  # noqa: E731
    yield shared
    shared.close()
    cleanup()
