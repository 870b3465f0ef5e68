"""Device sessions: every sign-in path keeps the client's address and User-Agent with
the session; ``sessions.list`` shows a user's live sessions newest first, with
nothing secret; ``sessions.revoke_by_id`` signs out one of the user's own devices
and nobody else's; on every store."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsome import (
    Authsome,
    DeviceSession,
    InvalidToken,
    SessionPolicy,
    SessionTokens,
    ValidationError,
)
from authsome import _validation as v
from authsome.stores import MemoryStore, SQLiteStore, Store
from authsome.stores import sqlite as sqlite_module
from authsome.stores._sqlite_migrations import MIGRATIONS
from authsome.testing import Outbox
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.stores import postgres_store
from tests.support.webauthn_authenticator import SoftwareAuthenticator
from tests.test_mfa import code, enrol

EMAIL = "ann@example.com"
OTHER = "bob@example.com"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148"
STORE_KINDS = ["memory", "sqlite", "postgres"]


def _store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "postgres":
        return postgres_store(request)
    return MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "auth.db")


def _tokens(auth: Authsome, email: str = EMAIL, **client: str) -> SessionTokens:
    tokens = auth.sign_in(email, PASSWORD, **client).tokens
    assert tokens is not None
    return tokens


# -- every sign-in path carries the client ------------------------------------------


def test_password_sign_in_keeps_ip_and_user_agent(auth: Authsome) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    tokens = _tokens(auth, ip="203.0.113.7", user_agent=FIREFOX)

    assert tokens.session.ip == "203.0.113.7"
    assert tokens.session.user_agent == FIREFOX
    [device] = auth.sessions.list(user.id)
    assert (device.id, device.ip, device.user_agent) == (tokens.session.id, "203.0.113.7", FIREFOX)


def test_a_sign_in_without_them_lists_none(auth: Authsome) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    _tokens(auth)
    [device] = auth.sessions.list(user.id)
    assert (device.ip, device.user_agent) == (None, None)


def test_mfa_completion_keeps_the_client_of_the_verifying_request(
    auth: Authsome, clock: FakeClock
) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    setup, _codes = enrol(auth, user, clock)
    ticket = auth.sign_in(EMAIL, PASSWORD, ip="203.0.113.7").ticket
    assert ticket is not None

    result = auth.mfa.verify(ticket, code(setup, clock), ip="203.0.113.8", user_agent=PHONE)

    assert result.tokens is not None
    assert [(d.ip, d.user_agent) for d in auth.sessions.list(user.id)] == [("203.0.113.8", PHONE)]


def test_magic_link_sign_in_keeps_the_client(make_auth: AuthFactory) -> None:
    outbox = Outbox()
    auth = make_auth(mailer=outbox)
    user = auth.users.register(EMAIL, PASSWORD)
    auth.passwordless.begin(EMAIL, ip="203.0.113.7")
    auth.flush_mail()

    auth.passwordless.complete(outbox.token(), ip="203.0.113.7", user_agent=PHONE)

    assert [(d.ip, d.user_agent) for d in auth.sessions.list(user.id)] == [("203.0.113.7", PHONE)]


def test_passkey_sign_in_keeps_the_client(auth: Authsome) -> None:
    rp = {"rp_id": "example.com", "origin": "https://example.com"}
    user = auth.users.register(EMAIL, PASSWORD, tenant="acme")
    device = SoftwareAuthenticator()
    options = auth.passkeys.begin_registration(user.id, rp_name="Example", **rp)
    auth.passkeys.finish_registration(user.id, device.register(options, origin=rp["origin"]))
    challenge = auth.passkeys.begin_authentication(tenant="acme", **rp)

    auth.passkeys.finish_authentication(
        device.authenticate(challenge, origin=rp["origin"]),
        tenant="acme",
        ip="2001:db8::1",
        user_agent=FIREFOX,
    )

    assert [(d.ip, d.user_agent) for d in auth.sessions.list(user.id)] == [("2001:db8::1", FIREFOX)]


# -- the user agent is untrusted text -----------------------------------------------


def test_a_long_user_agent_is_cut_and_a_huge_one_refused_before_anything_is_written(
    auth: Authsome,
) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    long = "A" * 2000
    assert _tokens(auth, user_agent=long).session.user_agent == "A" * v.MAX_USER_AGENT

    with pytest.raises(ValidationError):
        auth.sign_in(EMAIL, PASSWORD, user_agent="A" * (v.MAX_RAW_USER_AGENT + 1))
    with pytest.raises(TypeError):
        auth.sign_in(EMAIL, PASSWORD, user_agent=b"curl/8.0")  # type: ignore[arg-type]
    assert len(auth.sessions.list(user.id)) == 1


def test_control_characters_are_not_kept(auth: Authsome) -> None:
    auth.users.register(EMAIL, PASSWORD)
    session = _tokens(auth, ip="203.0.113.7\x1b", user_agent="evil\r\nSet-Cookie: x\u202e").session
    assert session.user_agent == "evil\ufffd\ufffdSet-Cookie: x\ufffd"
    assert session.ip == "203.0.113.7\ufffd"


@given(st.text(max_size=3 * v.MAX_USER_AGENT))
def test_any_user_agent_is_kept_as_bounded_printable_text(text: str) -> None:
    try:
        kept = v.check_user_agent(text)
    except ValidationError:
        return  # a lone surrogate: not text at all
    if kept is None:
        assert all(ch.isspace() for ch in text)
        return
    assert 0 < len(kept) <= v.MAX_USER_AGENT
    assert kept == kept.strip()
    assert not any(ch in kept for ch in "\x00\r\n\t\x1b\u2028\u2029\u202e")
    assert v.check_user_agent(kept) == kept  # keeping it again changes nothing


# -- the list ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_the_list_shows_live_sessions_newest_first_and_nothing_secret(
    make_auth: AuthFactory,
    clock: FakeClock,
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    auth = make_auth(store=_store(kind, tmp_path, request))
    user = auth.users.register(EMAIL, PASSWORD)
    auth.users.register(OTHER, PASSWORD)
    laptop = _tokens(auth, ip="203.0.113.7", user_agent=FIREFOX)
    clock.advance(minutes=1)
    phone = _tokens(auth, ip="198.51.100.2", user_agent=PHONE)
    clock.advance(minutes=1)
    ended = _tokens(auth)
    _tokens(auth, OTHER)  # someone else's session is not in the list
    auth.sessions.revoke(ended.access_token)
    clock.advance(minutes=1)

    devices = auth.sessions.list(user.id)

    assert devices == [
        DeviceSession(
            id=phone.session.id,
            created_at=phone.session.created_at,
            last_used_at=phone.session.created_at,
            expires_at=phone.session.expires_at,
            ip="198.51.100.2",
            user_agent=PHONE,
        ),
        DeviceSession(
            id=laptop.session.id,
            created_at=laptop.session.created_at,
            last_used_at=laptop.session.created_at,
            expires_at=laptop.session.expires_at,
            ip="203.0.113.7",
            user_agent=FIREFOX,
        ),
    ]
    shown = repr(devices)
    for tokens in (laptop, phone):
        assert tokens.access_token not in shown and tokens.refresh_token not in shown
    assert [f.name for f in dataclasses.fields(DeviceSession)] == [
        "id",
        "created_at",
        "last_used_at",
        "expires_at",
        "ip",
        "user_agent",
    ]
    assert auth.sessions.list("usr_nobody") == []


def test_last_used_moves_with_validation_and_refresh(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    auth = make_auth(sessions=SessionPolicy(idle_timeout=timedelta(hours=1)))
    user = auth.users.register(EMAIL, PASSWORD)
    tokens = _tokens(auth)
    clock.advance(minutes=10)
    auth.sessions.validate(tokens.access_token)
    [device] = auth.sessions.list(user.id)
    assert device.last_used_at == clock.now

    clock.advance(minutes=10)
    auth.sessions.refresh(tokens.refresh_token)
    [device] = auth.sessions.list(user.id)
    assert device.last_used_at == clock.now


def test_expired_and_idle_sessions_are_not_listed(make_auth: AuthFactory, clock: FakeClock) -> None:
    policy = SessionPolicy(ttl=timedelta(hours=5), idle_timeout=timedelta(hours=1))
    auth = make_auth(sessions=policy)
    user = auth.users.register(EMAIL, PASSWORD)
    busy = _tokens(auth)
    _tokens(auth)  # never used again: idle after an hour
    for _ in range(3):
        clock.advance(minutes=50)
        busy = auth.sessions.refresh(busy.refresh_token)
    assert [d.id for d in auth.sessions.list(user.id)] == [busy.session.id]

    clock.advance(hours=3)  # past the absolute end
    assert auth.sessions.list(user.id) == []


# -- revoking one device ------------------------------------------------------------------


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_revoking_a_device_ends_its_tokens_and_only_its_owner_can(
    make_auth: AuthFactory, kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    auth = make_auth(store=_store(kind, tmp_path, request))
    ann = auth.users.register(EMAIL, PASSWORD)
    bob = auth.users.register(OTHER, PASSWORD)
    here = _tokens(auth, user_agent=FIREFOX)
    there = _tokens(auth, user_agent=PHONE)
    bobs = _tokens(auth, OTHER)

    # Bob cannot sign out Ann's device, nor learn whether its id exists.
    assert auth.sessions.revoke_by_id(there.session.id, user_id=bob.id) is False
    assert auth.sessions.revoke_by_id("ses_unknown", user_id=bob.id) is False
    auth.sessions.validate(there.access_token)

    assert auth.sessions.revoke_by_id(there.session.id, user_id=ann.id) is True

    with pytest.raises(InvalidToken):
        auth.sessions.validate(there.access_token)
    with pytest.raises(InvalidToken):
        auth.sessions.refresh(there.refresh_token)
    assert auth.sessions.revoke_by_id(there.session.id, user_id=ann.id) is False  # once
    assert [d.id for d in auth.sessions.list(ann.id)] == [here.session.id]
    auth.sessions.validate(here.access_token)
    auth.sessions.validate(bobs.access_token)


def test_revoke_by_token_still_takes_a_token(auth: Authsome) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    tokens = _tokens(auth)
    assert auth.sessions.revoke(tokens.session.id) is False  # an id is not a token
    assert auth.sessions.revoke(tokens.access_token) is True
    assert auth.sessions.list(user.id) == []


def test_bad_input_to_the_device_calls_is_refused(auth: Authsome) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    tokens = _tokens(auth)
    with pytest.raises(ValidationError):
        auth.sessions.revoke_by_id("x" * 10_000, user_id=user.id)
    with pytest.raises(ValidationError):
        auth.sessions.revoke_by_id("", user_id=user.id)
    with pytest.raises(TypeError):
        auth.sessions.revoke_by_id(None, user_id=user.id)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.sessions.list(None)  # type: ignore[arg-type]
    auth.sessions.validate(tokens.access_token)


# -- upgrading -------------------------------------------------------------------------------


def test_sessions_from_before_the_upgrade_are_listed_without_a_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_auth: AuthFactory, clock: FakeClock
) -> None:
    db = tmp_path / "auth.db"
    step = next(i for i, script in enumerate(MIGRATIONS) if "user_agent" in script)
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_module, "MIGRATIONS", MIGRATIONS[:step])
        old = make_auth(store=SQLiteStore(db))
        user = old.users.register(EMAIL, PASSWORD)
        old.close()
    # A session as the old schema held it (the new code writes the new schema only).
    micros = int(clock.now.timestamp() * 1_000_000)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "INSERT INTO sessions (id, user_id, tenant, created_at, expires_at,"
            " access_expires_at, last_seen_at, access_hash)"
            " VALUES ('ses_old', ?, 'default', ?, ?, ?, ?, 'a1')",
            (user.id, micros, micros + 10**12, micros + 10**9, micros),
        )

    auth = make_auth(store=SQLiteStore(db))
    clock.advance(minutes=1)
    new = _tokens(auth, user_agent=FIREFOX)

    assert [(d.id, d.user_agent) for d in auth.sessions.list(user.id)] == [
        (new.session.id, FIREFOX),
        ("ses_old", None),
    ]
