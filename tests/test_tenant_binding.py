"""The tenant is bound: every call that validates a credential can be told the tenant it
serves, and a credential of another tenant gets exactly the answer an unknown one gets,
with no side effect (no usage, no rotation, no attempt counted)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from authsome import (
    Authsome,
    InvalidCredentials,
    InvalidToken,
    SessionPolicy,
    User,
    ValidationError,
)
from authsome.crypto import sha256_hex
from authsome.stores import Store
from authsome.testing import RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.webauthn_authenticator import SoftwareAuthenticator
from tests.test_engine_stores import STORES
from tests.test_mfa import code, enrol

EMAIL = "ann@example.com"


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    return STORES[request.param](request)


@pytest.fixture
def engine(make_auth: AuthFactory, store: Store, ledger: RecordingLedger) -> Authsome:
    return make_auth(store=store, ledger=ledger)


def _ann(auth: Authsome) -> User:
    return auth.users.register(EMAIL, PASSWORD, tenant="acme")


def test_a_session_validates_for_its_own_tenant_only(engine: Authsome) -> None:
    _ann(engine)
    tokens = engine.sign_in(EMAIL, PASSWORD, tenant="acme").tokens
    assert tokens is not None

    assert engine.sessions.validate(tokens.access_token, tenant="acme") == tokens.session
    assert engine.sessions.validate(tokens.access_token) == tokens.session  # unbound still works
    with pytest.raises(InvalidToken) as foreign:
        engine.sessions.validate(tokens.access_token, tenant="globex")
    with pytest.raises(InvalidToken) as unknown:
        engine.sessions.validate("x" * 43, tenant="globex")
    assert str(foreign.value) == str(unknown.value)


def test_a_session_of_another_tenant_records_no_activity(
    make_auth: AuthFactory, store: Store, clock: FakeClock
) -> None:
    engine = make_auth(store=store, sessions=SessionPolicy(idle_timeout=timedelta(hours=1)))
    _ann(engine)
    tokens = engine.sign_in(EMAIL, PASSWORD, tenant="acme").tokens
    assert tokens is not None
    clock.advance(minutes=30)  # far enough for a validation to write its activity

    with pytest.raises(InvalidToken):
        engine.sessions.validate(tokens.access_token, tenant="globex")

    stored = engine.store.get_session(tokens.session.id)
    assert stored is not None and stored.last_seen_at == tokens.session.last_seen_at
    assert engine.sessions.validate(tokens.access_token, tenant="acme").last_seen_at == clock.now


def test_signing_out_on_another_tenant_leaves_the_session_alone(engine: Authsome) -> None:
    _ann(engine)
    tokens = engine.sign_in(EMAIL, PASSWORD, tenant="acme").tokens
    assert tokens is not None

    assert engine.sessions.revoke(tokens.access_token, tenant="globex") is False
    assert engine.sessions.validate(tokens.access_token).revoked_at is None
    assert engine.sessions.revoke(tokens.access_token, tenant="acme") is True


def test_a_refresh_token_of_another_tenant_rotates_nothing(
    engine: Authsome, ledger: RecordingLedger
) -> None:
    _ann(engine)
    tokens = engine.sign_in(EMAIL, PASSWORD, tenant="acme").tokens
    assert tokens is not None
    ledger.clear()

    with pytest.raises(InvalidToken):
        engine.sessions.refresh(tokens.refresh_token, tenant="globex")

    # Nothing moved: the access token still works and the refresh token still rotates.
    assert engine.sessions.validate(tokens.access_token, tenant="acme") == tokens.session
    rotated = engine.sessions.refresh(tokens.refresh_token, tenant="acme")
    assert engine.sessions.validate(rotated.access_token, tenant="acme").id == tokens.session.id
    # Only the good refresh counted its user active; the refused one counted nothing.
    assert [(c.feature_key, c.ctx.tenant) for c in ledger.calls] == [
        ("authsome.users.active", "acme")
    ]


def test_a_rotated_refresh_token_of_another_tenant_does_not_revoke_the_session(
    engine: Authsome,
) -> None:
    _ann(engine)
    tokens = engine.sign_in(EMAIL, PASSWORD, tenant="acme").tokens
    assert tokens is not None
    rotated = engine.sessions.refresh(tokens.refresh_token)

    with pytest.raises(InvalidToken):
        engine.sessions.refresh(tokens.refresh_token, tenant="globex")

    # Presented on its own tenant, the reuse would revoke the family; on another, nothing.
    assert engine.sessions.validate(rotated.access_token).revoked_at is None


def test_an_api_key_of_another_tenant_is_unknown_and_unmetered(
    engine: Authsome, ledger: RecordingLedger
) -> None:
    ann = _ann(engine)
    created = engine.api_keys.create(ann.id, "ci", scopes=["read"])
    ledger.clear()

    with pytest.raises(InvalidToken) as foreign:
        engine.api_keys.validate(created.secret, tenant="globex", required_scopes=["admin"])
    assert ledger.calls == []
    assert engine.api_keys.get(created.key.id).last_used_at is None
    malformed = created.secret[:-1] + ("A" if created.secret[-1] != "A" else "B")
    with pytest.raises(InvalidToken) as unknown:
        engine.api_keys.validate(malformed, tenant="globex")
    assert str(foreign.value) == str(unknown.value)

    assert engine.api_keys.validate(created.secret, tenant="acme").id == created.key.id
    assert len(ledger.usage()) == 1


def test_an_mfa_ticket_of_another_tenant_is_unknown_and_uses_no_attempt(
    engine: Authsome, clock: FakeClock, ledger: RecordingLedger
) -> None:
    ann = _ann(engine)
    setup, _codes = enrol(engine, ann, clock)
    started = engine.sign_in(EMAIL, PASSWORD, tenant="acme")
    assert started.ticket is not None
    ledger.clear()

    for _ in range(10):  # more than the ticket's attempts: none of them counts
        with pytest.raises(InvalidToken):
            engine.mfa.verify(started.ticket, code(setup, clock), tenant="globex")
    assert ledger.calls == []

    done = engine.mfa.verify(started.ticket, code(setup, clock), tenant="acme")
    assert done.tokens is not None and done.user.id == ann.id


def test_a_ticket_stays_unknown_to_another_tenant_in_the_store(store: Store) -> None:
    # The store contract itself: the tenant is checked in the same atomic step.
    now = datetime(2026, 1, 15, tzinfo=UTC)
    store.create_user(User("usr_a", "acme", EMAIL, None, now), "hash")
    ticket = sha256_hex("ticket")
    store.create_mfa_ticket(ticket, "usr_a", now + timedelta(minutes=5), now)

    for _ in range(3):
        assert store.attempt_mfa_ticket(ticket, now, 1, tenant="globex") is None
    assert store.attempt_mfa_ticket(ticket, now, 1, tenant="acme") == "usr_a"
    assert store.attempt_mfa_ticket(ticket, now, 1, tenant="acme") is None  # used up


@pytest.mark.parametrize("bad", ["", "   ", "x" * 200, "a\x00b"])
def test_a_malformed_tenant_is_a_validation_error(engine: Authsome, bad: str) -> None:
    _ann(engine)
    tokens = engine.sign_in(EMAIL, PASSWORD, tenant="acme").tokens
    assert tokens is not None
    with pytest.raises(ValidationError):
        engine.sessions.validate(tokens.access_token, tenant=bad)


def test_a_passkey_sign_in_started_for_another_tenant_is_refused(
    make_auth: AuthFactory, ledger: RecordingLedger
) -> None:
    pytest.importorskip("webauthn")
    engine = make_auth(ledger=ledger)
    ann = _ann(engine)
    device = SoftwareAuthenticator()
    rp = {"rp_id": "example.com", "origin": "https://example.com"}
    options = engine.passkeys.begin_registration(ann.id, rp_name="Example", **rp)
    engine.passkeys.finish_registration(ann.id, device.register(options, origin=rp["origin"]))
    ledger.clear()

    response = device.authenticate(
        engine.passkeys.begin_authentication(tenant="acme", **rp), origin=rp["origin"]
    )
    with pytest.raises(InvalidCredentials):
        engine.passkeys.finish_authentication(response, tenant="globex")
    assert ledger.usage() == []

    again = device.authenticate(
        engine.passkeys.begin_authentication(tenant="acme", **rp), origin=rp["origin"]
    )
    assert engine.passkeys.finish_authentication(again, tenant="acme").user.id == ann.id
