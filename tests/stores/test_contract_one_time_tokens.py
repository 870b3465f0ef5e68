"""The ``# -- one-time tokens --`` part of the Store contract (and the e-mail
verification mark), run against every store."""

from __future__ import annotations

import dataclasses
import textwrap
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authsome.errors import AlreadyExists, StoreError
from authsome.models import OneTimeToken
from authsome.stores import PostgresStore, Store
from tests.support.pgschema import drop_schema
from tests.support.race import race

from ._factories import NOW, add_user, make_user
from ._processes import race_processes

EXPIRY = NOW + timedelta(minutes=30)


def _token(
    purpose: str = "reset_password",
    user_id: str = "u1",
    *,
    tenant: str = "default",
    email: str = "ada@example.com",
    expires_at: datetime = EXPIRY,
) -> OneTimeToken:
    return OneTimeToken(
        purpose=purpose,
        user_id=user_id,
        tenant=tenant,
        email=email,
        created_at=NOW,
        expires_at=expires_at,
    )


def test_a_token_is_consumed_once_and_returns_what_it_is_bound_to(store: Store) -> None:
    add_user(store)
    token = _token()
    store.create_one_time_token("h1", token, NOW)

    assert store.consume_one_time_token("h1", "reset_password", "default", NOW) == token
    assert store.consume_one_time_token("h1", "reset_password", "default", NOW) is None


@pytest.mark.parametrize(
    ("purpose", "tenant"),
    [("verify_email", "default"), ("reset_password", "other"), ("", "default")],
)
def test_another_purpose_or_tenant_gets_nothing_and_leaves_the_token(
    store: Store, purpose: str, tenant: str
) -> None:
    add_user(store)
    store.create_one_time_token("h1", _token(), NOW)

    assert store.consume_one_time_token("h1", purpose, tenant, NOW) is None
    assert store.consume_one_time_token("h1", "reset_password", "default", NOW) is not None


def test_an_expired_token_is_refused(store: Store) -> None:
    add_user(store)
    store.create_one_time_token("h1", _token(), NOW)

    assert store.consume_one_time_token("h1", "reset_password", "default", EXPIRY) is None
    assert store.consume_one_time_token("unknown", "reset_password", "default", NOW) is None


def test_a_new_token_replaces_older_ones_of_its_user_and_purpose_only(store: Store) -> None:
    add_user(store)
    add_user(store, "u2", email="bob@example.com")
    store.create_one_time_token("old", _token(), NOW)
    store.create_one_time_token("verify", _token("verify_email"), NOW)
    store.create_one_time_token("bobs", _token(user_id="u2", email="bob@example.com"), NOW)

    store.create_one_time_token("new", _token(), NOW)

    assert store.consume_one_time_token("old", "reset_password", "default", NOW) is None
    assert store.consume_one_time_token("new", "reset_password", "default", NOW) is not None
    assert store.consume_one_time_token("verify", "verify_email", "default", NOW) is not None
    assert store.consume_one_time_token("bobs", "reset_password", "default", NOW) is not None


def test_creating_a_token_purges_expired_ones(store: Store) -> None:
    add_user(store)
    add_user(store, "u2", email="bob@example.com")
    store.create_one_time_token("stale", _token(user_id="u2", expires_at=NOW), NOW)

    store.create_one_time_token("h1", _token(), NOW)

    assert store.delete_one_time_token("stale") is False


def test_a_token_of_an_unknown_user_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.create_one_time_token("h1", _token(user_id="ghost"), NOW)


def test_a_taken_hash_is_refused_and_keeps_the_first_token(store: Store) -> None:
    add_user(store)
    add_user(store, "u2", email="bob@example.com")
    store.create_one_time_token("h1", _token(), NOW)

    with pytest.raises(AlreadyExists):
        store.create_one_time_token("h1", _token(user_id="u2", email="bob@example.com"), NOW)

    consumed = store.consume_one_time_token("h1", "reset_password", "default", NOW)
    assert consumed is not None
    assert consumed.user_id == "u1"


def test_withdrawing_and_deleting_a_users_tokens(store: Store) -> None:
    add_user(store)
    add_user(store, "u2", email="bob@example.com")
    store.create_one_time_token("h1", _token(), NOW)
    store.create_one_time_token("h2", _token("verify_email"), NOW)
    store.create_one_time_token("h3", _token(user_id="u2", email="bob@example.com"), NOW)

    assert store.delete_one_time_token("h1") is True
    assert store.delete_one_time_token("h1") is False
    assert store.delete_user_one_time_tokens("u1") == 1
    assert store.consume_one_time_token("h2", "verify_email", "default", NOW) is None
    assert store.consume_one_time_token("h3", "reset_password", "default", NOW) is not None


def test_eight_threads_consume_one_token_exactly_once(store: Store) -> None:
    add_user(store)
    store.create_one_time_token("h1", _token(), NOW)

    results = race(
        lambda _: store.consume_one_time_token("h1", "reset_password", "default", NOW),
        range(8),
    )

    assert len(results) == 8
    assert sum(result is not None for result in results) == 1


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(minutes=st.integers(min_value=-120, max_value=120))
def test_a_token_lives_until_its_expiry_and_not_a_microsecond_longer(
    store: Store, minutes: int
) -> None:
    if store.get_user("u1") is None:
        add_user(store)
    store.create_one_time_token("h1", _token(), NOW)
    at = EXPIRY + timedelta(minutes=minutes)

    consumed = store.consume_one_time_token("h1", "reset_password", "default", at)

    assert (consumed is not None) == (at < EXPIRY)
    store.delete_one_time_token("h1")


def test_marking_an_address_verified_keeps_the_first_time(store: Store) -> None:
    add_user(store)

    user = store.mark_email_verified("u1", "ada@example.com", NOW)
    again = store.mark_email_verified("u1", "ada@example.com", NOW + timedelta(hours=1))

    assert user is not None
    assert user.email_verified_at == NOW
    assert again == user
    assert store.get_user("u1") == user
    assert store.find_user_by_email("default", "ada@example.com") == user


def test_marking_another_address_or_user_changes_nothing(store: Store) -> None:
    add_user(store)

    assert store.mark_email_verified("u1", "old@example.com", NOW) is None
    assert store.mark_email_verified("ghost", "ada@example.com", NOW) is None
    user = store.get_user("u1")
    assert user is not None
    assert user.email_verified_at is None


_CHILD = textwrap.dedent(
    """
    import sys
    from datetime import datetime

    from authsome.stores import PostgresStore

    dsn, schema, now = sys.argv[1:4]
    store = PostgresStore(dsn, schema=schema, max_size=1)
    print("ready", flush=True)
    sys.stdin.readline()  # wait for "go", so that the processes race
    with store:
        won = store.consume_one_time_token(
            "h1", "reset_password", "default", datetime.fromisoformat(now)
        )
        print("won" if won is not None else "lost", flush=True)
    """
)


def test_four_processes_consume_one_postgres_token_exactly_once(
    pg_dsn: str, pg_schema: str
) -> None:
    try:
        with PostgresStore(pg_dsn, schema=pg_schema, max_size=1) as store:
            add_user(store)
            store.create_one_time_token("h1", _token(), NOW)
        argvs = [[pg_dsn, pg_schema, NOW.isoformat()] for _ in range(4)]
        outcomes = race_processes(_CHILD, argvs, timeout=120)
    finally:
        drop_schema(pg_dsn, pg_schema)

    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]


def test_a_new_user_is_stored_unverified(store: Store) -> None:
    user = dataclasses.replace(make_user(), email_verified_at=NOW)
    store.create_user(user, "pw-hash")

    stored = store.get_user(user.id)
    assert stored is not None
    assert stored.email_verified_at is None


def test_finding_a_token_leaves_it_and_answers_as_consuming_would(store: Store) -> None:
    add_user(store)
    token = _token()
    store.create_one_time_token("h1", token, NOW)

    assert store.find_one_time_token("h1", "reset_password", "default", NOW) == token
    assert store.find_one_time_token("h1", "verify_email", "default", NOW) is None
    assert store.find_one_time_token("h1", "reset_password", "other", NOW) is None
    assert store.find_one_time_token("h1", "reset_password", "default", EXPIRY) is None
    assert store.find_one_time_token("unknown", "reset_password", "default", NOW) is None
    assert store.consume_one_time_token("h1", "reset_password", "default", NOW) == token
