"""E-mail change: the current password is needed to ask, the link goes to the new
address and nothing changes until it is followed; following it moves the account
atomically (a taken address is refused with nothing written), verifies the new
address, ends the old address's links and notifies the old address. One link is
used once, of two users racing for one address one wins, and no usage is
recorded."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from authsome import (
    AlreadyExists,
    Authsome,
    InvalidCredentials,
    InvalidToken,
    MailNotSent,
    NotFound,
    RateLimited,
    SMTPMailer,
    ThrottlePolicy,
    User,
    ValidationError,
)
from authsome._time import utcnow
from authsome.mail import MailMessage, MailSettings
from authsome.onetime import JourneyPolicy
from authsome.stores import MemoryStore, SQLiteStore, Store
from authsome.testing import Outbox, RecordingLedger, token_in
from tests.conftest import LINK_BASE, PASSWORD, AuthFactory, FakeClock
from tests.stores._processes import race_processes
from tests.support.race import race, race_to_use
from tests.support.smtp_server import smtp_server
from tests.support.stores import postgres_store

EMAIL = "ann@example.com"
NEW = "ann@new.example"
BOB = "bob@example.com"
IP = "192.0.2.7"


def _ask(auth: Authsome, user: User, new_email: str = NEW, password: str = PASSWORD) -> None:
    auth.users.request_email_change(user.id, new_email, current_password=password, ip=IP)


def _store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "postgres":
        return postgres_store(request)
    return MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "auth.db")


def _unchanged(auth: Authsome, user: User) -> None:
    assert auth.users.get(user.id) == user
    assert auth.users.find_by_email(user.email, tenant=user.tenant) == user


# -- the journey ---------------------------------------------------------------------------


def test_the_link_at_the_new_address_moves_the_account_and_the_old_one_is_told(
    mail_auth: Authsome, outbox: Outbox, ledger: RecordingLedger
) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    signed_in = mail_auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens
    assert signed_in is not None
    ledger.clear()

    _ask(mail_auth, user, "  Ann@NEW.example ")

    message = outbox.last()
    assert (message.to, message.kind) == (NEW, "change_email")
    assert f"{LINK_BASE}/confirm-email-change?token=" in message.text
    _unchanged(mail_auth, user)  # nothing changes before the link is followed

    changed = mail_auth.users.confirm_email_change(outbox.token(NEW))
    mail_auth.flush_mail()

    assert (changed.id, changed.email) == (user.id, NEW)
    assert changed.email_verified_at is not None
    assert mail_auth.users.find_by_email(NEW) == changed
    assert mail_auth.users.find_by_email(EMAIL) is None
    notice = outbox.last(EMAIL)
    assert notice.kind == "email_changed"
    assert EMAIL in notice.text and NEW in notice.text
    assert "token" not in notice.text and "http" not in notice.text
    assert ledger.calls == []
    assert mail_auth.sign_in(NEW, PASSWORD, ip=IP).tokens is not None
    with pytest.raises(InvalidCredentials):
        mail_auth.sign_in(EMAIL, PASSWORD, ip=IP)
    mail_auth.sessions.validate(signed_in.access_token)  # sessions stay signed in
    with pytest.raises(InvalidToken):
        mail_auth.users.confirm_email_change(outbox.token(NEW))  # used once


def test_through_a_real_smtp_server(make_auth: AuthFactory) -> None:
    with smtp_server() as (port, received):
        auth = make_auth(
            mailer=SMTPMailer("127.0.0.1", port, security="none", timeout=5),
            mail=MailSettings(link_base_url="https://app.example/account"),
        )
        user = auth.users.register(EMAIL, PASSWORD)
        _ask(auth, user)
        text, html = received.bodies(0)
        assert received.messages[0]["To"] == NEW
        assert "https://app.example/account/confirm-email-change?token=" in text
        assert token_in(text) in html

        auth.users.confirm_email_change(token_in(text))
        auth.flush_mail()

        notice, _ = received.bodies(1)
        assert received.messages[1]["To"] == EMAIL
        assert NEW in notice and "token=" not in notice
    assert auth.users.get(user.id).email == NEW


def test_a_wrong_password_sends_nothing_and_is_throttled(
    make_auth: AuthFactory, outbox: Outbox
) -> None:
    auth = make_auth(mailer=outbox, throttle=ThrottlePolicy(per_account_ip=3))
    user = auth.users.register(EMAIL, PASSWORD)
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            _ask(auth, user, password="not the password")
    with pytest.raises(RateLimited):
        _ask(auth, user)
    assert len(outbox) == 0
    _unchanged(auth, user)


def test_a_taken_address_gets_the_same_answer_and_no_mail(
    mail_auth: Authsome, outbox: Outbox
) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    mail_auth.users.register(BOB, PASSWORD)
    mail_auth.users.register(NEW, PASSWORD, tenant="acme")  # another tenant: no matter

    _ask(mail_auth, user, BOB)
    assert len(outbox) == 0

    _ask(mail_auth, user, NEW)
    assert outbox.last().to == NEW


def test_a_new_request_replaces_the_older_link(mail_auth: Authsome, outbox: Outbox) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    _ask(mail_auth, user, "first@example.com")
    first = outbox.token("first@example.com")
    _ask(mail_auth, user, "second@example.com")

    with pytest.raises(InvalidToken):
        mail_auth.users.confirm_email_change(first)
    assert mail_auth.users.confirm_email_change(outbox.token()).email == "second@example.com"


def test_links_sent_to_the_old_address_stop_working(mail_auth: Authsome, outbox: Outbox) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    mail_auth.users.request_password_reset(EMAIL, ip=IP)
    mail_auth.flush_mail()
    reset = outbox.token(EMAIL)
    _ask(mail_auth, user)

    mail_auth.users.confirm_email_change(outbox.token(NEW))

    with pytest.raises(InvalidToken):
        mail_auth.users.reset_password(reset, "a brand new passphrase")


def test_a_mailer_failure_is_typed_and_the_unsent_token_is_withdrawn(
    make_auth: AuthFactory,
) -> None:
    sent = Outbox()

    class FailingAfterKeeping:
        """A server that hangs up after taking the message: the link must not work."""

        def send(self, message: MailMessage) -> None:
            sent.send(message)
            raise OSError("the server hung up after DATA")

    auth = make_auth(mailer=FailingAfterKeeping())
    user = auth.users.register(EMAIL, PASSWORD)
    with pytest.raises(MailNotSent):
        _ask(auth, user)
    with pytest.raises(InvalidToken):
        auth.users.confirm_email_change(sent.token(NEW))
    _unchanged(auth, user)


# -- bad input and binding -------------------------------------------------------------------


def test_bad_requests_are_refused_before_anything_is_written(
    mail_auth: Authsome, outbox: Outbox
) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD)
    bad: list[tuple[type[Exception], dict[str, object]]] = [
        (ValidationError, {"new_email": "not an address"}),
        (ValidationError, {"new_email": "a" * 10_000 + "@example.com"}),
        (ValidationError, {"new_email": " ANN@example.com"}),  # the current one
        (ValidationError, {"current_password": ""}),
        (ValidationError, {"current_password": "x" * 100_000}),
        (TypeError, {"current_password": None}),
        (TypeError, {"new_email": None}),
        (ValidationError, {"ip": "x" * 1000}),
        (NotFound, {"user_id": "usr_nobody"}),
    ]
    for error, change in bad:
        arguments: dict[str, object] = {
            "user_id": user.id,
            "new_email": NEW,
            "current_password": PASSWORD,
            "ip": IP,
            **change,
        }
        with pytest.raises(error):
            mail_auth.users.request_email_change(**arguments)  # type: ignore[arg-type]
    assert len(outbox) == 0
    _unchanged(mail_auth, user)


def test_bad_tokens_are_refused_and_change_nothing(
    mail_auth: Authsome, outbox: Outbox, clock: FakeClock
) -> None:
    user = mail_auth.users.register(EMAIL, PASSWORD, tenant="acme")
    mail_auth.users.send_verification(user.id)
    other_purpose = outbox.token(EMAIL)
    _ask(mail_auth, user)
    token = outbox.token(NEW)

    for made_up in ("", "x" * 10_000):
        with pytest.raises(ValidationError):
            mail_auth.users.confirm_email_change(made_up, tenant="acme")
    other_last = "B" if token.endswith("A") else "A"
    with pytest.raises(InvalidToken):
        mail_auth.users.confirm_email_change(token[:-1] + other_last, tenant="acme")
    with pytest.raises(InvalidToken):
        mail_auth.users.confirm_email_change(other_purpose, tenant="acme")
    with pytest.raises(InvalidToken):
        mail_auth.users.confirm_email_change(token, tenant="default")  # another tenant
    with pytest.raises(InvalidToken):
        mail_auth.users.verify_email(token, tenant="acme")  # another purpose
    _unchanged(mail_auth, user)

    # None of that used the link up; it still works in its tenant, until it expires.
    assert mail_auth.users.confirm_email_change(token, tenant="acme").email == NEW
    _ask(mail_auth, mail_auth.users.get(user.id), "third@example.com")
    clock.advance(hours=24)
    with pytest.raises(InvalidToken):
        mail_auth.users.confirm_email_change(outbox.token(), tenant="acme")


def test_an_address_taken_meanwhile_is_refused_and_nothing_is_written(
    make_auth: AuthFactory, tmp_path: Path
) -> None:
    outbox = Outbox()
    auth = make_auth(store=SQLiteStore(tmp_path / "auth.db"), mailer=outbox)
    ann = auth.users.register(EMAIL, PASSWORD)
    _ask(auth, ann)
    token = outbox.token(NEW)
    bob = auth.users.register(NEW, PASSWORD)

    with pytest.raises(AlreadyExists):
        auth.users.confirm_email_change(token)
    _unchanged(auth, ann)

    # The link was not used up: once the address is free again it works.
    _ask(auth, bob, BOB)
    auth.users.confirm_email_change(outbox.token(BOB))
    assert auth.users.confirm_email_change(token).email == NEW


# -- races ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_eight_threads_use_one_link_exactly_once(
    make_auth: AuthFactory,
    ledger: RecordingLedger,
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    outbox = Outbox()
    auth = make_auth(store=_store(kind, tmp_path, request), mailer=outbox, ledger=ledger)
    user = auth.users.register(EMAIL, PASSWORD)
    _ask(auth, user)
    token = outbox.token(NEW)
    ledger.clear()

    outcomes = race_to_use(lambda: auth.users.confirm_email_change(token))
    auth.flush_mail()

    assert sorted(outcomes) == [False] * 7 + [True]
    assert auth.users.get(user.id).email == NEW
    assert len([m for m in outbox.messages if m.kind == "email_changed"]) == 1
    assert ledger.calls == []


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_two_users_racing_for_one_address_one_wins(
    make_auth: AuthFactory, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    outbox = Outbox()
    auth = make_auth(store=_store(kind, tmp_path, request), mailer=outbox)
    users = [auth.users.register(EMAIL, PASSWORD), auth.users.register(BOB, PASSWORD)]
    tokens = []
    for user in users:
        _ask(auth, user)
        tokens.append(outbox.token(NEW))

    def attempt(token: str) -> str:
        try:
            return auth.users.confirm_email_change(token).id
        except AlreadyExists:
            return "taken"

    outcomes = race(attempt, tokens)

    winner = auth.users.find_by_email(NEW)
    assert winner is not None
    assert sorted(outcomes) == sorted([winner.id, "taken"])
    loser = next(user for user in users if user.id != winner.id)
    assert auth.users.get(loser.id) == loser


_CHILD = textwrap.dedent(
    """
    import sys

    from authsome import Authsome, InvalidToken, PasswordHashing
    from authsome.stores import PostgresStore
    from authsome.testing import Outbox

    dsn, schema, token = sys.argv[1:4]
    store = PostgresStore(dsn, schema=schema, max_size=1)
    auth = Authsome(
        store=store,
        mailer=Outbox(),
        password_hashing=PasswordHashing.fast_insecure_for_tests(),
    )
    print("ready", flush=True)
    sys.stdin.readline()  # wait for "go", so that the processes race
    try:
        auth.users.confirm_email_change(token)
        result = "changed"
    except InvalidToken:
        result = "invalid"
    auth.close()
    print(result, flush=True)
    """
)


def test_four_processes_use_one_link_exactly_once_on_postgresql(
    make_auth: AuthFactory, request: pytest.FixtureRequest, pg_dsn: str, pg_schema: str
) -> None:
    outbox = Outbox()
    # The children use the real clock, so the link is made with it too.
    auth = make_auth(store=postgres_store(request), mailer=outbox, clock=utcnow)
    user = auth.users.register(EMAIL, PASSWORD)
    _ask(auth, user)
    token = outbox.token(NEW)

    results = race_processes(_CHILD, [[pg_dsn, pg_schema, token]] * 4, timeout=120)

    assert sorted(results) == ["changed"] + ["invalid"] * 3
    assert auth.users.get(user.id).email == NEW


def test_lifetime_is_configurable(make_auth: AuthFactory, clock: FakeClock) -> None:
    outbox = Outbox()
    auth = make_auth(mailer=outbox, journeys=JourneyPolicy(email_change_ttl=timedelta(hours=1)))
    user = auth.users.register(EMAIL, PASSWORD)
    _ask(auth, user)
    assert "60 minutes" in outbox.last().text
    clock.advance(minutes=61)
    with pytest.raises(InvalidToken):
        auth.users.confirm_email_change(outbox.token())
    with pytest.raises(ValidationError):
        JourneyPolicy(email_change_ttl=timedelta(days=8))
