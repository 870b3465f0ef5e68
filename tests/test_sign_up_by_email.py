"""Sign-up on first use: with JourneyPolicy(sign_up_by_email=True) a passwordless
sign-in begun for an address without an account mails a link or code that creates
the account (address verified) when used, recording authsome.users.created once;
begin still answers the same, in the same time, for known and unknown addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from authsome import Authsome, InvalidCredentials, InvalidToken
from authsome.mail import MailSettings
from authsome.models import SignIn
from authsome.onetime import JourneyPolicy
from authsome.stores import MemoryStore, SQLiteStore
from authsome.testing import Outbox, RecordingLedger, code_in, token_in
from tests.conftest import LINK_BASE, PASSWORD, AuthFactory, FakeClock
from tests.support.race import race_to_use

EMAIL = "new@example.com"
IP = "192.0.2.3"
SIGN_UP = JourneyPolicy(sign_up_by_email=True)


@pytest.fixture
def signup_auth(make_auth: AuthFactory, outbox: Outbox, ledger: RecordingLedger) -> Authsome:
    return make_auth(
        ledger=ledger,
        mailer=outbox,
        mail=MailSettings(link_base_url=LINK_BASE),
        journeys=SIGN_UP,
    )


def _complete(auth: Authsome, outbox: Outbox, method: str, tenant: str = "default") -> SignIn:
    if method == "link":
        return auth.passwordless.complete(outbox.token(), tenant=tenant)
    return auth.passwordless.complete(outbox.code(), email=EMAIL, tenant=tenant, ip=IP)


@pytest.mark.parametrize("method", ["link", "code"])
def test_first_use_creates_the_account_and_records_it_once(
    signup_auth: Authsome, outbox: Outbox, ledger: RecordingLedger, method: str
) -> None:
    signup_auth.passwordless.begin(EMAIL, ip=IP, method=method)  # type: ignore[arg-type]
    signup_auth.flush_mail()
    assert signup_auth.users.find_by_email(EMAIL) is None  # nothing until it is used

    result = _complete(signup_auth, outbox, method)

    assert result.tokens is not None
    user = signup_auth.users.find_by_email(EMAIL)
    assert user is not None and user.id == result.user.id
    assert user.email_verified_at is not None
    assert [c.ctx.event_id for c in ledger.usage("authsome.users.created")] == [user.id]
    assert [c.ctx.event_id for c in ledger.usage("authsome.sessions.created")] == [
        result.tokens.session.id
    ]
    assert len(ledger.usage("authsome.users.active")) == 1
    assert len(ledger.calls) == 3
    with pytest.raises(InvalidToken):
        _complete(signup_auth, outbox, method)
    assert len(ledger.calls) == 3


def test_off_by_default(mail_auth: Authsome, outbox: Outbox) -> None:
    for method in ("link", "code"):
        mail_auth.passwordless.begin(EMAIL, ip=IP, method=method)  # type: ignore[arg-type]
    mail_auth.flush_mail()
    assert len(outbox) == 0


def test_a_known_address_just_signs_in(
    signup_auth: Authsome, outbox: Outbox, ledger: RecordingLedger
) -> None:
    user = signup_auth.users.register(EMAIL, PASSWORD)
    ledger.clear()
    signup_auth.passwordless.begin(EMAIL, ip=IP)
    signup_auth.flush_mail()
    assert signup_auth.passwordless.complete(outbox.token()).user.id == user.id
    assert ledger.usage("authsome.users.created") == []


def test_the_new_account_has_no_password_until_it_is_reset(
    signup_auth: Authsome, outbox: Outbox
) -> None:
    signup_auth.passwordless.begin(EMAIL, ip=IP)
    signup_auth.flush_mail()
    signup_auth.passwordless.complete(outbox.token())
    for guess in ("", "!no-password", PASSWORD):
        with pytest.raises((InvalidCredentials, ValueError)):
            signup_auth.sign_in(EMAIL, guess, ip=IP)
    signup_auth.users.request_password_reset(EMAIL, ip=IP)
    signup_auth.flush_mail()
    signup_auth.users.reset_password(outbox.token(), "a brand new passphrase")
    assert signup_auth.sign_in(EMAIL, "a brand new passphrase", ip=IP).tokens is not None


def test_an_account_registered_meanwhile_is_signed_in_not_created_again(
    signup_auth: Authsome, outbox: Outbox, ledger: RecordingLedger
) -> None:
    signup_auth.passwordless.begin(EMAIL, ip=IP)
    signup_auth.flush_mail()
    user = signup_auth.users.register(EMAIL, PASSWORD)
    ledger.clear()
    result = signup_auth.passwordless.complete(outbox.token())
    assert result.user.id == user.id
    assert result.user.email_verified_at is not None
    assert ledger.usage("authsome.users.created") == []


def test_a_sign_up_token_is_bound_to_its_tenant(
    signup_auth: Authsome, outbox: Outbox, ledger: RecordingLedger
) -> None:
    signup_auth.passwordless.begin(EMAIL, ip=IP, tenant="acme")
    signup_auth.passwordless.begin(EMAIL, ip=IP, tenant="acme", method="code")
    signup_auth.flush_mail()
    link, code = (token_in(outbox.messages[0].text), code_in(outbox.messages[1].text))
    with pytest.raises(InvalidToken):
        signup_auth.passwordless.complete(link, tenant="other")
    with pytest.raises(InvalidToken):
        signup_auth.passwordless.complete(code, email=EMAIL, tenant="other", ip=IP)
    assert signup_auth.users.find_by_email(EMAIL, tenant="other") is None
    assert ledger.calls == []


def test_failed_and_expired_sign_ups_create_nothing(
    signup_auth: Authsome, outbox: Outbox, ledger: RecordingLedger, clock: FakeClock
) -> None:
    signup_auth.passwordless.begin(EMAIL, ip=IP, method="code")
    signup_auth.flush_mail()
    code = outbox.code()
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    with pytest.raises(InvalidToken):
        signup_auth.passwordless.complete(wrong, email=EMAIL, ip=IP)
    clock.advance(minutes=15)
    with pytest.raises(InvalidToken):
        signup_auth.passwordless.complete(code, email=EMAIL, ip=IP)
    assert signup_auth.users.find_by_email(EMAIL) is None
    assert ledger.calls == []


def test_a_new_sign_up_link_replaces_the_previous_one(
    signup_auth: Authsome, outbox: Outbox
) -> None:
    signup_auth.passwordless.begin(EMAIL, ip=IP)
    signup_auth.flush_mail()
    first = outbox.token()
    signup_auth.passwordless.begin(EMAIL, ip=IP)
    signup_auth.flush_mail()
    with pytest.raises(InvalidToken):
        signup_auth.passwordless.complete(first)
    assert signup_auth.passwordless.complete(outbox.token()).tokens is not None


def test_sign_up_mails_are_limited_per_address(signup_auth: Authsome, outbox: Outbox) -> None:
    for _ in range(8):
        signup_auth.passwordless.begin(EMAIL, ip=IP)
    signup_auth.flush_mail()
    assert len(outbox) == JourneyPolicy().mails_per_address


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_eight_threads_sign_up_once(
    make_auth: AuthFactory, ledger: RecordingLedger, tmp_path: Path, kind: str
) -> None:
    outbox = Outbox()
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "auth.db")
    auth = make_auth(store=store, mailer=outbox, ledger=ledger, journeys=SIGN_UP)
    auth.passwordless.begin(EMAIL, ip=IP)
    auth.flush_mail()
    token = outbox.token()

    assert sorted(race_to_use(lambda: auth.passwordless.complete(token))) == [False] * 7 + [True]
    assert len(ledger.usage("authsome.users.created")) == 1
    assert len(ledger.usage("authsome.sessions.created")) == 1


def test_a_sign_up_link_stops_working_when_sign_up_is_turned_off(
    make_auth: AuthFactory, ledger: RecordingLedger
) -> None:
    outbox, store = Outbox(), MemoryStore()
    before = make_auth(store=store, mailer=outbox, journeys=SIGN_UP)
    before.passwordless.begin(EMAIL, ip=IP)
    before.flush_mail()
    after = make_auth(store=store, mailer=outbox, ledger=ledger)
    with pytest.raises(InvalidToken):
        after.passwordless.complete(outbox.token())
    assert after.users.find_by_email(EMAIL) is None
    assert ledger.calls == []
