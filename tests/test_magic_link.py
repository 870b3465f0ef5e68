"""Magic-link sign-in: the mail holds a link, unknown addresses get the same answer,
expired, other-tenant and other-purpose links and bad links are typed errors that
record nothing. What links and codes share is in ``test_passwordless_sign_in``."""

from __future__ import annotations

import pytest

from authsome import Authsome, InvalidToken, ValidationError
from authsome.testing import Outbox, RecordingLedger
from tests.conftest import PASSWORD, FakeClock

EMAIL = "ann@example.com"
IP = "192.0.2.3"


def _begin(auth: Authsome, email: str = EMAIL, tenant: str = "default") -> None:
    assert auth.passwordless.begin(email, tenant=tenant, ip=IP) is None
    auth.flush_mail()


def test_the_mail_holds_a_sign_in_link(mail_auth: Authsome, outbox: Outbox) -> None:
    mail_auth.users.register(EMAIL, PASSWORD)
    _begin(mail_auth)
    assert "/sign-in?token=" in outbox.last(EMAIL).text


def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    mail_auth: Authsome, outbox: Outbox
) -> None:
    _begin(mail_auth, "nobody@example.com")
    assert len(outbox) == 0


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
