"""The ``identities at external providers`` and user-less one-time token parts of the
Store contract, and the SSO connection's sign-in settings, run against every store."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from authsome.errors import AlreadyExists, StoreError
from authsome.models import (
    Identity,
    Membership,
    OneTimeState,
    Org,
    OrgRole,
    SSOConnectionInfo,
    SSOProtocol,
)
from authsome.stores import Store
from tests.support.race import race

from ._factories import NOW, add_user

EXPIRY = NOW + timedelta(minutes=10)


def _state(purpose: str = "sso_state", tenant: str = "acme") -> OneTimeState:
    return OneTimeState(
        purpose=purpose, tenant=tenant, payload="sealed", created_at=NOW, expires_at=EXPIRY
    )


def _identity(user_id: str = "u1", subject: str = "sub-1", provider: str = "sso_1") -> Identity:
    return Identity("default", provider, subject, user_id, NOW)


# -- user-less one-time tokens -------------------------------------------------------------


def test_a_state_is_consumed_once_with_its_payload(store: Store) -> None:
    store.create_one_time_state("h1", _state(), NOW)

    assert store.consume_one_time_state("h1", "sso_state", "acme", NOW) == _state()
    assert store.consume_one_time_state("h1", "sso_state", "acme", NOW) is None


@pytest.mark.parametrize(("purpose", "tenant"), [("other", "acme"), ("sso_state", "other")])
def test_a_state_of_another_purpose_or_tenant_is_not_found_and_stays(
    store: Store, purpose: str, tenant: str
) -> None:
    store.create_one_time_state("h1", _state(), NOW)

    assert store.consume_one_time_state("h1", purpose, tenant, NOW) is None
    assert store.consume_one_time_state("h1", "sso_state", "acme", NOW) is not None


def test_an_expired_state_is_refused_and_purged_by_the_next_one(store: Store) -> None:
    store.create_one_time_state("old", _state(), NOW)
    assert store.consume_one_time_state("old", "sso_state", "acme", EXPIRY) is None

    fresh = dataclasses.replace(_state(), expires_at=EXPIRY + timedelta(minutes=10))
    store.create_one_time_state("new", fresh, EXPIRY)
    with pytest.raises(AlreadyExists):
        store.create_one_time_state("new", fresh, EXPIRY)
    # "old" is gone: the same hash can be stored again.
    store.create_one_time_state("old", fresh, EXPIRY)
    assert store.consume_one_time_state("new", "sso_state", "acme", EXPIRY) == fresh


def test_of_racing_consumers_of_one_state_exactly_one_gets_it(store: Store) -> None:
    store.create_one_time_state("h1", _state(), NOW)

    results = race(lambda _: store.consume_one_time_state("h1", "sso_state", "acme", NOW), range(8))

    assert sum(result is not None for result in results) == 1


# -- identities ----------------------------------------------------------------------------


def test_an_identity_is_found_by_tenant_provider_and_subject(store: Store) -> None:
    add_user(store)
    store.create_identity(_identity())

    assert store.find_identity("default", "sso_1", "sub-1") == _identity()
    assert store.find_identity("other", "sso_1", "sub-1") is None
    assert store.find_identity("default", "sso_2", "sub-1") is None
    assert store.find_identity("default", "sso_1", "sub-2") is None


def test_one_provider_account_links_one_user(store: Store) -> None:
    add_user(store)
    add_user(store, "u2", email="bob@example.com")
    store.create_identity(_identity())

    with pytest.raises(AlreadyExists):
        store.create_identity(_identity(user_id="u2"))
    found = store.find_identity("default", "sso_1", "sub-1")
    assert found is not None and found.user_id == "u1"


def test_an_identity_of_an_unknown_user_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.create_identity(_identity(user_id="ghost"))


def test_a_users_identities_are_listed_oldest_first_and_removed_one_by_one(store: Store) -> None:
    add_user(store)
    add_user(store, "u2", email="bob@example.com")
    later = dataclasses.replace(_identity(subject="sub-2"), created_at=NOW + timedelta(seconds=1))
    store.create_identity(later)
    store.create_identity(_identity())
    store.create_identity(_identity(user_id="u2", subject="bobs"))

    assert store.list_identities("u1") == [_identity(), later]
    assert store.delete_identity("u1", "sso_1", "sub-1")
    assert not store.delete_identity("u1", "sso_1", "sub-1")
    assert not store.delete_identity("u1", "sso_1", "bobs")  # another user's
    assert store.list_identities("u1") == [later]
    assert store.list_identities("u2") == [_identity(user_id="u2", subject="bobs")]


# -- sign-in settings of a connection --------------------------------------------------------


def test_a_connections_sign_in_settings_round_trip(store: Store) -> None:
    add_user(store)
    store.create_org(
        Org("org_1", "default", "acme", "Acme", NOW),
        Membership("org_1", "u1", OrgRole.OWNER, NOW),
    )
    connection = SSOConnectionInfo(
        id="sso_1",
        org_id="org_1",
        protocol=SSOProtocol.OIDC,
        domains=(),
        created_at=NOW,
        updated_at=NOW,
        issuer="https://idp.example",
        client_id="client",
        scopes=("openid",),
        auth_method="private_key_jwt",
        jit=False,
        jit_role="admin",
        trust_idp_mfa=True,
        userinfo=True,
    )
    store.create_sso_connection(connection, None)
    stored = store.get_sso_connection("sso_1")
    assert stored is not None
    assert dataclasses.replace(stored, has_client_secret=False) == connection

    defaults = dataclasses.replace(
        connection,
        auth_method="client_secret_basic",
        jit=True,
        jit_role="member",
        trust_idp_mfa=False,
        userinfo=False,
    )
    assert store.update_sso_connection(defaults, None) == defaults
