"""Password change: the current password is checked and throttled like a sign-in,
the new one follows the registration rules, the other sessions end, and no usage
is recorded."""

from __future__ import annotations

import pytest

from authsome import (
    Authsome,
    InvalidCredentials,
    InvalidToken,
    NotFound,
    RateLimited,
    ThrottlePolicy,
    ValidationError,
)
from authsome.testing import Outbox, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory

EMAIL = "ann@example.com"
NEW = "a brand new passphrase"
IP = "192.0.2.9"


def _signed_in(auth: Authsome) -> tuple[str, str, str]:
    """(user id, this device's session id and access token, another device's token)."""
    here = auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens
    there = auth.sign_in(EMAIL, PASSWORD, ip="198.51.100.1").tokens
    assert here is not None
    assert there is not None
    return here.session.user_id, here.session.id, here.access_token + " " + there.access_token


def test_the_password_changes_and_the_other_sessions_end(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    auth.users.register(EMAIL, PASSWORD)
    user_id, session_id, tokens = _signed_in(auth)
    here, there = tokens.split()
    ledger.clear()

    auth.users.change_password(user_id, PASSWORD, NEW, keep_session_id=session_id, ip=IP)

    assert ledger.calls == []
    assert auth.sessions.validate(here).id == session_id
    with pytest.raises(InvalidToken):
        auth.sessions.validate(there)
    with pytest.raises(InvalidCredentials):
        auth.sign_in(EMAIL, PASSWORD, ip=IP)
    assert auth.sign_in(EMAIL, NEW, ip=IP).tokens is not None


def test_without_a_session_to_keep_every_session_ends(auth: Authsome) -> None:
    auth.users.register(EMAIL, PASSWORD)
    user_id, _, tokens = _signed_in(auth)
    auth.users.change_password(user_id, PASSWORD, NEW, ip=IP)
    for token in tokens.split():
        with pytest.raises(InvalidToken):
            auth.sessions.validate(token)


def test_a_wrong_current_password_changes_nothing(auth: Authsome, ledger: RecordingLedger) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    _, _, tokens = _signed_in(auth)
    ledger.clear()
    with pytest.raises(InvalidCredentials):
        auth.users.change_password(user.id, "not the password", NEW, ip=IP)
    assert ledger.calls == []
    for token in tokens.split():
        auth.sessions.validate(token)
    assert auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens is not None


def test_wrong_current_passwords_are_throttled_like_sign_ins(make_auth: AuthFactory) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_account_ip=3))
    user = auth.users.register(EMAIL, PASSWORD)
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            auth.users.change_password(user.id, "guess", NEW, ip=IP)
    with pytest.raises(RateLimited):
        auth.users.change_password(user.id, PASSWORD, NEW, ip=IP)
    with pytest.raises(RateLimited):
        auth.sign_in(EMAIL, PASSWORD, ip=IP)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (PASSWORD, "short"),
        (PASSWORD, "password123"),
        (PASSWORD, EMAIL),
        (PASSWORD, "x" * 1025),
        ("", NEW),
        ("x" * 1025, NEW),
    ],
)
def test_refused_input_is_a_validation_error_and_changes_nothing(
    auth: Authsome, current: str, new: str
) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    with pytest.raises(ValidationError):
        auth.users.change_password(user.id, current, new, ip=IP)
    assert auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens is not None


def test_an_unknown_user_is_not_found(auth: Authsome) -> None:
    with pytest.raises(NotFound):
        auth.users.change_password("usr_nobody", PASSWORD, NEW, ip=IP)


def test_a_change_voids_a_pending_reset_link(make_auth: AuthFactory) -> None:
    outbox = Outbox()
    auth = make_auth(mailer=outbox)
    user = auth.users.register(EMAIL, PASSWORD)
    auth.users.request_password_reset(EMAIL, ip=IP)
    auth.flush_mail()
    auth.users.change_password(user.id, PASSWORD, NEW, ip=IP)
    with pytest.raises(InvalidToken):
        auth.users.reset_password(outbox.token(), "another new passphrase")
