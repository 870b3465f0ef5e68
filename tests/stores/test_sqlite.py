"""What only SQLiteStore promises: persistence, migrations, processes, error mapping."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import os
import sqlite3
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authsome.errors import AlreadyExists, StoreError, ValidationError
from authsome.models import (
    Domain,
    Membership,
    MfaFactor,
    MfaMethod,
    Org,
    OrgRole,
    RefreshStatus,
)
from authsome.stores import MemoryStore, SQLiteStore
from authsome.stores import sqlite as sqlite_module
from authsome.stores._sqlite_migrations import MIGRATIONS, split_statements

from ._factories import (
    NOW,
    OLD_SSO_PEM,
    STORE_TABLES,
    add_session,
    add_user,
    assert_sso_domains_scoped_after_upgrade,
    assert_threads_count_exactly,
    make_session,
    make_user,
)
from ._processes import race_processes

LATER = NOW + timedelta(minutes=5)
TABLES = STORE_TABLES


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "auth.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(db_path) as opened:
        yield opened


def _raw(path: Path) -> sqlite3.Connection:
    """A plain connection beside the store, to look at or tamper with the file."""
    return sqlite3.connect(path, isolation_level=None)


def _pragma(path: Path, name: str) -> object:
    conn = _raw(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def _tables(path: Path) -> set[str]:
    conn = _raw(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        conn.close()
    return {name for (name,) in rows}


# -- files, reopening and migrations -------------------------------------------------


def test_data_survives_reopening(db_path: Path) -> None:
    with SQLiteStore(db_path) as first:
        user = add_user(first)
        add_session(first)
        first.rotate_refresh_token("refresh-s1", "refresh-r2", "access-r2", LATER, LATER)
        first.hit_counter("ip:1", NOW, 60)

    with SQLiteStore(db_path) as second:
        assert second.get_user("u1") == user
        assert second.get_password_hash("u1") == "pw-hash-u1"
        assert second.find_session_by_access_hash("access-r2") is not None
        assert second.get_counter("ip:1", NOW) == (1, NOW + timedelta(seconds=60))
        # The rotated token is remembered as used, so its reuse is still caught.
        reuse = second.rotate_refresh_token("refresh-s1", "x", "y", LATER, LATER)
        assert reuse.status is RefreshStatus.REUSED


def test_opening_twice_migrates_once_and_records_the_version(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    SQLiteStore(db_path).close()

    assert _pragma(db_path, "user_version") == len(MIGRATIONS)
    assert _tables(db_path) == TABLES


def test_file_uses_write_ahead_logging(store: SQLiteStore, db_path: Path) -> None:
    assert _pragma(db_path, "journal_mode") == "wal"


def test_appended_migration_runs_on_an_existing_file(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SQLiteStore(db_path) as old:
        user = add_user(old)
    step = "CREATE TABLE extra (id TEXT PRIMARY KEY); INSERT INTO extra VALUES ('a;b');"
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", (*MIGRATIONS, step))

    with SQLiteStore(db_path) as upgraded:
        assert upgraded.get_user("u1") == user

    assert _pragma(db_path, "user_version") == len(MIGRATIONS) + 1
    assert "extra" in _tables(db_path)


def test_upgrading_keeps_domains_and_lets_pending_claims_share_a_hostname(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_module, "MIGRATIONS", MIGRATIONS[:7])  # before pending claims
        with SQLiteStore(db_path) as old:
            old.create_domain(Domain("d1", "acme", "login.acme.com", NOW), "token-d1")
            old.create_domain(Domain("d2", "acme", "app.acme.com", NOW), "token-d2")
            old.mark_domain_verified("d2", LATER)
            with pytest.raises(AlreadyExists):  # the old rule: one claim per hostname
                old.create_domain(Domain("d3", "evil", "login.acme.com", NOW), "token-d3")

    with SQLiteStore(db_path) as upgraded:
        assert upgraded.get_domain_token("d1") == "token-d1"
        assert [d.id for d in upgraded.list_domains("acme")] == ["d2", "d1"]
        assert upgraded.find_domain_by_hostname("app.acme.com") == upgraded.get_domain("d2")
        upgraded.create_domain(Domain("d3", "evil", "login.acme.com", NOW), "token-d3")
        with pytest.raises(AlreadyExists):
            upgraded.create_domain(Domain("d4", "evil", "app.acme.com", NOW), "token-d4")
        upgraded.mark_domain_verified("d1", LATER)
        with pytest.raises(AlreadyExists):
            upgraded.mark_domain_verified("d3", LATER)


def test_upgrading_keeps_sso_domains_and_scopes_them_to_the_tenant(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_module, "MIGRATIONS", MIGRATIONS[:8])  # before per-tenant domains
        with SQLiteStore(db_path) as old:
            for org_id, tenant in (("o1", "acme"), ("o2", "evil")):
                owner = add_user(old, f"u-{org_id}", email=f"{org_id}@example.com", tenant=tenant)
                org = Org(org_id, tenant, org_id, "Org", NOW)
                old.create_org(org, Membership(org_id, owner.id, OrgRole.OWNER, NOW))
    # Rows as the old schema held them (the new code writes the new schema only).
    micros = int(NOW.timestamp() * 1_000_000)
    conn = _raw(db_path)
    try:
        conn.execute(
            "INSERT INTO sso_connections (id, org_id, protocol, entity_id, sso_url,"
            " x509_certificate, created_at, updated_at) VALUES (?, ?, 'saml', ?, ?, ?, ?, ?)",
            ("c1", "o1", "urn:idp", "https://idp.example/sso", OLD_SSO_PEM, micros, micros),
        )
        conn.executemany(
            "INSERT INTO sso_domains (domain, connection_id, org_id, position) VALUES (?, ?, ?, ?)",
            [("acme.example", "c1", "o1", 0), ("b.example", "c1", "o1", 1)],
        )
    finally:
        conn.close()

    with SQLiteStore(db_path) as upgraded:
        assert_sso_domains_scoped_after_upgrade(upgraded)


def test_upgrading_gives_sessions_a_last_activity_and_factors_no_failures(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = next(i for i, script in enumerate(MIGRATIONS) if "last_seen_at" in script)
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_module, "MIGRATIONS", MIGRATIONS[:step])
        with SQLiteStore(db_path) as old:
            add_user(old)
            old.create_mfa_factor(MfaFactor("f1", "u1", MfaMethod.TOTP, NOW), "secret")
    # A session as the old schema held it (the new code writes the new schema only).
    micros = int(NOW.timestamp() * 1_000_000)
    conn = _raw(db_path)
    try:
        conn.execute(
            "INSERT INTO sessions (id, user_id, tenant, created_at, expires_at,"
            " access_expires_at, access_hash) VALUES ('s1', 'u1', 'default', ?, ?, ?, 'a1')",
            (micros, micros + 10**12, micros + 10**9),
        )
    finally:
        conn.close()

    with SQLiteStore(db_path) as upgraded:
        session = upgraded.get_session("s1")
        factor = upgraded.get_mfa_factor("f1")

    # Existing sessions start their idle time at the upgrade, not at their creation.
    assert session is not None and session.last_seen_at is not None
    assert session.last_seen_at >= datetime.now(UTC) - timedelta(minutes=5)
    assert factor is not None and factor.failed_codes == 0


def test_failing_migration_step_leaves_nothing_behind(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SQLiteStore(db_path).close()
    broken = "CREATE TABLE half (id TEXT); INSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr(sqlite_module, "MIGRATIONS", (*MIGRATIONS, broken))

    with pytest.raises(StoreError):
        SQLiteStore(db_path)

    assert _pragma(db_path, "user_version") == len(MIGRATIONS)
    assert "half" not in _tables(db_path)


def test_schema_newer_than_the_code_is_refused(db_path: Path) -> None:
    conn = _raw(db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()

    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(db_path)


def test_split_statements_respects_literals_triggers_and_comments() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE t (x TEXT);
        INSERT INTO t VALUES ('a;b');
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM t WHERE x = ';'; END;
        -- trailing comment
    """

    statements = split_statements(script)

    assert len(statements) == 3
    assert statements[1].endswith("VALUES ('a;b');")
    assert statements[2].endswith("END;")


def test_split_statements_rejects_an_unfinished_statement() -> None:
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('unterminated")


# -- SQLite-specific behaviour ---------------------------------------------------------


def test_session_of_unknown_user_is_refused(store: SQLiteStore) -> None:
    # Foreign keys are enforced, so no session can outlive or predate its user.
    with pytest.raises(StoreError):
        store.create_session(make_session(user_id="ghost"), "access-s1", "refresh-s1")

    assert store.get_session("s1") is None


def test_datetimes_with_other_offsets_come_back_as_equal_utc(store: SQLiteStore) -> None:
    tokyo = datetime(2030, 1, 2, 12, 0, tzinfo=timezone(timedelta(hours=9)))
    store.create_user(dataclasses.replace(make_user(), created_at=tokyo), "pw-hash")

    stored = store.get_user("u1")

    assert stored is not None
    assert stored.created_at == tokyo
    assert stored.created_at.tzinfo == UTC


def test_naive_datetimes_are_rejected(store: SQLiteStore) -> None:
    with pytest.raises(ValidationError):
        store.hit_counter("ip:1", datetime(2030, 1, 1), 60)  # naive on purpose


def test_repr_shows_the_path_only(db_path: Path) -> None:
    with SQLiteStore(db_path) as store:
        assert repr(store) == f"SQLiteStore({str(db_path)!r})"


def test_in_memory_database_is_shared_by_threads() -> None:
    with SQLiteStore(":memory:") as store:
        user = add_user(store)
        seen: list[object] = []
        thread = threading.Thread(target=lambda: seen.append(store.get_user("u1")))
        thread.start()
        thread.join()

    assert seen == [user]


# -- errors ----------------------------------------------------------------------------


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as caught:
        SQLiteStore(tmp_path / "missing-dir" / "auth.db")

    assert isinstance(caught.value.__cause__, sqlite3.Error)


def test_corrupt_file_is_a_store_error(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database file" * 100)

    with pytest.raises(StoreError) as caught:
        SQLiteStore(db_path)

    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_locked_database_is_a_store_error_naming_no_hash(db_path: Path) -> None:
    with SQLiteStore(db_path) as setup:
        add_user(setup)
        add_session(setup)
    hashes = ("refresh-s1", "refresh-new", "access-new")
    # A tiny timeout: the lock below is held for the whole call, so it must fail.
    store = SQLiteStore(db_path, timeout=0.01)
    blocker = _raw(db_path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError) as caught:
            store.rotate_refresh_token(*hashes, LATER, LATER)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        store.close()

    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    for text in (str(caught.value), repr(caught.value)):
        assert not any(secret in text for secret in hashes)


def test_closed_store_refuses_work_and_closes_twice(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    store.close()
    store.close()

    with pytest.raises(StoreError, match="closed"):
        store.get_user("u1")


def test_close_closes_connections_opened_by_other_threads(db_path: Path) -> None:
    store = SQLiteStore(db_path)
    used, closed = threading.Event(), threading.Event()
    errors: list[StoreError] = []

    def worker() -> None:
        store.get_user("u1")  # opens this thread's connection
        used.set()
        closed.wait()
        try:
            store.get_user("u1")
        except StoreError as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    used.wait()
    store.close()
    closed.set()
    thread.join()

    assert len(errors) == 1
    # SQLite removes the write-ahead log when the last connection to a file closes.
    assert not Path(f"{db_path}-wal").exists()


def test_store_in_a_process_forked_without_python_hooks_refuses_work(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fork() from C code runs no os.register_at_fork hook: simulated by the pid.
    # (Forks through os.fork() are in test_fork_safety.py.)
    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 1)

    with pytest.raises(StoreError, match="fork"):
        store.get_user("u1")


def test_connection_of_a_finished_thread_is_released(store: SQLiteStore) -> None:
    for _ in range(5):
        thread = threading.Thread(target=store.get_user, args=("u1",))
        thread.start()
        thread.join()
    gc.collect()

    # White-box: only the opening thread's connection is left.
    assert len(store._registry) == 1


# -- concurrency -----------------------------------------------------------------------


def test_threads_hammering_one_counter_count_exactly(store: SQLiteStore) -> None:
    assert_threads_count_exactly(store, threads=8, hits_each=25)


_ROTATE_IN_CHILD = textwrap.dedent(
    """
    import sys
    from datetime import datetime

    from authsome.stores import SQLiteStore

    path, name, now = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
    with SQLiteStore(path) as store:
        print("ready", flush=True)
        sys.stdin.readline()  # wait for "go", so that the processes race
        outcome = store.rotate_refresh_token(
            "refresh-s1", f"refresh-{name}", f"access-{name}", now, now
        )
    print(outcome.status.value, flush=True)
    """
)


_FAIL_IN_CHILD = textwrap.dedent(
    """
    import sys

    from authsome.stores import SQLiteStore

    with SQLiteStore(sys.argv[1]) as store:
        print("ready", flush=True)
        sys.stdin.readline()  # wait for "go", so that the processes race
        counts = [store.count_mfa_failure("f1") for _ in range(25)]
    print(" ".join(map(str, counts)), flush=True)
    """
)


def test_processes_counting_wrong_codes_count_each_once(store: SQLiteStore, db_path: Path) -> None:
    add_user(store)
    factor = MfaFactor(id="f1", user_id="u1", method=MfaMethod.TOTP, created_at=NOW)
    store.create_mfa_factor(factor, "secret")

    printed = race_processes(_FAIL_IN_CHILD, [[str(db_path)]] * 4, timeout=60)

    counts = sorted(int(n) for line in printed for n in line.split())
    assert counts == list(range(1, 101))
    stored = store.get_mfa_factor("f1")
    assert stored is not None and stored.failed_codes == 100


def test_processes_rotating_one_token_rotate_once(store: SQLiteStore, db_path: Path) -> None:
    add_user(store)
    add_session(store)
    argvs = [[str(db_path), f"p{i}", LATER.isoformat()] for i in range(4)]

    statuses = race_processes(_ROTATE_IN_CHILD, argvs, timeout=60)

    assert sorted(statuses) == sorted(["rotated", "reused", "invalid", "invalid"])


# -- SQLite agrees with the reference store --------------------------------------------

_keys = st.sampled_from(["a", "b", "c"])
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("hit"), _keys, st.integers(min_value=1, max_value=5)),
        st.tuples(st.just("advance"), st.integers(min_value=0, max_value=6_000)),
        st.tuples(st.just("get"), _keys),
        st.tuples(st.just("delete"), _keys),
    ),
    max_size=40,
)
_example_ids = itertools.count()


@settings(max_examples=100, deadline=None)
@given(operations=_operations)
def test_counters_agree_with_memory_store(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[object, ...]]
) -> None:
    # One file per test run; each example works under its own key prefix, so
    # examples cannot see each other's counters.
    prefix = f"ex{next(_example_ids)}:"
    reference = MemoryStore()
    with SQLiteStore(tmp_path_factory.getbasetemp() / "property.db") as candidate:
        now = NOW
        for operation in operations:
            name, argument = operation[0], operation[1]
            if name == "advance":
                now += timedelta(milliseconds=int(str(argument)))
                continue
            key = prefix + str(argument)
            if name == "hit":
                ttl = int(str(operation[2]))
                assert candidate.hit_counter(key, now, ttl) == reference.hit_counter(key, now, ttl)
            elif name == "get":
                assert candidate.get_counter(key, now) == reference.get_counter(key, now)
            else:
                candidate.delete_counter(key)
                reference.delete_counter(key)
                assert candidate.get_counter(key, now) is None
