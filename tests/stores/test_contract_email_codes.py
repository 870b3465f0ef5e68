"""The Store contract of e-mail codes (``attempt_one_time_code``) and of sign-up
tokens (a one-time token with no user yet), run against every store."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from authsome.models import OneTimeToken
from authsome.stores import PostgresStore, Store
from tests.support.pgschema import drop_schema
from tests.support.race import race

from ._factories import NOW, add_user
from ._processes import race_processes

EMAIL = "ada@example.com"
MAX = 5


def _code(user_id: str = "u1", *, email: str = EMAIL, tenant: str = "default") -> OneTimeToken:
    return OneTimeToken(
        purpose="email_code",
        user_id=user_id,
        tenant=tenant,
        email=email,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )


def _attempt(
    store: Store, code_hash: str, *, email: str = EMAIL, tenant: str = "default"
) -> OneTimeToken | None:
    return store.attempt_one_time_code(code_hash, "email_code", tenant, email, NOW, MAX)


def test_the_right_code_is_taken_once(store: Store) -> None:
    add_user(store)
    store.create_one_time_token("right", _code(), NOW)

    assert _attempt(store, "wrong") is None
    assert _attempt(store, "right") == _code()
    assert _attempt(store, "right") is None


def test_after_five_attempts_the_right_code_is_refused(store: Store) -> None:
    add_user(store)
    store.create_one_time_token("right", _code(), NOW)
    for _ in range(MAX):
        assert _attempt(store, "wrong") is None

    assert _attempt(store, "right") is None
    assert store.find_one_time_token("right", "email_code", "default", NOW) is not None


def test_the_fifth_attempt_may_still_be_the_right_one(store: Store) -> None:
    add_user(store)
    store.create_one_time_token("right", _code(), NOW)
    for _ in range(MAX - 1):
        assert _attempt(store, "wrong") is None

    assert _attempt(store, "right") == _code()


@pytest.mark.parametrize(("email", "tenant"), [("bob@example.com", "default"), (EMAIL, "acme")])
def test_another_address_or_tenant_neither_takes_nor_counts(
    store: Store, email: str, tenant: str
) -> None:
    add_user(store)
    store.create_one_time_token("right", _code(), NOW)
    for _ in range(MAX + 1):
        assert _attempt(store, "right", email=email, tenant=tenant) is None

    assert _attempt(store, "right") == _code()


def test_an_expired_code_is_refused(store: Store) -> None:
    add_user(store)
    store.create_one_time_token("right", _code(), NOW)
    later = NOW + timedelta(minutes=15)

    assert store.attempt_one_time_code("right", "email_code", "default", EMAIL, later, MAX) is None


def test_racing_wrong_guesses_count_at_most_five(store: Store) -> None:
    add_user(store)
    store.create_one_time_token("right", _code(), NOW)

    race(lambda _: _attempt(store, "wrong"), range(8))

    assert _attempt(store, "right") is None


def test_racing_wrong_guesses_are_each_counted_once(store: Store) -> None:
    add_user(store)
    store.create_one_time_token("right", _code(), NOW)

    race(lambda _: _attempt(store, "wrong"), range(MAX - 1))

    assert _attempt(store, "right") == _code()


def test_eight_threads_take_one_code_exactly_once(store: Store) -> None:
    add_user(store)
    store.create_one_time_token("right", _code(), NOW)

    outcomes = race(lambda _: _attempt(store, "right"), range(8))

    assert sorted(outcome is not None for outcome in outcomes) == [False] * 7 + [True]


def test_a_sign_up_token_has_no_user_and_replaces_only_its_addresses(store: Store) -> None:
    store.create_one_time_token("old", _code(""), NOW)
    store.create_one_time_token("other", _code("", email="bob@example.com"), NOW)
    store.create_one_time_token("new", _code(""), NOW)

    assert _attempt(store, "old") is None
    assert _attempt(store, "other", email="bob@example.com") == _code("", email="bob@example.com")
    assert _attempt(store, "new") == _code("")


def test_a_users_code_and_a_sign_up_code_do_not_replace_each_other(store: Store) -> None:
    store.create_one_time_token("sign-up", _code(""), NOW)
    add_user(store)
    store.create_one_time_token("users", _code(), NOW)

    assert store.find_one_time_token("sign-up", "email_code", "default", NOW) == _code("")
    assert store.find_one_time_token("users", "email_code", "default", NOW) == _code()


_CHILD = textwrap.dedent(
    """
    import sys
    from datetime import datetime

    from authsome.stores import PostgresStore

    dsn, schema, now, code_hash = sys.argv[1:5]
    store = PostgresStore(dsn, schema=schema, max_size=1)
    print("ready", flush=True)
    sys.stdin.readline()  # wait for "go", so that the processes race
    with store:
        won = store.attempt_one_time_code(
            code_hash, "email_code", "default", "ada@example.com",
            datetime.fromisoformat(now), 5,
        )
        print("won" if won is not None else "lost", flush=True)
    """
)


def test_four_processes_take_one_postgres_code_exactly_once(pg_dsn: str, pg_schema: str) -> None:
    try:
        with PostgresStore(pg_dsn, schema=pg_schema, max_size=1) as store:
            add_user(store)
            store.create_one_time_token("right", _code(), NOW)
        argvs = [[pg_dsn, pg_schema, NOW.isoformat(), "right"] for _ in range(4)]
        outcomes = race_processes(_CHILD, argvs, timeout=120)
    finally:
        drop_schema(pg_dsn, pg_schema)

    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]


def test_eight_processes_guessing_wrong_count_at_most_five_on_postgres(
    pg_dsn: str, pg_schema: str
) -> None:
    try:
        with PostgresStore(pg_dsn, schema=pg_schema, max_size=1) as store:
            add_user(store)
            store.create_one_time_token("right", _code(), NOW)
            argvs = [[pg_dsn, pg_schema, NOW.isoformat(), "wrong"] for _ in range(8)]
            race_processes(_CHILD, argvs, timeout=120)
            refused = _attempt(store, "right")
    finally:
        drop_schema(pg_dsn, pg_schema)

    assert refused is None
