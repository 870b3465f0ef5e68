"""Password reset: no enumeration (same answer, same time), the link works once
and only for its purpose and tenant, the new password follows the registration
rules, every session and pending MFA sign-in ends, nobody is signed in, and no
usage is recorded."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest

from authsome import Authsome, InvalidCredentials, InvalidToken, SMTPMailer, ValidationError
from authsome.mail import MailMessage, MailSettings
from authsome.onetime import JourneyPolicy
from authsome.stores import MemoryStore, SQLiteStore, Store
from authsome.testing import Outbox, RecordingLedger, token_in
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.smtp_server import smtp_server
from tests.support.stores import postgres_store
from tests.support.timing import median_ratio

EMAIL = "ann@example.com"
NEW = "a brand new passphrase"
IP = "192.0.2.7"


def _request(auth: Authsome, email: str = EMAIL, tenant: str = "default") -> None:
    assert auth.users.request_password_reset(email, tenant=tenant, ip=IP) is None
    auth.flush_mail()


def test_the_link_sets_a_new_password_and_signs_nobody_in(
    mail_auth: Authsome, outbox: Outbox, ledger: RecordingLedger
) -> None:
    mail_auth.users.register(EMAIL, PASSWORD)
    _request(mail_auth, "  ANN@example.com ")
    message = outbox.last(EMAIL)
    assert message.kind == "reset_password"
    assert "/reset-password?token=" in message.text
    ledger.clear()

    user = mail_auth.users.reset_password(outbox.token(), NEW)

    assert user.email == EMAIL
    assert user.email_verified_at is not None  # the link proved the address
    assert ledger.calls == []  # no session, no usage: the user signs in next
    with pytest.raises(InvalidCredentials):
        mail_auth.sign_in(EMAIL, PASSWORD, ip=IP)
    assert mail_auth.sign_in(EMAIL, NEW, ip=IP).tokens is not None
    with pytest.raises(InvalidToken):
        mail_auth.users.reset_password(outbox.token(), "yet another passphrase")


def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    mail_auth: Authsome, outbox: Outbox, ledger: RecordingLedger
) -> None:
    mail_auth.users.register(EMAIL, PASSWORD, tenant="acme")
    _request(mail_auth, "nobody@example.com")
    _request(mail_auth, EMAIL)  # exists, but in another tenant
    assert len(outbox) == 0
    assert ledger.calls == [c for c in ledger.calls if c.feature_key == "authsome.users.created"]


def test_every_session_and_pending_mfa_sign_in_ends(
    mail_auth: Authsome, outbox: Outbox, clock: FakeClock
) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    signed_in = mail_auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens
    assert signed_in is not None
    setup = mail_auth.mfa.begin_totp(user.id)
    mail_auth.mfa.confirm_totp(user.id, pyotp.TOTP(setup.secret).at(clock.now))
    clock.advance(seconds=30)
    pending = mail_auth.sign_in(EMAIL, PASSWORD, ip=IP)
    assert pending.ticket is not None

    _request(mail_auth)
    mail_auth.users.reset_password(outbox.token(), NEW)

    with pytest.raises(InvalidToken):
        mail_auth.sessions.validate(signed_in.access_token)
    with pytest.raises((InvalidCredentials, InvalidToken)):
        mail_auth.mfa.verify(pending.ticket, pyotp.TOTP(setup.secret).at(clock.now))
    # The second factor is still asked for at the next sign-in.
    assert mail_auth.sign_in(EMAIL, NEW, ip=IP).mfa_required


def test_a_refused_password_keeps_the_link_usable(mail_auth: Authsome, outbox: Outbox) -> None:
    mail_auth.users.register(EMAIL, PASSWORD)
    _request(mail_auth)
    token = outbox.token()

    for refused in ("short", "password123", EMAIL, "x" * 1025):
        with pytest.raises(ValidationError):
            mail_auth.users.reset_password(token, refused)
    mail_auth.users.reset_password(token, NEW)
    assert mail_auth.sign_in(EMAIL, NEW, ip=IP).tokens is not None


def test_the_link_expires_after_30_minutes(
    mail_auth: Authsome, outbox: Outbox, clock: FakeClock
) -> None:
    mail_auth.users.register(EMAIL, PASSWORD)
    _request(mail_auth)
    clock.advance(minutes=30)
    with pytest.raises(InvalidToken):
        mail_auth.users.reset_password(outbox.token(), NEW)
    assert mail_auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens is not None


def test_the_link_of_another_tenant_is_unknown(mail_auth: Authsome, outbox: Outbox) -> None:
    mail_auth.users.register(EMAIL, PASSWORD, tenant="acme")
    _request(mail_auth, tenant="acme")
    with pytest.raises(InvalidToken):
        mail_auth.users.reset_password(outbox.token(), NEW, tenant="evil")
    with pytest.raises(InvalidToken):
        mail_auth.users.verify_email(outbox.token(), tenant="acme")  # wrong purpose
    mail_auth.users.reset_password(outbox.token(), NEW, tenant="acme")


@pytest.mark.parametrize(
    ("email", "error"),
    [("", ValidationError), ("a" * 300 + "@example.com", ValidationError), (42, TypeError)],
)
def test_bad_addresses_are_typed_errors(
    mail_auth: Authsome, outbox: Outbox, email: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        mail_auth.users.request_password_reset(email)  # type: ignore[arg-type]
    assert len(outbox) == 0


def test_a_failed_message_withdraws_its_token_and_tells_nobody(make_auth: AuthFactory) -> None:
    class SentThenLost(Outbox):
        def send(self, message: MailMessage) -> None:
            super().send(message)
            raise ConnectionResetError("connection lost")

    mailer = SentThenLost()
    auth = make_auth(mailer=mailer)
    auth.users.register(EMAIL, PASSWORD)
    _request(auth)  # no error: the answer is the same whatever the mail server does
    with pytest.raises(InvalidToken):
        auth.users.reset_password(mailer.token(), NEW)


def test_through_a_real_smtp_server(make_auth: AuthFactory) -> None:
    with smtp_server() as (port, received):
        auth = make_auth(
            mailer=SMTPMailer("127.0.0.1", port, security="none", timeout=5),
            mail=MailSettings(link_base_url="https://app.example/account"),
        )
        auth.users.register(EMAIL, PASSWORD)
        _request(auth)
    text, _ = received.bodies()
    assert "https://app.example/account/reset-password?token=" in text
    auth.users.reset_password(token_in(text), NEW)
    assert auth.sign_in(EMAIL, NEW, ip=IP).tokens is not None


# -- no enumeration by timing ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_known_and_unknown_addresses_take_the_same_time(
    make_auth: AuthFactory, tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    store: Store
    if kind == "postgres":
        store = postgres_store(request)
    else:
        store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "auth.db")
    # Every known request really mails (no flood limit to turn it into a decoy).
    auth = make_auth(
        store=store,
        mailer=Outbox(),
        journeys=JourneyPolicy(mails_per_address=10_000, mails_per_ip=10_000),
    )
    auth.users.register(EMAIL, PASSWORD)

    ratio = median_ratio(
        lambda: auth.users.request_password_reset(EMAIL, ip=IP),
        lambda: auth.users.request_password_reset("nobody@example.com", ip=IP),
        rounds=400,
        settle=auth.flush_mail,
    )

    print(f"reset timing, {kind}: unknown/known median ratio {ratio:.3f}")
    assert 0.8 <= ratio <= 1.25, ratio


def test_one_address_gets_a_bounded_number_of_messages(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    outbox = Outbox()
    auth = make_auth(mailer=outbox, journeys=JourneyPolicy(mails_per_address=3))
    auth.users.register(EMAIL, PASSWORD)
    for _ in range(5):
        _request(auth)
    assert len(outbox) == 3
    auth.passwordless.begin(EMAIL, ip=IP)  # sign-in links count towards the same limit
    auth.flush_mail()
    assert len(outbox) == 3
    clock.advance(hours=1)
    _request(auth)
    assert len(outbox) == 4
    auth.users.reset_password(outbox.token(), NEW)
