"""A passwordless sign-in, by link and by code alike: what was mailed signs in once
through the one completion point (sessions.created and users.active recorded once,
the address verified), a second factor is still asked for, and it works through a
real SMTP server."""

from __future__ import annotations

from typing import Literal

import pyotp
import pytest

from authsome import Authsome, InvalidToken, SignIn, SMTPMailer
from authsome.mail import MailSettings
from authsome.testing import Outbox, RecordingLedger, code_in, token_in
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.smtp_server import smtp_server

EMAIL = "ann@example.com"
IP = "192.0.2.3"
Method = Literal["link", "code"]
METHODS = pytest.mark.parametrize("method", ["link", "code"])


def _begin(auth: Authsome, method: Method) -> None:
    assert auth.passwordless.begin(EMAIL, ip=IP, method=method) is None
    auth.flush_mail()


def _complete(auth: Authsome, method: Method, secret: str) -> SignIn:
    """Sign in with the mailed ``secret``: a link's token, or a code with its address."""
    if method == "link":
        return auth.passwordless.complete(secret)
    return auth.passwordless.complete(secret, email=EMAIL, ip=IP)


def _mailed(outbox: Outbox, method: Method) -> str:
    return outbox.token() if method == "link" else outbox.code()


@METHODS
def test_what_was_mailed_signs_in_once_and_records_once(
    mail_auth: Authsome, outbox: Outbox, ledger: RecordingLedger, method: Method
) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    _begin(mail_auth, method)
    ledger.clear()

    result = _complete(mail_auth, method, _mailed(outbox, method))

    assert result.tokens is not None
    assert result.user.id == user.id
    assert result.user.email_verified_at is not None
    created = ledger.usage("authsome.sessions.created")
    active = ledger.usage("authsome.users.active")
    assert [c.ctx.event_id for c in created] == [result.tokens.session.id]
    assert [c.ctx.event_id for c in active] == [result.tokens.session.id]
    assert len(ledger.calls) == 2
    with pytest.raises(InvalidToken):
        _complete(mail_auth, method, _mailed(outbox, method))
    assert len(ledger.calls) == 2


@METHODS
def test_a_user_with_a_second_factor_still_needs_it(
    mail_auth: Authsome,
    outbox: Outbox,
    ledger: RecordingLedger,
    clock: FakeClock,
    method: Method,
) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    setup = mail_auth.mfa.begin_totp(user.id)
    mail_auth.mfa.confirm_totp(user.id, pyotp.TOTP(setup.secret).at(clock.now))
    clock.advance(seconds=30)
    _begin(mail_auth, method)
    ledger.clear()

    pending = _complete(mail_auth, method, _mailed(outbox, method))
    assert pending.mfa_required
    assert pending.tokens is None
    assert pending.ticket is not None
    assert ledger.usage() == []

    done = mail_auth.mfa.verify(pending.ticket, pyotp.TOTP(setup.secret).at(clock.now))
    assert done.tokens is not None
    assert len(ledger.usage("authsome.sessions.created")) == 1
    assert len(ledger.usage("authsome.users.active")) == 1


@METHODS
def test_through_a_real_smtp_server(
    make_auth: AuthFactory, ledger: RecordingLedger, method: Method
) -> None:
    with smtp_server() as (port, received):
        auth = make_auth(
            ledger=ledger,
            mailer=SMTPMailer("127.0.0.1", port, security="none", timeout=5),
            mail=MailSettings(link_base_url="https://app.example/account"),
        )
        auth.users.register(EMAIL, PASSWORD)
        _begin(auth, method)
    text, html = received.bodies()
    if method == "link":
        assert "https://app.example/account/sign-in?token=" in text
        secret = token_in(text)
    else:
        secret = code_in(text)
        assert f"<strong>{secret}</strong>" in html
    assert _complete(auth, method, secret).tokens is not None
    assert len(ledger.usage("authsome.sessions.created")) == 1
