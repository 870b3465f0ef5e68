"""Sessions end after a period without use (``SessionPolicy.idle_timeout``), checked on
validate and refresh, on every store; last activity is written only now and then."""

from __future__ import annotations

from datetime import timedelta

import pytest

from authsome import Authsome, InvalidToken, SessionPolicy, SessionTokens
from authsome.stores import Store
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.test_engine_stores import STORES

EMAIL = "ann@example.com"
HOUR = timedelta(hours=1)


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    return STORES[request.param](request)


def _signed_in(auth: Authsome) -> SessionTokens:
    auth.users.register(EMAIL, PASSWORD)
    tokens = auth.sign_in(EMAIL, PASSWORD).tokens
    assert tokens is not None
    return tokens


def test_the_default_idle_timeout_is_seven_days_within_thirty() -> None:
    policy = SessionPolicy()
    assert policy.idle_timeout == timedelta(days=7)
    assert policy.ttl == timedelta(days=30)


def test_a_refresh_after_the_idle_timeout_is_refused(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth = make_auth(store=store)
    tokens = _signed_in(auth)

    clock.advance(days=25)  # within the 30-day lifetime, but idle far too long

    with pytest.raises(InvalidToken):
        auth.sessions.refresh(tokens.refresh_token)


def test_a_session_in_use_outlives_the_idle_timeout(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth = make_auth(store=store)
    tokens = _signed_in(auth)
    for _ in range(4):  # 24 days of use, never 7 idle
        clock.advance(days=6)
        tokens = auth.sessions.refresh(tokens.refresh_token)
    assert auth.sessions.validate(tokens.access_token).id == tokens.session.id
    clock.advance(days=7)
    with pytest.raises(InvalidToken):
        auth.sessions.refresh(tokens.refresh_token)


def test_validate_enforces_the_idle_timeout_and_keeps_an_active_session_alive(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    # Access tokens as long as the session, so only the idle timeout can end it.
    policy = SessionPolicy(ttl=10 * HOUR, access_ttl=10 * HOUR, idle_timeout=HOUR)
    auth = make_auth(store=store, sessions=policy)
    tokens = _signed_in(auth)
    for _ in range(8):  # 8 hours of requests, 50 minutes apart
        clock.advance(minutes=50)
        assert auth.sessions.validate(tokens.access_token).id == tokens.session.id
    clock.advance(minutes=60)
    with pytest.raises(InvalidToken):
        auth.sessions.validate(tokens.access_token)
    with pytest.raises(InvalidToken):
        auth.sessions.refresh(tokens.refresh_token)


def test_an_idle_refresh_does_not_rotate_or_revoke(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    auth = make_auth(store=store)
    tokens = _signed_in(auth)
    clock.advance(days=8)
    with pytest.raises(InvalidToken):
        auth.sessions.refresh(tokens.refresh_token)
    stored = auth.store.get_session(tokens.session.id)
    assert stored is not None and stored.revoked_at is None


def test_validate_writes_last_activity_only_now_and_then(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    policy = SessionPolicy(ttl=10 * HOUR, access_ttl=10 * HOUR, idle_timeout=HOUR)
    auth = make_auth(store=store, sessions=policy)
    tokens = _signed_in(auth)
    started = tokens.session.last_seen_at
    assert started == clock.now

    clock.advance(seconds=10)  # under 1 % of the idle timeout: no write
    auth.sessions.validate(tokens.access_token)
    stored = auth.store.get_session(tokens.session.id)
    assert stored is not None and stored.last_seen_at == started

    clock.advance(minutes=5)
    auth.sessions.validate(tokens.access_token)
    stored = auth.store.get_session(tokens.session.id)
    assert stored is not None and stored.last_seen_at == clock.now


def test_no_idle_timeout_when_none(make_auth: AuthFactory, clock: FakeClock) -> None:
    auth = make_auth(sessions=SessionPolicy(idle_timeout=None))
    tokens = _signed_in(auth)
    clock.advance(days=29)
    assert auth.sessions.refresh(tokens.refresh_token).session.id == tokens.session.id


@pytest.mark.parametrize("idle", [timedelta(0), timedelta(seconds=-1)])
def test_a_non_positive_idle_timeout_is_refused(idle: timedelta) -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        SessionPolicy(idle_timeout=idle)


def test_an_idle_timeout_must_be_a_timedelta() -> None:
    with pytest.raises(TypeError, match="idle_timeout"):
        SessionPolicy(idle_timeout=3600)  # type: ignore[arg-type]
