"""The suite's PostgreSQL server starts, answers and isolates tests by schema."""

from __future__ import annotations

import psycopg

from tests.support.pgserver import PgServer


def test_server_answers_over_loopback(pg_server: PgServer, pg_dsn: str) -> None:
    assert pg_server.host == "127.0.0.1"
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    assert row is not None
    assert row[0] >= 130000


def test_each_test_gets_its_own_schema_name(pg_schema: str) -> None:
    assert pg_schema.startswith("t_")
    assert pg_schema.isidentifier()
