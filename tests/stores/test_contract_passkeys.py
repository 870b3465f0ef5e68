"""The ``# -- passkeys --`` part of the Store Protocol, checked against every store."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from authsome.errors import AlreadyExists, StoreError
from authsome.models import Passkey, PasskeyCeremony, PasskeyChallenge
from authsome.stores import Store
from tests.support.race import race

from ._factories import NOW, add_user

LATER = NOW + timedelta(minutes=1)
TTL = timedelta(minutes=5)


def make_challenge(
    challenge_hash: str = "c1",
    *,
    user_id: str | None = "u1",
    ceremony: PasskeyCeremony = PasskeyCeremony.REGISTRATION,
    expires_at: datetime = NOW + TTL,
) -> PasskeyChallenge:
    """A pending challenge; only what a test cares about needs naming."""
    return PasskeyChallenge(
        challenge_hash=challenge_hash,
        ceremony=ceremony,
        user_id=user_id,
        tenant="default",
        rp_id="example.com",
        origin="https://example.com",
        expires_at=expires_at,
    )


def make_passkey(
    credential_id: str = "cred-1",
    *,
    user_id: str = "u1",
    sign_count: int = 0,
    created_at: datetime = NOW,
) -> Passkey:
    """A passkey record with a recognisable fake public key."""
    return Passkey(
        credential_id=credential_id,
        user_id=user_id,
        tenant="default",
        rp_id="example.com",
        public_key=b"\xa5\x01\x02" + credential_id.encode(),
        sign_count=sign_count,
        transports=("hybrid", "internal"),
        created_at=created_at,
    )


@pytest.fixture
def users(store: Store) -> list[str]:
    """Two users of the default tenant: u1, u2."""
    for i in (1, 2):
        add_user(store, f"u{i}", email=f"u{i}@example.com")
    return ["u1", "u2"]


# -- challenges ----------------------------------------------------------------------


@pytest.mark.parametrize("user_id", ["u1", None])
def test_a_challenge_is_consumed_once_and_comes_back_whole(
    store: Store, users: list[str], user_id: str | None
) -> None:
    challenge = make_challenge(user_id=user_id, ceremony=PasskeyCeremony.AUTHENTICATION)
    store.create_passkey_challenge(challenge, NOW)

    assert store.consume_passkey_challenge("c1", LATER) == challenge
    assert store.consume_passkey_challenge("c1", LATER) is None


def test_an_unknown_challenge_is_none(store: Store) -> None:
    assert store.consume_passkey_challenge("nope", NOW) is None


def test_an_expired_challenge_is_none_and_gone(store: Store, users: list[str]) -> None:
    store.create_passkey_challenge(make_challenge(expires_at=LATER), NOW)

    assert store.consume_passkey_challenge("c1", LATER) is None  # expiry is exclusive
    # Gone for good: even a clock moved back finds nothing.
    assert store.consume_passkey_challenge("c1", NOW) is None


def test_creating_a_challenge_purges_expired_ones(store: Store, users: list[str]) -> None:
    store.create_passkey_challenge(make_challenge("old", expires_at=LATER), NOW)
    store.create_passkey_challenge(make_challenge("live", expires_at=LATER + TTL), NOW)

    store.create_passkey_challenge(make_challenge("new", expires_at=LATER + TTL), LATER)

    # Consumed at a moment when "old" would still be live: it was purged anyway.
    assert store.consume_passkey_challenge("old", NOW) is None
    assert store.consume_passkey_challenge("live", LATER) is not None
    assert store.consume_passkey_challenge("new", LATER) is not None


def test_a_pending_challenge_hash_cannot_be_created_twice(store: Store, users: list[str]) -> None:
    store.create_passkey_challenge(make_challenge(), NOW)

    with pytest.raises(AlreadyExists):
        store.create_passkey_challenge(make_challenge(user_id="u2"), NOW)
    assert store.consume_passkey_challenge("c1", NOW) == make_challenge()


def test_a_challenge_for_an_unknown_user_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.create_passkey_challenge(make_challenge(user_id="ghost"), NOW)
    assert store.consume_passkey_challenge("c1", NOW) is None


def test_concurrent_consumers_get_a_challenge_at_most_once(store: Store, users: list[str]) -> None:
    store.create_passkey_challenge(make_challenge(), NOW)

    results = race(lambda _i: store.consume_passkey_challenge("c1", NOW), range(8))

    assert sum(r is not None for r in results) == 1


# -- passkeys ------------------------------------------------------------------------


def test_a_created_passkey_is_found_whole(store: Store, users: list[str]) -> None:
    passkey = make_passkey()
    store.create_passkey(passkey)

    assert store.get_passkey("cred-1") == passkey
    assert store.get_passkey("cred-2") is None


def test_passkeys_of_a_user_are_listed_oldest_first(store: Store, users: list[str]) -> None:
    store.create_passkey(make_passkey("b", created_at=LATER))
    store.create_passkey(make_passkey("c", created_at=NOW))
    store.create_passkey(make_passkey("a", created_at=LATER))
    store.create_passkey(make_passkey("other", user_id="u2"))

    assert [p.credential_id for p in store.list_user_passkeys("u1")] == ["c", "a", "b"]
    assert store.list_user_passkeys("ghost") == []


def test_a_credential_id_is_registered_once_across_users(store: Store, users: list[str]) -> None:
    store.create_passkey(make_passkey())

    with pytest.raises(AlreadyExists):
        store.create_passkey(make_passkey(user_id="u2", sign_count=7))
    assert store.get_passkey("cred-1") == make_passkey()


def test_a_passkey_of_an_unknown_user_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.create_passkey(make_passkey(user_id="ghost"))
    assert store.get_passkey("cred-1") is None


def test_sign_count_is_compare_and_set(store: Store, users: list[str]) -> None:
    store.create_passkey(make_passkey(sign_count=3))

    assert store.update_passkey_sign_count("cred-1", 2, 9, LATER) is False
    assert store.get_passkey("cred-1") == make_passkey(sign_count=3)

    assert store.update_passkey_sign_count("cred-1", 3, 4, LATER) is True
    assert store.get_passkey("cred-1") == dataclasses.replace(
        make_passkey(), sign_count=4, last_used_at=LATER
    )
    assert store.update_passkey_sign_count("ghost", 0, 1, LATER) is False


def test_concurrent_sign_count_updates_from_one_count_accept_one(
    store: Store, users: list[str]
) -> None:
    store.create_passkey(make_passkey(sign_count=5))

    results = race(
        lambda new: store.update_passkey_sign_count("cred-1", 5, new, LATER), range(6, 14)
    )

    assert results.count(True) == 1


def test_a_passkey_is_deleted_only_by_its_owner(store: Store, users: list[str]) -> None:
    store.create_passkey(make_passkey())

    assert store.delete_passkey("u2", "cred-1") is False
    assert store.get_passkey("cred-1") is not None
    assert store.delete_passkey("u1", "cred-1") is True
    assert store.get_passkey("cred-1") is None
    assert store.delete_passkey("u1", "cred-1") is False


def test_public_key_bytes_round_trip_exactly(store: Store, users: list[str]) -> None:
    raw = bytes(range(256))
    store.create_passkey(dataclasses.replace(make_passkey(), public_key=raw, transports=()))

    stored = store.get_passkey("cred-1")
    assert stored is not None
    assert stored.public_key == raw
    assert stored.transports == ()
