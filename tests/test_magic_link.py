"""Magic-link sign-in: the same answer for unknown addresses, the link signs in
once through the one completion point (MFA still applies; sessions.created and
users.active recorded exactly once), bad links are typed errors and record nothing."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest

from authsome import Authsome, InvalidToken, SMTPMailer, ValidationError
from authsome.mail import MailSettings
from authsome.onetime import JourneyPolicy
from authsome.stores import MemoryStore, SQLiteStore
from authsome.testing import Outbox, RecordingLedger, token_in
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.smtp_server import smtp_server
from tests.support.timing import median_ratio

EMAIL = "ann@example.com"
IP = "192.0.2.3"


def _begin(auth: Authsome, email: str = EMAIL, tenant: str = "default") -> None:
    assert auth.passwordless.begin(email, tenant=tenant, ip=IP) is None
    auth.flush_mail()


def test_the_link_signs_in_once_and_records_once(
    mail_auth: Authsome, outbox: Outbox, ledger: RecordingLedger
) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    _begin(mail_auth)
    assert "/sign-in?token=" in outbox.last(EMAIL).text
    ledger.clear()

    result = mail_auth.passwordless.complete(outbox.token())

    assert result.tokens is not None
    assert result.user.id == user.id
    assert result.user.email_verified_at is not None
    created = ledger.usage("authsome.sessions.created")
    active = ledger.usage("authsome.users.active")
    assert [c.ctx.event_id for c in created] == [result.tokens.session.id]
    assert [c.ctx.event_id for c in active] == [result.tokens.session.id]
    assert len(ledger.calls) == 2
    with pytest.raises(InvalidToken):
        mail_auth.passwordless.complete(outbox.token())
    assert len(ledger.calls) == 2


def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    mail_auth: Authsome, outbox: Outbox
) -> None:
    _begin(mail_auth, "nobody@example.com")
    assert len(outbox) == 0


def test_a_user_with_a_second_factor_still_needs_it(
    mail_auth: Authsome, outbox: Outbox, ledger: RecordingLedger, clock: FakeClock
) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    setup = mail_auth.mfa.begin_totp(user.id)
    mail_auth.mfa.confirm_totp(user.id, pyotp.TOTP(setup.secret).at(clock.now))
    clock.advance(seconds=30)
    _begin(mail_auth)
    ledger.clear()

    pending = mail_auth.passwordless.complete(outbox.token())
    assert pending.mfa_required
    assert pending.tokens is None
    assert pending.ticket is not None
    assert ledger.usage() == []

    done = mail_auth.mfa.verify(pending.ticket, pyotp.TOTP(setup.secret).at(clock.now))
    assert done.tokens is not None
    assert len(ledger.usage("authsome.sessions.created")) == 1
    assert len(ledger.usage("authsome.users.active")) == 1


def test_expired_other_tenant_and_wrong_purpose_links_are_refused(
    mail_auth: Authsome, outbox: Outbox, ledger: RecordingLedger, clock: FakeClock
) -> None:
    mail_auth.users.register(EMAIL, PASSWORD, tenant="acme")
    _begin(mail_auth, tenant="acme")
    token = outbox.token()
    ledger.clear()
    with pytest.raises(InvalidToken):
        mail_auth.passwordless.complete(token, tenant="evil")
    with pytest.raises(InvalidToken):
        mail_auth.users.reset_password(token, "a brand new passphrase", tenant="acme")
    clock.advance(minutes=15)
    with pytest.raises(InvalidToken):
        mail_auth.passwordless.complete(token, tenant="acme")
    assert ledger.calls == []


@pytest.mark.parametrize("token", ["", "x" * 129, "forged"])
def test_malformed_links_are_typed_errors(
    mail_auth: Authsome, ledger: RecordingLedger, token: str
) -> None:
    with pytest.raises((InvalidToken, ValidationError)):
        mail_auth.passwordless.complete(token)
    assert ledger.calls == []


def test_only_links_and_codes_are_offered(mail_auth: Authsome) -> None:
    with pytest.raises(ValidationError):
        mail_auth.passwordless.begin(EMAIL, method="sms")  # type: ignore[arg-type]


def test_through_a_real_smtp_server(make_auth: AuthFactory, ledger: RecordingLedger) -> None:
    with smtp_server() as (port, received):
        auth = make_auth(
            ledger=ledger,
            mailer=SMTPMailer("127.0.0.1", port, security="none", timeout=5),
            mail=MailSettings(link_base_url="https://app.example/account"),
        )
        auth.users.register(EMAIL, PASSWORD)
        _begin(auth)
    text, _ = received.bodies()
    assert "https://app.example/account/sign-in?token=" in text
    assert auth.passwordless.complete(token_in(text)).tokens is not None


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_known_and_unknown_addresses_take_the_same_time(
    make_auth: AuthFactory, tmp_path: Path, kind: str
) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "auth.db")
    # Every known request really mails (no flood limit to turn it into a decoy).
    auth = make_auth(
        store=store,
        mailer=Outbox(),
        journeys=JourneyPolicy(mails_per_address=10_000, mails_per_ip=10_000),
    )
    auth.users.register(EMAIL, PASSWORD)

    ratio = median_ratio(
        lambda: auth.passwordless.begin(EMAIL, ip=IP),
        lambda: auth.passwordless.begin("nobody@example.com", ip=IP),
        rounds=400,
        settle=auth.flush_mail,
    )

    print(f"magic link timing, {kind}: unknown/known median ratio {ratio:.3f}")
    assert 0.8 <= ratio <= 1.25, ratio
