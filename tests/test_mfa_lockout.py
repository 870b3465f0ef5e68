"""After 100 consecutive wrong codes the TOTP factor refuses every code, even right ones
(NIST SP 800-63B), however slowly they came, until a recovery code is used or an
administrator unlocks it; a right code starts the count again. On every store."""

from __future__ import annotations

import logging

import pytest

from authsome import Authsome, InvalidCredentials, MfaLocked, RateLimited, TOTPSetup, User
from authsome.mfa import FAILURE_WINDOW, LOCKOUT_THRESHOLD, MAX_FAILURES
from authsome.stores import Store
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.test_engine_stores import STORES
from tests.test_mfa import EMAIL, code, enrol, register

TENANT = "acme"


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    return STORES[request.param](request)


@pytest.fixture
def engine(make_auth: AuthFactory, store: Store) -> Authsome:
    return make_auth(store=store)


@pytest.fixture
def enrolled(engine: Authsome, clock: FakeClock) -> tuple[User, TOTPSetup, list[str]]:
    user = register(engine)
    setup, codes = enrol(engine, user, clock)
    return user, setup, codes


def _wrong(setup: TOTPSetup, clock: FakeClock) -> str:
    """A code no step in the accepted window has: surely wrong, never wrong by luck."""
    accepted = {code(setup, clock, steps) for steps in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in accepted)


def _verify(auth: Authsome, answer: str) -> None:
    ticket = auth.sign_in(EMAIL, PASSWORD, tenant=TENANT).ticket
    assert ticket is not None
    auth.mfa.verify(ticket, answer)


def _fail(auth: Authsome, setup: TOTPSetup, clock: FakeClock, times: int) -> None:
    """``times`` wrong codes, as fast as the per-window limit lets them through: one
    window after another, the way a patient attacker would send them."""
    for done in range(times):
        if done and done % MAX_FAILURES == 0:
            clock.advance(seconds=FAILURE_WINDOW.total_seconds() + 1)
        with pytest.raises(InvalidCredentials) as refused:
            _verify(auth, _wrong(setup, clock))
        assert not isinstance(refused.value, MfaLocked)


def test_the_threshold_is_nists_hundred() -> None:
    assert LOCKOUT_THRESHOLD == 100


def test_a_hundred_wrong_codes_over_ten_windows_lock_the_factor(
    engine: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    user, setup, _codes = enrolled
    _fail(engine, setup, clock, LOCKOUT_THRESHOLD)
    assert engine.mfa.locked(user.id)

    # Windows keep passing; the right code is still refused, at sign-in and for disable.
    for _ in range(20):
        clock.advance(days=1)
        with pytest.raises(MfaLocked):
            _verify(engine, code(setup, clock))
    with pytest.raises(MfaLocked):
        engine.mfa.disable(user.id, code(setup, clock))
    assert engine.mfa.locked(user.id)


def test_a_recovery_code_unlocks_the_factor(
    engine: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    user, setup, codes = enrolled
    _fail(engine, setup, clock, LOCKOUT_THRESHOLD)
    clock.advance(seconds=FAILURE_WINDOW.total_seconds() + 1)

    _verify(engine, codes[0])

    assert not engine.mfa.locked(user.id)
    clock.advance(seconds=30)
    _verify(engine, code(setup, clock))


def test_an_administrator_unlocks_the_factor(
    engine: Authsome,
    clock: FakeClock,
    enrolled: tuple[User, TOTPSetup, list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, setup, _codes = enrolled
    with caplog.at_level(logging.WARNING, logger="authsome.security"):
        _fail(engine, setup, clock, LOCKOUT_THRESHOLD)
    assert any("locked" in r.getMessage() and user.id in r.getMessage() for r in caplog.records)
    clock.advance(seconds=FAILURE_WINDOW.total_seconds() + 1)

    assert engine.mfa.unlock(user.id) is True
    assert engine.mfa.unlock(user.id) is False  # nothing left to unlock

    _verify(engine, code(setup, clock))


def test_a_right_code_starts_the_count_again(
    engine: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    user, setup, _codes = enrolled
    _fail(engine, setup, clock, LOCKOUT_THRESHOLD - 1)
    clock.advance(seconds=FAILURE_WINDOW.total_seconds() + 1)
    _verify(engine, code(setup, clock))
    clock.advance(seconds=FAILURE_WINDOW.total_seconds() + 1)

    _fail(engine, setup, clock, LOCKOUT_THRESHOLD - 1)

    assert not engine.mfa.locked(user.id)
    clock.advance(seconds=FAILURE_WINDOW.total_seconds() + 1)
    _verify(engine, code(setup, clock))


def test_the_window_limit_still_applies_before_the_lockout(
    engine: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    _user, setup, _codes = enrolled
    _fail(engine, setup, clock, MAX_FAILURES)
    with pytest.raises(RateLimited):
        _verify(engine, _wrong(setup, clock))


def test_unlock_of_a_user_without_a_factor_is_false(engine: Authsome) -> None:
    user = register(engine)
    assert engine.mfa.unlock(user.id) is False
    assert engine.mfa.locked(user.id) is False


def test_the_lockout_survives_a_long_time(
    engine: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    user, setup, _codes = enrolled
    _fail(engine, setup, clock, LOCKOUT_THRESHOLD)
    clock.advance(days=400)
    assert engine.mfa.locked(user.id)
    with pytest.raises(MfaLocked):
        _verify(engine, code(setup, clock))
