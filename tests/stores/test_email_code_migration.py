"""Upgrading a database to e-mail codes and sign-up tokens keeps the one-time
tokens it holds: they still work, start with no attempts, and the table takes
user-less tokens afterwards (SQLite rebuilds the table; PostgreSQL alters it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from authsome.models import OneTimeToken
from authsome.stores import PostgresStore, SQLiteStore, Store
from authsome.stores import postgres as postgres_module
from authsome.stores import sqlite as sqlite_module
from authsome.stores._postgres_migrations import MIGRATIONS as PG_MIGRATIONS
from authsome.stores._sqlite_migrations import MIGRATIONS as SQLITE_MIGRATIONS
from tests.support.pgschema import drop_schema

from ._factories import NOW, add_user

EMAIL = "ada@example.com"


def _token(purpose: str, user_id: str = "u1") -> OneTimeToken:
    return OneTimeToken(purpose, user_id, "default", EMAIL, NOW, NOW + timedelta(minutes=15))


def _step(migrations: tuple[str, ...]) -> int:
    return next(i for i, script in enumerate(migrations) if "one_time_tokens_by_address" in script)


def _upgrade_keeps_tokens(open_store: Callable[[], SQLiteStore | PostgresStore]) -> None:
    with open_store() as store:
        assert store.attempt_one_time_code("wrong", "email_code", "default", EMAIL, NOW, 5) is None
        assert store.attempt_one_time_code("code", "email_code", "default", EMAIL, NOW, 5) == (
            _token("email_code")
        )
        assert store.consume_one_time_token("link", "magic_link", "default", NOW) == _token(
            "magic_link"
        )
        store.create_one_time_token("sign-up", _token("magic_link", ""), NOW)
        assert store.consume_one_time_token("sign-up", "magic_link", "default", NOW) == _token(
            "magic_link", ""
        )


def _fill(store: Store) -> None:
    add_user(store)
    store.create_one_time_token("code", _token("email_code"), NOW)
    store.create_one_time_token("link", _token("magic_link"), NOW)


def test_sqlite_upgrade_keeps_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "auth.db"
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_module, "MIGRATIONS", SQLITE_MIGRATIONS[: _step(SQLITE_MIGRATIONS)])
        with SQLiteStore(path) as old:
            _fill(old)
    _upgrade_keeps_tokens(lambda: SQLiteStore(path))


def test_postgres_upgrade_keeps_tokens(
    pg_dsn: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        with monkeypatch.context() as patched:
            patched.setattr(postgres_module, "MIGRATIONS", PG_MIGRATIONS[: _step(PG_MIGRATIONS)])
            with PostgresStore(pg_dsn, schema=pg_schema) as old:
                _fill(old)
        _upgrade_keeps_tokens(lambda: PostgresStore(pg_dsn, schema=pg_schema))
    finally:
        drop_schema(pg_dsn, pg_schema)
