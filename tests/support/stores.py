"""Stores for tests that need a particular kind (the contract suite's ``store``
fixture runs every kind)."""

from __future__ import annotations

import pytest

from authsome.stores import PostgresStore, Store
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
