"""The API-key part of the Store contract, checked against every store implementation."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timedelta

import pytest

from authsome.errors import AlreadyExists
from authsome.models import ApiKey, ApiKeyOwnerKind, StoredApiKey
from authsome.stores import Store

from ._factories import NOW

LATER = NOW + timedelta(minutes=5)


def make_key(
    key_id: str = "key1",
    *,
    lookup_id: str | None = None,
    owner_kind: ApiKeyOwnerKind = "user",
    owner_id: str = "u1",
    created_at: datetime = NOW,
    expires_at: datetime | None = None,
) -> ApiKey:
    """A key record; the lookup id defaults to one derived from the key id."""
    return ApiKey(
        id=key_id,
        lookup_id=lookup_id or f"L{key_id}",
        owner_kind=owner_kind,
        owner_id=owner_id,
        tenant="acme",
        name=f"key {key_id}",
        scopes=("billing:read", "users.write"),
        created_at=created_at,
        expires_at=expires_at,
    )


def add_key(store: Store, key_id: str = "key1", **fields: object) -> ApiKey:
    """Create a key whose secret hash is ``hash-<id>``."""
    key = make_key(key_id, **fields)  # type: ignore[arg-type]
    store.create_api_key(key, f"hash-{key_id}")
    return key


def test_created_key_is_found_by_id_and_by_lookup_id_with_its_hash(store: Store) -> None:
    key = add_key(store, expires_at=NOW + timedelta(days=30))

    assert store.get_api_key("key1") == key
    assert store.find_api_key_by_lookup_id("Lkey1") == StoredApiKey(key, "hash-key1")


def test_key_round_trips_every_field(store: Store) -> None:
    key = dataclasses.replace(
        make_key(owner_kind="org", owner_id="org_1", expires_at=NOW + timedelta(hours=1)),
        scopes=(),
        revoked_at=LATER,
        last_used_at=NOW,
    )
    store.create_api_key(key, "hash")

    assert store.get_api_key(key.id) == key
    found = store.find_api_key_by_lookup_id(key.lookup_id)
    assert found is not None
    assert found.key == key
    assert found.key.created_at.utcoffset() == timedelta(0)


def test_unknown_key_is_none_everywhere(store: Store) -> None:
    assert store.get_api_key("nope") is None
    assert store.find_api_key_by_lookup_id("nope") is None
    assert store.list_api_keys("user", "nobody") == []
    assert store.revoke_api_key("nope", NOW) is False
    store.touch_api_key("nope", NOW)  # no error


@pytest.mark.parametrize(
    "duplicate",
    [
        pytest.param(make_key("key1", lookup_id="other"), id="same-id"),
        pytest.param(make_key("key2", lookup_id="Lkey1"), id="same-lookup-id"),
    ],
)
def test_duplicate_id_or_lookup_id_raises_and_writes_nothing(
    store: Store, duplicate: ApiKey
) -> None:
    original = add_key(store)

    with pytest.raises(AlreadyExists) as raised:
        store.create_api_key(duplicate, "hash-dup")

    assert "hash-dup" not in str(raised.value)
    assert store.get_api_key("key1") == original
    assert store.get_api_key("key2") is None
    assert store.find_api_key_by_lookup_id("other") is None
    assert store.list_api_keys("user", "u1") == [original]


def test_list_returns_only_the_owners_keys_oldest_first(store: Store) -> None:
    newer = add_key(store, "k-a", created_at=LATER)
    older = add_key(store, "k-z", created_at=NOW)
    tie = add_key(store, "k-b", created_at=LATER)
    add_key(store, "k-other-user", owner_id="u2")
    add_key(store, "k-org", owner_kind="org", owner_id="u1")  # same id string, other kind

    assert store.list_api_keys("user", "u1") == [older, newer, tie]
    assert [k.id for k in store.list_api_keys("org", "u1")] == ["k-org"]


def test_revoke_sets_revoked_at_once(store: Store) -> None:
    add_key(store)

    assert store.revoke_api_key("key1", LATER) is True
    assert store.revoke_api_key("key1", LATER + timedelta(minutes=1)) is False

    revoked = store.get_api_key("key1")
    assert revoked is not None
    assert revoked.revoked_at == LATER
    found = store.find_api_key_by_lookup_id("Lkey1")
    assert found is not None
    assert found.key.revoked_at == LATER


def test_revoke_leaves_other_keys_alone(store: Store) -> None:
    add_key(store, "key1")
    other = add_key(store, "key2")

    store.revoke_api_key("key1", LATER)

    assert store.get_api_key("key2") == other


def test_touch_moves_last_used_forward_only(store: Store) -> None:
    add_key(store)

    store.touch_api_key("key1", LATER)
    store.touch_api_key("key1", NOW)  # older: ignored
    key = store.get_api_key("key1")
    assert key is not None
    assert key.last_used_at == LATER

    store.touch_api_key("key1", LATER + timedelta(seconds=1))
    key = store.get_api_key("key1")
    assert key is not None
    assert key.last_used_at == LATER + timedelta(seconds=1)


def test_touch_keeps_the_hash_and_the_rest_of_the_key(store: Store) -> None:
    key = add_key(store)

    store.touch_api_key("key1", LATER)

    assert store.find_api_key_by_lookup_id("Lkey1") == StoredApiKey(
        dataclasses.replace(key, last_used_at=LATER), "hash-key1"
    )


def test_concurrent_touches_keep_the_latest_time(store: Store) -> None:
    add_key(store)
    moments = [NOW + timedelta(seconds=i) for i in range(40)]
    barrier = threading.Barrier(4)

    def worker(offset: int) -> None:
        barrier.wait()
        for moment in reversed(moments[offset::4]):
            store.touch_api_key("key1", moment)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    key = store.get_api_key("key1")
    assert key is not None
    assert key.last_used_at == moments[-1]
