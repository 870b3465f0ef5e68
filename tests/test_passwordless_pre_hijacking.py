"""Account pre-hijacking through passwordless sign-in is refused: someone who
registers another person's address (never proving it) must not keep a way in once
the address's owner signs in with a link or code mailed there. Proving the address
ends what the registrant set up: the password stops working, and their sessions,
passkeys and API keys end; the owner sets a password through a reset if they want
one."""

from __future__ import annotations

import pytest

from authsome import Authsome, InvalidCredentials, InvalidToken
from authsome.mail import MailSettings
from authsome.onetime import JourneyPolicy
from authsome.testing import Outbox
from tests.conftest import LINK_BASE, PASSWORD, AuthFactory
from tests.support.webauthn_authenticator import SoftwareAuthenticator

VICTIM = "victim@example.com"
IP = "192.0.2.3"


def _squatted(auth: Authsome) -> str:
    """The attacker registers the victim's address and keeps a session; the access
    token of that session."""
    auth.users.register(VICTIM, PASSWORD)
    squatter = auth.sign_in(VICTIM, PASSWORD, ip=IP)
    assert squatter.tokens is not None
    return squatter.tokens.access_token


@pytest.mark.parametrize("method", ["link", "code"])
def test_the_owners_passwordless_sign_in_ends_the_registrants_password_and_sessions(
    mail_auth: Authsome, outbox: Outbox, method: str
) -> None:
    squatter_session = _squatted(mail_auth)
    mail_auth.passwordless.begin(VICTIM, ip=IP, method=method)  # type: ignore[arg-type]
    mail_auth.flush_mail()
    if method == "link":
        owner = mail_auth.passwordless.complete(outbox.token(VICTIM))
    else:
        owner = mail_auth.passwordless.complete(outbox.code(VICTIM), email=VICTIM, ip=IP)

    assert owner.tokens is not None and owner.user.email_verified_at is not None
    with pytest.raises(InvalidCredentials):
        mail_auth.sign_in(VICTIM, PASSWORD, ip=IP)
    with pytest.raises(InvalidToken):
        mail_auth.sessions.validate(squatter_session)
    assert mail_auth.sessions.validate(owner.tokens.access_token).user_id == owner.user.id


def test_a_sign_up_link_used_after_someone_registered_the_address_ends_their_password(
    make_auth: AuthFactory,
) -> None:
    outbox = Outbox()
    auth = make_auth(
        mailer=outbox,
        mail=MailSettings(link_base_url=LINK_BASE),
        journeys=JourneyPolicy(sign_up_by_email=True),
    )
    auth.passwordless.begin(VICTIM, ip=IP)  # no account yet: a sign-up link
    auth.flush_mail()
    squatter_session = _squatted(auth)  # registered meanwhile, by someone else

    owner = auth.passwordless.complete(outbox.token(VICTIM))

    assert owner.tokens is not None
    with pytest.raises(InvalidCredentials):
        auth.sign_in(VICTIM, PASSWORD, ip=IP)
    with pytest.raises(InvalidToken):
        auth.sessions.validate(squatter_session)


def test_a_verified_users_password_and_other_sessions_stay(
    mail_auth: Authsome, outbox: Outbox
) -> None:
    """The owner proved the address before: nothing to take back from anyone."""
    user = mail_auth.users.register(VICTIM, PASSWORD)
    mail_auth.users.send_verification(user.id)
    mail_auth.flush_mail()
    mail_auth.users.verify_email(outbox.token(VICTIM))
    other = mail_auth.sign_in(VICTIM, PASSWORD, ip=IP)
    assert other.tokens is not None
    mail_auth.passwordless.begin(VICTIM, ip=IP)
    mail_auth.flush_mail()

    mail_auth.passwordless.complete(outbox.token(VICTIM))

    assert mail_auth.sign_in(VICTIM, PASSWORD, ip=IP).tokens is not None
    assert mail_auth.sessions.validate(other.tokens.access_token).user_id == user.id


def test_the_registrants_passkeys_and_api_keys_end_too(mail_auth: Authsome, outbox: Outbox) -> None:
    rp = {"rp_id": "example.com", "origin": "https://example.com"}
    squatter = mail_auth.users.register(VICTIM, PASSWORD)
    options = mail_auth.passkeys.begin_registration(squatter.id, rp_name="Example", **rp)
    device = SoftwareAuthenticator()
    mail_auth.passkeys.finish_registration(
        squatter.id, device.register(options, origin=rp["origin"])
    )
    api_key = mail_auth.api_keys.create(squatter.id, "squatter's")
    mail_auth.passwordless.begin(VICTIM, ip=IP)
    mail_auth.flush_mail()

    mail_auth.passwordless.complete(outbox.token(VICTIM))

    assert mail_auth.passkeys.list_for_user(squatter.id) == []
    challenge = mail_auth.passkeys.begin_authentication(**rp)
    with pytest.raises(InvalidCredentials):
        mail_auth.passkeys.finish_authentication(
            device.authenticate(challenge, origin=rp["origin"]), ip=IP
        )
    with pytest.raises(InvalidToken):
        mail_auth.api_keys.validate(api_key.secret)


def test_a_password_reset_that_first_proves_the_address_ends_the_registrants_keys(
    mail_auth: Authsome, outbox: Outbox
) -> None:
    """The owner finds the address taken and resets its password: the passkeys and
    API keys the registrant set up end with the old password and sessions."""
    rp = {"rp_id": "example.com", "origin": "https://example.com"}
    squatter = mail_auth.users.register(VICTIM, PASSWORD)
    options = mail_auth.passkeys.begin_registration(squatter.id, rp_name="Example", **rp)
    device = SoftwareAuthenticator()
    mail_auth.passkeys.finish_registration(
        squatter.id, device.register(options, origin=rp["origin"])
    )
    api_key = mail_auth.api_keys.create(squatter.id, "squatter's")
    mail_auth.users.request_password_reset(VICTIM, ip=IP)
    mail_auth.flush_mail()

    mail_auth.users.reset_password(outbox.token(VICTIM), "the owner's new password 7")

    assert mail_auth.passkeys.list_for_user(squatter.id) == []
    with pytest.raises(InvalidToken):
        mail_auth.api_keys.validate(api_key.secret)


def test_a_reset_of_a_verified_account_keeps_its_passkeys_and_api_keys(
    mail_auth: Authsome, outbox: Outbox
) -> None:
    rp = {"rp_id": "example.com", "origin": "https://example.com"}
    user = mail_auth.users.register(VICTIM, PASSWORD)
    mail_auth.users.send_verification(user.id)
    mail_auth.flush_mail()
    mail_auth.users.verify_email(outbox.token(VICTIM))
    options = mail_auth.passkeys.begin_registration(user.id, rp_name="Example", **rp)
    device = SoftwareAuthenticator()
    mail_auth.passkeys.finish_registration(user.id, device.register(options, origin=rp["origin"]))
    api_key = mail_auth.api_keys.create(user.id, "mine")
    mail_auth.users.request_password_reset(VICTIM, ip=IP)
    mail_auth.flush_mail()

    mail_auth.users.reset_password(outbox.token(VICTIM), "the owner's new password 7")

    assert len(mail_auth.passkeys.list_for_user(user.id)) == 1
    assert mail_auth.api_keys.validate(api_key.secret).id == api_key.key.id
