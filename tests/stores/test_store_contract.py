"""The Store Protocol's contract, checked against every store implementation.

Each test states one documented behaviour of :class:`authsome.stores.Store`; the
``store`` fixture (see ``conftest.py``) runs it once per implementation.
"""

from __future__ import annotations

import collections
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from authsome.errors import AlreadyExists, StoreError
from authsome.models import RefreshOutcome, RefreshStatus, Session, User
from authsome.stores import Store
from tests.support.race import race

from ._factories import ACCESS_TTL, NOW, add_session, add_user, make_session, make_user

LATER = NOW + timedelta(minutes=5)
NEW_ACCESS_EXPIRY = LATER + ACCESS_TTL


def _rotate(store: Store, old: str, new: str, *, now: datetime = LATER) -> RefreshOutcome:
    """Rotate refresh token ``refresh-<old>`` into ``refresh-<new>`` / ``access-<new>``."""
    return store.rotate_refresh_token(
        f"refresh-{old}", f"refresh-{new}", f"access-{new}", NEW_ACCESS_EXPIRY, now
    )


def test_store_satisfies_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)


# -- users ---------------------------------------------------------------------------


def test_created_user_is_found_by_id_and_by_email(store: Store) -> None:
    user = add_user(store)

    assert store.get_user("u1") == user
    assert store.find_user_by_email("default", "ada@example.com") == user


def test_unknown_user_is_none_everywhere(store: Store) -> None:
    assert store.get_user("nobody") is None
    assert store.find_user_by_email("default", "nobody@example.com") is None
    assert store.get_password_hash("nobody") is None


def test_duplicate_email_in_tenant_raises_and_writes_nothing(store: Store) -> None:
    add_user(store, "u1")

    with pytest.raises(AlreadyExists):
        store.create_user(make_user("u2"), "pw-hash-u2")

    assert store.get_user("u2") is None
    assert store.get_password_hash("u2") is None
    assert store.find_user_by_email("default", "ada@example.com") == make_user("u1")


def test_duplicate_id_raises_and_writes_nothing(store: Store) -> None:
    add_user(store, "u1")

    with pytest.raises(AlreadyExists):
        store.create_user(make_user("u1", email="bob@example.com"), "pw-hash-bob")

    assert store.find_user_by_email("default", "bob@example.com") is None
    assert store.get_user("u1") == make_user("u1")
    assert store.get_password_hash("u1") == "pw-hash-u1"


def test_same_email_in_two_tenants_is_two_users(store: Store) -> None:
    acme = add_user(store, "u1", tenant="acme")
    globex = add_user(store, "u2", tenant="globex")

    assert store.find_user_by_email("acme", "ada@example.com") == acme
    assert store.find_user_by_email("globex", "ada@example.com") == globex
    assert store.find_user_by_email("default", "ada@example.com") is None


def test_password_hash_is_stored_and_replaced(store: Store) -> None:
    add_user(store)
    assert store.get_password_hash("u1") == "pw-hash-u1"

    store.set_password_hash("u1", "pw-hash-rehashed")

    assert store.get_password_hash("u1") == "pw-hash-rehashed"


def test_setting_password_hash_of_unknown_user_creates_nothing(store: Store) -> None:
    store.set_password_hash("nobody", "pw-hash")

    assert store.get_password_hash("nobody") is None
    assert store.get_user("nobody") is None


# -- sessions ------------------------------------------------------------------------


def test_created_session_is_found_by_id_and_access_hash(store: Store) -> None:
    add_user(store)
    session = add_session(store)

    assert store.get_session("s1") == session
    assert store.find_session_by_access_hash("access-s1") == session


def test_unknown_session_is_none(store: Store) -> None:
    assert store.get_session("nope") is None
    assert store.find_session_by_access_hash("access-nope") is None


def test_duplicate_session_id_raises_and_writes_nothing(store: Store) -> None:
    add_user(store)
    original = add_session(store)

    with pytest.raises(AlreadyExists):
        store.create_session(make_session("s1"), "access-dup", "refresh-dup")

    assert store.get_session("s1") == original
    assert store.find_session_by_access_hash("access-dup") is None
    assert _rotate(store, "dup", "next").status is RefreshStatus.INVALID


def test_rotation_swaps_access_token_and_extends_access_expiry(store: Store) -> None:
    add_user(store)
    add_session(store)

    outcome = _rotate(store, "s1", "r2")

    assert outcome.status is RefreshStatus.ROTATED
    assert outcome.session is not None
    assert outcome.session.access_expires_at == NEW_ACCESS_EXPIRY
    assert outcome.session == store.get_session("s1")
    assert store.find_session_by_access_hash("access-s1") is None
    assert store.find_session_by_access_hash("access-r2") == outcome.session


def test_new_refresh_token_rotates_again(store: Store) -> None:
    add_user(store)
    add_session(store)
    _rotate(store, "s1", "r2")

    assert _rotate(store, "r2", "r3").status is RefreshStatus.ROTATED
    assert store.find_session_by_access_hash("access-r2") is None
    assert store.find_session_by_access_hash("access-r3") is not None


def test_reused_refresh_token_revokes_the_session(store: Store) -> None:
    add_user(store)
    add_session(store)
    _rotate(store, "s1", "r2")
    reuse_time = LATER + timedelta(minutes=1)

    outcome = _rotate(store, "s1", "attacker", now=reuse_time)

    assert outcome.status is RefreshStatus.REUSED
    assert outcome.session is not None
    assert outcome.session.revoked_at == reuse_time
    assert store.get_session("s1") == outcome.session
    current = store.find_session_by_access_hash("access-r2")
    assert current is not None
    assert not current.is_active(reuse_time)
    assert store.find_session_by_access_hash("access-attacker") is None


def test_after_reuse_the_live_refresh_token_is_invalid_too(store: Store) -> None:
    add_user(store)
    add_session(store)
    _rotate(store, "s1", "r2")
    _rotate(store, "s1", "attacker")

    assert _rotate(store, "r2", "r3").status is RefreshStatus.INVALID


def test_unknown_refresh_token_is_invalid(store: Store) -> None:
    outcome = _rotate(store, "nope", "r2")

    assert outcome == RefreshOutcome(RefreshStatus.INVALID)
    assert store.find_session_by_access_hash("access-r2") is None


def test_refresh_token_of_revoked_session_is_invalid(store: Store) -> None:
    add_user(store)
    add_session(store)
    store.revoke_session("s1", NOW)

    assert _rotate(store, "s1", "r2").status is RefreshStatus.INVALID
    assert store.find_session_by_access_hash("access-r2") is None
    assert store.find_session_by_access_hash("access-s1") is not None


@pytest.mark.parametrize("past_end", [timedelta(0), timedelta(microseconds=1), timedelta(days=1)])
def test_refresh_token_of_expired_session_is_invalid(store: Store, past_end: timedelta) -> None:
    add_user(store)
    session = add_session(store)

    outcome = _rotate(store, "s1", "r2", now=session.expires_at + past_end)

    assert outcome.status is RefreshStatus.INVALID
    assert store.get_session("s1") == session


def test_concurrent_rotations_of_one_token_rotate_once(store: Store) -> None:
    add_user(store)
    add_session(store)
    callers = 8

    outcomes = race(lambda index: _rotate(store, "s1", f"r{index}").status, range(callers))

    # One wins; the next caller is a reuse (revoking the session); the rest find
    # the session revoked.
    assert collections.Counter(outcomes) == {
        RefreshStatus.ROTATED: 1,
        RefreshStatus.REUSED: 1,
        RefreshStatus.INVALID: callers - 2,
    }


def test_revoke_session_reports_whether_it_revoked(store: Store) -> None:
    add_user(store)
    add_session(store)

    assert store.revoke_session("s1", LATER) is True
    assert store.revoke_session("s1", LATER + timedelta(minutes=1)) is False
    assert store.revoke_session("nope", LATER) is False
    revoked = store.get_session("s1")
    assert revoked is not None
    assert revoked.revoked_at == LATER


def test_revoke_user_sessions_counts_only_that_users_live_sessions(store: Store) -> None:
    add_user(store, "u1")
    add_user(store, "u2", email="bob@example.com")
    for session_id in ("a", "b", "c"):
        add_session(store, session_id, user_id="u1")
    add_session(store, "other", user_id="u2")
    store.revoke_session("c", NOW)

    assert store.revoke_user_sessions("u1", LATER) == 2
    assert store.revoke_user_sessions("u1", LATER) == 0
    assert store.revoke_user_sessions("nobody", LATER) == 0
    for session_id in ("a", "b"):
        session = store.get_session(session_id)
        assert session is not None
        assert session.revoked_at == LATER
    other = store.get_session("other")
    assert other is not None
    assert other.is_active(LATER)


def test_expired_sessions_are_not_revoked_or_counted(store: Store) -> None:
    add_user(store, "u1")
    add_session(store, "ended", user_id="u1", expires_at=NOW + timedelta(minutes=1))
    add_session(store, "live", user_id="u1")

    assert store.revoke_session("ended", LATER) is False
    assert store.revoke_user_sessions("u1", LATER) == 1
    ended = store.get_session("ended")
    assert ended is not None
    assert ended.revoked_at is None  # it ended by itself, nothing to revoke


def test_session_of_an_unknown_user_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        add_session(store, "orphan", user_id="nobody")
    assert store.get_session("orphan") is None


# -- throttle counters ---------------------------------------------------------------


def test_counter_starts_at_one_expiring_after_ttl(store: Store) -> None:
    assert store.hit_counter("ip:1", NOW, 60) == (1, NOW + timedelta(seconds=60))


def test_live_counter_increments_and_keeps_its_expiry(store: Store) -> None:
    store.hit_counter("ip:1", NOW, 60)

    # A different ttl on later hits must not move the window.
    assert store.hit_counter("ip:1", NOW + timedelta(seconds=10), 5) == (
        2,
        NOW + timedelta(seconds=60),
    )
    assert store.hit_counter("ip:1", NOW + timedelta(seconds=59), 60)[0] == 3


@pytest.mark.parametrize("past_expiry", [timedelta(0), timedelta(hours=1)])
def test_expired_counter_starts_anew(store: Store, past_expiry: timedelta) -> None:
    store.hit_counter("ip:1", NOW, 60)
    store.hit_counter("ip:1", NOW, 60)
    restart = NOW + timedelta(seconds=60) + past_expiry

    assert store.hit_counter("ip:1", restart, 30) == (1, restart + timedelta(seconds=30))


def test_get_counter_returns_live_counter_only(store: Store) -> None:
    assert store.get_counter("ip:1", NOW) is None
    store.hit_counter("ip:1", NOW, 60)
    expiry = NOW + timedelta(seconds=60)

    assert store.get_counter("ip:1", NOW + timedelta(seconds=59)) == (1, expiry)
    assert store.get_counter("ip:1", expiry) is None


def test_counters_are_independent_per_key(store: Store) -> None:
    store.hit_counter("ip:1", NOW, 60)
    store.hit_counter("ip:1", NOW, 60)

    assert store.hit_counter("ip:2", NOW, 60)[0] == 1
    assert store.get_counter("ip:1", NOW) == (2, NOW + timedelta(seconds=60))


def test_deleted_counter_is_gone_and_restarts(store: Store) -> None:
    store.hit_counter("ip:1", NOW, 60)
    store.hit_counter("ip:1", NOW, 60)

    store.delete_counter("ip:1")
    store.delete_counter("never-hit")

    assert store.get_counter("ip:1", NOW) is None
    assert store.hit_counter("ip:1", NOW, 60)[0] == 1


# -- datetimes -----------------------------------------------------------------------

ODD_MOMENTS = [
    datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),  # before the epoch
    datetime(2038, 1, 19, 3, 14, 8, 1, tzinfo=UTC),  # past 32-bit seconds
    datetime(9999, 12, 30, 23, 59, 59, 999_999, tzinfo=UTC),
]


def _assert_utc(moment: datetime | None, expected: datetime) -> None:
    assert moment is not None
    assert moment == expected
    assert moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize("moment", ODD_MOMENTS)
def test_datetimes_round_trip_exactly_and_aware(store: Store, moment: datetime) -> None:
    user = User(id="u1", tenant="t", email="e@example.com", name=None, created_at=moment)
    store.create_user(user, "pw-hash")
    session = Session(
        id="s1",
        user_id="u1",
        tenant="t",
        created_at=moment,
        expires_at=moment,
        access_expires_at=moment,
        revoked_at=moment,
    )
    store.create_session(session, "access-s1", "refresh-s1")

    stored_user = store.get_user("u1")
    stored_session = store.get_session("s1")
    assert stored_user is not None
    assert stored_session is not None
    _assert_utc(stored_user.created_at, moment)
    for field in ("created_at", "expires_at", "access_expires_at", "revoked_at"):
        _assert_utc(getattr(stored_session, field), moment)


def test_counter_expiry_round_trips_aware(store: Store) -> None:
    _hits, expiry = store.hit_counter("ip:1", NOW, 1)
    live = store.get_counter("ip:1", NOW)

    assert live is not None
    _assert_utc(expiry, NOW + timedelta(seconds=1))
    _assert_utc(live[1], NOW + timedelta(seconds=1))


# -- last activity and the idle timeout -------------------------------------------------


def test_a_new_session_was_last_seen_when_created(store: Store) -> None:
    add_user(store)
    unseen = dataclasses.replace(make_session("s1"), last_seen_at=None)
    store.create_session(unseen, "access-s1", "refresh-s1")
    stored = store.get_session("s1")
    assert stored is not None and stored.last_seen_at == NOW


def test_touching_a_session_moves_last_seen_forward_only(store: Store) -> None:
    add_user(store)
    add_session(store)

    store.touch_session("s1", LATER)
    store.touch_session("s1", LATER - timedelta(minutes=1))  # a late writer
    store.touch_session("ghost", LATER)  # no error

    stored = store.get_session("s1")
    assert stored is not None and stored.last_seen_at == LATER


def test_rotation_records_activity(store: Store) -> None:
    add_user(store)
    add_session(store)

    outcome = _rotate(store, "s1", "r2")

    assert outcome.session is not None and outcome.session.last_seen_at == LATER


def test_a_session_idle_since_the_cutoff_does_not_rotate_and_stays_as_it_was(
    store: Store,
) -> None:
    add_user(store)
    add_session(store)
    before = store.get_session("s1")

    at_cutoff = store.rotate_refresh_token(
        "refresh-s1", "refresh-r2", "access-r2", NEW_ACCESS_EXPIRY, LATER, idle_since=NOW
    )
    assert at_cutoff.status is RefreshStatus.INVALID
    assert store.get_session("s1") == before
    assert store.find_session_by_access_hash("access-s1") == before

    just_in_time = store.rotate_refresh_token(
        "refresh-s1",
        "refresh-r2",
        "access-r2",
        NEW_ACCESS_EXPIRY,
        LATER,
        idle_since=NOW - timedelta(microseconds=1),
    )
    assert just_in_time.status is RefreshStatus.ROTATED


def test_a_refresh_token_of_another_tenant_neither_rotates_nor_revokes(store: Store) -> None:
    add_user(store)
    add_session(store)  # tenant "default"
    _rotate(store, "s1", "r2")
    before = store.get_session("s1")

    fresh = store.rotate_refresh_token(
        "refresh-r2", "refresh-x", "access-x", NEW_ACCESS_EXPIRY, LATER, tenant="acme"
    )
    reused = store.rotate_refresh_token(
        "refresh-s1", "refresh-y", "access-y", NEW_ACCESS_EXPIRY, LATER, tenant="acme"
    )

    assert fresh.status is RefreshStatus.INVALID and reused.status is RefreshStatus.INVALID
    assert store.get_session("s1") == before
    own = store.rotate_refresh_token(
        "refresh-r2", "refresh-x", "access-x", NEW_ACCESS_EXPIRY, LATER, tenant="default"
    )
    assert own.status is RefreshStatus.ROTATED


def test_revoking_the_other_sessions_of_a_user_keeps_one(store: Store) -> None:
    add_user(store)
    add_user(store, "u2", email="bob@example.com")
    for session_id in ("s1", "s2", "s3"):
        add_session(store, session_id)
    add_session(store, "bobs", user_id="u2")

    assert store.revoke_other_user_sessions("u1", "s2", NOW) == 2
    assert store.revoke_other_user_sessions("u1", "s2", NOW) == 0

    def revoked(session_id: str) -> bool:
        session = store.get_session(session_id)
        assert session is not None
        return session.revoked_at is not None

    assert [revoked(s) for s in ("s1", "s2", "s3", "bobs")] == [True, False, True, False]
