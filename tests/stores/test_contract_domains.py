"""The custom-domain part of the Store contract, run against every store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from authsome.errors import AlreadyExists
from authsome.models import Domain
from authsome.stores import Store
from tests.support.race import race

from ._factories import NOW

LATER = NOW + timedelta(minutes=5)


def make_domain(
    domain_id: str = "dom1", *, tenant: str = "acme", hostname: str = "login.acme.com"
) -> Domain:
    return Domain(id=domain_id, tenant=tenant, hostname=hostname, created_at=NOW)


def add_domain(store: Store, domain_id: str = "dom1", **fields: str) -> Domain:
    """Create a domain whose token is ``token-<id>``."""
    domain = make_domain(domain_id, **fields)
    store.create_domain(domain, f"token-{domain_id}")
    return domain


def test_created_domain_is_found_by_id_and_by_hostname(store: Store) -> None:
    domain = add_domain(store)
    assert store.get_domain("dom1") == domain
    assert store.find_domain_by_hostname("login.acme.com") == domain
    assert domain.verified_at is None


def test_created_at_round_trips_to_the_microsecond(store: Store) -> None:
    add_domain(store)
    stored = store.get_domain("dom1")
    assert stored is not None
    assert stored.created_at == NOW
    assert stored.created_at.utcoffset() == timedelta(0)


def test_unknown_domain_is_none(store: Store) -> None:
    assert store.get_domain("nope") is None
    assert store.get_domain_token("nope") is None
    assert store.find_domain_by_hostname("login.acme.com") is None


def test_the_token_is_kept_apart_from_the_record(store: Store) -> None:
    add_domain(store)
    assert store.get_domain_token("dom1") == "token-dom1"


def test_hostname_lookup_is_exact(store: Store) -> None:
    add_domain(store, hostname="login.acme.com")
    assert store.find_domain_by_hostname("acme.com") is None
    assert store.find_domain_by_hostname("x.login.acme.com") is None
    assert store.find_domain_by_hostname("*.acme.com") is None


def test_a_hostname_is_unique_across_tenants(store: Store) -> None:
    add_domain(store, "dom1", tenant="acme")
    with pytest.raises(AlreadyExists) as excinfo:
        add_domain(store, "dom2", tenant="globex")
    assert "token" not in str(excinfo.value)
    assert store.get_domain("dom2") is None
    assert store.list_domains("globex") == []


def test_a_domain_id_is_unique(store: Store) -> None:
    add_domain(store, "dom1", hostname="a.acme.com")
    with pytest.raises(AlreadyExists):
        add_domain(store, "dom1", hostname="b.acme.com")
    assert store.find_domain_by_hostname("b.acme.com") is None


def test_a_wildcard_and_its_base_are_distinct_hostnames(store: Store) -> None:
    add_domain(store, "dom1", hostname="acme.com")
    add_domain(store, "dom2", hostname="*.acme.com")
    assert {d.id for d in store.list_domains("acme")} == {"dom1", "dom2"}


def test_list_domains_is_per_tenant_and_ordered_by_hostname(store: Store) -> None:
    add_domain(store, "d1", tenant="acme", hostname="zeta.acme.com")
    add_domain(store, "d2", tenant="acme", hostname="alpha.acme.com")
    add_domain(store, "d3", tenant="globex", hostname="login.globex.com")
    assert [d.id for d in store.list_domains("acme")] == ["d2", "d1"]
    assert [d.id for d in store.list_domains("globex")] == ["d3"]
    assert store.list_domains("nobody") == []


def test_mark_verified_sets_verified_at_and_returns_the_stored_domain(store: Store) -> None:
    add_domain(store)
    verified = store.mark_domain_verified("dom1", LATER)
    assert verified is not None
    assert verified.verified_at == LATER
    assert store.get_domain("dom1") == verified
    assert store.find_domain_by_hostname("login.acme.com") == verified


def test_mark_verified_keeps_the_first_verification_time(store: Store) -> None:
    add_domain(store)
    store.mark_domain_verified("dom1", LATER)
    again = store.mark_domain_verified("dom1", LATER + timedelta(days=1))
    assert again is not None
    assert again.verified_at == LATER


def test_mark_verified_of_an_unknown_domain_is_none(store: Store) -> None:
    assert store.mark_domain_verified("nope", LATER) is None
    assert store.get_domain("nope") is None


def test_delete_domain_removes_record_token_and_hostname_claim(store: Store) -> None:
    add_domain(store, "dom1", tenant="acme")
    assert store.delete_domain("dom1") is True
    assert store.get_domain("dom1") is None
    assert store.get_domain_token("dom1") is None
    assert store.find_domain_by_hostname("login.acme.com") is None
    assert store.list_domains("acme") == []
    # The hostname is free again, for any tenant.
    add_domain(store, "dom2", tenant="globex")
    assert store.get_domain_token("dom2") == "token-dom2"


def test_delete_unknown_domain_is_false(store: Store) -> None:
    assert store.delete_domain("nope") is False
    add_domain(store)
    assert store.delete_domain("dom1") is True
    assert store.delete_domain("dom1") is False


def test_concurrent_claims_of_one_hostname_have_one_winner(store: Store) -> None:
    def claim(index: int) -> str:
        try:
            add_domain(store, f"dom{index}", tenant=f"t{index}")
        except AlreadyExists:
            return "lost"
        return "won"

    outcomes = race(claim, range(8))
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    winner = store.find_domain_by_hostname("login.acme.com")
    assert winner is not None
    assert store.get_domain_token(winner.id) == f"token-{winner.id}"
