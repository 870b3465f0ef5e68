"""Sign-in with a second factor: tickets (5 minutes, 5 attempts, single use), codes
accepted once even under racing threads, and usage recorded only on completion."""

from __future__ import annotations

import collections
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from authsome import (
    Authsome,
    InvalidCredentials,
    InvalidToken,
    MfaFactor,
    RateLimited,
    SignIn,
    TOTPSetup,
    UsageEvent,
    User,
    ValidationError,
)
from authsome.bridge import LedgerContext
from authsome.mfa import FAILURE_WINDOW, MAX_FAILURES, TICKET_ATTEMPTS, Mfa
from authsome.stores import MemoryStore, SQLiteStore, Store
from authsome.testing import RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.stores.conftest import postgres_store
from tests.support.race import race
from tests.test_mfa import EMAIL, code, enrol, register

TENANT = "acme"


@pytest.fixture
def enrolled(auth: Authsome, clock: FakeClock) -> tuple[User, TOTPSetup, list[str]]:
    user = register(auth)
    setup, codes = enrol(auth, user, clock)
    return user, setup, codes


def _ticket(auth: Authsome) -> str:
    result = auth.sign_in(EMAIL, PASSWORD, tenant=TENANT)
    assert result.mfa_required
    assert result.tokens is None
    assert result.ticket is not None
    return result.ticket


def _wrong(setup: TOTPSetup, clock: FakeClock) -> str:
    return f"{(int(code(setup, clock)) + 1) % 1_000_000:06d}"


def _live_sessions(auth: Authsome, user: User, clock: FakeClock) -> int:
    # Revoking every live session counts them; used only where the test ends there.
    return auth.store.revoke_user_sessions(user.id, clock.now)


# -- the hand-over --------------------------------------------------------------------


def test_sign_in_with_mfa_returns_a_ticket_and_nothing_else(
    auth: Authsome,
    ledger: RecordingLedger,
    clock: FakeClock,
    enrolled: tuple[User, TOTPSetup, list[str]],
) -> None:
    user, _setup, _codes = enrolled
    ledger.clear()

    result = auth.sign_in(EMAIL, PASSWORD, tenant=TENANT)

    assert result == SignIn(user=user, tokens=None, mfa_required=True, ticket=result.ticket)
    assert result.ticket is not None
    assert len(result.ticket) >= 43  # 256 bits, URL-safe base64
    assert result.ticket not in repr(result)
    assert ledger.calls == []
    assert _live_sessions(auth, user, clock) == 0


def test_verify_completes_the_sign_in_and_records_it_once(
    auth: Authsome,
    ledger: RecordingLedger,
    clock: FakeClock,
    enrolled: tuple[User, TOTPSetup, list[str]],
) -> None:
    user, setup, _codes = enrolled
    ticket = _ticket(auth)
    ledger.clear()

    result = auth.mfa.verify(ticket, code(setup, clock))

    assert result.user == user
    assert not result.mfa_required
    assert result.ticket is None
    assert result.tokens is not None
    session = auth.sessions.validate(result.tokens.access_token)
    ctx = LedgerContext(tenant=TENANT, user_id=user.id, event_id=session.id)
    assert [(c.kind, c.feature_key, c.ctx) for c in ledger.calls] == [
        ("record_usage", UsageEvent.SESSIONS_CREATED, ctx),
        ("record_usage", UsageEvent.USERS_ACTIVE, ctx),
    ]


def test_a_wrong_code_records_nothing_and_creates_no_session(
    auth: Authsome,
    ledger: RecordingLedger,
    clock: FakeClock,
    enrolled: tuple[User, TOTPSetup, list[str]],
) -> None:
    user, setup, _codes = enrolled
    ticket = _ticket(auth)
    ledger.clear()

    with pytest.raises(InvalidCredentials):
        auth.mfa.verify(ticket, _wrong(setup, clock))

    assert ledger.calls == []
    assert _live_sessions(auth, user, clock) == 0


def test_a_recovery_code_completes_the_sign_in_once(
    auth: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    user, _setup, codes = enrolled

    assert auth.mfa.verify(_ticket(auth), codes[2]).tokens is not None
    with pytest.raises(InvalidCredentials):
        auth.mfa.verify(_ticket(auth), codes[2])
    with pytest.raises(InvalidCredentials):
        auth.mfa.disable(user.id, codes[2])
    assert auth.mfa.verify(_ticket(auth), codes[3].lower()).tokens is not None


def test_a_code_used_for_one_sign_in_is_refused_for_the_next(
    auth: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    _user, setup, _codes = enrolled
    used = code(setup, clock)
    auth.mfa.verify(_ticket(auth), used)

    with pytest.raises(InvalidCredentials):
        auth.mfa.verify(_ticket(auth), used)
    clock.advance(seconds=30)
    assert auth.mfa.verify(_ticket(auth), code(setup, clock)).tokens is not None


def test_wrong_password_gets_no_ticket(
    auth: Authsome, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    with pytest.raises(InvalidCredentials):
        auth.sign_in(EMAIL, "not the password at all", tenant=TENANT)


# -- tickets ----------------------------------------------------------------------------


def test_a_ticket_is_single_use(
    auth: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    user, setup, codes = enrolled
    ticket = _ticket(auth)
    auth.mfa.verify(ticket, code(setup, clock))

    with pytest.raises(InvalidToken):
        auth.mfa.verify(ticket, codes[0])
    assert auth.mfa.recovery_codes_left(user.id) == len(codes)  # nothing was spent


def test_a_ticket_lives_five_minutes(
    auth: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    _user, setup, _codes = enrolled
    late = _ticket(auth)
    in_time = _ticket(auth)
    clock.advance(minutes=4, seconds=59)
    assert auth.mfa.verify(in_time, code(setup, clock)).tokens is not None

    clock.advance(seconds=1)  # also a new time-step, so the code itself is fresh
    with pytest.raises(InvalidToken):
        auth.mfa.verify(late, code(setup, clock))


def test_the_fifth_wrong_code_burns_the_ticket(
    auth: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    _user, setup, _codes = enrolled
    ticket = _ticket(auth)
    for _ in range(TICKET_ATTEMPTS):
        with pytest.raises(InvalidCredentials):
            auth.mfa.verify(ticket, _wrong(setup, clock))

    with pytest.raises(InvalidToken):
        auth.mfa.verify(ticket, code(setup, clock))
    # The right code was not spent on the dead ticket: a fresh one takes it.
    assert auth.mfa.verify(_ticket(auth), code(setup, clock)).tokens is not None


def test_four_wrong_codes_still_leave_one_attempt(
    auth: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    _user, setup, _codes = enrolled
    ticket = _ticket(auth)
    for _ in range(TICKET_ATTEMPTS - 1):
        with pytest.raises(InvalidCredentials):
            auth.mfa.verify(ticket, _wrong(setup, clock))
    assert auth.mfa.verify(ticket, code(setup, clock)).tokens is not None


def test_unknown_and_malformed_tickets(
    auth: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    _user, setup, _codes = enrolled
    with pytest.raises(InvalidToken):
        auth.mfa.verify("no-such-ticket", code(setup, clock))
    with pytest.raises(ValidationError):
        auth.mfa.verify("", code(setup, clock))


def test_a_ticket_dies_when_mfa_is_disabled_meanwhile(
    auth: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    user, setup, codes = enrolled
    ticket = _ticket(auth)
    auth.mfa.disable(user.id, codes[0])
    with pytest.raises(InvalidToken):
        auth.mfa.verify(ticket, code(setup, clock))


def test_tickets_are_stored_hashed(
    make_auth: AuthFactory, clock: FakeClock, tmp_path: Path
) -> None:
    auth = make_auth(store=SQLiteStore(tmp_path / "auth.db"))
    enrol(auth, register(auth), clock)
    ticket = _ticket(auth)
    auth.close()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("auth.db*"))
    assert b"mfa_tickets" in data
    assert ticket.encode() not in data


# -- replay under concurrency, on every kind of store -----------------------------------

STORES: dict[str, Callable[[pytest.FixtureRequest, Path], Store]] = {
    "memory": lambda _request, _tmp: MemoryStore(),
    "postgres": lambda request, _tmp: postgres_store(request),
    "sqlite": lambda _request, tmp: SQLiteStore(tmp / "auth.db"),
}


@pytest.fixture(params=sorted(STORES))
def any_store_auth(
    request: pytest.FixtureRequest,
    make_auth: AuthFactory,
    ledger: RecordingLedger,
    tmp_path: Path,
) -> Authsome:
    """An engine reporting to ``ledger``, on each kind of store in turn."""
    return make_auth(store=STORES[request.param](request, tmp_path), ledger=ledger)


def test_one_code_presented_by_eight_threads_is_accepted_once(
    any_store_auth: Authsome, ledger: RecordingLedger, clock: FakeClock
) -> None:
    auth = any_store_auth
    user = register(auth)
    setup, _codes = enrol(auth, user, clock)
    tickets = [_ticket(auth) for _ in range(8)]
    same_code = code(setup, clock)
    ledger.clear()

    def present(ticket: str) -> str:
        try:
            auth.mfa.verify(ticket, same_code)
        except InvalidCredentials:
            return "refused"
        return "accepted"

    outcomes = race(present, tickets)

    assert sorted(outcomes) == ["accepted"] + ["refused"] * 7
    assert len(ledger.usage(UsageEvent.SESSIONS_CREATED)) == 1
    assert len(ledger.usage(UsageEvent.USERS_ACTIVE)) == 1


def test_one_ticket_raced_with_many_right_codes_signs_in_once(
    any_store_auth: Authsome, ledger: RecordingLedger, clock: FakeClock
) -> None:
    auth = any_store_auth
    user = register(auth)
    _setup, codes = enrol(auth, user, clock)
    ticket = _ticket(auth)

    def present(recovery: str) -> bool:
        try:
            auth.mfa.verify(ticket, recovery)
        except (InvalidToken, InvalidCredentials):
            return False
        return True

    results = race(present, codes)

    assert results.count(True) == 1
    assert len(ledger.usage(UsageEvent.SESSIONS_CREATED)) == 1
    assert _live_sessions(auth, user, clock) == 1


# -- the per-user limit under racing requests -------------------------------------------


def _wrong_codes(setup: TOTPSetup, clock: FakeClock, count: int) -> list[str]:
    """``count`` distinct codes none of which is valid in the accepted window."""
    valid = {code(setup, clock, steps) for steps in (-1, 0, 1)}
    candidates = (f"{(i * 7919) % 1_000_000:06d}" for i in range(1, 10 * count))
    return [c for c in candidates if c not in valid][:count]


@pytest.mark.parametrize("kind", sorted(STORES))
def test_parallel_wrong_codes_get_no_more_tries_than_the_per_user_limit(
    request: pytest.FixtureRequest,
    make_auth: AuthFactory,
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
    tmp_path: Path,
    kind: str,
) -> None:
    auth = make_auth(store=STORES[kind](request, tmp_path))
    user = register(auth)
    setup, _codes = enrol(auth, user, clock)
    # Fresh tickets, each with its own attempts: only the per-user limit can stop this.
    tickets = [_ticket(auth) for _ in range(6)]
    wrong_codes = _wrong_codes(setup, clock, len(tickets) * TICKET_ATTEMPTS)
    jobs = [(tickets[i // TICKET_ATTEMPTS], c) for i, c in enumerate(wrong_codes)]
    original = Mfa._matching_step
    checked: list[str] = []

    def counted_match(self: Mfa, factor: MfaFactor, text: str, now: datetime) -> int | None:
        checked.append(text)  # a code that got as far as being compared
        return original(self, factor, text, now)

    monkeypatch.setattr(Mfa, "_matching_step", counted_match)

    def guess(job: tuple[str, str]) -> str:
        # A verify counts the attempt and checks the code in one transaction, so
        # racing guesses queue at its start; all are released at once by race().
        try:
            auth.mfa.verify(*job)
        except InvalidCredentials:
            return "tried"
        except RateLimited:
            return "refused"
        return "signed in"

    outcomes = collections.Counter(race(guess, jobs))

    assert len(checked) == outcomes["tried"] == MAX_FAILURES, outcomes
    assert outcomes["refused"] == len(jobs) - MAX_FAILURES
    monkeypatch.setattr(Mfa, "_matching_step", original)
    # Blocked until the window of the first failure ends, and no longer.
    with pytest.raises(RateLimited):
        auth.mfa.verify(_ticket(auth), code(setup, clock))
    clock.advance(seconds=FAILURE_WINDOW.total_seconds())
    assert auth.mfa.verify(_ticket(auth), code(setup, clock)).tokens is not None


def test_a_right_code_gives_back_the_failures(
    auth: Authsome, clock: FakeClock, enrolled: tuple[User, TOTPSetup, list[str]]
) -> None:
    _user, setup, _codes = enrolled
    for _ in range(2):
        for wrong in _wrong_codes(setup, clock, MAX_FAILURES - 1):
            with pytest.raises(InvalidCredentials):
                auth.mfa.verify(_ticket(auth), wrong)
        # Without the reset the second round would be past the limit.
        assert auth.mfa.verify(_ticket(auth), code(setup, clock)).tokens is not None
        clock.advance(seconds=30)  # the next round needs a fresh code
