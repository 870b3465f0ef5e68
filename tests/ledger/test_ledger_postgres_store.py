"""What only the PostgreSQL ledger store has: schemas, migrations, pools, wrapped errors.

The behaviour every store shares runs on it through the store contract suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import psycopg_pool
import pytest
from psycopg import sql

from authsome import ledger
from authsome.ledger.stores import ConsumeRequest, UniqueUse, UsageBatch, UsageDelta
from authsome.ledger.stores.postgres import MIGRATIONS
from tests.support.pgschema import drop_schema
from tests.support.pgserver import PgServer
from tests.support.ports import free_tcp_port

T0 = 1_706_702_400


@pytest.fixture
def schema(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """The test's schema, dropped afterwards (with a second one some tests use)."""
    yield pg_schema
    drop_schema(pg_dsn, pg_schema)
    drop_schema(pg_dsn, pg_schema + "_b")


@pytest.fixture
def store(pg_dsn: str, schema: str) -> Iterator[ledger.PostgresStore]:
    s = ledger.PostgresStore(pg_dsn, schema=schema, max_size=4)
    yield s
    s.close()


def tables(dsn: str, schema: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY table_name",
            (schema,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_tables_live_in_the_schema_and_data_survives_reopening(pg_dsn: str, schema: str) -> None:
    s = ledger.PostgresStore(pg_dsn, schema=schema)
    s.put_plan(ledger.Plan("p"))
    s.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 5, "e")]))
    s.close()
    assert tables(pg_dsn, schema) == [
        "ledger_batches",
        "ledger_events",
        "ledger_plans",
        "ledger_schema",
        "ledger_subscriptions",
        "ledger_usage",
        "ledger_users",
    ]
    s = ledger.PostgresStore(pg_dsn, schema=schema)
    try:
        assert s.get_plan("p") is not None
        assert s.get_usage("t", "f", T0) == 5
        assert s.schema_version == len(MIGRATIONS)
    finally:
        s.close()


def test_the_schema_name_is_quoted_not_spliced(pg_dsn: str, schema: str) -> None:
    mixed = "Mixed_" + schema  # case is kept: it is a quoted identifier
    s = ledger.PostgresStore(pg_dsn, schema=mixed)
    try:
        s.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1)]))
        assert "ledger_usage" in tables(pg_dsn, mixed)
        assert tables(pg_dsn, mixed.lower()) == []
    finally:
        s.close()
        drop_schema(pg_dsn, mixed)


@pytest.mark.parametrize(
    "bad", ["", "1abc", "a-b", "a b", 'x"; DROP TABLE t; --', "é", "a" * 64, "a.b"]
)
def test_schema_names_must_be_identifiers(bad: str) -> None:
    with pytest.raises(ledger.InvalidArgument, match="identifier"):
        ledger.PostgresStore("host=127.0.0.1", schema=bad)


def test_arguments_are_checked() -> None:
    with pytest.raises(ledger.InvalidArgumentType):
        ledger.PostgresStore("host=127.0.0.1", schema=3)  # type: ignore[arg-type]
    with pytest.raises(ledger.InvalidArgument, match="exactly one"):
        ledger.PostgresStore()
    with pytest.raises(ledger.InvalidArgument):
        ledger.PostgresStore("host=127.0.0.1", min_size=3, max_size=2)


def test_schemas_are_independent_ledgers(pg_dsn: str, schema: str) -> None:
    a = ledger.PostgresStore(pg_dsn, schema=schema)
    b = ledger.PostgresStore(pg_dsn, schema=schema + "_b")
    try:
        a.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 2, "e")]))
        b.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 3, "e")]))
        assert (a.get_usage("t", "f", T0), b.get_usage("t", "f", T0)) == (2, 3)
    finally:
        a.close()
        b.close()


def test_a_given_pool_is_used_and_left_open(pg_dsn: str, schema: str) -> None:
    with psycopg_pool.ConnectionPool(pg_dsn, min_size=1, max_size=2, open=True) as pool:
        s = ledger.PostgresStore(pool=pool, schema=schema)
        sub = ledger.Subscription("t", "p", datetime(2024, 1, 31, tzinfo=UTC))
        s.put_subscription(sub)
        assert s.get_subscription("t") == sub
        s.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 4, "e")]))
        assert s.consume(ConsumeRequest("t", "f", T0, 1, ceiling=5)) == (True, 5)
        s.close()
        assert not pool.closed
        with pool.connection() as conn:  # not autocommit: everything above was committed
            query = sql.SQL("SELECT used FROM {}.ledger_usage").format(sql.Identifier(schema))
            assert conn.execute(query).fetchall() == [(5,)]
    with pytest.raises(ledger.LedgerStoreError, match="closed"):
        s.get_usage("t", "f", T0)


def test_refuses_a_schema_newer_than_the_library(pg_dsn: str, schema: str) -> None:
    ledger.PostgresStore(pg_dsn, schema=schema).close()
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL("INSERT INTO {}.ledger_schema (version) VALUES (%s)").format(
                sql.Identifier(schema)
            ),
            (len(MIGRATIONS) + 1,),
        )
    with pytest.raises(ledger.LedgerStoreError, match="newer"):
        ledger.PostgresStore(pg_dsn, schema=schema)


def test_threads_migrating_at_once_migrate_once(pg_dsn: str, schema: str) -> None:
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            ledger.PostgresStore(pg_dsn, schema=schema, max_size=1).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(pg_dsn) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.ledger_schema").format(sql.Identifier(schema))
        assert conn.execute(query).fetchone() == (len(MIGRATIONS),)


def test_a_batch_is_all_or_nothing(store: ledger.PostgresStore) -> None:
    bad = UsageBatch(
        [UsageDelta("t", "f", T0, 5, "e1"), UsageDelta("t", "g", 1 << 70, 1)],
        [UniqueUse("t", "mau", T0, "alice")],
    )
    with pytest.raises(ledger.LedgerDataError) as info:  # the period is out of BIGINT
        store.apply_usage(bad)
    assert isinstance(info.value.__cause__, psycopg.Error)
    assert store.get_usage("t", "f", T0) == 0
    assert store.known_events("t", "f", ["e1"]) == set()  # rolled back with the increment
    assert store.known_users("t", "mau", T0, ["alice"]) == set()


@pytest.mark.parametrize(
    "batch",
    [
        UsageBatch([UsageDelta("t\x00", "f", T0, 1)]),  # PostgreSQL text holds no NUL
        UsageBatch([UsageDelta("t", "f", T0, 1, "e\x00")]),
        UsageBatch([], [UniqueUse("t", "mau", T0, "u\x00")]),
        UsageBatch([UsageDelta("t", "f\ud800", T0, 1)]),  # UTF-8 cannot encode it
        UsageBatch([UsageDelta("t", "f", 1 << 70, 1)]),  # out of BIGINT
        UsageBatch([UsageDelta("t", "f", T0, 1 << 70, "e")]),
        UsageBatch([UsageDelta("t", "f", T0, 1)], batch_id="b\x00"),
    ],
)
def test_data_it_can_never_store_is_a_data_error_and_rolls_back(
    store: ledger.PostgresStore, batch: UsageBatch
) -> None:
    good = [UsageDelta("t", "f", T0, 5, "e1"), UsageDelta("t", "g", T0, 2)]
    bad = UsageBatch([*good, *batch.deltas], batch.uniques, batch.batch_id)
    with pytest.raises(ledger.LedgerDataError):
        store.apply_usage(bad)
    assert store.usage_records("t") == []
    assert store.known_events("t", "f", ["e1"]) == set()
    with pytest.raises(ledger.LedgerDataError):
        store.consume(ConsumeRequest("t", "f\x00", T0, 1, ceiling=5))
    with pytest.raises(ledger.LedgerDataError):
        store.get_usage("t", "f\x00", T0)


def test_counters_saturate_and_never_go_below_zero(store: ledger.PostgresStore) -> None:
    store.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1 << 62)] * 3))  # sum > 2**63
    assert store.get_usage("t", "f", T0) == ledger.MAX_COUNTER
    store.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1 << 62)]))  # BIGINT would overflow
    assert store.get_usage("t", "f", T0) == ledger.MAX_COUNTER
    assert store.consume(ConsumeRequest("t", "f", T0, 1, ceiling=1 << 64)) == (
        True,
        ledger.MAX_COUNTER,
    )
    store.apply_usage(UsageBatch([UsageDelta("t", "f", T0, -(1 << 62))] * 3))
    assert store.get_usage("t", "f", T0) == 0
    store.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 3), UsageDelta("t", "f", T0, -1)]))
    assert store.get_usage("t", "f", T0) == 2  # the batch's net delta is what is clamped


@pytest.mark.parametrize("own_pool", [True, False])
def test_batch_ids_older_than_a_day_are_pruned(
    pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch, own_pool: bool
) -> None:
    monkeypatch.setattr(ledger.stores.postgres, "_PRUNE_EVERY", 1)
    if own_pool:
        store = ledger.PostgresStore(pg_dsn, schema=schema)
    else:  # a given pool's connections are not autocommit: the prune must still commit
        pool = psycopg_pool.ConnectionPool(pg_dsn, min_size=1, max_size=2, open=True)
        store = ledger.PostgresStore(pool=pool, schema=schema)
    try:
        prune_old_batch_ids(store, pg_dsn, schema)
    finally:
        store.close()
        if not own_pool:
            pool.close()


def prune_old_batch_ids(store: ledger.PostgresStore, pg_dsn: str, schema: str) -> None:
    store.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1)], batch_id="old"))
    store.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1)], batch_id="recent"))
    table = sql.Identifier(schema, "ledger_batches")
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET applied_at = now() - interval '25 hours' WHERE batch_id = 'old'"
            ).format(table)
        )
    store.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1)], batch_id="new"))
    store.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1)], batch_id="recent"))  # known
    with psycopg.connect(pg_dsn) as conn:
        ids = conn.execute(sql.SQL("SELECT batch_id FROM {} ORDER BY 1").format(table)).fetchall()
    assert ids == [("new",), ("recent",)]
    assert store.get_usage("t", "f", T0) == 3


def test_a_version_1_schema_is_migrated_in_place(pg_dsn: str, schema: str) -> None:
    with psycopg.connect(pg_dsn) as conn:  # what the previous release created
        ident = sql.Identifier(schema)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.ledger_schema (version INTEGER PRIMARY KEY, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ).format(ident)
        )
        for statement in MIGRATIONS[0]:
            conn.execute(sql.SQL(statement).format(schema=ident))
        conn.execute(sql.SQL("INSERT INTO {}.ledger_schema (version) VALUES (1)").format(ident))
        conn.execute(
            sql.SQL("INSERT INTO {}.ledger_usage VALUES ('t', 'f', %s, 4)").format(ident), (T0,)
        )
    s = ledger.PostgresStore(pg_dsn, schema=schema)
    try:
        assert s.schema_version == len(MIGRATIONS)
        batch = UsageBatch([UsageDelta("t", "f", T0, 1)], batch_id="b")
        s.apply_usage(batch)
        s.apply_usage(batch)
        assert s.get_usage("t", "f", T0) == 5
    finally:
        s.close()


def test_a_refused_consume_leaves_no_trace(store: ledger.PostgresStore) -> None:
    store.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 5)]))
    assert store.consume(ConsumeRequest("t", "f", T0, 1, ceiling=5, event_id="x")) == (False, 5)
    assert store.known_events("t", "f", ["x"]) == set()  # the id can still count later
    req = ConsumeRequest("t", "mau", T0, 1, ceiling=0, unique=True, user_id="bob")
    assert store.consume(req) == (False, 0)
    assert store.known_users("t", "mau", T0, ["bob"]) == set()
    assert store.usage_records("t") == [ledger.stores.UsageRecord("f", T0, 5)]


def test_concurrent_batches_in_any_order_add_up_exactly(store: ledger.PostgresStore) -> None:
    # Overlapping ids and counters, each thread in its own order: the store sorts its
    # row locks, so nothing deadlocks, and each id counts once.
    ids = [f"e{i}" for i in range(400)]
    counters = [("t", f"f{i % 7}", T0) for i in range(400)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def work(seed: int) -> None:
        order = list(range(400))
        order = order[seed * 67 :] + order[: seed * 67]
        if seed % 2:
            order.reverse()
        barrier.wait()
        try:
            for chunk in range(0, 400, 100):
                part = order[chunk : chunk + 100]
                store.apply_usage(
                    UsageBatch(
                        [UsageDelta(*counters[i][:2], T0, 1, ids[i]) for i in part]
                        + [UsageDelta("t", "plain", T0, 1)],
                        [UniqueUse("t", "mau", T0, f"u{i % 50}") for i in part],
                    )
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(store.get_usage("t", f"f{k}", T0) for k in range(7)) == 400
    assert store.get_usage("t", "plain", T0) == 6 * 4
    assert store.get_usage("t", "mau", T0) == 50


def test_database_errors_are_ledger_store_errors(pg_server: PgServer, schema: str) -> None:
    with pytest.raises(ledger.LedgerStoreError) as info:
        ledger.PostgresStore(pg_server.dsn(dbname="no_such_db"), schema=schema, timeout=1.0)
    assert isinstance(info.value.__cause__, psycopg.Error)
    s = ledger.PostgresStore(pg_server.dsn(), schema=schema)
    s.close()
    s.close()
    with pytest.raises(ledger.LedgerStoreError):
        s.get_usage("t", "f", T0)
    with pytest.raises(ledger.LedgerStoreError):
        s.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1)]))


def test_reads_survive_dropped_connections_and_flushes_retry(pg_dsn: str, schema: str) -> None:
    app = f"ledger-drop-{schema}"
    s = ledger.PostgresStore(f"{pg_dsn} application_name={app}", schema=schema, max_size=3)
    try:
        s.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 2, "e1")]))

        def kill_sessions() -> None:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (app,),
                )

        kill_sessions()
        assert s.get_usage("t", "f", T0) == 2  # a read moves on to a fresh connection
        with ledger.Engine(store=s, flush_interval=60, retry_backoff=(0.001, 0.01)) as eng:
            eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("f", limit=None)]))
            kill_sessions()
            eng.meter("t", "g", 3, event_id="e2")
            eng.flush(timeout=10)  # the first attempt may hit a dead connection
        assert s.known_events("t", "g", ["e2"]) == {"e2"}
        assert sum(r.used for r in s.usage_records("t") if r.feature == "g") == 3
    finally:
        s.close()


# --- failing fast, with the cause -------------------------------------------------------


def test_an_unreachable_server_fails_within_seconds_naming_the_cause(schema: str) -> None:
    port = free_tcp_port()
    started = time.monotonic()
    with pytest.raises(ledger.LedgerStoreError) as caught:
        ledger.PostgresStore(
            f"postgresql://ann:hunter2@127.0.0.1:{port}/x", schema=schema, timeout=60
        )
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "Connection refused" in message
    assert f"port={port}" in message
    assert "hunter2" not in message
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"dbname": "no_such_db"}, 'database "no_such_db" does not exist'),
        ({"user": "no_such_role"}, 'role "no_such_role" does not exist'),
    ],
)
def test_a_wrong_database_or_user_fails_at_once_naming_the_cause(
    pg_server: PgServer, schema: str, change: dict[str, str], cause: str
) -> None:
    dsn = pg_server.dsn(dbname=change.get("dbname", "postgres"))
    if "user" in change:
        dsn = dsn.replace(f"user={pg_server.user}", f"user={change['user']}")
    started = time.monotonic()
    with pytest.raises(ledger.LedgerStoreError, match=cause):
        ledger.PostgresStore(dsn, schema=schema, timeout=60)
    assert time.monotonic() - started < 5


def test_the_connect_timeout_is_configurable_and_checked(pg_dsn: str, schema: str) -> None:
    with pytest.raises(ledger.InvalidArgument):
        ledger.PostgresStore(pg_dsn, schema=schema, connect_timeout=0)
    with pytest.raises(ledger.InvalidArgumentType):
        ledger.PostgresStore(pg_dsn, schema=schema, connect_timeout="5")  # type: ignore[arg-type]
    with pytest.raises(ledger.InvalidArgument, match="connection string is invalid") as caught:
        ledger.PostgresStore("host=x password=hunter2 broken", schema=schema)
    assert "hunter2" not in str(caught.value)
    ledger.PostgresStore(pg_dsn, schema=schema, connect_timeout=3).close()


def test_the_cli_says_why_in_one_line_and_exits_1(pg_server: PgServer) -> None:
    unreachable = f"postgresql://ann:hunter2@127.0.0.1:{free_tcp_port()}/x"
    unknown_db = f"postgresql://{pg_server.user}@{pg_server.host}:{pg_server.port}/no_such_db"
    src = str(Path(__file__).resolve().parents[2] / "src")
    for dsn, cause in ((unreachable, "Connection refused"), (unknown_db, "does not exist")):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "authsome", "usage", "acme", "--db", dsn],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": src},
            timeout=60,
            check=False,
        )
        assert time.monotonic() - started < 10  # (the interpreter's start included)
        assert done.returncode == 1
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("authsome: ")
        assert cause in done.stderr
        assert "hunter2" not in done.stderr
