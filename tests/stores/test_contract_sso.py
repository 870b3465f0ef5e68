"""The ``# -- sso --`` part of the Store Protocol, checked against every store."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from authsome.errors import AlreadyExists, StoreError
from authsome.models import (
    Membership,
    Org,
    OrgRole,
    SSOConnectionInfo,
    SSOProtocol,
    StoredSecret,
)
from authsome.stores import Store
from tests.support.race import race

from ._factories import NOW, add_user

LATER = NOW + timedelta(minutes=1)
TENANT = "default"  # the tenant of the orgs o1 and o2; o3 is in "other"
SECRET = StoredSecret("sealed-token-1", sealed=True)


def oidc(
    connection_id: str = "c1",
    org_id: str = "o1",
    *,
    domains: tuple[str, ...] = ("acme.example",),
    created_at: datetime = NOW,
) -> SSOConnectionInfo:
    return SSOConnectionInfo(
        id=connection_id,
        org_id=org_id,
        protocol=SSOProtocol.OIDC,
        domains=domains,
        created_at=created_at,
        updated_at=created_at,
        issuer="https://idp.acme.example",
        client_id="client-1",
        scopes=("openid", "email"),
        has_client_secret=True,
    )


def saml(
    connection_id: str = "c1", org_id: str = "o1", *, domains: tuple[str, ...] = ()
) -> SSOConnectionInfo:
    return SSOConnectionInfo(
        id=connection_id,
        org_id=org_id,
        protocol=SSOProtocol.SAML,
        domains=domains,
        created_at=NOW,
        updated_at=NOW,
        entity_id="urn:acme:idp",
        sso_url="https://idp.acme.example/saml?x=1",
        x509_certificate="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )


@pytest.fixture
def orgs(store: Store) -> list[str]:
    """Orgs o1 and o2 in tenant "default" and o3 in tenant "other", each owned by
    its own user."""
    for i, tenant in ((1, TENANT), (2, TENANT), (3, "other")):
        add_user(store, f"u{i}", email=f"u{i}@example.com", tenant=tenant)
        org = Org(id=f"o{i}", tenant=tenant, slug=f"org{i}", name="Org", created_at=NOW)
        store.create_org(org, Membership(org.id, f"u{i}", OrgRole.OWNER, NOW))
    return ["o1", "o2", "o3"]


def test_unknown_connection_is_none_or_empty_everywhere(store: Store) -> None:
    assert store.get_sso_connection("nope") is None
    assert store.list_sso_connections("nope") == []
    assert store.find_sso_connection_by_domain(TENANT, "acme.example") is None
    assert store.get_sso_client_secret("nope") is None
    assert store.delete_sso_connection("nope") is False
    assert store.update_sso_connection(oidc("nope"), SECRET) is None


@pytest.mark.usefixtures("orgs")
def test_created_connection_reads_back_exactly(store: Store) -> None:
    connection = oidc(domains=("acme.example", "acme-corp.example"))
    store.create_sso_connection(connection, SECRET)

    assert store.get_sso_connection("c1") == connection
    assert store.list_sso_connections("o1") == [connection]
    assert store.find_sso_connection_by_domain(TENANT, "acme-corp.example") == connection
    assert store.get_sso_client_secret("c1") == SECRET


@pytest.mark.usefixtures("orgs")
def test_saml_connection_without_secret_reads_back(store: Store) -> None:
    connection = saml(domains=("acme.example",))
    store.create_sso_connection(connection, None)

    assert store.get_sso_connection("c1") == connection
    assert store.get_sso_client_secret("c1") is None


@pytest.mark.usefixtures("orgs")
def test_clear_secret_keeps_its_flag(store: Store) -> None:
    clear = StoredSecret("in-clear", sealed=False)
    store.create_sso_connection(oidc(), clear)
    assert store.get_sso_client_secret("c1") == clear


def test_connection_of_unknown_org_fails_and_leaves_nothing(store: Store) -> None:
    with pytest.raises(StoreError):
        store.create_sso_connection(oidc(org_id="nope"), SECRET)
    assert store.get_sso_connection("c1") is None
    assert store.find_sso_connection_by_domain(TENANT, "acme.example") is None


@pytest.mark.usefixtures("orgs")
def test_duplicate_id_is_refused(store: Store) -> None:
    store.create_sso_connection(oidc(), SECRET)
    with pytest.raises(AlreadyExists):
        store.create_sso_connection(oidc(domains=("other.example",)), SECRET)
    assert store.find_sso_connection_by_domain(TENANT, "other.example") is None


@pytest.mark.usefixtures("orgs")
@pytest.mark.parametrize("second_org", ["o1", "o2"])
def test_a_domain_has_one_owner_in_a_tenant(store: Store, second_org: str) -> None:
    first = oidc(domains=("acme.example",))
    store.create_sso_connection(first, SECRET)

    claim = oidc("c2", second_org, domains=("free.example", "acme.example"))
    with pytest.raises(AlreadyExists) as caught:
        store.create_sso_connection(claim, SECRET)

    assert "acme.example" not in str(caught.value)
    assert store.get_sso_connection("c2") is None
    assert store.find_sso_connection_by_domain(TENANT, "free.example") is None  # no half-write
    assert store.find_sso_connection_by_domain(TENANT, "acme.example") == first


@pytest.mark.usefixtures("orgs")
def test_other_tenants_may_list_the_same_domain(store: Store) -> None:
    ours = oidc("c1", "o1", domains=("acme.example",))
    theirs = oidc("c3", "o3", domains=("acme.example", "only-theirs.example"))
    store.create_sso_connection(ours, SECRET)
    store.create_sso_connection(theirs, SECRET)  # no conflict: another tenant

    assert store.find_sso_connection_by_domain(TENANT, "acme.example") == ours
    assert store.find_sso_connection_by_domain("other", "acme.example") == theirs
    assert store.find_sso_connection_by_domain(TENANT, "only-theirs.example") is None
    assert store.find_sso_connection_by_domain("nobody", "acme.example") is None

    # Updating or deleting in one tenant leaves the other tenant's claim alone.
    moved = dataclasses.replace(theirs, domains=("only-theirs.example",))
    assert store.update_sso_connection(moved, SECRET) == moved
    assert store.find_sso_connection_by_domain(TENANT, "acme.example") == ours
    assert store.find_sso_connection_by_domain("other", "acme.example") is None
    assert store.update_sso_connection(theirs, SECRET) == theirs
    assert store.delete_sso_connection("c1") is True
    assert store.find_sso_connection_by_domain("other", "acme.example") == theirs


@pytest.mark.usefixtures("orgs")
def test_domain_match_is_exact(store: Store) -> None:
    store.create_sso_connection(oidc(domains=("acme.example",)), SECRET)
    assert store.find_sso_connection_by_domain(TENANT, "sub.acme.example") is None
    assert store.find_sso_connection_by_domain(TENANT, "example") is None


@pytest.mark.usefixtures("orgs")
def test_update_replaces_settings_domains_and_secret(store: Store) -> None:
    store.create_sso_connection(oidc(domains=("old.example", "kept.example")), SECRET)
    new_secret = StoredSecret("sealed-token-2", sealed=True)
    # org_id and created_at given here are ignored: a connection never moves.
    change = dataclasses.replace(
        oidc(domains=("kept.example", "new.example"), created_at=LATER),
        org_id="o2",
        client_id="client-2",
    )

    updated = store.update_sso_connection(change, new_secret)

    expected = dataclasses.replace(change, org_id="o1", created_at=NOW)
    assert updated == expected
    assert store.get_sso_connection("c1") == expected
    assert store.get_sso_client_secret("c1") == new_secret
    assert store.find_sso_connection_by_domain(TENANT, "old.example") is None
    assert store.find_sso_connection_by_domain(TENANT, "new.example") == expected
    assert store.list_sso_connections("o2") == []


@pytest.mark.usefixtures("orgs")
def test_update_to_saml_drops_the_secret(store: Store) -> None:
    store.create_sso_connection(oidc(), SECRET)
    updated = store.update_sso_connection(saml(), None)
    assert updated is not None
    assert updated.has_client_secret is False
    assert store.get_sso_client_secret("c1") is None


@pytest.mark.usefixtures("orgs")
def test_update_claiming_a_taken_domain_changes_nothing(store: Store) -> None:
    mine = oidc(domains=("mine.example",))
    store.create_sso_connection(mine, SECRET)
    store.create_sso_connection(oidc("c2", "o2", domains=("theirs.example",)), SECRET)

    grab = dataclasses.replace(
        oidc(domains=("other.example", "theirs.example")), client_id="changed"
    )
    with pytest.raises(AlreadyExists):
        store.update_sso_connection(grab, StoredSecret("changed", sealed=False))

    assert store.get_sso_connection("c1") == mine
    assert store.get_sso_client_secret("c1") == SECRET
    assert store.find_sso_connection_by_domain(TENANT, "mine.example") == mine
    assert store.find_sso_connection_by_domain(TENANT, "other.example") is None


@pytest.mark.usefixtures("orgs")
def test_delete_frees_domains_and_secret(store: Store) -> None:
    store.create_sso_connection(oidc(), SECRET)

    assert store.delete_sso_connection("c1") is True
    assert store.delete_sso_connection("c1") is False
    assert store.get_sso_connection("c1") is None
    assert store.get_sso_client_secret("c1") is None
    assert store.find_sso_connection_by_domain(TENANT, "acme.example") is None
    store.create_sso_connection(oidc("c2", "o2"), SECRET)  # the domain is free again
    assert store.find_sso_connection_by_domain(TENANT, "acme.example") == oidc("c2", "o2")


@pytest.mark.usefixtures("orgs")
def test_list_is_per_org_oldest_first_ties_by_id(store: Store) -> None:
    late = oidc("c0", domains=(), created_at=LATER)
    b = oidc("cb", domains=())
    a = oidc("ca", domains=())
    for connection in (late, b, a):
        store.create_sso_connection(connection, SECRET)
    store.create_sso_connection(oidc("cx", "o2", domains=()), SECRET)

    assert store.list_sso_connections("o1") == [a, b, late]


@pytest.mark.usefixtures("orgs")
@pytest.mark.parametrize(
    ("connection", "secret"),
    [
        (oidc(), None),  # says it has a secret, none given
        (saml(), SECRET),  # says it has none, one given
        (oidc(domains=("a.example", "a.example")), SECRET),
    ],
)
def test_self_contradicting_records_are_a_value_error(
    store: Store, connection: SSOConnectionInfo, secret: StoredSecret | None
) -> None:
    with pytest.raises(ValueError, match=r"secret|twice"):
        store.create_sso_connection(connection, secret)
    assert store.get_sso_connection("c1") is None


@pytest.mark.usefixtures("orgs")
def test_concurrent_claims_of_one_domain_let_exactly_one_win(store: Store) -> None:
    def claim(i: int) -> str:
        try:
            store.create_sso_connection(
                oidc(f"c{i}", f"o{i % 2 + 1}", domains=("contested.example",)), SECRET
            )
        except AlreadyExists:
            return "lost"
        return "won"

    outcomes = race(claim, range(4))

    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
    owner = store.find_sso_connection_by_domain(TENANT, "contested.example")
    assert owner is not None
    assert store.get_sso_connection(owner.id) == owner
