"""Records, clock values and checks shared by the store tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from authsome.errors import AlreadyExists
from authsome.models import Session, SSOConnectionInfo, SSOProtocol, User
from authsome.stores import Store

__all__ = [
    "ACCESS_TTL",
    "NOW",
    "SESSION_TTL",
    "STORE_TABLES",
    "add_session",
    "add_user",
    "assert_threads_count_exactly",
    "make_session",
    "make_user",
]

NOW = datetime(2030, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
"""A fixed clock reading, with microseconds so that precision loss would show."""

SESSION_TTL = timedelta(hours=12)
ACCESS_TTL = timedelta(minutes=15)

STORE_TABLES = frozenset(
    {
        "users",
        "sessions",
        "refresh_tokens",
        "counters",
        "orgs",
        "org_members",
        "domains",
        "mfa_factors",
        "mfa_recovery_codes",
        "mfa_tickets",
        "api_keys",
        "passkeys",
        "passkey_challenges",
        "sso_connections",
        "sso_domains",
        "saml_assertion_ids",
        "store_keys",
        "one_time_tokens",
        "one_time_states",
        "identities",
        "social_providers",
    }
)
"""The tables of a SQL store's schema (a store may add bookkeeping of its own)."""


def make_user(
    user_id: str = "u1", *, tenant: str = "default", email: str = "ada@example.com"
) -> User:
    """A user record; only what a test cares about needs naming."""
    return User(id=user_id, tenant=tenant, email=email, name="Ada", created_at=NOW)


def make_session(
    session_id: str = "s1", *, user_id: str = "u1", expires_at: datetime = NOW + SESSION_TTL
) -> Session:
    """A live session record created at :data:`NOW`."""
    return Session(
        id=session_id,
        user_id=user_id,
        tenant="default",
        created_at=NOW,
        expires_at=expires_at,
        access_expires_at=NOW + ACCESS_TTL,
        last_seen_at=NOW,
    )


def add_user(store: Store, user_id: str = "u1", **fields: str) -> User:
    """Create a user in ``store`` with a fake password hash and return it."""
    user = make_user(user_id, **fields)
    store.create_user(user, f"pw-hash-{user_id}")
    return user


def add_session(
    store: Store,
    session_id: str = "s1",
    *,
    user_id: str = "u1",
    expires_at: datetime = NOW + SESSION_TTL,
) -> Session:
    """Create a session whose token hashes are ``access-<id>`` and ``refresh-<id>``."""
    session = make_session(session_id, user_id=user_id, expires_at=expires_at)
    store.create_session(session, f"access-{session_id}", f"refresh-{session_id}")
    return session


def assert_threads_count_exactly(store: Store, *, threads: int, hits_each: int) -> None:
    """``threads`` threads, started together, hit one counter ``hits_each`` times
    each: every hit gets its own count and none is lost."""
    barrier = threading.Barrier(threads)
    seen: list[int] = []

    def hammer() -> None:
        barrier.wait()
        for _ in range(hits_each):
            seen.append(store.hit_counter("ip:1", NOW, 60)[0])

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    total = threads * hits_each
    assert sorted(seen) == list(range(1, total + 1))
    assert store.get_counter("ip:1", NOW) == (total, NOW + timedelta(seconds=60))


# A stand-in certificate for rows written below the service (stores do not parse it).
OLD_SSO_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def sso_record(connection_id: str, org_id: str, domains: tuple[str, ...]) -> SSOConnectionInfo:
    """A SAML connection record as written by a schema before per-tenant SSO domains."""
    return SSOConnectionInfo(
        id=connection_id,
        org_id=org_id,
        protocol=SSOProtocol.SAML,
        domains=domains,
        created_at=NOW,
        updated_at=NOW,
        entity_id="urn:idp",
        sso_url="https://idp.example/sso",
        x509_certificate=OLD_SSO_PEM,
    )


def assert_sso_domains_scoped_after_upgrade(upgraded: Store) -> None:
    """After the per-tenant migration: connection c1 of org o1 (tenant "acme") kept its
    domains, another tenant's org o2 may list the same domain, the same tenant may not."""
    kept = upgraded.get_sso_connection("c1")
    assert kept == sso_record("c1", "o1", ("acme.example", "b.example"))
    assert upgraded.find_sso_connection_by_domain("acme", "b.example") == kept
    upgraded.create_sso_connection(sso_record("c2", "o2", ("acme.example",)), None)
    assert upgraded.find_sso_connection_by_domain("acme", "acme.example") == kept
    assert upgraded.find_sso_connection_by_domain("evil", "acme.example") is not None
    with pytest.raises(AlreadyExists):
        upgraded.create_sso_connection(sso_record("c3", "o1", ("b.example",)), None)
