"""One client cannot make the application mail many addresses: requests that mail an
address without proof of its owner (password resets, sign-in links and codes,
e-mail sign-up) send at most ``JourneyPolicy.mails_per_ip`` messages per
``mail_window`` on behalf of one client address, whichever addresses they name.
Later requests get the same answer and send nothing."""

from __future__ import annotations

import pytest

from authsome import ValidationError
from authsome.mail import MailSettings
from authsome.onetime import JourneyPolicy
from authsome.testing import Outbox
from tests.conftest import LINK_BASE, AuthFactory, FakeClock

IP = "192.0.2.9"
LIMIT = 3


def _victims(n: int) -> list[str]:
    return [f"victim{i}@example.com" for i in range(n)]


def test_sign_up_mail_to_many_addresses_from_one_client_stops_at_the_limit(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    outbox = Outbox()
    auth = make_auth(
        mailer=outbox,
        mail=MailSettings(link_base_url=LINK_BASE),
        journeys=JourneyPolicy(sign_up_by_email=True, mails_per_ip=LIMIT),
    )
    for address in _victims(LIMIT + 4):
        assert auth.passwordless.begin(address, ip=IP, method="code") is None
    auth.flush_mail()
    assert len(outbox) == LIMIT

    auth.passwordless.begin("other@example.com", ip="192.0.2.10")  # another client
    auth.flush_mail()
    assert len(outbox) == LIMIT + 1

    clock.advance(hours=1)  # the window passed
    auth.passwordless.begin("late@example.com", ip=IP)
    auth.flush_mail()
    assert len(outbox) == LIMIT + 2


def test_password_resets_for_many_accounts_from_one_client_stop_at_the_limit(
    make_auth: AuthFactory,
) -> None:
    outbox = Outbox()
    auth = make_auth(
        mailer=outbox,
        mail=MailSettings(link_base_url=LINK_BASE),
        journeys=JourneyPolicy(mails_per_ip=LIMIT),
    )
    victims = _victims(LIMIT + 2)
    for address in victims:
        auth.users.register(address, "a long enough password 1")
    for address in victims:
        auth.users.request_password_reset(address, ip=IP)
    auth.flush_mail()
    assert len(outbox) == LIMIT


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "5"])
def test_a_bad_mails_per_ip_is_refused(bad: object) -> None:
    with pytest.raises(ValidationError):
        JourneyPolicy(mails_per_ip=bad)  # type: ignore[arg-type]
