"""Custom domains follow the plan: verifying is gated like adding, a tenant whose plan
lost the feature stops routing by hostname (and routes again after an upgrade), and a
claim left unverified expires after seven days, on every store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from authsome import (
    Authsome,
    Feature,
    FeatureNotEntitled,
    LedgerUnavailable,
    VerificationFailed,
)
from authsome.domains import PENDING_CLAIM_TTL
from authsome.stores import Store
from authsome.testing import DenyingLedger, FailingLedger
from tests.conftest import AuthFactory, FakeClock
from tests.test_domains import FakeResolver
from tests.test_engine_stores import STORES

CUSTOM_DOMAINS = Feature.CUSTOM_DOMAINS.value
HOST = "login.acme.com"


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    return STORES[request.param](request)


@pytest.fixture
def dns() -> FakeResolver:
    return FakeResolver()


@pytest.fixture
def plan() -> DenyingLedger:
    """A ledger whose plan the test changes: it allows everything until ``denied`` is set."""
    return DenyingLedger("nothing")


@pytest.fixture
def engine(
    make_auth: AuthFactory, store: Store, dns: FakeResolver, plan: DenyingLedger
) -> Authsome:
    return make_auth(store=store, ledger=plan, dns_resolver=dns)


def _downgrade(plan: DenyingLedger) -> None:
    plan.denied = frozenset({CUSTOM_DOMAINS})


def _upgrade(plan: DenyingLedger) -> None:
    plan.denied = frozenset({"nothing"})


def test_verify_after_a_downgrade_is_refused_without_a_lookup(
    engine: Authsome, dns: FakeResolver, plan: DenyingLedger
) -> None:
    challenge = engine.domains.add(HOST, tenant="acme")
    dns.publish(challenge)
    _downgrade(plan)

    with pytest.raises(FeatureNotEntitled) as denied:
        engine.domains.verify(challenge.domain.id)

    assert denied.value.feature == CUSTOM_DOMAINS
    assert dns.lookups == []
    assert not engine.domains.get(challenge.domain.id).verified
    assert engine.domains.tenant_for_host(HOST) is None
    assert plan.checks(CUSTOM_DOMAINS)[-1].ctx.tenant == "acme"


def test_routing_stops_after_a_downgrade_and_resumes_after_an_upgrade(
    engine: Authsome, dns: FakeResolver, plan: DenyingLedger
) -> None:
    challenge = engine.domains.add(HOST, tenant="acme")
    dns.publish(challenge)
    engine.domains.verify(challenge.domain.id)
    assert engine.domains.tenant_for_host(HOST) == "acme"

    _downgrade(plan)
    assert engine.domains.tenant_for_host(HOST) is None
    assert engine.domains.tenant_for_host("www.acme.com") is None  # unknown: no check needed

    _upgrade(plan)
    assert engine.domains.tenant_for_host(HOST) == "acme"
    # The domain was kept through the downgrade: nothing to verify again.
    assert engine.domains.get(challenge.domain.id).verified


def test_routing_asks_the_ledger_only_for_a_verified_hostname(
    engine: Authsome, plan: DenyingLedger
) -> None:
    engine.domains.add(HOST, tenant="acme")
    plan.clear()
    assert engine.domains.tenant_for_host(HOST) is None
    assert engine.domains.tenant_for_host("not a host") is None
    assert plan.calls == []


def test_a_failing_ledger_follows_the_ledger_error_policy_when_routing(
    make_auth: AuthFactory, store: Store, dns: FakeResolver
) -> None:
    setup = make_auth(store=store, dns_resolver=dns)
    challenge = setup.domains.add(HOST, tenant="acme")
    dns.publish(challenge)
    setup.domains.verify(challenge.domain.id)
    failing = FailingLedger(fail=["check_entitlement"])

    strict = make_auth(store=store, ledger=failing, dns_resolver=dns)
    with pytest.raises(LedgerUnavailable):
        strict.domains.tenant_for_host(HOST)
    lenient = make_auth(store=store, ledger=failing, dns_resolver=dns, on_ledger_error="allow")
    assert lenient.domains.tenant_for_host(HOST) == "acme"


def test_remove_is_not_gated(engine: Authsome, plan: DenyingLedger) -> None:
    challenge = engine.domains.add(HOST, tenant="acme")
    _downgrade(plan)
    assert engine.domains.remove(challenge.domain.id) is True


def test_pending_claims_expire_after_seven_days(
    engine: Authsome, dns: FakeResolver, clock: FakeClock
) -> None:
    assert timedelta(days=7) == PENDING_CLAIM_TTL
    challenge = engine.domains.add(HOST, tenant="acme")
    dns.publish(challenge)
    clock.advance(days=7)

    with pytest.raises(VerificationFailed, match="expired"):
        engine.domains.verify(challenge.domain.id)
    assert dns.lookups == []
    assert engine.domains.tenant_for_host(HOST) is None

    # The tenant may claim it again, with a new token, and verify that claim.
    again = engine.domains.add(HOST, tenant="acme")
    assert again.record_value != challenge.record_value
    assert [d.id for d in engine.domains.list(tenant="acme")] == [again.domain.id]
    dns.publish(again)
    assert engine.domains.verify(again.domain.id).verified
    assert engine.domains.tenant_for_host(HOST) == "acme"


def test_a_claim_verified_within_seven_days_never_expires(
    engine: Authsome, dns: FakeResolver, clock: FakeClock
) -> None:
    challenge = engine.domains.add(HOST, tenant="acme")
    dns.publish(challenge)
    clock.advance(days=6, hours=23)
    engine.domains.verify(challenge.domain.id)
    clock.advance(days=365)
    engine.domains.add("other.acme.com", tenant="acme")  # purges expired claims
    assert engine.domains.tenant_for_host(HOST) == "acme"
    assert engine.domains.verify(challenge.domain.id).verified


def test_expired_claims_of_other_tenants_are_purged_too(
    engine: Authsome, store: Store, clock: FakeClock
) -> None:
    engine.domains.add(HOST, tenant="globex")
    clock.advance(days=8)
    engine.domains.add(HOST, tenant="acme")
    assert store.list_domains("globex") == []
