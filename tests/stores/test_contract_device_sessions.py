"""The device-list and e-mail-change parts of the Store contract, on every store:
a session keeps its client, ``list_user_sessions``, ``revoke_user_session`` and
``change_user_email``."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from authsome.errors import AlreadyExists
from authsome.stores import Store

from ._factories import NOW, SESSION_TTL, add_session, add_user, make_session

LATER = NOW + timedelta(minutes=5)


def test_a_session_keeps_its_client(store: Store) -> None:
    add_user(store)
    session = dataclasses.replace(make_session(), ip="2001:db8::7", user_agent="Firefox ü")
    store.create_session(session, "access-s1", "refresh-s1")

    assert store.get_session("s1") == session
    assert store.find_session_by_access_hash("access-s1") == session
    assert store.list_user_sessions("u1", NOW) == [session]


def test_the_list_holds_live_sessions_of_the_user_newest_first(store: Store) -> None:
    add_user(store)
    add_user(store, "u2", email="bob@example.com")
    oldest = add_session(store, "s1")
    newer = dataclasses.replace(make_session("s2"), created_at=NOW + timedelta(seconds=1))
    store.create_session(newer, "access-s2", "refresh-s2")
    same_time = add_session(store, "s3")  # created with s1: the larger id comes first
    add_session(store, "s4")
    store.revoke_session("s4", NOW)
    add_session(store, "s5", expires_at=LATER)
    add_session(store, "s6", user_id="u2")

    listed = store.list_user_sessions("u1", LATER)

    assert [s.id for s in listed] == [newer.id, same_time.id, oldest.id]
    assert store.list_user_sessions("nobody", NOW) == []


def test_revoking_one_session_of_a_user(store: Store) -> None:
    add_user(store)
    add_user(store, "u2", email="bob@example.com")
    add_session(store, "s1")
    add_session(store, "s2", expires_at=LATER)

    assert store.revoke_user_session("s1", "u2", NOW) is False  # another user's
    assert store.revoke_user_session("nope", "u1", NOW) is False
    assert store.revoke_user_session("s2", "u1", LATER) is False  # ended by itself
    session = store.get_session("s1")
    assert session is not None and session.revoked_at is None

    assert store.revoke_user_session("s1", "u1", NOW) is True
    assert store.revoke_user_session("s1", "u1", NOW) is False
    session = store.get_session("s1")
    assert session is not None and session.revoked_at == NOW
    assert store.list_user_sessions("u1", NOW) == [store.get_session("s2")]


def test_changing_the_address(store: Store) -> None:
    add_user(store)
    add_user(store, "u2", email="bob@example.com")
    add_user(store, "u3", tenant="other", email="new@example.com")

    changed = store.change_user_email("u1", "ada@example.com", "new@example.com", NOW)

    assert changed is not None
    assert (changed.email, changed.email_verified_at) == ("new@example.com", NOW)
    assert store.get_user("u1") == changed
    assert store.find_user_by_email("default", "new@example.com") == changed
    assert store.find_user_by_email("default", "ada@example.com") is None
    # The old address is free again.
    add_user(store, "u4", email="ada@example.com")
    assert store.find_user_by_email("other", "new@example.com") is not None


def test_a_taken_address_or_a_moved_one_changes_nothing(store: Store) -> None:
    ada = add_user(store)
    bob = add_user(store, "u2", email="bob@example.com")

    with pytest.raises(AlreadyExists):
        store.change_user_email("u1", "ada@example.com", "bob@example.com", NOW)
    assert store.change_user_email("u1", "old@example.com", "new@example.com", NOW) is None
    assert store.change_user_email("nobody", "ada@example.com", "new@example.com", NOW) is None

    assert store.get_user("u1") == ada
    assert store.get_user("u2") == bob
    assert store.find_user_by_email("default", "ada@example.com") == ada
    assert store.find_user_by_email("default", "new@example.com") is None


def test_a_refused_change_inside_a_block_leaves_the_block_usable_afterwards(
    store: Store,
) -> None:
    add_user(store)
    add_user(store, "u2", email="bob@example.com")
    with pytest.raises(AlreadyExists), store.atomic():
        store.change_user_email("u1", "ada@example.com", "bob@example.com", NOW)
    add_session(store, "s1", expires_at=NOW + SESSION_TTL)
    assert [s.id for s in store.list_user_sessions("u1", NOW)] == ["s1"]
