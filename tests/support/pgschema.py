"""Helpers for tests that give each test its own PostgreSQL schema."""

from __future__ import annotations

import psycopg
from psycopg import sql

__all__ = ["drop_schema"]


def drop_schema(dsn: str, schema: str) -> None:
    """Remove ``schema`` and everything in it (nothing happens if it does not exist)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
