"""The engine end to end on every store, including from many threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from authsome import AlreadyExists, Authsome, InvalidToken, UsageEvent
from authsome.stores import MemoryStore, SQLiteStore, Store
from authsome.testing import RecordingLedger
from tests.conftest import PASSWORD, AuthFactory
from tests.stores.conftest import postgres_store

StoreFactory = Callable[[pytest.FixtureRequest], Store]
STORES: dict[str, StoreFactory] = {
    "memory": lambda _request: MemoryStore(),
    "postgres": postgres_store,
    "sqlite": lambda request: SQLiteStore(request.getfixturevalue("tmp_path") / "auth.db"),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    factory: StoreFactory = STORES[request.param]
    return factory(request)


def test_full_flow(make_auth: AuthFactory, store: Store) -> None:
    ledger = RecordingLedger()
    auth = make_auth(store=store, ledger=ledger)
    user = auth.users.register("ann@example.com", PASSWORD, tenant="acme")
    signed = auth.sign_in("Ann@Example.com", PASSWORD, tenant="acme", ip="198.51.100.4")
    assert signed.tokens is not None
    assert auth.sessions.validate(signed.tokens.access_token).user_id == user.id
    rotated = auth.sessions.refresh(signed.tokens.refresh_token)
    with pytest.raises(InvalidToken):
        auth.sessions.validate(signed.tokens.access_token)
    assert auth.sessions.revoke(rotated.access_token) is True
    with pytest.raises(InvalidToken):
        auth.sessions.validate(rotated.access_token)
    keys = [c.feature_key for c in ledger.usage()]
    # The refresh counts the user active too (once a day), not a new session.
    assert keys == [
        UsageEvent.USERS_CREATED,
        UsageEvent.SESSIONS_CREATED,
        UsageEvent.USERS_ACTIVE,
        UsageEvent.USERS_ACTIVE,
    ]


def test_concurrent_registration_of_one_address_makes_one_user(
    make_auth: AuthFactory, store: Store
) -> None:
    ledger = RecordingLedger()
    auth = make_auth(store=store, ledger=ledger)
    barrier = threading.Barrier(8)

    def register(i: int) -> str:
        barrier.wait()
        try:
            auth.users.register("ann@example.com", f"{PASSWORD} {i}")
        except AlreadyExists:
            return "exists"
        return "created"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(register, range(8)))
    assert outcomes.count("created") == 1
    assert outcomes.count("exists") == 7
    assert len(ledger.usage(UsageEvent.USERS_CREATED)) == 1


def test_concurrent_sign_ins_each_get_their_own_session(
    make_auth: AuthFactory, store: Store
) -> None:
    ledger = RecordingLedger()
    auth = make_auth(store=store, ledger=ledger)
    auth.users.register("ann@example.com", PASSWORD)

    def sign_in(_: int) -> str:
        tokens = auth.sign_in("ann@example.com", PASSWORD).tokens
        assert tokens is not None
        return auth.sessions.validate(tokens.access_token).id

    with ThreadPoolExecutor(4) as pool:
        session_ids = list(pool.map(sign_in, range(16)))
    assert len(set(session_ids)) == 16
    active = ledger.usage(UsageEvent.USERS_ACTIVE)
    assert sorted(c.ctx.event_id or "" for c in active) == sorted(session_ids)


def test_data_survives_reopening_a_sqlite_store(make_auth: AuthFactory, tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    first = make_auth(store=SQLiteStore(path))
    first.users.register("ann@example.com", PASSWORD, tenant="acme")
    tokens = first.sign_in("ann@example.com", PASSWORD, tenant="acme").tokens
    assert tokens is not None
    first.close()
    second: Authsome = make_auth(store=SQLiteStore(path))
    assert second.sessions.validate(tokens.access_token).tenant == "acme"
    assert second.sign_in("ann@example.com", PASSWORD, tenant="acme").tokens is not None


def test_tokens_never_reach_the_sqlite_file(make_auth: AuthFactory, tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    auth = make_auth(store=SQLiteStore(path))
    auth.users.register("ann@example.com", PASSWORD)
    tokens = auth.sign_in("ann@example.com", PASSWORD).tokens
    assert tokens is not None
    rotated = auth.sessions.refresh(tokens.refresh_token)
    auth.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("auth.db"))
    for secret in (tokens.access_token, tokens.refresh_token, rotated.refresh_token, PASSWORD):
        assert secret.encode() not in raw
