"""Starting a sign-in at an identity provider costs a stored state (and a provider
call): starts are limited per client address, a start whose provider cannot be
discovered stores nothing, and the memory store's sweep of expired states is
amortised, so a flood of starts is linear work, not quadratic."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from authsome import Authsome
from authsome.errors import InvalidCredentials, RateLimited
from authsome.models import OneTimeState
from authsome.sso import OIDCConnection
from authsome.stores import MemoryStore
from authsome.throttle import ThrottlePolicy
from tests.conftest import PASSWORD, AuthFactory

TENANT = "acme"
CALLBACK = "https://app.example/auth/social/github/callback"


def _unresolvable(host: str, port: int) -> Sequence[str]:
    raise socket.gaierror("no such name")


class CountingStore(MemoryStore):
    """A memory store that counts the states written."""

    def __init__(self) -> None:
        super().__init__()
        self.states_written = 0

    def create_one_time_state(self, token_hash: str, state: OneTimeState, now: datetime) -> None:
        self.states_written += 1
        super().create_one_time_state(token_hash, state, now)


def _engine(make_auth: AuthFactory, store: MemoryStore | None = None) -> Authsome:
    return make_auth(
        store=store,
        secret_key=secrets.token_bytes(32),
        throttle=ThrottlePolicy(starts_per_ip=3),
        sso_resolver=_unresolvable,
    )


def test_social_starts_are_limited_per_address(make_auth: AuthFactory) -> None:
    auth = _engine(make_auth)
    auth.social.configure("github", tenant=TENANT, client_id="app", client_secret="a-client-secret")

    for _ in range(3):
        auth.social.begin("github", redirect_uri=CALLBACK, tenant=TENANT, ip="198.51.100.1")
    with pytest.raises(RateLimited):
        auth.social.begin("github", redirect_uri=CALLBACK, tenant=TENANT, ip="198.51.100.1")
    # Another address is not held back by the first one's starts.
    auth.social.begin("github", redirect_uri=CALLBACK, tenant=TENANT, ip="198.51.100.2")


def test_sso_starts_are_limited_per_address_failed_or_not(make_auth: AuthFactory) -> None:
    auth = _engine(make_auth)
    owner = auth.users.register("o@acme.test", PASSWORD, tenant=TENANT)
    org = auth.orgs.create(owner.id, "Acme")
    connection = auth.sso.configure(
        org.id, OIDCConnection("https://idp.acme.test", "client", "a-client-secret")
    )

    def start() -> None:
        auth.sso.begin(
            connection.id, redirect_uri="https://app.example/cb", tenant=TENANT, ip="::1"
        )

    for _ in range(3):
        with pytest.raises(InvalidCredentials):  # the provider cannot be discovered
            start()
    with pytest.raises(RateLimited):
        start()


def test_a_social_start_whose_discovery_fails_stores_no_state(make_auth: AuthFactory) -> None:
    store = CountingStore()
    auth = _engine(make_auth, store)
    auth.social.configure("gitlab", tenant=TENANT, client_id="app", client_secret="a-client-secret")

    with pytest.raises(InvalidCredentials):
        auth.social.begin("gitlab", redirect_uri=CALLBACK, tenant=TENANT)
    assert store.states_written == 0


class CountingNow(datetime):
    """``now`` that counts the expiry comparisons made against it: as a subclass
    of ``datetime`` its reflected comparison runs first."""

    comparisons = 0

    def __ge__(self, other: object) -> bool:
        CountingNow.comparisons += 1
        return super().__ge__(other)  # type: ignore[operator]


def test_storing_many_states_is_linear_work() -> None:
    store = MemoryStore()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = CountingNow.fromtimestamp(start.timestamp(), UTC)
    count = 5_000
    CountingNow.comparisons = 0
    for i in range(count):
        state = OneTimeState("purpose", TENANT, "{}", start, start + timedelta(minutes=10))
        store.create_one_time_state(f"hash-{i}", state, now)
    assert CountingNow.comparisons <= 4 * count  # a sweep per insert: ~count**2 / 2


def test_expired_states_are_still_swept() -> None:
    store = MemoryStore()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(1_000):
        now = start + timedelta(minutes=i)  # each state outlives the next ten inserts
        state = OneTimeState("purpose", TENANT, "{}", now, now + timedelta(minutes=10))
        store.create_one_time_state(f"hash-{i}", state, now)
    assert len(store._one_time_states) < 200  # at most twice the live ones, plus a floor
