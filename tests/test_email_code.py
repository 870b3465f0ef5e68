"""Sign-in by an e-mail code: it is bound to its address and tenant, survives 5
attempts (also when they race), is throttled like a password, and every bad input is
a typed error that writes and records nothing. What links and codes share is in
``test_passwordless_sign_in``."""

from __future__ import annotations

import hashlib
import re
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authsome import (
    Authsome,
    InvalidToken,
    RateLimited,
    SMTPMailer,
    ThrottlePolicy,
    ValidationError,
)
from authsome.onetime import JourneyPolicy
from authsome.stores import MemoryStore, PostgresStore, SQLiteStore, Store
from authsome.testing import Outbox, RecordingLedger, code_in
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.stores._processes import race_processes
from tests.support.pgschema import drop_schema
from tests.support.race import race, race_to_use
from tests.support.smtp_server import smtp_server
from tests.support.stores import postgres_store
from tests.support.timing import median_ratio

EMAIL = "ann@example.com"
IP = "192.0.2.3"
# Races and guess counts measure the code's own limit, not the sign-in throttle's.
LOOSE = ThrottlePolicy(per_account_ip=1000, per_account=1000, per_ip=1000)


def _begin(auth: Authsome, email: str = EMAIL, tenant: str = "default") -> None:
    assert auth.passwordless.begin(email, tenant=tenant, ip=IP, method="code") is None
    auth.flush_mail()


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def test_the_mail_holds_a_six_digit_code_and_no_link(mail_auth: Authsome, outbox: Outbox) -> None:
    mail_auth.users.register(EMAIL, PASSWORD)
    _begin(mail_auth)
    message = outbox.last(EMAIL)
    assert message.kind == "email_code"
    assert "token=" not in message.text
    assert re.fullmatch(r"[0-9]{6}", outbox.code())


def test_the_address_is_normalized_and_spaces_around_the_code_are_dropped(
    mail_auth: Authsome, outbox: Outbox
) -> None:
    mail_auth.users.register(EMAIL, PASSWORD)
    _begin(mail_auth, " Ann@Example.COM ")
    done = mail_auth.passwordless.complete(f" {outbox.code()} ", email="ANN@example.com", ip=IP)
    assert done.tokens is not None


@pytest.mark.parametrize("length", [6, 7, 8])
def test_the_length_is_configurable(make_auth: AuthFactory, length: int) -> None:
    outbox = Outbox()
    auth = make_auth(mailer=outbox, journeys=JourneyPolicy(email_code_length=length))
    auth.users.register(EMAIL, PASSWORD)
    _begin(auth)
    assert len(outbox.code()) == length
    assert auth.passwordless.complete(outbox.code(), email=EMAIL).tokens is not None


@pytest.mark.parametrize("length", [5, 9, True, "6"])
def test_other_lengths_are_refused(length: object) -> None:
    with pytest.raises(ValidationError):
        JourneyPolicy(email_code_length=length)  # type: ignore[arg-type]


def test_codes_are_uniform_digits(make_auth: AuthFactory) -> None:
    outbox = Outbox()
    auth = make_auth(
        mailer=outbox, journeys=JourneyPolicy(mails_per_address=10_000, mails_per_ip=10_000)
    )
    auth.users.register(EMAIL, PASSWORD)
    digits: list[str] = []
    for _ in range(300):
        _begin(auth)
        digits.extend(outbox.code())
    counts = [digits.count(str(d)) for d in range(10)]
    # 1800 digits, 180 expected each: a chi-square over 9 degrees of freedom above
    # 40 happens once in 10**5 runs of a uniform source.
    chi2 = sum((c - 180) ** 2 / 180 for c in counts)
    assert chi2 < 40, counts


def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    mail_auth: Authsome, outbox: Outbox, ledger: RecordingLedger
) -> None:
    _begin(mail_auth, "nobody@example.com")
    assert len(outbox) == 0
    with pytest.raises(InvalidToken):
        mail_auth.passwordless.complete("123456", email="nobody@example.com", ip=IP)
    assert ledger.calls == []


def test_five_wrong_codes_kill_the_code(make_auth: AuthFactory, ledger: RecordingLedger) -> None:
    outbox = Outbox()
    auth = make_auth(mailer=outbox, ledger=ledger, throttle=LOOSE)
    auth.users.register(EMAIL, PASSWORD)
    _begin(auth)
    code = outbox.code()
    ledger.clear()
    for _ in range(5):
        with pytest.raises(InvalidToken):
            auth.passwordless.complete(_wrong(code), email=EMAIL, ip=IP)
    with pytest.raises(InvalidToken):
        auth.passwordless.complete(code, email=EMAIL, ip=IP)
    assert ledger.calls == []

    _begin(auth)  # a new code starts with 5 attempts again
    assert auth.passwordless.complete(outbox.code(), email=EMAIL, ip=IP).tokens is not None


def test_a_new_code_replaces_the_previous_one(mail_auth: Authsome, outbox: Outbox) -> None:
    mail_auth.users.register(EMAIL, PASSWORD)
    _begin(mail_auth)
    first = outbox.code()
    _begin(mail_auth)
    second = outbox.code()
    if first != second:
        with pytest.raises(InvalidToken):
            mail_auth.passwordless.complete(first, email=EMAIL, ip=IP)
    assert mail_auth.passwordless.complete(second, email=EMAIL, ip=IP).tokens is not None


def test_wrong_codes_are_throttled_like_passwords(mail_auth: Authsome, outbox: Outbox) -> None:
    mail_auth.users.register(EMAIL, PASSWORD)
    for _ in range(5):  # ThrottlePolicy.per_account_ip: five failures from one address
        _begin(mail_auth)
        with pytest.raises(InvalidToken):
            mail_auth.passwordless.complete(_wrong(outbox.code()), email=EMAIL, ip=IP)
    _begin(mail_auth)
    with pytest.raises(RateLimited):
        mail_auth.passwordless.complete(outbox.code(), email=EMAIL, ip=IP)
    # The refused attempt did not cost the code an attempt, nor the user a sign-in
    # from elsewhere.
    other = mail_auth.passwordless.complete(outbox.code(), email=EMAIL, ip="198.51.100.7")
    assert other.tokens is not None


def test_a_right_code_gives_back_its_throttle_hit(make_auth: AuthFactory) -> None:
    outbox = Outbox()
    auth = make_auth(mailer=outbox, journeys=JourneyPolicy(mails_per_address=100))
    auth.users.register(EMAIL, PASSWORD)
    for _ in range(10):  # twice the per-address limit, every one right
        _begin(auth)
        assert auth.passwordless.complete(outbox.code(), email=EMAIL, ip=IP).tokens


def test_expired_other_tenant_other_address_and_wrong_purpose_codes_are_refused(
    mail_auth: Authsome, outbox: Outbox, ledger: RecordingLedger, clock: FakeClock
) -> None:
    mail_auth.users.register(EMAIL, PASSWORD, tenant="acme")
    mail_auth.users.register("bob@example.com", PASSWORD, tenant="acme")
    _begin(mail_auth, tenant="acme")
    code = outbox.code()
    ledger.clear()
    with pytest.raises(InvalidToken):
        mail_auth.passwordless.complete(code, email=EMAIL, tenant="evil", ip=IP)
    with pytest.raises(InvalidToken):
        mail_auth.passwordless.complete(code, email="bob@example.com", tenant="acme", ip=IP)
    with pytest.raises((InvalidToken, ValidationError)):
        mail_auth.passwordless.complete(code, tenant="acme")  # a code is no link
    with pytest.raises((InvalidToken, ValidationError)):
        mail_auth.users.reset_password(code, "a brand new passphrase", tenant="acme")
    mail_auth.passwordless.begin(EMAIL, tenant="acme", ip=IP)  # a link, not a code
    mail_auth.flush_mail()
    with pytest.raises(ValidationError):
        mail_auth.passwordless.complete(outbox.token(), email=EMAIL, tenant="acme", ip=IP)
    clock.advance(minutes=15)
    with pytest.raises(InvalidToken):
        mail_auth.passwordless.complete(code, email=EMAIL, tenant="acme", ip=IP)
    assert ledger.calls == []


@pytest.mark.parametrize(
    "code",
    ["", "12345", "123456789", "12a456", "١٢٣٤٥٦", "1" * 100_000, "12 3456"],
)
def test_malformed_codes_are_typed_errors_that_count_nothing(
    mail_auth: Authsome, outbox: Outbox, ledger: RecordingLedger, code: object
) -> None:
    mail_auth.users.register(EMAIL, PASSWORD)
    _begin(mail_auth)
    ledger.clear()
    for _ in range(6):  # more than the code's attempts and the per-address limit
        with pytest.raises(ValidationError):
            mail_auth.passwordless.complete(code, email=EMAIL, ip=IP)  # type: ignore[arg-type]
    assert ledger.calls == []
    assert mail_auth.passwordless.complete(outbox.code(), email=EMAIL, ip=IP).tokens


@pytest.mark.parametrize("code", [None, 123456, b"123456"])
def test_a_code_of_another_type_is_a_type_error(mail_auth: Authsome, code: object) -> None:
    with pytest.raises(TypeError):
        mail_auth.passwordless.complete(code, email=EMAIL, ip=IP)  # type: ignore[arg-type]


@pytest.mark.parametrize("email", ["", "not an address", "a" * 10_000 + "@example.com"])
def test_a_bad_address_is_a_typed_error(mail_auth: Authsome, email: str) -> None:
    with pytest.raises(ValidationError):
        mail_auth.passwordless.begin(email, method="code")
    with pytest.raises(ValidationError):
        mail_auth.passwordless.complete("123456", email=email)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_no_made_up_code_signs_in(make_auth: AuthFactory, text: str) -> None:
    outbox, ledger = Outbox(), RecordingLedger()
    auth = make_auth(mailer=outbox, ledger=ledger, throttle=LOOSE)
    auth.users.register(EMAIL, PASSWORD)
    _begin(auth)
    ledger.clear()
    if text.strip() == outbox.code():
        return
    with pytest.raises((InvalidToken, ValidationError)):
        auth.passwordless.complete(text, email=EMAIL, ip=IP)
    assert ledger.calls == []


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def mailed(
    request: pytest.FixtureRequest,
    make_auth: AuthFactory,
    ledger: RecordingLedger,
    tmp_path: Path,
) -> tuple[Authsome, str]:
    """An engine on a store of each kind and the code it mailed to ``EMAIL``; the
    ledger is cleared after the set-up."""
    store: Store
    if request.param == "memory":
        store = MemoryStore()
    elif request.param == "sqlite":
        store = SQLiteStore(tmp_path / "auth.db")
    else:
        store = postgres_store(request)
    outbox = Outbox()
    auth = make_auth(store=store, mailer=outbox, ledger=ledger, throttle=LOOSE)
    auth.users.register(EMAIL, PASSWORD)
    _begin(auth)
    code = outbox.code()
    ledger.clear()
    return auth, code


def test_eight_threads_use_one_code_exactly_once(
    mailed: tuple[Authsome, str], ledger: RecordingLedger
) -> None:
    auth, code = mailed

    outcomes = race_to_use(lambda: auth.passwordless.complete(code, email=EMAIL, ip=IP))

    assert sorted(outcomes) == [False] * 7 + [True]
    assert len(ledger.usage("authsome.sessions.created")) == 1
    assert len(ledger.usage("authsome.users.active")) == 1


def test_eight_racing_wrong_guesses_count_at_most_five(
    mailed: tuple[Authsome, str], ledger: RecordingLedger
) -> None:
    auth, code = mailed

    def guess(_: int) -> str:
        try:
            auth.passwordless.complete(_wrong(code), email=EMAIL, ip=IP)
        except InvalidToken:
            return "refused"
        return "signed in"

    assert race(guess, range(8)) == ["refused"] * 8
    with pytest.raises(InvalidToken):
        auth.passwordless.complete(code, email=EMAIL, ip=IP)
    assert ledger.calls == []


def test_a_code_the_server_refused_does_not_work(
    make_auth: AuthFactory, ledger: RecordingLedger
) -> None:
    with smtp_server(refuse=True) as (port, received):
        auth = make_auth(
            ledger=ledger, mailer=SMTPMailer("127.0.0.1", port, security="none", timeout=5)
        )
        auth.users.register(EMAIL, PASSWORD)
        ledger.clear()
        _begin(auth)
    text, _ = received.bodies(refused=True)
    with pytest.raises(InvalidToken):
        auth.passwordless.complete(code_in(text), email=EMAIL, ip=IP)
    assert ledger.calls == []


def test_only_a_keyed_hash_of_the_code_is_stored(make_auth: AuthFactory) -> None:
    outbox = Outbox()
    store = SQLiteStore(":memory:")
    auth = make_auth(store=store, mailer=outbox)
    auth.users.register(EMAIL, PASSWORD)
    _begin(auth)
    code = outbox.code()
    for plain in (code, f"default\x00{EMAIL}\x00{code}"):
        assert store.delete_one_time_token(plain) is False
        assert store.delete_one_time_token(hashlib.sha256(plain.encode()).hexdigest()) is False
    assert auth.passwordless.complete(code, email=EMAIL).tokens is not None


def test_a_code_lives_for_its_ttl(make_auth: AuthFactory, clock: FakeClock) -> None:
    outbox = Outbox()
    auth = make_auth(mailer=outbox, journeys=JourneyPolicy(email_code_ttl=timedelta(minutes=5)))
    auth.users.register(EMAIL, PASSWORD)
    _begin(auth)
    clock.advance(minutes=5)
    with pytest.raises(InvalidToken):
        auth.passwordless.complete(outbox.code(), email=EMAIL)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_wrong_code_and_an_unknown_address_take_the_same_time(
    make_auth: AuthFactory, tmp_path: Path, kind: str
) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "auth.db")
    outbox = Outbox()
    auth = make_auth(
        store=store,
        mailer=outbox,
        throttle=ThrottlePolicy(per_account_ip=10_000, per_account=10_000, per_ip=10_000),
        journeys=JourneyPolicy(mails_per_address=10_000),
    )
    auth.users.register(EMAIL, PASSWORD)

    def fresh_code() -> None:  # outside the timing: the known address always has one
        _begin(auth)

    def refused(email: str) -> None:
        with pytest.raises(InvalidToken):
            auth.passwordless.complete(_wrong(outbox.code()), email=email, ip=IP)

    fresh_code()
    ratio = median_ratio(
        lambda: refused(EMAIL),
        lambda: refused("nobody@example.com"),
        rounds=300,
        settle=fresh_code,
    )

    print(f"e-mail code completion timing, {kind}: unknown/wrong median ratio {ratio:.3f}")
    assert 0.8 <= ratio <= 1.25, ratio


_CHILD = textwrap.dedent(
    """
    import sys

    from authsome import Authsome, InvalidToken
    from authsome.stores import PostgresStore

    dsn, schema, code, email = sys.argv[1:5]
    auth = Authsome(store=PostgresStore(dsn, schema=schema, max_size=1))
    print("ready", flush=True)
    sys.stdin.readline()  # wait for "go", so that the processes race
    with auth:
        try:
            auth.passwordless.complete(code, email=email, ip="192.0.2.3")
        except InvalidToken:
            print("lost", flush=True)
        else:
            print("won", flush=True)
    """
)


def test_four_processes_use_one_code_exactly_once_on_postgres(pg_dsn: str, pg_schema: str) -> None:
    outbox = Outbox()
    try:
        with Authsome(store=PostgresStore(pg_dsn, schema=pg_schema), mailer=outbox) as auth:
            auth.users.register(EMAIL, PASSWORD)
            _begin(auth)
        argvs = [[pg_dsn, pg_schema, outbox.code(), EMAIL] for _ in range(4)]
        outcomes = race_processes(_CHILD, argvs, timeout=120)
    finally:
        drop_schema(pg_dsn, pg_schema)

    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
