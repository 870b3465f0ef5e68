"""Processes opening one database at once agree on the key the store keeps."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.pgschema import drop_schema

from ._processes import race_processes

_CHILD = textwrap.dedent(
    """
    import secrets
    import sys

    from authsome.stores import PostgresStore, SQLiteStore

    kind, target, schema = sys.argv[1:4]
    print("ready", flush=True)
    sys.stdin.readline()  # wait for "go", so that the processes race
    if kind == "sqlite":
        store = SQLiteStore(target)
    else:
        store = PostgresStore(target, schema=schema, max_size=1)
    with store:
        print(store.keep_store_key("root", secrets.token_bytes(32)).hex(), flush=True)
    """
)


def test_processes_sharing_a_sqlite_file_keep_one_key(tmp_path: Path) -> None:
    argvs = [["sqlite", str(tmp_path / "auth.db"), "-"] for _ in range(4)]

    keys = race_processes(_CHILD, argvs, timeout=60)

    assert len(set(keys)) == 1
    assert len(bytes.fromhex(keys[0])) == 32


def test_processes_sharing_a_postgres_schema_keep_one_key(pg_dsn: str, pg_schema: str) -> None:
    argvs = [["postgres", pg_dsn, pg_schema] for _ in range(4)]
    try:
        keys = race_processes(_CHILD, argvs, timeout=120)
    finally:
        drop_schema(pg_dsn, pg_schema)

    assert len(set(keys)) == 1
