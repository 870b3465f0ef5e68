"""What only PostgresStore promises: migrations, processes, pools, connection errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from authsome import OIDCConnection
from authsome.errors import AlreadyExists, StoreError, ValidationError
from authsome.models import (
    Domain,
    Membership,
    MfaFactor,
    MfaMethod,
    Org,
    OrgRole,
)
from authsome.stores import PostgresStore
from authsome.stores import postgres as postgres_module
from authsome.stores._postgres_migrations import MIGRATIONS
from tests.conftest import PASSWORD as ENGINE_PASSWORD
from tests.conftest import AuthFactory
from tests.support.pgschema import drop_schema
from tests.support.ports import free_tcp_port
from tests.support.webauthn_authenticator import SoftwareAuthenticator, unb64url

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
from ._processes import child_env, race_processes

LATER = NOW + timedelta(minutes=5)
PASSWORD = "pw-Zq8-never-shown"
TABLES = {"schema_version", *STORE_TABLES}


@pytest.fixture
def schema(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """This test's schema name; dropped afterwards, whoever created it."""
    yield pg_schema
    drop_schema(pg_dsn, pg_schema)


@pytest.fixture
def store(pg_dsn: str, schema: str) -> Iterator[PostgresStore]:
    with PostgresStore(pg_dsn, schema=schema, max_size=4) as opened:
        yield opened


def _query(dsn: str, query: sql.Composable, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(query, params or None)
        return cursor.fetchall() if cursor.description else []


def _versions(dsn: str, schema: str) -> list[tuple[object, ...]]:
    return _query(
        dsn,
        sql.SQL("SELECT component, version FROM {}.schema_version").format(sql.Identifier(schema)),
    )


def _tables(dsn: str, schema: str) -> set[str]:
    rows = _query(
        dsn,
        sql.SQL("SELECT table_name FROM information_schema.tables WHERE table_schema = %s"),
        schema,
    )
    return {str(name) for (name,) in rows}


# -- migrations --------------------------------------------------------------------------


def test_opening_twice_migrates_once_and_records_the_version(pg_dsn: str, schema: str) -> None:
    for _ in range(2):
        with PostgresStore(pg_dsn, schema=schema) as store:
            add_user(store, f"u{_}", email=f"u{_}@example.com")

    assert _versions(pg_dsn, schema) == [("auth", len(MIGRATIONS))]
    assert _tables(pg_dsn, schema) == TABLES


def test_appended_migration_runs_on_an_existing_schema(
    pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PostgresStore(pg_dsn, schema=schema) as store:
        add_user(store)
    monkeypatch.setattr(postgres_module, "MIGRATIONS", (*MIGRATIONS, "CREATE TABLE extra (x int)"))

    with PostgresStore(pg_dsn, schema=schema) as store:
        assert store.get_user("u1") == make_user()

    assert _versions(pg_dsn, schema) == [("auth", len(MIGRATIONS) + 1)]
    assert _tables(pg_dsn, schema) == TABLES | {"extra"}


def test_upgrading_keeps_domains_and_lets_pending_claims_share_a_hostname(
    pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(postgres_module, "MIGRATIONS", MIGRATIONS[:7])  # before pending claims
        with PostgresStore(pg_dsn, schema=schema) as old:
            old.create_domain(Domain("d1", "acme", "login.acme.com", NOW), "token-d1")
            old.create_domain(Domain("d2", "acme", "app.acme.com", NOW), "token-d2")
            old.mark_domain_verified("d2", LATER)
            with pytest.raises(AlreadyExists):  # the old rule: one claim per hostname
                old.create_domain(Domain("d3", "evil", "login.acme.com", NOW), "token-d3")

    with PostgresStore(pg_dsn, schema=schema) as upgraded:
        assert upgraded.get_domain_token("d1") == "token-d1"
        assert [d.id for d in upgraded.list_domains("acme")] == ["d2", "d1"]
        assert upgraded.find_domain_by_hostname("app.acme.com") == upgraded.get_domain("d2")
        upgraded.create_domain(Domain("d3", "evil", "login.acme.com", NOW), "token-d3")
        with pytest.raises(AlreadyExists):
            upgraded.create_domain(Domain("d4", "evil", "app.acme.com", NOW), "token-d4")
        upgraded.mark_domain_verified("d1", LATER)
        with pytest.raises(AlreadyExists):
            upgraded.mark_domain_verified("d3", LATER)
    assert _versions(pg_dsn, schema) == [("auth", len(MIGRATIONS))]


def test_upgrading_keeps_sso_domains_and_scopes_them_to_the_tenant(
    pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(postgres_module, "MIGRATIONS", MIGRATIONS[:8])  # before per-tenant domains
        with PostgresStore(pg_dsn, schema=schema) as old:
            for org_id, tenant in (("o1", "acme"), ("o2", "evil")):
                owner = add_user(old, f"u-{org_id}", email=f"{org_id}@example.com", tenant=tenant)
                org = Org(org_id, tenant, org_id, "Org", NOW)
                old.create_org(org, Membership(org_id, owner.id, OrgRole.OWNER, NOW))
    # Rows as the old schema held them (the new code writes the new schema only).
    s = sql.Identifier(schema)
    _query(
        pg_dsn,
        sql.SQL(
            "INSERT INTO {}.sso_connections (id, org_id, protocol, scopes, entity_id, sso_url,"
            " x509_certificate, created_at, updated_at)"
            " VALUES ('c1', 'o1', 'saml', '{{}}', 'urn:idp', 'https://idp.example/sso', %s, %s, %s)"
        ).format(s),
        OLD_SSO_PEM,
        NOW,
        NOW,
    )
    _query(
        pg_dsn,
        sql.SQL(
            "INSERT INTO {}.sso_domains (domain, connection_id, position)"
            " VALUES ('acme.example', 'c1', 0), ('b.example', 'c1', 1)"
        ).format(s),
    )

    with PostgresStore(pg_dsn, schema=schema) as upgraded:
        assert_sso_domains_scoped_after_upgrade(upgraded)


def test_upgrading_gives_sessions_a_last_activity_and_factors_no_failures(
    pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = next(i for i, script in enumerate(MIGRATIONS) if "last_seen_at" in script)
    with monkeypatch.context() as patched:
        patched.setattr(postgres_module, "MIGRATIONS", MIGRATIONS[:step])
        with PostgresStore(pg_dsn, schema=schema) as old:
            add_user(old)
            old.create_mfa_factor(MfaFactor("f1", "u1", MfaMethod.TOTP, NOW), "secret")
    # A session as the old schema held it (the new code writes the new schema only).
    _query(
        pg_dsn,
        sql.SQL(
            "INSERT INTO {}.sessions (id, user_id, tenant, created_at, expires_at,"
            " access_expires_at, access_hash) VALUES ('s1', 'u1', 'default', %s, %s, %s, 'a1')"
        ).format(sql.Identifier(schema)),
        NOW,
        NOW + timedelta(days=30),
        NOW + timedelta(hours=1),
    )

    with PostgresStore(pg_dsn, schema=schema) as upgraded:
        session = upgraded.get_session("s1")
        factor = upgraded.get_mfa_factor("f1")

    # Existing sessions start their idle time at the upgrade, not at their creation.
    assert session is not None and session.last_seen_at is not None
    assert session.last_seen_at >= datetime.now(UTC) - timedelta(minutes=5)
    assert factor is not None and factor.failed_codes == 0


def test_failing_migration_leaves_nothing_behind(
    pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (*MIGRATIONS[:2], "CREATE TABLE half (x int); SELECT no_such_function()")
    monkeypatch.setattr(postgres_module, "MIGRATIONS", broken)

    with pytest.raises(StoreError):
        PostgresStore(pg_dsn, schema=schema)

    assert _tables(pg_dsn, schema) == set()


def test_schema_newer_than_the_code_is_refused(pg_dsn: str, schema: str) -> None:
    PostgresStore(pg_dsn, schema=schema).close()
    _query(
        pg_dsn,
        sql.SQL("UPDATE {}.schema_version SET version = version + 1").format(
            sql.Identifier(schema)
        ),
    )

    with pytest.raises(StoreError, match="newer"):
        PostgresStore(pg_dsn, schema=schema)


def test_two_schemas_are_two_independent_stores(pg_dsn: str, schema: str) -> None:
    other = f"{schema}_b"
    try:
        with (
            PostgresStore(pg_dsn, schema=schema) as first,
            PostgresStore(pg_dsn, schema=other) as second,
        ):
            add_user(first)
            assert second.get_user("u1") is None
    finally:
        drop_schema(pg_dsn, other)


# -- many processes ----------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys
    from datetime import datetime

    from authsome.stores import PostgresStore

    dsn, schema, action, name = sys.argv[1:5]
    print("ready", flush=True)
    sys.stdin.readline()  # wait for "go", so that the processes race
    with PostgresStore(dsn, schema=schema, max_size=1) as store:
        if action == "open":
            result = "opened"
        elif action == "rotate":
            now = datetime.fromisoformat(sys.argv[5])
            result = store.rotate_refresh_token(
                "refresh-s1", f"refresh-{name}", f"access-{name}", now, now
            ).status.value
        elif action == "fail":
            result = " ".join(str(store.count_mfa_failure("f1")) for _ in range(25))
        else:
            result = str(store.use_totp_step("f1", int(sys.argv[5])))
    print(result, flush=True)
    """
)


def _race_processes(dsn: str, schema: str, action: str, *extra: str, count: int = 4) -> list[str]:
    """Start ``count`` interpreters, release them at once, return what each printed."""
    argvs = [[dsn, schema, action, f"p{i}", *extra] for i in range(count)]
    return race_processes(_CHILD, argvs, timeout=120)


def test_processes_opening_a_new_schema_at_once_migrate_it_once(pg_dsn: str, schema: str) -> None:
    assert _race_processes(pg_dsn, schema, "open") == ["opened"] * 4

    assert _versions(pg_dsn, schema) == [("auth", len(MIGRATIONS))]
    assert _tables(pg_dsn, schema) == TABLES


def test_processes_rotating_one_token_rotate_once(
    store: PostgresStore, pg_dsn: str, schema: str
) -> None:
    add_user(store)
    add_session(store)

    statuses = _race_processes(pg_dsn, schema, "rotate", LATER.isoformat())

    # One wins; the next is a reuse (revoking the session); the rest find it revoked.
    assert sorted(statuses) == sorted(["rotated", "reused", "invalid", "invalid"])


def test_processes_using_one_totp_step_accept_it_once(
    store: PostgresStore, pg_dsn: str, schema: str
) -> None:
    add_user(store)
    factor = MfaFactor(id="f1", user_id="u1", method=MfaMethod.TOTP, created_at=NOW)
    store.create_mfa_factor(factor, "sealed-secret")

    results = _race_processes(pg_dsn, schema, "totp", "1000")

    assert sorted(results) == ["False", "False", "False", "True"]
    assert store.use_totp_step("f1", 1000) is False
    assert store.use_totp_step("f1", 1001) is True


def test_processes_counting_wrong_codes_count_each_once(
    store: PostgresStore, pg_dsn: str, schema: str
) -> None:
    add_user(store)
    factor = MfaFactor(id="f1", user_id="u1", method=MfaMethod.TOTP, created_at=NOW)
    store.create_mfa_factor(factor, "sealed-secret")

    printed = _race_processes(pg_dsn, schema, "fail")

    counts = sorted(int(n) for line in printed for n in line.split())
    assert counts == list(range(1, 101))
    stored = store.get_mfa_factor("f1")
    assert stored is not None and stored.failed_codes == 100


def test_threads_hammering_one_counter_count_exactly(store: PostgresStore) -> None:
    assert_threads_count_exactly(store, threads=4, hits_each=25)


# -- values ------------------------------------------------------------------------------


def test_datetimes_with_other_offsets_come_back_as_equal_utc(store: PostgresStore) -> None:
    tokyo = datetime(2030, 1, 2, 12, 0, tzinfo=timezone(timedelta(hours=9)))
    store.create_user(dataclasses.replace(make_user(), created_at=tokyo), "pw-hash")

    stored = store.get_user("u1")

    assert stored is not None
    assert stored.created_at == tokyo
    assert stored.created_at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_rejected(store: PostgresStore) -> None:
    with pytest.raises(ValidationError):
        store.hit_counter("ip:1", datetime(2030, 1, 1), 60)  # naive on purpose
    with pytest.raises(ValidationError):
        store.create_user(dataclasses.replace(make_user(), created_at=datetime(2030, 1, 1)), "h")

    assert store.get_counter("ip:1", NOW) is None
    assert store.get_user("u1") is None


def test_duplicate_hash_is_reported_without_the_hash(store: PostgresStore) -> None:
    add_user(store)
    secret_hash = "access-hash-that-must-not-leak"
    store.create_session(make_session("s1"), secret_hash, "refresh-1")

    with pytest.raises(AlreadyExists) as caught:
        store.create_session(make_session("s2"), secret_hash, "refresh-2")

    assert str(caught.value) == "access token hash exists"
    # The server's detail line quotes the value, so the cause is not kept.
    assert caught.value.__cause__ is None
    assert store.get_session("s2") is None


def test_other_database_errors_are_store_errors_with_their_cause(store: PostgresStore) -> None:
    with pytest.raises(StoreError) as caught:
        store.get_user("nul\x00byte")  # PostgreSQL text cannot hold NUL

    assert str(caught.value) == "postgres store: get_user failed (DataError)"
    assert isinstance(caught.value.__cause__, psycopg.DataError)


# -- connections, secrets and errors ------------------------------------------------------


def test_repr_and_errors_never_show_the_password(pg_dsn: str, schema: str) -> None:
    # The suite's server trusts loopback, so the password is sent and ignored.
    with PostgresStore(f"{pg_dsn} password={PASSWORD}", schema=schema) as store:
        assert PASSWORD not in repr(store)
        assert "dbname=postgres" in repr(store)
    unreachable = f"postgresql://ann:{PASSWORD}@127.0.0.1:{free_tcp_port()}/db?connect_timeout=2"
    with pytest.raises(StoreError) as refused:
        PostgresStore(unreachable, schema=schema)
    with pytest.raises(ValidationError) as invalid:
        PostgresStore(f"host=x password={PASSWORD} broken", schema=schema)

    for error in (refused.value, invalid.value):
        assert PASSWORD not in str(error)
        assert PASSWORD not in repr(error)


def test_unreachable_server_is_a_clear_store_error(schema: str) -> None:
    port = free_tcp_port()

    with pytest.raises(StoreError) as caught:
        PostgresStore(f"host=127.0.0.1 port={port} connect_timeout=2", schema=schema)

    message = str(caught.value)
    assert message.startswith("postgres store: cannot connect to")
    assert f"port={port}" in message
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


def test_a_pool_passed_in_is_used_and_left_open(pg_dsn: str, schema: str) -> None:
    # Not autocommit: the store must still commit what it writes.
    pool: ConnectionPool[psycopg.Connection[tuple[object, ...]]] = ConnectionPool(
        pg_dsn, min_size=1, max_size=2, open=True, name="app-pool"
    )
    try:
        with PostgresStore(pool=pool, schema=schema) as store:
            add_user(store)
            assert repr(store) == f"PostgresStore(pool='app-pool', schema={schema!r})"
        with pool.connection() as conn:
            conn.execute("SELECT 1")
        with PostgresStore(pg_dsn, schema=schema) as other:
            assert other.get_user("u1") == make_user()
    finally:
        pool.close()


def test_closed_store_refuses_work_and_closes_twice(pg_dsn: str, schema: str) -> None:
    store = PostgresStore(pg_dsn, schema=schema)
    store.close()
    store.close()

    with pytest.raises(StoreError, match="closed"):
        store.get_user("u1")


@pytest.mark.parametrize(
    "schema_name", ["", "1abc", "a-b", 'a"b', "a b", "x" * 64, "ünï", "a;drop"]
)
def test_bad_schema_names_are_refused(pg_dsn: str, schema_name: str) -> None:
    with pytest.raises(ValidationError):
        PostgresStore(pg_dsn, schema=schema_name)


def test_wrong_argument_types_are_type_errors(pg_dsn: str) -> None:
    with pytest.raises(TypeError):
        PostgresStore(pg_dsn, schema=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PostgresStore(pg_dsn, pool=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PostgresStore(b"host=x")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        PostgresStore(pg_dsn, min_size=3, max_size=2)


def test_importing_the_stores_needs_no_psycopg() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["psycopg"] = None  # as if it were not installed
        import authsome.stores
        from authsome.stores import MemoryStore
        try:
            authsome.stores.PostgresStore
        except ImportError as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=child_env(),
        check=True,
        timeout=60,
    )

    assert "authsome-engine[postgres]" in result.stdout


def test_stored_times_are_timestamptz(store: PostgresStore, pg_dsn: str, schema: str) -> None:
    add_user(store)
    rows = _query(
        pg_dsn,
        sql.SQL("SELECT pg_typeof(created_at)::text, created_at FROM {}.users").format(
            sql.Identifier(schema)
        ),
    )

    assert rows[0][0] == "timestamp with time zone"
    assert rows[0][1] == NOW
    assert NOW.tzinfo is UTC


def test_tokens_and_password_never_reach_the_database(
    make_auth: AuthFactory, store: PostgresStore, pg_dsn: str, schema: str
) -> None:
    auth = make_auth(store=store, secret_key=bytes(range(32)))
    ann = auth.users.register("ann@example.com", ENGINE_PASSWORD)
    tokens = auth.sign_in("ann@example.com", ENGINE_PASSWORD).tokens
    assert tokens is not None
    rotated = auth.sessions.refresh(tokens.refresh_token)
    client_secret = "cs-4d3c2b1a-sso-client-secret"
    org = auth.orgs.create(ann.id, "Ann corp")
    auth.sso.configure(
        org.id,
        OIDCConnection(
            issuer="https://idp.acme.example",
            client_id="acme-client",
            client_secret=client_secret,
            domains=("acme.example",),
        ),
    )
    rp = {"rp_id": "example.com", "origin": "https://example.com"}
    device = SoftwareAuthenticator()
    passkey = auth.passkeys.finish_registration(
        ann.id,
        device.register(
            auth.passkeys.begin_registration(ann.id, rp_name="Example", **rp), origin=rp["origin"]
        ),
    )
    passkey_tokens = auth.passkeys.finish_authentication(
        device.authenticate(auth.passkeys.begin_authentication(**rp), origin=rp["origin"])
    ).tokens
    assert passkey_tokens is not None
    pending = json.loads(auth.passkeys.begin_authentication(**rp))["challenge"]

    dump = "\n".join(
        str(row[0])
        for table in sorted(TABLES)
        for row in _query(
            pg_dsn,
            sql.SQL("SELECT row_to_json(t)::text FROM {}.{} AS t").format(
                sql.Identifier(schema), sql.Identifier(table)
            ),
        )
    )
    # The dump does hold the rows, new tables included.
    for stored in ("ann@example.com", "acme-client", "acme.example", passkey.credential_id):
        assert stored in dump
    secrets = (
        tokens.access_token,
        tokens.refresh_token,
        rotated.refresh_token,
        passkey_tokens.access_token,
        ENGINE_PASSWORD,
        client_secret,
        pending,
        unb64url(pending).hex(),
    )
    for secret in secrets:
        assert secret not in dump
