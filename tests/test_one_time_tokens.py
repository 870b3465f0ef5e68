"""One-time tokens through the public API: anything that is not an issued token is
a typed error and writes nothing; racing uses of one token, exactly one wins."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authsome import Authsome, InvalidToken, ValidationError
from authsome.crypto import sha256_hex
from authsome.onetime import JourneyPolicy
from authsome.stores import SQLiteStore
from authsome.testing import Outbox, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.race import race_to_use

EMAIL = "ann@example.com"


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=300))
def test_no_made_up_token_verifies_anything(make_auth: AuthFactory, text: str) -> None:
    outbox, ledger = Outbox(), RecordingLedger()
    auth = make_auth(mailer=outbox, ledger=ledger)
    user = auth.users.register(EMAIL, PASSWORD)
    auth.users.send_verification(user.id)
    ledger.clear()
    if text == outbox.token():
        return  # 2**-256
    with pytest.raises((InvalidToken, ValidationError)):
        auth.users.verify_email(text)
    with pytest.raises((InvalidToken, ValidationError)):
        auth.passwordless.complete(text)
    assert ledger.calls == []
    assert auth.users.verify_email(outbox.token()).email_verified_at is not None  # unharmed


def test_a_token_has_256_bits_and_only_its_hash_is_stored(
    make_auth: AuthFactory, tmp_path: object
) -> None:
    outbox = Outbox()
    store = SQLiteStore(":memory:")
    auth = make_auth(store=store, mailer=outbox)
    user = auth.users.register(EMAIL, PASSWORD)
    auth.users.send_verification(user.id)
    token = outbox.token()
    assert len(token) >= 43  # 32 bytes, URL-safe base64
    assert store.delete_one_time_token(token) is False  # not stored in clear
    assert store.delete_one_time_token(sha256_hex(token)) is True


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_eight_threads_use_one_link_exactly_once(
    make_auth: AuthFactory, ledger: RecordingLedger, store_kind: str, tmp_path: object
) -> None:
    outbox = Outbox()
    store = None if store_kind == "memory" else SQLiteStore(f"{tmp_path}/auth.db")
    auth: Authsome = make_auth(store=store, mailer=outbox, ledger=ledger)
    auth.users.register(EMAIL, PASSWORD)
    auth.passwordless.begin(EMAIL, ip="192.0.2.1")
    auth.flush_mail()
    token = outbox.token()
    ledger.clear()

    outcomes = race_to_use(lambda: auth.passwordless.complete(token))

    assert sorted(outcomes) == [False] * 7 + [True]
    assert len(ledger.usage("authsome.sessions.created")) == 1
    assert len(ledger.usage("authsome.users.active")) == 1


def test_lifetimes_are_configurable_and_bounded(make_auth: AuthFactory, clock: FakeClock) -> None:
    outbox = Outbox()
    auth = make_auth(mailer=outbox, journeys=JourneyPolicy(verification_ttl=timedelta(hours=1)))
    user = auth.users.register(EMAIL, PASSWORD)
    auth.users.send_verification(user.id)
    clock.advance(minutes=61)
    with pytest.raises(InvalidToken):
        auth.users.verify_email(outbox.token())
    for bad in (timedelta(0), timedelta(days=8)):
        with pytest.raises(ValidationError):
            JourneyPolicy(reset_ttl=bad)
