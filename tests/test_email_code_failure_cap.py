"""Failed e-mail code attempts are counted per address across codes: past
``JourneyPolicy.email_code_failure_limit`` in a row, codes for the address are
refused (the same answer as a wrong code) until a sign-in of the account succeeds;
a link or a password still signs in, and resets the count. On every store."""

from __future__ import annotations

import pytest

from authsome import Authsome, InvalidToken, ThrottlePolicy, ValidationError
from authsome.onetime import JourneyPolicy
from authsome.stores import MemoryStore, Store
from authsome.testing import Outbox
from tests.conftest import PASSWORD, AuthFactory
from tests.support.race import race
from tests.test_engine_stores import STORES

EMAIL = "ann@example.com"
IP = "192.0.2.3"
LIMIT = 7
# The cap under test, not the sign-in throttle's windows or the mail limit.
LOOSE = ThrottlePolicy(per_account_ip=1000, per_account=1000, per_ip=1000)


def _journeys(limit: int = LIMIT) -> JourneyPolicy:
    return JourneyPolicy(email_code_failure_limit=limit, mails_per_address=1000)


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    return STORES[request.param](request)


def _engine(make_auth: AuthFactory, outbox: Outbox, store: Store, limit: int = LIMIT) -> Authsome:
    return make_auth(store=store, mailer=outbox, throttle=LOOSE, journeys=_journeys(limit))


def _code(auth: Authsome, outbox: Outbox) -> str:
    auth.passwordless.begin(EMAIL, ip=IP, method="code")
    auth.flush_mail()
    return outbox.code()


def _link(auth: Authsome, outbox: Outbox) -> str:
    auth.passwordless.begin(EMAIL, ip=IP)
    auth.flush_mail()
    return outbox.token()


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def _fail(auth: Authsome, outbox: Outbox, times: int) -> None:
    """``times`` wrong guesses, spread over fresh codes (each survives 5)."""
    for done in range(times):
        code = _code(auth, outbox) if done % 4 == 0 else outbox.code()
        with pytest.raises(InvalidToken):
            auth.passwordless.complete(_wrong(code), email=EMAIL, ip=IP)


def _code_signs_in(auth: Authsome, outbox: Outbox) -> bool:
    try:
        signed_in = auth.passwordless.complete(_code(auth, outbox), email=EMAIL, ip=IP)
    except InvalidToken:
        return False
    return signed_in.tokens is not None


def test_the_default_limit_is_one_hundred() -> None:
    assert JourneyPolicy().email_code_failure_limit == 100


@pytest.mark.parametrize("limit", [0, -1, True, "100", 1.5])
def test_a_limit_that_is_no_positive_int_is_refused(limit: object) -> None:
    with pytest.raises(ValidationError, match="email_code_failure_limit"):
        JourneyPolicy(email_code_failure_limit=limit)  # type: ignore[arg-type]


def test_past_the_limit_across_codes_even_the_right_code_is_refused(
    make_auth: AuthFactory, store: Store
) -> None:
    outbox = Outbox()
    auth = _engine(make_auth, outbox, store)
    auth.users.register(EMAIL, PASSWORD)
    _fail(auth, outbox, LIMIT)

    with pytest.raises(InvalidToken) as refused:  # the same answer as a wrong code
        auth.passwordless.complete(_code(auth, outbox), email=EMAIL, ip=IP)
    assert str(refused.value) == "invalid or expired token"
    assert not _code_signs_in(auth, outbox)  # and it stays so


def test_a_link_still_signs_in_and_resets_the_count(make_auth: AuthFactory, store: Store) -> None:
    outbox = Outbox()
    auth = _engine(make_auth, outbox, store)
    auth.users.register(EMAIL, PASSWORD)
    _fail(auth, outbox, LIMIT)

    assert auth.passwordless.complete(_link(auth, outbox)).tokens is not None
    assert _code_signs_in(auth, outbox)


def test_a_password_sign_in_resets_the_count(make_auth: AuthFactory, store: Store) -> None:
    outbox = Outbox()
    auth = _engine(make_auth, outbox, store)
    auth.users.register(EMAIL, PASSWORD)
    _fail(auth, outbox, LIMIT)

    assert auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens is not None
    _fail(auth, outbox, LIMIT - 1)
    assert _code_signs_in(auth, outbox)


def test_only_failures_in_a_row_count(make_auth: AuthFactory) -> None:
    outbox = Outbox()
    auth = _engine(make_auth, outbox, MemoryStore())
    auth.users.register(EMAIL, PASSWORD)
    for _ in range(3):  # 3 * (LIMIT - 1) failures, each run ended by a code sign-in
        _fail(auth, outbox, LIMIT - 1)
        assert _code_signs_in(auth, outbox)


def test_the_count_is_per_address_and_tenant(make_auth: AuthFactory) -> None:
    outbox = Outbox()
    auth = _engine(make_auth, outbox, MemoryStore())
    auth.users.register(EMAIL, PASSWORD)
    auth.users.register(EMAIL, PASSWORD, tenant="acme")
    _fail(auth, outbox, LIMIT)

    auth.passwordless.begin(EMAIL, tenant="acme", ip=IP, method="code")
    auth.flush_mail()
    other = auth.passwordless.complete(outbox.code(), tenant="acme", email=EMAIL, ip=IP)
    assert other.tokens is not None


def test_racing_guesses_are_counted_before_they_are_tried(make_auth: AuthFactory) -> None:
    store, outbox = MemoryStore(), Outbox()
    capped = _engine(make_auth, outbox, store, limit=2)
    capped.users.register(EMAIL, PASSWORD)
    code = _code(capped, outbox)

    def guess(_: int) -> str:
        try:
            capped.passwordless.complete(_wrong(code), email=EMAIL, ip=IP)
        except InvalidToken:
            return "refused"
        return "signed in"

    assert race(guess, range(8)) == ["refused"] * 8
    # Only 2 of the 8 reached the code: an engine with a higher cap finds it alive
    # after 2 more wrong guesses (5 would have killed it).
    roomy = _engine(make_auth, outbox, store, limit=100)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            roomy.passwordless.complete(_wrong(code), email=EMAIL, ip=IP)
    assert roomy.passwordless.complete(code, email=EMAIL, ip=IP).tokens is not None
