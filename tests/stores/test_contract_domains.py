"""The custom-domain part of the Store contract, run against every store."""

from __future__ import annotations

from collections.abc import Callable
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


def test_created_domain_is_found_by_id_and_once_verified_by_hostname(store: Store) -> None:
    domain = add_domain(store)
    assert store.get_domain("dom1") == domain
    assert domain.verified_at is None
    assert store.find_domain_by_hostname("login.acme.com") is None  # pending: no owner
    verified = store.mark_domain_verified("dom1", LATER)
    assert store.find_domain_by_hostname("login.acme.com") == verified


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
    store.mark_domain_verified("dom1", LATER)
    assert store.find_domain_by_hostname("acme.com") is None
    assert store.find_domain_by_hostname("x.login.acme.com") is None
    assert store.find_domain_by_hostname("*.acme.com") is None


def test_several_tenants_may_claim_a_hostname_nobody_has_verified(store: Store) -> None:
    squatter = add_domain(store, "dom1", tenant="evil")
    owner = add_domain(store, "dom2", tenant="acme")
    assert store.list_domains("evil") == [squatter]
    assert store.list_domains("acme") == [owner]
    assert store.get_domain_token("dom2") == "token-dom2"
    assert store.find_domain_by_hostname("login.acme.com") is None


def test_a_tenant_claims_a_hostname_once(store: Store) -> None:
    add_domain(store, "dom1", tenant="acme")
    with pytest.raises(AlreadyExists) as excinfo:
        add_domain(store, "dom2", tenant="acme")
    assert "token" not in str(excinfo.value)
    assert store.get_domain("dom2") is None
    store.mark_domain_verified("dom1", LATER)
    with pytest.raises(AlreadyExists):  # verified or not
        add_domain(store, "dom3", tenant="acme")
    assert [d.id for d in store.list_domains("acme")] == ["dom1"]


def test_a_verified_hostname_cannot_be_claimed_by_another_tenant(store: Store) -> None:
    add_domain(store, "dom1", tenant="acme")
    store.mark_domain_verified("dom1", LATER)
    with pytest.raises(AlreadyExists) as excinfo:
        add_domain(store, "dom2", tenant="globex")
    assert "verified by another tenant" in str(excinfo.value)
    assert store.get_domain("dom2") is None
    assert store.list_domains("globex") == []


def test_the_first_claim_to_be_verified_wins(store: Store) -> None:
    add_domain(store, "dom1", tenant="evil")
    add_domain(store, "dom2", tenant="acme")
    won = store.mark_domain_verified("dom2", LATER)
    with pytest.raises(AlreadyExists) as excinfo:
        store.mark_domain_verified("dom1", LATER)
    assert "verified by another tenant" in str(excinfo.value)
    assert store.find_domain_by_hostname("login.acme.com") == won
    lost = store.get_domain("dom1")
    assert lost is not None
    assert lost.verified_at is None  # kept pending, changed in nothing
    # Once the winner lets the hostname go, the other claim can be verified.
    store.delete_domain("dom2")
    assert store.find_domain_by_hostname("login.acme.com") is None
    again = store.mark_domain_verified("dom1", LATER)
    assert again is not None
    assert store.find_domain_by_hostname("login.acme.com") == again


def test_mark_verified_of_a_verified_domain_is_not_a_conflict(store: Store) -> None:
    add_domain(store, "dom1", tenant="acme")
    add_domain(store, "dom2", tenant="evil")
    first = store.mark_domain_verified("dom1", LATER)
    assert store.mark_domain_verified("dom1", LATER + timedelta(days=1)) == first


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
    # The claim is gone: the tenant can claim the hostname again.
    add_domain(store, "dom2", tenant="acme")
    assert store.get_domain_token("dom2") == "token-dom2"


def test_deleting_a_verified_domain_frees_the_hostname(store: Store) -> None:
    add_domain(store, "dom1", tenant="acme")
    store.mark_domain_verified("dom1", LATER)
    assert store.delete_domain("dom1") is True
    assert store.find_domain_by_hostname("login.acme.com") is None
    add_domain(store, "dom2", tenant="globex")
    assert store.mark_domain_verified("dom2", LATER) is not None


def test_delete_unknown_domain_is_false(store: Store) -> None:
    assert store.delete_domain("nope") is False
    add_domain(store)
    assert store.delete_domain("dom1") is True
    assert store.delete_domain("dom1") is False


def _race(count: int, attempt: Callable[[int], object]) -> list[str]:
    """Run ``attempt(i)`` in ``count`` threads at once; "won" or "lost" each, sorted."""

    def outcome(index: int) -> str:
        try:
            attempt(index)
        except AlreadyExists:
            return "lost"
        return "won"

    return sorted(race(outcome, range(count)))


def test_concurrent_claims_of_one_hostname_by_one_tenant_have_one_winner(store: Store) -> None:
    outcomes = _race(8, lambda i: add_domain(store, f"dom{i}", tenant="acme"))
    assert outcomes == ["lost"] * 7 + ["won"]
    [winner] = store.list_domains("acme")
    assert store.get_domain_token(winner.id) == f"token-{winner.id}"


def test_concurrent_verifications_of_one_hostname_have_one_winner(store: Store) -> None:
    for i in range(8):
        add_domain(store, f"dom{i}", tenant=f"t{i}")
    outcomes = _race(8, lambda i: store.mark_domain_verified(f"dom{i}", LATER))
    assert outcomes == ["lost"] * 7 + ["won"]
    winner = store.find_domain_by_hostname("login.acme.com")
    assert winner is not None
    verified = [store.get_domain(f"dom{i}") for i in range(8)]
    assert [d.id for d in verified if d is not None and d.verified] == [winner.id]


def test_deleting_pending_claims_keeps_newer_ones_and_verified_domains(store: Store) -> None:
    old_pending = Domain("dom1", "acme", "a.acme.com", NOW)
    old_verified = Domain("dom2", "acme", "b.acme.com", NOW)
    newer = Domain("dom3", "globex", "a.acme.com", NOW + timedelta(seconds=1))
    for domain in (old_pending, old_verified, newer):
        store.create_domain(domain, f"token-{domain.id}")
    store.mark_domain_verified("dom2", LATER)

    assert store.delete_pending_domains(NOW) == 1

    assert store.get_domain("dom1") is None
    assert store.get_domain_token("dom1") is None
    assert store.get_domain("dom2") is not None
    assert store.get_domain("dom3") == newer
    assert store.delete_pending_domains(NOW) == 0
    # The expired claim no longer blocks its tenant from claiming the hostname again.
    store.create_domain(Domain("dom4", "acme", "a.acme.com", LATER), "token-dom4")
