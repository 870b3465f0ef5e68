"""Sessions: 256-bit opaque tokens stored only as SHA-256, expiry, revocation, rotation
with reuse detection, concurrent refresh, and typed input errors."""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from authsome import (
    Authsome,
    InvalidToken,
    SessionPolicy,
    SessionTokens,
    User,
    ValidationError,
)
from authsome.crypto import sha256_hex
from authsome.stores import MemoryStore
from tests.conftest import PASSWORD, AuthFactory, FakeClock

EMAIL = "ann@example.com"
BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def _sign_in(auth: Authsome, email: str = EMAIL, *, register: bool = True) -> SessionTokens:
    if register:
        auth.users.register(email, PASSWORD)
    tokens = auth.sign_in(email, PASSWORD).tokens
    assert tokens is not None
    return tokens


def _strings(obj: object, seen: set[int] | None = None) -> Iterator[str]:
    """Every string reachable from ``obj``: dict keys and values, items, fields."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, bytes):
        yield obj.decode("utf-8", "replace")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _strings(key, seen)
            yield from _strings(value, seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            yield from _strings(item, seen)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _strings(getattr(obj, f.name), seen)
    else:
        yield repr(obj)


def test_tokens_are_256_bit_base64url_and_distinct(auth: Authsome) -> None:
    tokens = _sign_in(auth)
    for token in (tokens.access_token, tokens.refresh_token):
        assert len(token) >= 43  # 32 bytes of base64url
        assert BASE64URL.fullmatch(token)
    assert tokens.access_token != tokens.refresh_token
    other = _sign_in(auth, register=False)
    assert other.access_token != tokens.access_token
    assert other.refresh_token != tokens.refresh_token
    assert other.session.id != tokens.session.id


def test_store_keeps_only_sha256_digests(make_auth: AuthFactory) -> None:
    store = MemoryStore()
    auth = make_auth(store=store)
    first = _sign_in(auth)
    rotated = auth.sessions.refresh(first.refresh_token)
    every = [first.access_token, first.refresh_token, rotated.access_token, rotated.refresh_token]
    stored = list(_strings(vars(store)))
    assert stored
    for token in every:
        for text in stored:
            assert token not in text
    # the current tokens are found by their digests
    assert sha256_hex(rotated.access_token) in store._access
    assert sha256_hex(rotated.refresh_token) in store._refresh
    assert sha256_hex(first.refresh_token) in store._refresh  # kept to detect reuse
    assert sha256_hex(first.access_token) not in store._access  # rotated away
    assert all(re.fullmatch(r"[0-9a-f]{64}", key) for key in (*store._access, *store._refresh))


def test_validate_returns_the_live_session(auth: Authsome) -> None:
    tokens = _sign_in(auth)
    session = auth.sessions.validate(tokens.access_token)
    assert session.id == tokens.session.id
    assert session.revoked_at is None
    with pytest.raises(InvalidToken):
        auth.sessions.validate(tokens.refresh_token)  # a refresh token is not an access token
    with pytest.raises(InvalidToken):
        auth.sessions.validate("x" * 43)


def test_access_token_expires_after_access_ttl(auth: Authsome, clock: FakeClock) -> None:
    tokens = _sign_in(auth)
    ttl = auth.sessions.policy.access_ttl
    assert ttl == SessionPolicy().access_ttl
    clock.advance(seconds=ttl.total_seconds() - 1)
    auth.sessions.validate(tokens.access_token)
    clock.advance(seconds=1)
    with pytest.raises(InvalidToken):
        auth.sessions.validate(tokens.access_token)
    # the session itself lives on: the refresh token still gives a new access token
    fresh = auth.sessions.refresh(tokens.refresh_token)
    assert auth.sessions.validate(fresh.access_token).id == tokens.session.id


def test_session_ttl_ends_refresh_too(make_auth: AuthFactory, clock: FakeClock) -> None:
    policy = SessionPolicy(ttl=timedelta(minutes=90), access_ttl=timedelta(hours=1))
    auth = make_auth(sessions=policy)
    tokens = _sign_in(auth)
    clock.advance(minutes=60)
    rotated = auth.sessions.refresh(tokens.refresh_token)
    assert rotated.session.expires_at == tokens.session.expires_at  # never extended
    clock.advance(minutes=29)
    auth.sessions.validate(rotated.access_token)
    clock.advance(minutes=1)  # the absolute end, before the access token's own expiry
    with pytest.raises(InvalidToken):
        auth.sessions.validate(rotated.access_token)
    with pytest.raises(InvalidToken):
        auth.sessions.refresh(rotated.refresh_token)


def test_access_ttl_longer_than_ttl_is_capped(make_auth: AuthFactory, clock: FakeClock) -> None:
    auth = make_auth(
        sessions=SessionPolicy(ttl=timedelta(minutes=10), access_ttl=timedelta(hours=1))
    )
    tokens = _sign_in(auth)
    assert tokens.session.access_expires_at <= tokens.session.expires_at
    clock.advance(minutes=10)
    with pytest.raises(InvalidToken):
        auth.sessions.validate(tokens.access_token)


def test_revoke(auth: Authsome) -> None:
    tokens = _sign_in(auth)
    assert auth.sessions.revoke(tokens.access_token) is True
    with pytest.raises(InvalidToken):
        auth.sessions.validate(tokens.access_token)
    assert auth.sessions.revoke(tokens.access_token) is False
    with pytest.raises(InvalidToken):
        auth.sessions.refresh(tokens.refresh_token)  # refresh of a revoked session fails
    assert auth.sessions.revoke("unknown-token") is False


def test_revoke_leaves_other_sessions_alone(auth: Authsome) -> None:
    a = _sign_in(auth)
    b = _sign_in(auth, register=False)
    assert auth.sessions.revoke(a.access_token) is True
    assert auth.sessions.validate(b.access_token).id == b.session.id


def test_revoke_all_revokes_only_that_users_sessions(auth: Authsome) -> None:
    ann = [_sign_in(auth), _sign_in(auth, register=False), _sign_in(auth, register=False)]
    bob = _sign_in(auth, "bob@example.com")
    assert auth.sessions.revoke(ann[0].access_token) is True  # already ended: not counted
    user_id = ann[0].session.user_id
    assert auth.sessions.revoke_all(user_id) == 2
    for tokens in ann:
        with pytest.raises(InvalidToken):
            auth.sessions.validate(tokens.access_token)
        with pytest.raises(InvalidToken):
            auth.sessions.refresh(tokens.refresh_token)
    assert auth.sessions.validate(bob.access_token).id == bob.session.id
    assert auth.sessions.revoke_all(user_id) == 0
    assert auth.sessions.revoke_all("usr_unknown") == 0


def test_refresh_rotates_both_tokens(auth: Authsome) -> None:
    old = _sign_in(auth)
    new = auth.sessions.refresh(old.refresh_token)
    assert new.access_token != old.access_token
    assert new.refresh_token != old.refresh_token
    assert new.access_token != new.refresh_token
    assert new.session.id == old.session.id
    assert len(new.access_token) >= 43
    assert len(new.refresh_token) >= 43
    with pytest.raises(InvalidToken):
        auth.sessions.validate(old.access_token)
    assert auth.sessions.validate(new.access_token).id == old.session.id
    # and the chain goes on
    newer = auth.sessions.refresh(new.refresh_token)
    assert auth.sessions.validate(newer.access_token).id == old.session.id


def test_refresh_gives_a_full_access_ttl(auth: Authsome, clock: FakeClock) -> None:
    old = _sign_in(auth)
    clock.advance(minutes=50)
    new = auth.sessions.refresh(old.refresh_token)
    assert new.session.access_expires_at == clock.now + auth.sessions.policy.access_ttl
    clock.advance(minutes=59)
    auth.sessions.validate(new.access_token)


def test_refresh_is_not_a_new_session(make_auth: AuthFactory) -> None:
    store = MemoryStore()
    auth = make_auth(store=store)
    tokens = _sign_in(auth)
    auth.sessions.refresh(tokens.refresh_token)
    assert len(store._sessions) == 1


def test_reusing_a_rotated_refresh_token_revokes_the_family(auth: Authsome) -> None:
    first = _sign_in(auth)
    second = auth.sessions.refresh(first.refresh_token)
    third = auth.sessions.refresh(second.refresh_token)
    with pytest.raises(InvalidToken):
        auth.sessions.refresh(first.refresh_token)  # the thief replays an old one
    with pytest.raises(InvalidToken):
        auth.sessions.validate(third.access_token)  # newest access token is dead
    with pytest.raises(InvalidToken):
        auth.sessions.refresh(third.refresh_token)  # and the newest refresh token
    session = auth.store.get_session(first.session.id)
    assert session is not None
    assert session.revoked_at is not None


def test_reuse_revokes_only_that_family(auth: Authsome) -> None:
    mine = _sign_in(auth)
    other = _sign_in(auth, register=False)
    auth.sessions.refresh(mine.refresh_token)
    with pytest.raises(InvalidToken):
        auth.sessions.refresh(mine.refresh_token)
    assert auth.sessions.validate(other.access_token).id == other.session.id
    auth.sessions.refresh(other.refresh_token)


def test_unknown_refresh_token_fails(auth: Authsome) -> None:
    tokens = _sign_in(auth)
    with pytest.raises(InvalidToken):
        auth.sessions.refresh("not-a-real-refresh-token")
    with pytest.raises(InvalidToken):
        auth.sessions.refresh(tokens.access_token)  # an access token is not a refresh token
    # neither of those damaged the real session
    assert auth.sessions.validate(tokens.access_token).id == tokens.session.id


def test_concurrent_refresh_has_one_winner_and_revokes_the_family(auth: Authsome) -> None:
    tokens = _sign_in(auth)
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    lock = threading.Lock()
    wins: list[SessionTokens] = []
    losses: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            result = auth.sessions.refresh(tokens.refresh_token)
        except BaseException as exc:
            with lock:
                losses.append(exc)
        else:
            with lock:
                wins.append(result)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert len(wins) + len(losses) == threads_n
    assert len(wins) <= 1
    assert len(wins) == 1  # the store rotates exactly once
    assert all(isinstance(exc, InvalidToken) for exc in losses), losses
    # the others were reuses of a rotated token: the whole family is revoked
    session = auth.store.get_session(tokens.session.id)
    assert session is not None
    assert session.revoked_at is not None
    for won in wins:
        with pytest.raises(InvalidToken):
            auth.sessions.validate(won.access_token)
        with pytest.raises(InvalidToken):
            auth.sessions.refresh(won.refresh_token)


@pytest.mark.parametrize("value", [None, 42, b"token", ["token"]])
def test_non_str_tokens_raise_type_error(auth: Authsome, value: object) -> None:
    for call in (auth.sessions.validate, auth.sessions.refresh, auth.sessions.revoke):
        with pytest.raises(TypeError):
            call(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.sessions.revoke_all(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", "t" * 513])
def test_empty_or_oversized_tokens_raise_validation_error(auth: Authsome, value: str) -> None:
    for call in (auth.sessions.validate, auth.sessions.refresh, auth.sessions.revoke):
        with pytest.raises(ValidationError) as info:
            call(value)
        assert isinstance(info.value, ValueError)
        if value:
            assert value not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": timedelta(0)},
        {"ttl": timedelta(seconds=-1)},
        {"access_ttl": timedelta(0)},
        {"access_ttl": timedelta(minutes=-5)},
    ],
)
def test_session_policy_rejects_non_positive_ttls(kwargs: dict[str, timedelta]) -> None:
    with pytest.raises(ValueError, match="SessionPolicy"):
        SessionPolicy(**kwargs)


def test_repr_of_session_tokens_hides_tokens(auth: Authsome) -> None:
    tokens = _sign_in(auth)
    rotated = auth.sessions.refresh(tokens.refresh_token)
    for obj in (tokens, rotated):
        for text in (repr(obj), str(obj)):
            assert obj.access_token not in text
            assert obj.refresh_token not in text
            assert obj.session.id in text


def test_session_belongs_to_the_signed_in_user(auth: Authsome) -> None:
    user: User = auth.users.register(EMAIL, PASSWORD)
    tokens = _sign_in(auth, register=False)
    session = auth.sessions.validate(tokens.access_token)
    assert session.user_id == user.id
    assert session.tenant == user.tenant


def test_revoke_by_an_expired_access_token_still_signs_out(
    auth: Authsome, clock: FakeClock
) -> None:
    tokens = _sign_in(auth)
    clock.advance(seconds=auth.sessions.policy.access_ttl.total_seconds())
    assert auth.sessions.revoke(tokens.access_token) is True  # the session was still live
    with pytest.raises(InvalidToken):
        auth.sessions.refresh(tokens.refresh_token)


def test_revoke_all_does_not_count_expired_sessions(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    auth = make_auth(sessions=SessionPolicy(ttl=timedelta(hours=1), access_ttl=timedelta(hours=1)))
    tokens = _sign_in(auth)
    clock.advance(hours=2)  # the session ended on its own
    with pytest.raises(InvalidToken):
        auth.sessions.validate(tokens.access_token)
    live = _sign_in(auth, register=False)
    assert auth.sessions.revoke_all(tokens.session.user_id) == 1  # only `live` was live
    with pytest.raises(InvalidToken):
        auth.sessions.validate(live.access_token)


def test_revoke_of_an_expired_session_returns_false(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    auth = make_auth(sessions=SessionPolicy(ttl=timedelta(hours=1), access_ttl=timedelta(hours=1)))
    tokens = _sign_in(auth)
    clock.advance(hours=2)
    assert auth.sessions.revoke(tokens.access_token) is False
