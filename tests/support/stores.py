"""Stores for tests that need a particular kind (the contract suite's ``store``
fixture runs every kind)."""

from __future__ import annotations

import pytest

from authsome.stores import PostgresStore, Store
from tests.support.pgschema import drop_schema


def postgres_store(request: pytest.FixtureRequest) -> Store:
    """A store in a schema of its own on the suite's server, dropped after the test."""
    dsn: str = request.getfixturevalue("pg_dsn")
    schema: str = request.getfixturevalue("pg_schema")
    request.addfinalizer(lambda: drop_schema(dsn, schema))
    return PostgresStore(dsn, schema=schema, max_size=4)
