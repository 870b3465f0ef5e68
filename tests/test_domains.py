"""Custom domains: the plan gate, the DNS challenge, routing, and hostname validation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authsome import (
    AlreadyExists,
    Authsome,
    DomainChallenge,
    Feature,
    FeatureNotEntitled,
    LedgerUnavailable,
    NotFound,
    ValidationError,
    VerificationFailed,
)
from authsome.bridge import LedgerContext
from authsome.domains import DnsPythonResolver, normalize_hostname
from authsome.errors import ExtraNotInstalled
from authsome.stores import MemoryStore, SQLiteStore, Store
from authsome.testing import DenyingLedger, FailingLedger, RecordingLedger
from tests.conftest import FAST, AuthFactory, FakeClock

CUSTOM_DOMAINS = "authsome.feature.custom_domains"


class FakeResolver:
    """An in-memory DNS zone: TXT texts per name; names in ``failing`` raise."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.failing: dict[str, Exception] = {}
        self.lookups: list[str] = []

    def publish(self, challenge: DomainChallenge) -> None:
        self.records.setdefault(challenge.record_name, []).append(challenge.record_value)

    def resolve_txt(self, name: str) -> list[str]:
        self.lookups.append(name)
        if name in self.failing:
            raise self.failing[name]
        return list(self.records.get(name, []))


@pytest.fixture
def dns() -> FakeResolver:
    return FakeResolver()


@pytest.fixture
def auth(make_auth: AuthFactory, ledger: RecordingLedger, dns: FakeResolver) -> Authsome:
    return make_auth(ledger=ledger, dns_resolver=dns)


def _add_verified(auth: Authsome, dns: FakeResolver, hostname: str, tenant: str) -> str:
    challenge = auth.domains.add(hostname, tenant=tenant, allow_wildcard=hostname[0] == "*")
    dns.publish(challenge)
    return auth.domains.verify(challenge.domain.id).id


def _all_domains(store: Store, *tenants: str) -> list[object]:
    return [d for tenant in tenants for d in store.list_domains(tenant)]


# -- the plan gate ---------------------------------------------------------------------


def test_denied_add_raises_with_the_key_and_stores_nothing(
    make_auth: AuthFactory, dns: FakeResolver
) -> None:
    ledger = DenyingLedger(CUSTOM_DOMAINS)
    auth = make_auth(ledger=ledger, dns_resolver=dns)
    with pytest.raises(FeatureNotEntitled) as excinfo:
        auth.domains.add("login.acme.com", tenant="acme")
    assert excinfo.value.feature == CUSTOM_DOMAINS
    assert auth.store.find_domain_by_hostname("login.acme.com") is None
    assert auth.store.list_domains("acme") == []
    # The check was the first and only thing the ledger saw.
    assert [(c.kind, c.feature_key, c.allowed) for c in ledger.calls] == [
        ("check_entitlement", CUSTOM_DOMAINS, False)
    ]
    assert ledger.calls[0].ctx == LedgerContext(tenant="acme")


def test_denied_wildcard_add_stores_nothing(make_auth: AuthFactory) -> None:
    auth = make_auth(ledger=DenyingLedger(CUSTOM_DOMAINS))
    with pytest.raises(FeatureNotEntitled):
        auth.domains.add("*.acme.com", tenant="acme", allow_wildcard=True)
    assert auth.store.list_domains("acme") == []


def test_denying_other_features_does_not_block_custom_domains(make_auth: AuthFactory) -> None:
    auth = make_auth(ledger=DenyingLedger(str(Feature.SSO), str(Feature.MFA)))
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    assert auth.store.get_domain(challenge.domain.id) == challenge.domain


def test_add_checks_the_entitlement_before_writing(auth: Authsome, ledger: RecordingLedger) -> None:
    auth.domains.add("login.acme.com", tenant="acme")
    assert [(c.kind, c.feature_key) for c in ledger.calls] == [
        ("check_entitlement", CUSTOM_DOMAINS)
    ]
    assert ledger.calls[0].ctx == LedgerContext(tenant="acme")


def test_a_failing_ledger_refuses_the_add_under_the_default_policy(make_auth: AuthFactory) -> None:
    auth = make_auth(ledger=FailingLedger())
    with pytest.raises(LedgerUnavailable):
        auth.domains.add("login.acme.com", tenant="acme")
    assert auth.store.list_domains("acme") == []


def test_domain_operations_record_no_usage(
    auth: Authsome, ledger: RecordingLedger, dns: FakeResolver
) -> None:
    domain_id = _add_verified(auth, dns, "login.acme.com", "acme")
    auth.domains.tenant_for_host("login.acme.com")
    auth.domains.list(tenant="acme")
    auth.domains.remove(domain_id)
    assert ledger.usage() == []


def test_remove_is_not_gated(make_auth: AuthFactory, dns: FakeResolver) -> None:
    # A tenant downgraded after adding a domain can always clean up.
    store = MemoryStore()
    permitted = make_auth(store=store, dns_resolver=dns)
    challenge = permitted.domains.add("login.acme.com", tenant="acme")
    denied_ledger = DenyingLedger()
    denied = make_auth(store=store, ledger=denied_ledger, dns_resolver=dns)
    assert denied.domains.remove(challenge.domain.id) is True
    assert denied_ledger.calls == []


# -- end to end ------------------------------------------------------------------------


def test_add_returns_the_txt_record_to_publish(auth: Authsome, clock: FakeClock) -> None:
    challenge = auth.domains.add("Login.Acme.COM.", tenant="acme")
    domain = challenge.domain
    assert domain.hostname == "login.acme.com"
    assert domain.tenant == "acme"
    assert domain.created_at == clock.now
    assert not domain.verified
    assert domain.verified_at is None
    assert domain.id.startswith("dom_")
    assert challenge.record_type == "TXT"
    assert challenge.record_name == "_authsome-challenge.login.acme.com"
    prefix, _, token = challenge.record_value.partition("=")
    assert prefix == "authsome-verify"
    assert len(token) >= 43  # 256 bits, URL-safe base64
    assert auth.store.get_domain(domain.id) == domain


def test_each_domain_gets_its_own_random_token(auth: Authsome) -> None:
    values = {auth.domains.add(f"h{i}.acme.com", tenant="acme").record_value for i in range(20)}
    assert len(values) == 20


def test_challenge_shows_the_same_record_again(auth: Authsome) -> None:
    first = auth.domains.add("login.acme.com", tenant="acme")
    again = auth.domains.challenge(first.domain.id)
    assert (again.record_name, again.record_value) == (first.record_name, first.record_value)
    with pytest.raises(NotFound):
        auth.domains.challenge("dom_unknown")


def test_publish_then_verify_then_route(
    auth: Authsome, dns: FakeResolver, clock: FakeClock
) -> None:
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    assert auth.domains.tenant_for_host("login.acme.com") is None
    dns.publish(challenge)
    clock.advance(minutes=10)

    verified = auth.domains.verify(challenge.domain.id)

    assert verified.verified
    assert verified.verified_at == clock.now
    assert dns.lookups == ["_authsome-challenge.login.acme.com"]
    assert auth.domains.get(verified.id) == verified
    assert auth.domains.list(tenant="acme") == [verified]
    assert auth.domains.tenant_for_host("login.acme.com") == "acme"


def test_verify_finds_the_value_among_other_records(auth: Authsome, dns: FakeResolver) -> None:
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    dns.records[challenge.record_name] = [
        "v=spf1 -all",
        f"  {challenge.record_value} ",  # padding some DNS consoles add
        "authsome-verify=stale",
    ]
    assert auth.domains.verify(challenge.domain.id).verified


def test_verifying_a_verified_domain_returns_it_without_a_lookup(
    auth: Authsome, dns: FakeResolver, clock: FakeClock
) -> None:
    domain_id = _add_verified(auth, dns, "login.acme.com", "acme")
    first = auth.domains.get(domain_id)
    dns.records.clear()
    clock.advance(days=1)
    assert auth.domains.verify(domain_id) == first
    assert len(dns.lookups) == 1


def test_verify_fails_without_the_record_and_the_domain_stays_unverified(
    auth: Authsome, dns: FakeResolver
) -> None:
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    with pytest.raises(VerificationFailed) as excinfo:
        auth.domains.verify(challenge.domain.id)
    assert "_authsome-challenge.login.acme.com" in excinfo.value.reason
    assert not auth.domains.get(challenge.domain.id).verified
    assert auth.domains.tenant_for_host("login.acme.com") is None


@pytest.mark.parametrize(
    "published",
    [
        "authsome-verify=wrong",
        "{value}x",
        "x{value}",
        "{upper}",  # tokens are case-sensitive
        "{token}",  # the bare token without its prefix
    ],
)
def test_verify_fails_on_a_wrong_value(auth: Authsome, dns: FakeResolver, published: str) -> None:
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    value = challenge.record_value
    text = published.format(value=value, upper=value.upper(), token=value.partition("=")[2])
    dns.records[challenge.record_name] = [text]
    with pytest.raises(VerificationFailed, match="1 record"):
        auth.domains.verify(challenge.domain.id)
    assert not auth.domains.get(challenge.domain.id).verified


def test_another_domains_token_does_not_verify(auth: Authsome, dns: FakeResolver) -> None:
    mine = auth.domains.add("login.acme.com", tenant="acme")
    other = auth.domains.add("login.globex.com", tenant="globex")
    dns.records[mine.record_name] = [other.record_value]
    with pytest.raises(VerificationFailed):
        auth.domains.verify(mine.domain.id)


def test_the_record_must_sit_at_the_challenge_name(auth: Authsome, dns: FakeResolver) -> None:
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    dns.records["login.acme.com"] = [challenge.record_value]
    with pytest.raises(VerificationFailed):
        auth.domains.verify(challenge.domain.id)


@pytest.mark.parametrize(
    "error", [TimeoutError("timed out"), OSError("network down"), RuntimeError("boom")]
)
def test_resolver_errors_become_verification_failed(
    auth: Authsome, dns: FakeResolver, error: Exception
) -> None:
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    dns.failing[challenge.record_name] = error
    with pytest.raises(VerificationFailed) as excinfo:
        auth.domains.verify(challenge.domain.id)
    assert type(error).__name__ in excinfo.value.reason
    assert not auth.domains.get(challenge.domain.id).verified


def test_a_resolver_returning_garbage_is_a_type_error(make_auth: AuthFactory) -> None:
    class Broken:
        def resolve_txt(self, name: str) -> object:
            return "not a list"

    auth = make_auth(dns_resolver=Broken())
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    with pytest.raises(TypeError, match="list of str"):
        auth.domains.verify(challenge.domain.id)
    assert not auth.domains.get(challenge.domain.id).verified


def test_verify_of_an_unknown_or_removed_domain_is_not_found(
    auth: Authsome, dns: FakeResolver
) -> None:
    with pytest.raises(NotFound):
        auth.domains.verify("dom_unknown")
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    dns.publish(challenge)
    assert auth.domains.remove(challenge.domain.id) is True
    with pytest.raises(NotFound):
        auth.domains.verify(challenge.domain.id)
    assert dns.lookups == []


def test_remove_stops_routing_and_frees_the_hostname(auth: Authsome, dns: FakeResolver) -> None:
    domain_id = _add_verified(auth, dns, "login.acme.com", "acme")
    assert auth.domains.remove(domain_id) is True
    assert auth.domains.remove(domain_id) is False
    assert auth.domains.tenant_for_host("login.acme.com") is None
    assert auth.domains.list(tenant="acme") == []
    with pytest.raises(NotFound):
        auth.domains.get(domain_id)
    # Someone else may claim it now.
    assert auth.domains.add("login.acme.com", tenant="globex").domain.tenant == "globex"


def test_list_is_per_tenant(auth: Authsome) -> None:
    auth.domains.add("b.acme.com", tenant="acme")
    auth.domains.add("a.acme.com", tenant="acme")
    auth.domains.add("login.globex.com", tenant="globex")
    assert [d.hostname for d in auth.domains.list(tenant="acme")] == ["a.acme.com", "b.acme.com"]
    assert [d.hostname for d in auth.domains.list(tenant="globex")] == ["login.globex.com"]
    assert auth.domains.list(tenant="nobody") == []


def test_the_tenant_defaults_to_default_like_everywhere(auth: Authsome) -> None:
    challenge = auth.domains.add("login.example.com")
    assert challenge.domain.tenant == "default"
    assert auth.domains.list() == [challenge.domain]
    assert auth.domains.list(tenant="default") == [challenge.domain]


def test_a_positional_tenant_still_lists_with_a_deprecation_warning(auth: Authsome) -> None:
    mine = auth.domains.add("login.acme.com", tenant="acme").domain
    with pytest.warns(DeprecationWarning, match=r"domains\.list\(tenant=\.\.\.\)") as caught:
        listed = auth.domains.list("acme")
    assert listed == [mine]
    assert caught[0].filename == __file__  # the warning points at the caller's line


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("acme",), {"tenant": "globex"}, "both positionally and as a keyword"),
        (("acme", "globex"), {}, "at most 1 positional argument"),
    ],
)
def test_a_tenant_given_twice_is_a_type_error(
    auth: Authsome, args: tuple[str, ...], kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        auth.domains.list(*args, **kwargs)


# -- uniqueness ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling", ["login.acme.com", "LOGIN.ACME.COM", "login.acme.com.", " Login.Acme.Com "]
)
def test_a_tenant_claims_a_hostname_once(auth: Authsome, spelling: str) -> None:
    auth.domains.add("login.acme.com", tenant="acme")
    with pytest.raises(AlreadyExists):
        auth.domains.add(spelling, tenant="acme")
    assert len(auth.store.list_domains("acme")) == 1


@pytest.mark.parametrize(
    "spelling", ["login.acme.com", "LOGIN.ACME.COM", "login.acme.com.", " Login.Acme.Com "]
)
def test_a_verified_hostname_is_unique_across_tenants(
    auth: Authsome, dns: FakeResolver, spelling: str
) -> None:
    _add_verified(auth, dns, "login.acme.com", "acme")
    with pytest.raises(AlreadyExists):
        auth.domains.add(spelling, tenant="globex")
    assert auth.store.list_domains("globex") == []


def test_unicode_and_punycode_spellings_are_one_hostname(auth: Authsome, dns: FakeResolver) -> None:
    auth.domains.add("bücher.example.com", tenant="acme")
    with pytest.raises(AlreadyExists):
        auth.domains.add("xn--bcher-kva.example.com", tenant="acme")
    _add_verified(auth, dns, "BÜCHER.example.com", "globex")
    with pytest.raises(AlreadyExists):
        auth.domains.add("xn--bcher-kva.example.com", tenant="other")


def test_an_unverifiable_claim_does_not_block_the_real_owner(
    auth: Authsome, dns: FakeResolver
) -> None:
    squatter = auth.domains.add("login.victim.com", tenant="evil")  # never published
    owner = auth.domains.add("login.victim.com", tenant="victim")
    assert squatter.record_value != owner.record_value
    assert auth.domains.tenant_for_host("login.victim.com") is None  # pending routes nothing
    dns.publish(owner)
    with pytest.raises(VerificationFailed):  # the squatter's token is not in DNS
        auth.domains.verify(squatter.domain.id)

    assert auth.domains.verify(owner.domain.id).verified
    assert auth.domains.tenant_for_host("login.victim.com") == "victim"
    with pytest.raises(AlreadyExists):
        auth.domains.verify(squatter.domain.id)


def test_the_first_tenant_to_verify_owns_the_hostname(
    auth: Authsome, dns: FakeResolver, ledger: RecordingLedger
) -> None:
    first = auth.domains.add("login.acme.com", tenant="acme")
    second = auth.domains.add("login.acme.com", tenant="globex")
    dns.publish(first)
    dns.publish(second)  # both could prove control, e.g. the name changed hands
    auth.domains.verify(first.domain.id)
    dns.lookups.clear()

    with pytest.raises(AlreadyExists) as excinfo:
        auth.domains.verify(second.domain.id)

    assert "verified by another tenant" in str(excinfo.value)
    assert dns.lookups == []  # refused before any DNS traffic
    assert not auth.domains.get(second.domain.id).verified
    assert auth.domains.tenant_for_host("login.acme.com") == "acme"
    # The winner lets go: the other claim can now be verified.
    auth.domains.remove(first.domain.id)
    assert auth.domains.verify(second.domain.id).verified
    assert auth.domains.tenant_for_host("login.acme.com") == "globex"


def test_a_verification_race_lost_in_the_store_is_already_exists(
    make_auth: AuthFactory, auth: Authsome, dns: FakeResolver, clock: FakeClock
) -> None:
    first = auth.domains.add("login.acme.com", tenant="acme")
    second = auth.domains.add("login.acme.com", tenant="globex")
    dns.publish(second)

    class WinsDuringLookup(FakeResolver):
        def resolve_txt(self, name: str) -> list[str]:
            auth.store.mark_domain_verified(first.domain.id, clock())  # acme wins meanwhile
            return dns.resolve_txt(name)

    racing = make_auth(store=auth.store, dns_resolver=WinsDuringLookup())
    with pytest.raises(AlreadyExists):
        racing.domains.verify(second.domain.id)
    assert auth.domains.tenant_for_host("login.acme.com") == "acme"


# -- routing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "login.acme.com",
        "LOGIN.acme.COM",
        "login.acme.com.",
        "login.acme.com:443",
        "login.acme.com.:8443",
        "login.acme.com\u3002",
    ],
)
def test_tenant_for_host_normalizes_the_host(auth: Authsome, dns: FakeResolver, host: str) -> None:
    _add_verified(auth, dns, "login.acme.com", "acme")
    assert auth.domains.tenant_for_host(host) == "acme"


def test_tenant_for_host_matches_unicode_hosts_by_their_idna_form(
    auth: Authsome, dns: FakeResolver
) -> None:
    _add_verified(auth, dns, "bücher.example.com", "acme")
    assert auth.domains.tenant_for_host("xn--bcher-kva.example.com") == "acme"
    assert auth.domains.tenant_for_host("Bücher.Example.com:443") == "acme"


@pytest.mark.parametrize(
    "host",
    [
        "",
        "acme.com",
        "x.login.acme.com",
        "login.acme.co",
        "login.acme.com:",
        "login.acme.com:https",
        "login.acme.com:443:443",
        "[::1]:443",
        "::1",
        "127.0.0.1:443",
        "login..acme.com",
        "*.acme.com",
        "login.acme.com/path",
        "a" * 5000,
    ],
)
def test_tenant_for_host_gives_none_for_other_or_malformed_hosts(
    auth: Authsome, dns: FakeResolver, host: str
) -> None:
    _add_verified(auth, dns, "login.acme.com", "acme")
    assert auth.domains.tenant_for_host(host) is None


def test_tenant_for_host_refuses_non_strings(auth: Authsome) -> None:
    with pytest.raises(TypeError):
        auth.domains.tenant_for_host(b"login.acme.com")  # type: ignore[arg-type]


def test_a_wildcard_routes_hosts_one_label_deep_only(auth: Authsome, dns: FakeResolver) -> None:
    challenge = auth.domains.add("*.acme.com", tenant="acme", allow_wildcard=True)
    # The record of a wildcard sits at its base name.
    assert challenge.record_name == "_authsome-challenge.acme.com"
    assert auth.domains.tenant_for_host("eu.acme.com") is None  # not verified yet
    dns.publish(challenge)
    auth.domains.verify(challenge.domain.id)
    assert auth.domains.tenant_for_host("eu.acme.com") == "acme"
    assert auth.domains.tenant_for_host("US.acme.com:443") == "acme"
    assert auth.domains.tenant_for_host("acme.com") is None
    assert auth.domains.tenant_for_host("a.b.acme.com") is None


def test_an_exact_domain_wins_over_a_wildcard(auth: Authsome, dns: FakeResolver) -> None:
    _add_verified(auth, dns, "*.acme.com", "acme")
    _add_verified(auth, dns, "partner.acme.com", "partner")
    assert auth.domains.tenant_for_host("partner.acme.com") == "partner"
    assert auth.domains.tenant_for_host("other.acme.com") == "acme"


def test_an_unverified_exact_domain_does_not_shadow_a_verified_wildcard(
    auth: Authsome, dns: FakeResolver
) -> None:
    _add_verified(auth, dns, "*.acme.com", "acme")
    auth.domains.add("partner.acme.com", tenant="squatter")
    assert auth.domains.tenant_for_host("partner.acme.com") == "acme"


# -- hostname validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_name", "normalized"),
    [
        ("login.example.com", "login.example.com"),
        ("Login.Example.COM.", "login.example.com"),
        ("  login.example.com\n", "login.example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("BÜCHER.de", "xn--bcher-kva.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
        ("例え.テスト.jp", "xn--r8jz45g.xn--zckzah.jp"),
        ("ａｃｍｅ.com", "acme.com"),  # full-width letters map to ASCII
        ("a\u3002b\uff0ecom", "a.b.com"),  # ideographic and full-width dots
        ("a-b.c0m", "a-b.c0m"),
        ("1.example.com", "1.example.com"),
        ("example.xn--p1ai", "example.xn--p1ai"),
        ("x" * 63 + ".com", "x" * 63 + ".com"),
    ],
)
def test_hostnames_are_normalized(given_name: str, normalized: str) -> None:
    assert normalize_hostname(given_name) == normalized
    assert normalize_hostname(normalized) == normalized


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        ".",
        "..",
        "localhost",
        "localhost.",
        "intranet",
        "foo.localhost",
        "printer.local",
        "x.invalid",
        "1.0.0.127.in-addr.arpa",
        "com",
        "a..com",
        ".a.com",
        "a.com..",
        "-a.com",
        "a-.com",
        "a_b.com",
        "a b.com",
        "a.com/",
        "user@a.com",
        "a.com:443",
        "https://a.com",
        "x" * 64 + ".com",
        "xn--zz.com",  # not valid punycode
        "xn--bcher-kva-.de",
        "straße.de",  # IDNA 2003 and 2008 disagree on ß
        "xn--zca.de",
        "\u200d.com",
        "a.\x00.com",
    ],
)
def test_bad_hostnames_are_refused(auth: Authsome, bad: str) -> None:
    with pytest.raises(ValidationError):
        auth.domains.add(bad, tenant="acme")
    assert auth.store.list_domains("acme") == []


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "8.8.8.8",
        "8.8.8.8.",
        "::1",
        "[::1]",
        "2001:db8::1",
        "::ffff:192.0.2.1",
        "127.1",  # browsers read these as IPv4 addresses too
        "0x7f.1",
        "192.168.0.256",
        "10.0.0.010",
    ],
)
def test_ip_addresses_are_refused(auth: Authsome, ip: str) -> None:
    with pytest.raises(ValidationError, match="not an IP address"):
        auth.domains.add(ip, tenant="acme")
    assert auth.store.list_domains("acme") == []


def test_total_length_limit_is_253() -> None:
    label = "a" * 63
    longest = ".".join([label, label, label, "b" * 61])  # 63*3 + 61 + 3 dots = 253
    assert len(longest) == 253
    assert normalize_hostname(longest) == longest
    assert normalize_hostname(longest + ".") == longest
    with pytest.raises(ValidationError):
        normalize_hostname(longest + "b")
    with pytest.raises(ValidationError):
        normalize_hostname("a" * 100_000 + ".com")


def test_a_unicode_label_too_long_once_encoded_is_refused() -> None:
    with pytest.raises(ValidationError):
        normalize_hostname("ü" * 60 + ".com")


@pytest.mark.parametrize("wildcard", ["*.acme.com", "*.Acme.COM.", "*.bücher.de"])
def test_wildcards_need_to_be_asked_for(auth: Authsome, wildcard: str) -> None:
    with pytest.raises(ValidationError, match="allow_wildcard"):
        auth.domains.add(wildcard, tenant="acme")
    assert auth.store.list_domains("acme") == []
    domain = auth.domains.add(wildcard, tenant="acme", allow_wildcard=True).domain
    assert domain.wildcard
    assert domain.hostname == normalize_hostname(wildcard, allow_wildcard=True)
    assert domain.hostname.startswith("*.")


@pytest.mark.parametrize(
    "bad",
    ["*", "*.", "*.com", "**.acme.com", "a.*.acme.com", "login.*", "*a.acme.com", "*.*.acme.com"],
)
def test_only_a_leading_wildcard_label_over_a_real_name_is_allowed(bad: str) -> None:
    with pytest.raises(ValidationError):
        normalize_hostname(bad, allow_wildcard=True)


@pytest.mark.parametrize("value", [None, 42, b"acme.com", ["acme.com"]])
def test_non_string_hostnames_are_type_errors(auth: Authsome, value: object) -> None:
    with pytest.raises(TypeError):
        auth.domains.add(value, tenant="acme")  # type: ignore[arg-type]
    assert auth.store.list_domains("acme") == []


def test_other_bad_arguments(auth: Authsome) -> None:
    with pytest.raises(TypeError):
        auth.domains.add("login.acme.com", tenant="acme", allow_wildcard="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        auth.domains.add("login.acme.com", tenant=" ")
    with pytest.raises(TypeError):
        auth.domains.add("login.acme.com", tenant=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.domains.get(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.domains.remove(None)  # type: ignore[arg-type]
    assert auth.store.find_domain_by_hostname("login.acme.com") is None


def test_a_resolver_without_resolve_txt_is_refused() -> None:
    with pytest.raises(TypeError, match="resolve_txt"):
        Authsome(dns_resolver=object())  # type: ignore[arg-type]


# -- property tests --------------------------------------------------------------------

_PIECES = [*"aZz09-._*:[]/ @üÜßς例。．\u200d\x00", "xn--", "--", "com", "*."]
_HOSTISH = st.lists(st.sampled_from(_PIECES), max_size=30).map("".join)
_GOOD_LABEL = st.text(alphabet="abcXYZ019üÖé例ｂ-", min_size=1, max_size=10)
_ANY_LABEL = st.one_of(
    _GOOD_LABEL, _GOOD_LABEL, _GOOD_LABEL, st.text(max_size=8), st.text("ßς\u200d_* :", max_size=3)
)
_NAMEISH = st.builds(
    lambda wildcard, labels, dot: wildcard + ".".join(labels) + dot,
    st.sampled_from(["", "", "", "*.", "*"]),
    st.lists(_ANY_LABEL, min_size=1, max_size=5),
    st.sampled_from(["", "", ".", "。"]),
)
_LABELS = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?", fullmatch=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(st.text(max_size=80), _HOSTISH, _NAMEISH, st.just("")),
    allow_wildcard=st.booleans(),
)
def test_add_yields_a_canonical_hostname_or_a_typed_error(text: str, allow_wildcard: bool) -> None:
    auth = Authsome(ledger=RecordingLedger(), dns_resolver=FakeResolver(), password_hashing=FAST)
    try:
        challenge = auth.domains.add(text, tenant="t", allow_wildcard=allow_wildcard)
    except (ValidationError, TypeError):
        assert auth.store.list_domains("t") == []
        return
    name = challenge.domain.hostname
    assert normalize_hostname(name, allow_wildcard=allow_wildcard) == name
    assert normalize_hostname(text, allow_wildcard=allow_wildcard) == name
    assert name.isascii()
    assert name == name.lower()
    assert len(name) <= 253
    assert all(1 <= len(label) <= 63 for label in name.split("."))
    assert auth.store.list_domains("t") == [challenge.domain]


@settings(max_examples=200, deadline=None)
@given(labels=st.lists(_GOOD_LABEL, min_size=2, max_size=4))
def test_unicode_names_normalize_to_ascii_a_labels_idempotently(labels: list[str]) -> None:
    name = ".".join(labels)
    try:
        normalized = normalize_hostname(name)
    except ValidationError:
        return
    assert normalize_hostname(normalized) == normalized
    assert normalized.isascii()
    for original, label in zip(labels, normalized.split("."), strict=True):
        if original.isascii():
            assert label == original.lower()


@settings(max_examples=200, deadline=None)
@given(labels=st.lists(_LABELS, min_size=2, max_size=6), trailing_dot=st.booleans())
def test_well_formed_names_are_accepted_lower_cased(labels: list[str], trailing_dot: bool) -> None:
    name = ".".join(labels) + ("." if trailing_dot else "")
    expected = ".".join(labels).lower()
    tld = labels[-1].lower()
    numeric = tld.isdigit() or (
        tld.startswith("0x") and all(c in "0123456789abcdef" for c in tld[2:])
    )
    reserved = tld in {"localhost", "local", "internal", "invalid", "arpa"}
    xn = any(label.lower().startswith("xn--") for label in labels)
    if numeric or reserved or xn:
        return  # refused on purpose, covered by the example tests
    assert normalize_hostname(name) == expected
    assert normalize_hostname(name.upper()) == expected


@settings(max_examples=200, deadline=None)
@given(host=st.text(max_size=60))
def test_tenant_for_host_never_raises_on_any_text(host: str) -> None:
    auth = Authsome(dns_resolver=FakeResolver(), password_hashing=FAST)
    assert auth.domains.tenant_for_host(host) is None


# -- secrets ---------------------------------------------------------------------------


def test_the_challenge_value_never_appears_in_reprs_errors_or_logs(
    auth: Authsome, dns: FakeResolver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    token = challenge.record_value.partition("=")[2]
    texts = [repr(challenge), str(challenge), repr(challenge.domain), repr(auth)]
    dns.records[challenge.record_name] = ["authsome-verify=nope"]
    with pytest.raises(VerificationFailed) as failed:
        auth.domains.verify(challenge.domain.id)
    texts += [str(failed.value), repr(failed.value)]
    dns.failing[challenge.record_name] = OSError("down")
    with pytest.raises(VerificationFailed) as errored:
        auth.domains.verify(challenge.domain.id)
    texts += [str(errored.value), repr(errored.value)]
    with pytest.raises(AlreadyExists) as duplicate:
        auth.domains.add("login.acme.com", tenant="acme")
    texts.append(str(duplicate.value))
    del dns.failing[challenge.record_name]
    dns.publish(challenge)
    verified = auth.domains.verify(challenge.domain.id)
    with pytest.raises(AlreadyExists) as taken:
        auth.domains.add("login.acme.com", tenant="globex")
    texts.append(str(taken.value))
    texts += [repr(verified), repr(auth.domains.list(tenant="acme"))]
    texts += [record.getMessage() for record in caplog.records]
    assert any("custom domain verified" in text for text in texts)
    for text in texts:
        assert token not in text


def test_verification_failed_pickles_with_its_reason() -> None:
    import pickle

    error = VerificationFailed("no record")
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, VerificationFailed)
    assert again.reason == "no record"


# -- the default resolver --------------------------------------------------------------


def test_the_default_resolver_is_built_lazily_once(
    monkeypatch: pytest.MonkeyPatch, make_auth: AuthFactory
) -> None:
    built: list[FakeResolver] = []

    def fake_default() -> FakeResolver:
        resolver = FakeResolver()
        built.append(resolver)
        return resolver

    monkeypatch.setattr("authsome.domains.DnsPythonResolver", fake_default)
    auth = make_auth()
    assert built == []  # constructing the engine needs no DNS library
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    with pytest.raises(VerificationFailed):
        auth.domains.verify(challenge.domain.id)
    built[0].publish(challenge)
    assert auth.domains.verify(challenge.domain.id).verified
    assert len(built) == 1


def test_without_dnspython_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, make_auth: AuthFactory
) -> None:
    for module in ("dns", "dns.resolver", "dns.exception"):
        monkeypatch.setitem(__import__("sys").modules, module, None)
    with pytest.raises(ExtraNotInstalled, match=r"authsome-engine\[dns\]"):
        DnsPythonResolver()
    auth = make_auth()  # an engine without dnspython still works ...
    challenge = auth.domains.add("login.acme.com", tenant="acme")
    with pytest.raises(ExtraNotInstalled, match=r"authsome-engine\[dns\]"):
        auth.domains.verify(challenge.domain.id)  # ... until it must look DNS up
    assert issubclass(ExtraNotInstalled, ImportError)
    assert not auth.domains.get(challenge.domain.id).verified


def test_created_at_uses_the_engine_clock(auth: Authsome, clock: FakeClock) -> None:
    clock.advance(hours=3)
    domain = auth.domains.add("login.acme.com", tenant="acme").domain
    assert domain.created_at == clock.now


def test_end_to_end_on_sqlite(make_auth: AuthFactory, tmp_path: Path, clock: FakeClock) -> None:
    dns = FakeResolver()
    auth = make_auth(store=SQLiteStore(tmp_path / "auth.db"), dns_resolver=dns)
    challenge = auth.domains.add("*.bücher.de", tenant="acme", allow_wildcard=True)
    dns.publish(challenge)
    clock.advance(seconds=1)
    verified = auth.domains.verify(challenge.domain.id)
    assert verified.verified_at == clock.now
    assert auth.domains.tenant_for_host("shop.xn--bcher-kva.de") == "acme"
    with pytest.raises(AlreadyExists):
        auth.domains.add("*.BÜCHER.de", tenant="globex", allow_wildcard=True)
    assert auth.domains.remove(verified.id)
    assert auth.domains.tenant_for_host("shop.xn--bcher-kva.de") is None
