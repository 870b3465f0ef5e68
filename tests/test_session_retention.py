"""Ended sessions (they hold the client's address and User-Agent) are deleted
``SessionPolicy.retention`` after they ended: revoked, expired or idle. On every
store, on demand (``auth.sessions.prune``) and now and then on their own."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from authsome import Authsome, InvalidToken, SessionPolicy, SessionTokens, ValidationError
from authsome.errors import StoreError
from authsome.sessions import PRUNE_BATCH, PRUNE_INTERVAL
from authsome.stores import MemoryStore, Store
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.test_engine_stores import STORES

EMAIL = "ann@example.com"
DAY = timedelta(days=1)
POLICY = SessionPolicy(ttl=10 * DAY, idle_timeout=2 * DAY, retention=3 * DAY)


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    return STORES[request.param](request)


def _sign_in(auth: Authsome) -> SessionTokens:
    tokens = auth.sign_in(EMAIL, PASSWORD, ip="198.51.100.7", user_agent="Firefox").tokens
    assert tokens is not None
    return tokens


def _engine(make_auth: AuthFactory, store: Store) -> Authsome:
    auth = make_auth(store=store, sessions=POLICY)
    auth.users.register(EMAIL, PASSWORD)
    return auth


def test_the_default_retention_is_thirty_days() -> None:
    assert SessionPolicy().retention == timedelta(days=30)


def test_a_negative_or_non_timedelta_retention_is_refused() -> None:
    with pytest.raises(ValueError, match="retention"):
        SessionPolicy(retention=-DAY)
    with pytest.raises(TypeError, match="retention"):
        SessionPolicy(retention=30)  # type: ignore[arg-type]


def test_a_revoked_session_is_kept_for_the_retention_then_deleted(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth = _engine(make_auth, store)
    revoked, live = _sign_in(auth), _sign_in(auth)
    auth.sessions.revoke(revoked.access_token)

    for _ in range(2):  # live stays in use; revoked ended two days ago
        clock.advance(days=1)
        live = _refreshed(auth, live)
    assert auth.sessions.prune() == 0
    assert store.get_session(revoked.session.id) is not None

    clock.advance(days=1)
    assert auth.sessions.prune() == 1
    assert store.get_session(revoked.session.id) is None
    assert _refreshed(auth, live).session.id == live.session.id  # still live
    with pytest.raises(InvalidToken):  # its refresh token went with it: the same answer
        auth.sessions.refresh(revoked.refresh_token)


def test_an_expired_session_is_deleted_the_retention_after_its_end(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth = _engine(make_auth, store)
    tokens = _sign_in(auth)
    for _ in range(9):  # in use every day, so it ends by its lifetime, not idling
        clock.advance(days=1)
        tokens = auth.sessions.refresh(tokens.refresh_token)

    clock.advance(days=1 + 3, seconds=-1)  # lifetime over at day 10; kept until day 13
    assert auth.sessions.prune() == 0
    clock.advance(seconds=1)
    assert auth.sessions.prune() == 1
    assert store.get_session(tokens.session.id) is None


def test_an_idle_session_is_deleted_the_retention_after_it_went_idle(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth = _engine(make_auth, store)
    tokens = _sign_in(auth)

    clock.advance(days=2 + 3, seconds=-1)  # idle since day 2; kept until day 5
    assert auth.sessions.prune() == 0
    assert store.get_session(tokens.session.id) is not None
    clock.advance(seconds=1)
    assert auth.sessions.prune() == 1
    assert store.get_session(tokens.session.id) is None


def test_live_sessions_are_never_pruned(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth = make_auth(store=store, sessions=SessionPolicy(idle_timeout=None, retention=DAY * 0))
    auth.users.register(EMAIL, PASSWORD)
    tokens = _sign_in(auth)
    clock.advance(days=29)
    assert auth.sessions.prune() == 0
    assert auth.sessions.validate(_refreshed(auth, tokens).access_token)


def _refreshed(auth: Authsome, tokens: SessionTokens) -> SessionTokens:
    return auth.sessions.refresh(tokens.refresh_token)


def test_reuse_of_a_rotated_refresh_token_is_still_caught_after_a_prune(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth = make_auth(store=store, sessions=SessionPolicy(retention=DAY * 0))
    auth.users.register(EMAIL, PASSWORD)
    first = _sign_in(auth)
    second = _refreshed(auth, first)
    clock.advance(days=1)
    auth.sessions.prune()

    with pytest.raises(InvalidToken):
        auth.sessions.refresh(first.refresh_token)  # reuse: the family is revoked
    with pytest.raises(InvalidToken):
        auth.sessions.validate(second.access_token)


def test_a_sign_in_prunes_on_its_own_at_most_once_per_interval(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth = make_auth(store=store, sessions=SessionPolicy(retention=DAY * 0))
    auth.users.register(EMAIL, PASSWORD)
    old = _sign_in(auth)  # the engine's first prune: nothing ended yet
    auth.sessions.revoke(old.access_token)

    clock.advance(seconds=PRUNE_INTERVAL.total_seconds() - 1)
    _sign_in(auth)  # no prune due yet
    assert store.get_session(old.session.id) is not None

    clock.advance(seconds=1)
    _sign_in(auth)  # a sign-in prunes before its transaction
    assert store.get_session(old.session.id) is None


def test_a_refresh_prunes_on_its_own(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth = _engine(make_auth, store)
    old, kept = _sign_in(auth), _sign_in(auth)
    auth.sessions.revoke(old.access_token)
    for _ in range(4):  # kept in use; old ended 4 days ago
        clock.advance(days=1)
        kept = _refreshed(auth, kept)
    assert store.get_session(old.session.id) is None


def test_prune_deletes_at_most_limit(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth = _engine(make_auth, store)
    for _ in range(3):
        auth.sessions.revoke(_sign_in(auth).access_token)
    clock.advance(days=3, seconds=1)
    assert auth.sessions.prune(limit=2) == 2
    assert auth.sessions.prune(limit=2) == 1
    assert auth.sessions.prune() == 0


def test_prune_without_limit_goes_past_one_batch(make_auth: AuthFactory, clock: FakeClock) -> None:
    auth = make_auth(sessions=POLICY)  # memory: many sessions stay cheap
    auth.users.register(EMAIL, PASSWORD)
    for _ in range(PRUNE_BATCH + 3):
        auth.sessions.revoke(_sign_in(auth).access_token)
    clock.advance(days=3, seconds=1)
    assert auth.sessions.prune() == PRUNE_BATCH + 3


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_refused(make_auth: AuthFactory, limit: int) -> None:
    with pytest.raises(ValidationError):
        make_auth().sessions.prune(limit=limit)


@pytest.mark.parametrize("limit", ["5", 1.5, True])
def test_a_limit_of_another_type_is_refused(make_auth: AuthFactory, limit: object) -> None:
    with pytest.raises(TypeError):
        make_auth().sessions.prune(limit=limit)  # type: ignore[arg-type]


class _PruneFails(MemoryStore):
    def prune_sessions(
        self, ended_before: datetime, idle_since: datetime | None, limit: int
    ) -> int:
        raise StoreError("database is locked")


def test_a_failing_prune_is_logged_and_fails_no_sign_in(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    auth = _engine(make_auth, _PruneFails())
    with caplog.at_level(logging.WARNING, logger="authsome.sessions"):
        tokens = _sign_in(auth)
        assert _refreshed(auth, tokens).session.id == tokens.session.id
    assert "ended sessions not pruned" in caplog.text
    with pytest.raises(StoreError):  # asked for explicitly, the error is the caller's
        auth.sessions.prune()
