"""E-mail verification: the link arrives (through a real SMTP server too), works
once, only for its purpose, tenant and address, and records no usage; a mailer
failure leaves no usable token; sign-in can require a verified address."""

from __future__ import annotations

import pytest

from authsome import (
    Authsome,
    InvalidCredentials,
    InvalidToken,
    MailNotSent,
    NotFound,
    SMTPMailer,
    ValidationError,
)
from authsome.mail import MailSettings
from authsome.onetime import JourneyPolicy
from authsome.stores import SQLiteStore
from authsome.testing import Outbox, RecordingLedger, token_in
from tests.conftest import LINK_BASE as BASE
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.smtp_server import smtp_server

EMAIL = "ann@example.com"


def test_the_link_verifies_the_address_once(mail_auth: Authsome, outbox: Outbox) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    assert user.email_verified_at is None

    mail_auth.users.send_verification(user.id)
    message = outbox.last(EMAIL)
    assert message.kind == "verify_email"
    assert f"{BASE}/verify-email?token=" in message.text
    assert f'href="{BASE}/verify-email?token=' in message.html

    verified = mail_auth.users.verify_email(outbox.token())
    assert verified.email_verified_at is not None
    assert mail_auth.users.get(user.id) == verified
    with pytest.raises(InvalidToken):
        mail_auth.users.verify_email(outbox.token())


def test_verification_records_no_usage(mail_auth: Authsome, ledger: RecordingLedger) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    ledger.clear()
    mail_auth.users.send_verification(user.id)
    mail_auth.users.verify_email(token_in(mail_auth.mailer.last().text))  # type: ignore[union-attr]
    assert ledger.calls == []


def test_a_new_link_replaces_the_old_one(mail_auth: Authsome, outbox: Outbox) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    mail_auth.users.send_verification(user.id)
    first = outbox.token()
    mail_auth.users.send_verification(user.id)

    with pytest.raises(InvalidToken):
        mail_auth.users.verify_email(first)
    mail_auth.users.verify_email(outbox.token())


def test_the_link_expires_after_24_hours(
    mail_auth: Authsome, outbox: Outbox, clock: FakeClock
) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    mail_auth.users.send_verification(user.id)
    clock.advance(hours=24)
    with pytest.raises(InvalidToken):
        mail_auth.users.verify_email(outbox.token())


def test_another_tenant_or_purpose_cannot_use_the_link(mail_auth: Authsome, outbox: Outbox) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD, tenant="acme")
    mail_auth.users.send_verification(user.id)
    token = outbox.token()

    with pytest.raises(InvalidToken):
        mail_auth.users.verify_email(token, tenant="evil")
    with pytest.raises(InvalidToken):
        mail_auth.users.verify_email(token)  # the default tenant
    with pytest.raises(InvalidToken):
        mail_auth.users.reset_password(token, "a brand new passphrase", tenant="acme")
    assert mail_auth.users.verify_email(token, tenant="acme").email_verified_at is not None


@pytest.mark.parametrize(
    "token", ["", "x" * 129, "made-up-token", "x" * 10_000], ids=["empty", "129", "unknown", "10k"]
)
def test_bad_tokens_are_typed_errors(mail_auth: Authsome, token: str) -> None:
    with pytest.raises((InvalidToken, ValidationError)):
        mail_auth.users.verify_email(token)
    with pytest.raises(TypeError):
        mail_auth.users.verify_email(42)  # type: ignore[arg-type]


def test_an_unknown_user_is_not_found(mail_auth: Authsome, outbox: Outbox) -> None:
    with pytest.raises(NotFound):
        mail_auth.users.send_verification("usr_nobody")
    assert len(outbox) == 0


def test_a_failing_mailer_leaves_no_usable_token(make_auth: AuthFactory) -> None:
    class SentThenLost(Outbox):
        """Keeps the message, then fails: as if the server dropped the connection."""

        def send(self, message: object) -> None:
            super().send(message)  # type: ignore[arg-type]
            raise ConnectionResetError("connection lost")

    mailer = SentThenLost()
    auth = make_auth(mailer=mailer)
    user = auth.users.register(EMAIL, PASSWORD)

    with pytest.raises(MailNotSent):
        auth.users.send_verification(user.id)
    with pytest.raises(InvalidToken):
        auth.users.verify_email(mailer.token())


def test_without_a_mailer_nothing_is_sent(auth: Authsome) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    with pytest.raises(MailNotSent):
        auth.users.send_verification(user.id)


def test_through_a_real_smtp_server(make_auth: AuthFactory, tmp_path: object) -> None:
    with smtp_server() as (port, received):
        auth = make_auth(
            store=SQLiteStore(":memory:"),
            mailer=SMTPMailer("127.0.0.1", port, security="none", timeout=5),
            mail=MailSettings(link_base_url=BASE, sender="auth@app.example"),
        )
        user = auth.users.register(EMAIL, PASSWORD)
        auth.users.send_verification(user.id)
    text, html = received.bodies()
    assert received.messages[0]["From"] == "auth@app.example"
    assert token_in(text) in html
    assert auth.users.verify_email(token_in(text)).email_verified_at is not None


def test_a_refusing_smtp_server_leaves_no_usable_token(make_auth: AuthFactory) -> None:
    with smtp_server(refuse=True) as (port, received):
        auth = make_auth(mailer=SMTPMailer("127.0.0.1", port, security="none", timeout=5))
        user = auth.users.register(EMAIL, PASSWORD)
        with pytest.raises(MailNotSent):
            auth.users.send_verification(user.id)
    text, _ = received.bodies(refused=True)
    with pytest.raises(InvalidToken):
        auth.users.verify_email(token_in(text))


# -- requiring a verified address at sign-in -------------------------------------------


@pytest.fixture
def strict(make_auth: AuthFactory, outbox: Outbox, ledger: RecordingLedger) -> Authsome:
    return make_auth(
        ledger=ledger, mailer=outbox, journeys=JourneyPolicy(require_verified_email=True)
    )


def test_an_unverified_address_is_refused_like_a_wrong_password(
    strict: Authsome, outbox: Outbox, ledger: RecordingLedger
) -> None:
    strict.users.register(EMAIL, PASSWORD)
    ledger.clear()

    with pytest.raises(InvalidCredentials) as refused:
        strict.sign_in(EMAIL, PASSWORD, ip="192.0.2.1")
    with pytest.raises(InvalidCredentials) as wrong:
        strict.sign_in(EMAIL, "not the password", ip="192.0.2.1")
    assert str(refused.value) == str(wrong.value)
    assert type(refused.value) is type(wrong.value)
    assert ledger.usage() == []

    strict.flush_mail()  # only the owner learns why: a fresh link in their inbox
    strict.users.verify_email(outbox.token(EMAIL))
    assert strict.sign_in(EMAIL, PASSWORD, ip="192.0.2.1").tokens is not None
    assert len(ledger.usage("authsome.sessions.created")) == 1
    assert len(ledger.usage("authsome.users.active")) == 1


def test_verification_is_not_required_by_default(mail_auth: Authsome) -> None:
    mail_auth.users.register(EMAIL, PASSWORD)
    assert mail_auth.sign_in(EMAIL, PASSWORD, ip="192.0.2.1").tokens is not None
