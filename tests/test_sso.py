"""``auth.sso``: the feature.sso gate, validation of every setting, e-mail routing, and
a client secret that never leaks (repr, logs, messages, the database file)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from authsome import (
    AlreadyExists,
    Authsome,
    Feature,
    FeatureNotEntitled,
    LedgerUnavailable,
    NotFound,
    OIDCConnection,
    Org,
    SAMLConnection,
    SSOConnectionInfo,
    SSOProtocol,
    ValidationError,
    VerificationFailed,
)
from authsome.bridge import LedgerContext
from authsome.crypto import SecretBox
from authsome.errors import DecryptionError
from authsome.models import Domain
from authsome.sso import MAX_CLIENT_SECRET, normalize_domain
from authsome.stores import MemoryStore, SQLiteStore, Store
from authsome.testing import DenyingLedger, FailingLedger, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock

SECRET = "cs-9f8e7d6c5b4a-very-secret-client-secret"
KEY = bytes(range(32))
SSO_KEY = "authsome.feature.sso"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # the FakeClock's start

STORES: dict[str, Callable[[], Store]] = {
    "memory": MemoryStore,
    "sqlite-memory": lambda: SQLiteStore(":memory:"),
}

# A hypothesis run shares the function-scoped engine; every example cleans up after itself.
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# -- certificates ------------------------------------------------------------------------


def make_pem(not_before: datetime, not_after: datetime) -> str:
    """A real self-signed P-256 certificate, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.acme.example")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM).decode("ascii")


# The FakeClock starts at 2026-01-15 12:00 UTC.
VALID_PEM = make_pem(datetime(2025, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
EXPIRED_PEM = make_pem(datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
KEY_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    .decode("ascii")
)


def oidc(**changes: object) -> OIDCConnection:
    fields: dict[str, object] = {
        "issuer": "https://idp.acme.example",
        "client_id": "acme-client",
        "client_secret": SECRET,
        "domains": ("acme.example",),
    }
    fields.update(changes)
    return OIDCConnection(**fields)  # type: ignore[arg-type]


def saml(**changes: object) -> SAMLConnection:
    fields: dict[str, object] = {
        "entity_id": "https://idp.acme.example/metadata",
        "sso_url": "https://idp.acme.example/sso?app=1",
        "x509_certificate": VALID_PEM,
        "domains": ("acme.example",),
    }
    fields.update(changes)
    return SAMLConnection(**fields)  # type: ignore[arg-type]


def new_org(auth: Authsome, name: str = "ann", tenant: str = "acme") -> Org:
    user = auth.users.register(f"{name}@example.com", PASSWORD, tenant=tenant)
    return auth.orgs.create(user.id, f"{name} corp")


def prove(store: Store, *domains: str, tenant: str = "acme") -> None:
    """Record ``domains`` as verified custom domains of ``tenant``: the DNS proof
    that lets an SSO domain route (the DNS step itself is tested end to end below)."""
    for domain in domains:
        record = Domain(f"dom_{secrets.token_hex(4)}", tenant, domain, NOW)
        store.create_domain(record, secrets.token_hex(8))
        store.mark_domain_verified(record.id, NOW)


@pytest.fixture
def org(auth: Authsome, ledger: RecordingLedger) -> Org:
    """An org of tenant ``acme``; the ledger is cleared after creating it."""
    created = new_org(auth)
    ledger.clear()
    return created


def allowing_engine(make_auth: AuthFactory, store: Store) -> Authsome:
    """An engine on ``store`` whose ledger allows everything (to set up records)."""
    return make_auth(store=store, ledger=RecordingLedger())


def sso_check(org: Org) -> tuple[str, LedgerContext, str]:
    return ("check_entitlement", LedgerContext(tenant=org.tenant, org_id=org.id), SSO_KEY)


def calls(ledger: RecordingLedger) -> list[tuple[str, LedgerContext, str]]:
    return [(c.kind, c.ctx, c.feature_key) for c in ledger.calls]


# -- the gate ------------------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", sorted(STORES))
@pytest.mark.parametrize("connection", [oidc(), saml()], ids=["oidc", "saml"])
def test_configure_denied_raises_and_stores_nothing(
    make_auth: AuthFactory, store_kind: str, connection: OIDCConnection | SAMLConnection
) -> None:
    denying = DenyingLedger(Feature.SSO)
    auth = make_auth(store=STORES[store_kind](), ledger=denying)
    org = new_org(auth)
    denying.clear()

    with pytest.raises(FeatureNotEntitled) as caught:
        auth.sso.configure(org.id, connection)

    assert caught.value.feature == SSO_KEY
    assert calls(denying) == [sso_check(org)]  # the check, and nothing after it
    assert auth.store.list_sso_connections(org.id) == []
    assert auth.store.find_sso_connection_by_domain("acme", "acme.example") is None


@pytest.mark.parametrize("store_kind", sorted(STORES))
def test_update_denied_raises_and_changes_nothing(make_auth: AuthFactory, store_kind: str) -> None:
    store = STORES[store_kind]()
    allowed = make_auth(store=store, ledger=RecordingLedger())
    org = new_org(allowed)
    before = allowed.sso.configure(org.id, oidc())
    secret_before = store.get_sso_client_secret(before.id)
    denying = DenyingLedger(Feature.SSO)
    denied = make_auth(store=store, ledger=denying)

    with pytest.raises(FeatureNotEntitled) as caught:
        denied.sso.update(before.id, saml(domains=("other.example",)))

    assert caught.value.feature == SSO_KEY
    assert calls(denying) == [sso_check(org)]
    assert store.get_sso_connection(before.id) == before
    assert store.get_sso_client_secret(before.id) == secret_before
    assert store.find_sso_connection_by_domain("acme", "acme.example") == before
    assert store.find_sso_connection_by_domain("acme", "other.example") is None


def test_failing_ledger_check_refuses_and_stores_nothing(make_auth: AuthFactory) -> None:
    failing = FailingLedger(fail=["check_entitlement"])
    auth = make_auth(ledger=failing)
    org = new_org(allowing_engine(make_auth, auth.store))

    with pytest.raises(LedgerUnavailable):
        auth.sso.configure(org.id, oidc())
    assert auth.store.list_sso_connections(org.id) == []


def test_permitted_configure_checks_the_org_tenant_first_and_records_no_usage(
    auth: Authsome, ledger: RecordingLedger, org: Org
) -> None:
    info = auth.sso.configure(org.id, oidc())
    auth.sso.update(info.id, saml())

    assert calls(ledger) == [sso_check(org), sso_check(org)]


def test_reads_and_delete_are_not_gated(make_auth: AuthFactory) -> None:
    store = MemoryStore()
    org = new_org(allowing_engine(make_auth, store))
    info = allowing_engine(make_auth, store).sso.configure(org.id, oidc())
    prove(store, "acme.example")
    denying = DenyingLedger()
    denied = make_auth(store=store, ledger=denying)

    assert denied.sso.get(info.id) == info
    assert denied.sso.list(org.id) == [info]
    assert denied.sso.unproven_domains(info.id) == []
    assert denied.sso.delete(info.id) is True
    assert denying.calls == []


def test_routing_stops_when_the_plan_loses_sso_and_resumes_after_an_upgrade(
    make_auth: AuthFactory,
) -> None:
    store = MemoryStore()
    org = new_org(allowing_engine(make_auth, store))
    info = allowing_engine(make_auth, store).sso.configure(org.id, oidc())
    prove(store, "acme.example")
    plan = DenyingLedger(Feature.SSO.value)
    engine = make_auth(store=store, ledger=plan)

    assert engine.sso.connection_for_email("ann@acme.example", tenant="acme") is None
    assert calls(plan) == [sso_check(org)]

    plan.denied = frozenset()  # upgraded: the kept connection routes again
    assert engine.sso.connection_for_email("ann@acme.example", tenant="acme") == info


# -- end to end under a permitting ledger -------------------------------------------------


@pytest.mark.parametrize("store_kind", sorted(STORES))
def test_oidc_connection_end_to_end(
    make_auth: AuthFactory, clock: FakeClock, store_kind: str
) -> None:
    auth = make_auth(store=STORES[store_kind](), ledger=RecordingLedger())
    org = new_org(auth)

    info = auth.sso.configure(
        org.id,
        oidc(scopes=["openid", "email", "openid"], domains=["Acme.Example.", "bücher.example"]),
    )

    assert info == SSOConnectionInfo(
        id=info.id,
        org_id=org.id,
        protocol=SSOProtocol.OIDC,
        domains=("acme.example", "xn--bcher-kva.example"),
        created_at=clock.now,
        updated_at=clock.now,
        issuer="https://idp.acme.example",
        client_id="acme-client",
        scopes=("openid", "email"),
        has_client_secret=True,
    )
    assert info.id.startswith("sso_")
    assert auth.sso.get(info.id) == info
    assert auth.sso.list(org.id) == [info]
    prove(auth.store, "acme.example", "xn--bcher-kva.example", "sub.acme.example")
    assert auth.sso.connection_for_email("Ann@ACME.example", tenant="acme") == info
    assert auth.sso.connection_for_email("bob@BÜCHER.example", tenant="acme") == info
    assert auth.sso.connection_for_email("ann@sub.acme.example", tenant="acme") is None
    assert auth.sso.connection_for_email("ann@elsewhere.example", tenant="acme") is None
    assert auth.sso.connection_for_email("Ann@ACME.example") is None  # tenant "default"
    assert auth.sso._client_secret(info.id) == SECRET


@pytest.mark.parametrize("store_kind", sorted(STORES))
def test_update_to_saml_then_delete(
    make_auth: AuthFactory, clock: FakeClock, store_kind: str
) -> None:
    auth = make_auth(store=STORES[store_kind](), ledger=RecordingLedger())
    org = new_org(auth)
    created = auth.sso.configure(org.id, oidc())
    prove(auth.store, "acme.test")
    clock.advance(minutes=5)

    updated = auth.sso.update(created.id, saml(domains=("acme.example", "acme.test")))

    assert updated.id == created.id
    assert updated.protocol is SSOProtocol.SAML
    assert updated.created_at == created.created_at
    assert updated.updated_at == clock.now
    assert updated.entity_id == "https://idp.acme.example/metadata"
    assert updated.sso_url == "https://idp.acme.example/sso?app=1"
    assert updated.x509_certificate == VALID_PEM  # canonical PEM as given
    assert updated.has_client_secret is False
    assert updated.issuer is None
    assert auth.sso._client_secret(created.id) is None
    assert auth.sso.connection_for_email("x@acme.test", tenant="acme") == updated
    assert auth.sso.get(created.id) == updated

    assert auth.sso.delete(created.id) is True
    assert auth.sso.delete(created.id) is False
    with pytest.raises(NotFound):
        auth.sso.get(created.id)
    assert auth.sso.connection_for_email("x@acme.test", tenant="acme") is None
    assert auth.sso.list(org.id) == []


def test_unknown_records_raise_not_found(auth: Authsome, org: Org) -> None:
    with pytest.raises(NotFound):
        auth.sso.configure("org_nope", oidc())
    with pytest.raises(NotFound):
        auth.sso.update("sso_nope", oidc())
    with pytest.raises(NotFound):
        auth.sso.list("org_nope")
    with pytest.raises(NotFound):
        auth.sso._client_secret("sso_nope")
    assert auth.sso.list(org.id) == []


def test_connection_for_a_malformed_email_is_a_validation_error(auth: Authsome) -> None:
    with pytest.raises(ValidationError):
        auth.sso.connection_for_email("not-an-email")
    with pytest.raises(TypeError):
        auth.sso.connection_for_email(None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        auth.sso.connection_for_email("ann@acme.example", tenant="")
    with pytest.raises(TypeError):
        auth.sso.connection_for_email("ann@acme.example", tenant=None)  # type: ignore[arg-type]


# -- domain ownership ------------------------------------------------------------------------


def test_an_email_domain_has_one_owner_org_per_tenant(
    auth: Authsome, ledger: RecordingLedger, org: Org
) -> None:
    mine = auth.sso.configure(org.id, oidc(domains=["acme.example"]))
    prove(auth.store, "acme.example", "free.example")
    neighbour = new_org(auth, "bob", tenant="acme")

    with pytest.raises(AlreadyExists):
        auth.sso.configure(neighbour.id, saml(domains=["free.example", "ACME.example"]))
    with pytest.raises(AlreadyExists):  # a second connection of the same org neither
        auth.sso.configure(org.id, saml(domains=["acme.example"]))

    assert auth.sso.list(neighbour.id) == []
    assert auth.sso.list(org.id) == [mine]
    assert auth.sso.connection_for_email("x@free.example", tenant="acme") is None
    assert auth.sso.connection_for_email("x@acme.example", tenant="acme") == mine


def test_another_tenant_listing_a_domain_blocks_nobody(auth: Authsome, org: Org) -> None:
    squatter = new_org(auth, "mallory", tenant="evil")
    theirs = auth.sso.configure(squatter.id, oidc(domains=["acme.example"]))
    mine = auth.sso.configure(org.id, oidc(domains=["acme.example"]))  # no AlreadyExists
    prove(auth.store, "acme.example", tenant="acme")

    assert auth.sso.connection_for_email("x@acme.example", tenant="acme") == mine
    assert auth.sso.connection_for_email("x@acme.example", tenant="evil") is None
    assert auth.sso.unproven_domains(theirs.id) == ["acme.example"]


def test_update_cannot_take_a_domain_from_another_org_of_the_tenant(
    auth: Authsome, org: Org
) -> None:
    rival = new_org(auth, "bob", tenant="acme")
    theirs = auth.sso.configure(rival.id, oidc(domains=["globex.example"]))
    mine = auth.sso.configure(org.id, oidc(domains=["acme.example"]))
    prove(auth.store, "globex.example")

    with pytest.raises(AlreadyExists):
        auth.sso.update(mine.id, oidc(domains=["acme.example", "globex.example"]))

    assert auth.sso.get(mine.id) == mine
    assert auth.sso.connection_for_email("x@globex.example", tenant="acme") == theirs


def test_update_may_keep_its_own_domains(auth: Authsome, org: Org) -> None:
    info = auth.sso.configure(org.id, oidc(domains=["acme.example"]))
    prove(auth.store, "acme.example")
    updated = auth.sso.update(info.id, oidc(client_id="other", domains=["acme.example"]))
    assert updated.client_id == "other"
    assert auth.sso.connection_for_email("x@acme.example", tenant="acme") == updated


# -- domain proof ----------------------------------------------------------------------------


class FakeDNS:
    """TXT records in a dict; stands in for dnspython."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}

    def resolve_txt(self, name: str) -> list[str]:
        return self.records.get(name, [])


@pytest.mark.parametrize("store_kind", sorted(STORES))
def test_a_domain_routes_only_to_the_tenant_that_proved_it_in_dns(
    make_auth: AuthFactory, store_kind: str
) -> None:
    dns = FakeDNS()
    auth = make_auth(store=STORES[store_kind](), ledger=RecordingLedger(), dns_resolver=dns)
    evil = auth.sso.configure(new_org(auth, "mallory", "evil").id, oidc(domains=["victim.com"]))
    victim = auth.sso.configure(new_org(auth, "alice", "victim").id, oidc(domains=["victim.com"]))

    # Listed by both, proven by neither: nothing routes.
    for tenant in ("evil", "victim", "default"):
        assert auth.sso.connection_for_email("alice@victim.com", tenant=tenant) is None
    assert auth.sso.unproven_domains(victim.id) == ["victim.com"]

    # The squatter's own challenge cannot be met without the victim's DNS.
    squat = auth.domains.add("victim.com", tenant="evil")
    with pytest.raises(VerificationFailed):
        auth.domains.verify(squat.domain.id)

    proof = auth.domains.add("victim.com", tenant="victim")
    assert proof.record_name == "_authsome-challenge.victim.com"
    dns.records[proof.record_name] = [proof.record_value]  # the real owner publishes it
    auth.domains.verify(proof.domain.id)

    assert auth.sso.connection_for_email("alice@victim.com", tenant="victim") == victim
    assert auth.sso.connection_for_email("alice@victim.com", tenant="evil") is None
    assert auth.sso.unproven_domains(victim.id) == []
    assert auth.sso.unproven_domains(evil.id) == ["victim.com"]
    with pytest.raises(AlreadyExists):  # the proof is the victim's for good
        auth.domains.verify(squat.domain.id)

    auth.domains.remove(proof.domain.id)  # withdrawing the proof stops the routing
    assert auth.sso.connection_for_email("alice@victim.com", tenant="victim") is None


def test_a_pending_or_foreign_or_nearby_proof_does_not_count(auth: Authsome, org: Org) -> None:
    info = auth.sso.configure(org.id, oidc(domains=["acme.example", "b.example", "c.example"]))
    prove(auth.store, "acme.example", tenant="globex")  # another tenant's proof
    auth.store.create_domain(Domain("dom_pending", "acme", "b.example", NOW), "token")
    prove(auth.store, "login.c.example", "*.c.example")  # neither is c.example itself

    for domain in ("acme.example", "b.example", "c.example"):
        assert auth.sso.connection_for_email(f"x@{domain}", tenant="acme") is None
    assert auth.sso.unproven_domains(info.id) == ["acme.example", "b.example", "c.example"]


def test_unproven_domains_of_an_unknown_connection_is_not_found(auth: Authsome) -> None:
    with pytest.raises(NotFound):
        auth.sso.unproven_domains("sso_nope")
    with pytest.raises(TypeError):
        auth.sso.unproven_domains(None)  # type: ignore[arg-type]


# -- bad input: URLs ----------------------------------------------------------------------

BAD_URLS = [
    "",
    "http://idp.acme.example",
    "ftp://idp.acme.example",
    "https://",
    "https:///path",
    "https://user:pw@idp.acme.example",
    "https://idp.acme.example@evil.example",
    "https://@idp.acme.example",
    "https://idp.acme.example/#",
    "https://idp.acme.example/#frag",
    " https://idp.acme.example",
    "https://idp.acme.example\n",
    "https://idp.acme\t.example",
    "https://exa mple.com",
    "https://idp.acme.example:99999/",
    "https://idp.acme.example:port/",
    "https://[::1",
    "https://-bad-.example",
    "https://bad_host.example",
    "https://ex%41mple.com",
    "https://bücher.example",
    "javascript:alert(1)",
    "//idp.acme.example",
    "idp.acme.example",
    "https://" + "a" * 64 + ".example",
    "https://idp.example/" + "a" * 2048,
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_urls_are_refused_and_nothing_stored(auth: Authsome, org: Org, url: str) -> None:
    with pytest.raises(ValidationError):
        auth.sso.configure(org.id, oidc(issuer=url))
    with pytest.raises(ValidationError):
        auth.sso.configure(org.id, saml(sso_url=url))
    assert auth.store.list_sso_connections(org.id) == []


def test_issuer_takes_no_query_but_saml_url_may(auth: Authsome, org: Org) -> None:
    with pytest.raises(ValidationError, match="query"):
        auth.sso.configure(org.id, oidc(issuer="https://idp.acme.example/?tenant=1"))
    info = auth.sso.configure(org.id, saml(sso_url="https://idp.acme.example/sso?tenant=1"))
    assert info.sso_url == "https://idp.acme.example/sso?tenant=1"


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.acme.example",
        "https://login.microsoftonline.com/0000-1111/v2.0",
        "https://idp.acme.example:8443/realms/acme",
        "https://[2001:db8::1]/",
        "https://192.0.2.10/oidc",
        "HTTPS://idp.acme.example",
    ],
)
def test_good_issuers_are_kept_exactly(auth: Authsome, org: Org, url: str) -> None:
    # The issuer must later equal the ID token's "iss" claim, so it is never rewritten.
    assert auth.sso.configure(org.id, oidc(issuer=url, domains=[])).issuer == url


def _assert_https_url(stored: str, *, allow_query: bool) -> None:
    parts = urlsplit(stored)
    assert parts.scheme == "https"
    assert parts.hostname
    assert parts.username is None
    assert parts.password is None
    assert "#" not in stored
    assert "@" not in parts.netloc
    assert allow_query or "?" not in stored
    assert stored.isascii()
    assert not any(ch.isspace() for ch in stored)


_NEAR_URLS = st.builds(
    "".join,
    st.tuples(
        st.sampled_from(["https://", "http://", "HTTPS://", "https:", "https:///", "", "//"]),
        st.text(
            alphabet=st.sampled_from(list("abc.-_:@[]/?#%1 \t\nü")) | st.characters(),
            max_size=30,
        ),
    ),
)


@PROPERTY
@given(url=st.one_of(st.text(max_size=80), _NEAR_URLS))
@example(url="https://idp.acme.example/realms/acme")  # the success branch always runs
def test_any_text_as_issuer_is_refused_cleanly_or_a_valid_https_url(
    auth: Authsome, org: Org, url: str
) -> None:
    try:
        info = auth.sso.configure(org.id, oidc(issuer=url, domains=[]))
    except ValidationError:
        assert auth.store.list_sso_connections(org.id) == []
        return
    assert info.issuer == url
    _assert_https_url(url, allow_query=False)
    assert auth.sso.delete(info.id)


@PROPERTY
@given(url=st.one_of(st.text(max_size=80), _NEAR_URLS))
@example(url="https://idp.acme.example/sso?app=1")  # the success branch always runs
def test_any_text_as_saml_url_is_refused_cleanly_or_a_valid_https_url(
    auth: Authsome, org: Org, url: str
) -> None:
    try:
        info = auth.sso.configure(org.id, saml(sso_url=url, domains=[]))
    except ValidationError:
        assert auth.store.list_sso_connections(org.id) == []
        return
    assert info.sso_url == url
    _assert_https_url(url, allow_query=True)
    assert auth.sso.delete(info.id)


# -- bad input: types, ids, secrets, scopes -----------------------------------------------------


@pytest.mark.parametrize(
    "connection",
    [
        oidc(issuer=None),
        oidc(client_id=7),
        oidc(client_secret=b"bytes"),
        oidc(scopes="openid email"),
        oidc(scopes=["openid", 3]),
        oidc(domains="acme.example"),
        oidc(domains=None),
        saml(x509_certificate=VALID_PEM.encode()),
        saml(entity_id=None),
    ],
)
def test_wrong_types_are_type_errors(auth: Authsome, org: Org, connection: object) -> None:
    with pytest.raises(TypeError):
        auth.sso.configure(org.id, connection)  # type: ignore[arg-type]
    assert auth.store.list_sso_connections(org.id) == []


def test_wrong_connection_or_id_types_are_type_errors(auth: Authsome, org: Org) -> None:
    with pytest.raises(TypeError):
        auth.sso.configure(org.id, {"issuer": "https://idp.acme.example"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.sso.configure(42, oidc())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.sso.get(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        auth.sso.delete(1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "connection",
    [
        oidc(client_id=""),
        oidc(client_id="   "),
        oidc(client_id=" padded"),
        oidc(client_id="x" * 256),
        oidc(client_id="a\x00b"),
        oidc(client_secret=""),
        oidc(client_secret="x" * (MAX_CLIENT_SECRET + 1)),
        oidc(client_secret=SECRET + "\n"),
        oidc(client_secret=SECRET + "\x00"),
        oidc(scopes=[]),
        oidc(scopes=["email", "profile"]),
        oidc(scopes=["openid", "two words"]),
        oidc(scopes=["openid", 'quote"d']),
        oidc(scopes=["openid", ""]),
        oidc(scopes=["openid"] + [f"s{i}" for i in range(40)]),
        saml(entity_id=""),
        saml(entity_id="x" * 1025),
    ],
)
def test_bad_settings_are_validation_errors_and_store_nothing(
    auth: Authsome, org: Org, connection: object
) -> None:
    with pytest.raises(ValidationError) as caught:
        auth.sso.configure(org.id, connection)  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)
    assert auth.store.list_sso_connections(org.id) == []


# -- bad input: certificates ----------------------------------------------------------------


def _corrupt_der_tag(pem: str) -> str:
    # The first base64 character carries the outer DER SEQUENCE tag (0x30, "M"); an
    # "A" makes it tag 0x00, which no parser accepts. A change elsewhere could land in
    # the signature bytes, which parsing does not check, and pass by chance.
    header, body, rest = pem.split("\n", 2)
    assert body.startswith("M")
    return f"{header}\nA{body[1:]}\n{rest}"


@pytest.mark.parametrize(
    "pem",
    [
        "",
        "   ",
        "hello",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        VALID_PEM[: len(VALID_PEM) // 2],
        VALID_PEM.replace("-----END CERTIFICATE-----", ""),
        _corrupt_der_tag(VALID_PEM),
        KEY_PEM,
        EXPIRED_PEM,
        "é" + VALID_PEM,
        VALID_PEM * 200,
    ],
    ids=[
        "empty",
        "blank",
        "garbage",
        "not-der",
        "not-base64",
        "truncated",
        "no-footer",
        "corrupted",
        "private-key",
        "expired",
        "non-ascii",
        "too-long",
    ],
)
def test_bad_certificates_are_refused_and_nothing_stored(
    auth: Authsome, org: Org, pem: str
) -> None:
    with pytest.raises(ValidationError):
        auth.sso.configure(org.id, saml(x509_certificate=pem))
    assert auth.store.list_sso_connections(org.id) == []


def test_certificate_expired_by_the_engine_clock_blocks_an_update(
    auth: Authsome, org: Org, clock: FakeClock
) -> None:
    info = auth.sso.configure(org.id, saml())
    clock.now = datetime(2027, 1, 1, tzinfo=UTC)  # VALID_PEM's not_after

    with pytest.raises(ValidationError, match="expired"):
        auth.sso.update(info.id, saml(entity_id="changed"))
    assert auth.sso.get(info.id) == info


def test_certificate_with_surrounding_whitespace_is_stored_canonically(
    auth: Authsome, org: Org
) -> None:
    info = auth.sso.configure(org.id, saml(x509_certificate="\n  " + VALID_PEM + "\n\n"))
    assert info.x509_certificate == VALID_PEM


@PROPERTY
@given(
    pem=st.one_of(
        st.text(max_size=200),
        st.builds(
            "".join,
            st.tuples(
                st.just("-----BEGIN CERTIFICATE-----\n"),
                st.text(max_size=200),
                st.just("\n-----END CERTIFICATE-----\n"),
            ),
        ),
    )
)
def test_any_text_as_certificate_is_a_validation_error(auth: Authsome, org: Org, pem: str) -> None:
    with pytest.raises(ValidationError):
        auth.sso.configure(org.id, saml(x509_certificate=pem))
    assert auth.store.list_sso_connections(org.id) == []


# -- bad input: domains ----------------------------------------------------------------------

BAD_DOMAINS = [
    "",
    ".",
    "localhost",
    "example",
    "192.0.2.1",
    "-acme.example",
    "acme-.example",
    "acme..example",
    ".acme.example",
    "*.acme.example",
    "acme_corp.example",
    "acme example.com",
    "acme.example/path",
    "ann@acme.example",
    "a" * 64 + ".example",
    ("a" * 60 + ".") * 5 + "example",
    "xn--zz.example",
    "acme.example\x00",
]


@pytest.mark.parametrize("domain", BAD_DOMAINS)
def test_bad_domains_are_refused_and_nothing_stored(auth: Authsome, org: Org, domain: str) -> None:
    with pytest.raises(ValidationError):
        auth.sso.configure(org.id, oidc(domains=["good.example", domain]))
    assert auth.store.list_sso_connections(org.id) == []
    assert auth.store.find_sso_connection_by_domain("acme", "good.example") is None


@pytest.mark.parametrize(
    ("given_domain", "stored"),
    [
        ("ACME.Example", "acme.example"),
        ("acme.example.", "acme.example"),
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("ＡＣＭＥ.example", "acme.example"),  # full-width letters, NFKC
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("123.example", "123.example"),
    ],
)
def test_domains_are_normalized(given_domain: str, stored: str) -> None:
    assert normalize_domain(given_domain) == stored


_LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


@settings(max_examples=300, deadline=None)
@given(domain=st.one_of(st.text(max_size=80), st.from_regex(r"[A-Za-z0-9.\-_*ü]{1,30}")))
def test_any_text_as_domain_is_refused_cleanly_or_a_valid_hostname(domain: str) -> None:
    try:
        result = normalize_domain(domain)
    except ValidationError:
        return
    assert result.isascii()
    assert result == result.lower()
    assert len(result) <= 253
    labels = result.split(".")
    assert len(labels) >= 2
    for label in labels:
        assert 1 <= len(label) <= 63
        assert set(label) <= _LABEL_CHARS
        assert not label.startswith("-")
        assert not label.endswith("-")
    assert normalize_domain(result) == result  # idempotent


# -- the client secret never leaks -----------------------------------------------------------


def _scan(text: str) -> None:
    assert SECRET not in text


def test_secret_is_in_no_repr_or_str(auth: Authsome, org: Org) -> None:
    connection = oidc()
    info = auth.sso.configure(org.id, connection)
    updated = auth.sso.update(info.id, oidc(client_id="other"))
    objects: list[object] = [
        connection,
        info,
        updated,
        auth.sso.get(info.id),
        auth.sso.list(org.id),
        auth.sso.connection_for_email("ann@acme.example", tenant="acme"),
        auth.store.get_sso_client_secret(info.id),
        auth,
        auth.sso,
    ]
    for obj in objects:
        _scan(repr(obj))
        _scan(str(obj))
    assert "client_secret" not in SSOConnectionInfo.__dataclass_fields__


def test_secret_is_in_no_log_record(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    auth = make_auth(ledger=RecordingLedger(), secret_key=KEY)
    org = new_org(auth)
    rival = new_org(auth, "bob", tenant="acme")
    with caplog.at_level(logging.DEBUG):
        info = auth.sso.configure(org.id, oidc())
        auth.sso.update(info.id, oidc(client_id="other"))
        assert auth.sso._client_secret(info.id) == SECRET
        with pytest.raises(AlreadyExists):
            auth.sso.configure(rival.id, oidc())
        with pytest.raises(ValidationError):
            auth.sso.configure(org.id, oidc(client_secret=SECRET + "\x00", domains=[]))
        auth.sso.delete(info.id)

    assert any(r.name == "authsome.sso" for r in caplog.records)  # the scan saw real logs
    _scan(caplog.text)
    for record in caplog.records:
        _scan(record.getMessage())
        _scan(repr(record.args))


@pytest.mark.parametrize(
    "connection",
    [
        oidc(client_secret=SECRET + "\x00"),
        oidc(client_secret=SECRET * 100),
        oidc(client_secret=" " + SECRET),
        oidc(issuer="http://idp.acme.example"),
        oidc(scopes=[SECRET]),
        oidc(domains=[SECRET + "..example"]),
    ],
)
def test_secret_is_in_no_exception_message(auth: Authsome, org: Org, connection: object) -> None:
    with pytest.raises(ValidationError) as caught:
        auth.sso.configure(org.id, connection)  # type: ignore[arg-type]
    _scan(str(caught.value))
    _scan(repr(caught.value))


# -- the client secret at rest ----------------------------------------------------------


def _file_bytes(directory: Path) -> bytes:
    """The database file with its WAL and shared-memory files."""
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "db"
    directory.mkdir()
    return directory


def _configure_on_file(make_auth: AuthFactory, db_dir: Path, key: bytes | None) -> str:
    auth = make_auth(store=SQLiteStore(db_dir / "auth.db"), secret_key=key)
    info = auth.sso.configure(new_org(auth).id, oidc())
    assert auth.sso._client_secret(info.id) == SECRET
    auth.close()
    return info.id


def test_with_a_key_the_secret_is_not_in_the_database_file(
    make_auth: AuthFactory, db_dir: Path
) -> None:
    connection_id = _configure_on_file(make_auth, db_dir, KEY)

    raw = _file_bytes(db_dir)
    assert b"acme-client" in raw  # the scan does see the stored settings
    assert SECRET.encode() not in raw
    reopened = make_auth(store=SQLiteStore(db_dir / "auth.db"), secret_key=KEY)
    assert reopened.sso._client_secret(connection_id) == SECRET
    assert reopened.store.get_sso_client_secret(connection_id).sealed  # type: ignore[union-attr]


def test_without_a_key_the_secret_is_stored_in_clear(make_auth: AuthFactory, db_dir: Path) -> None:
    # Documented behaviour: no secret_key, no encryption. Still never returned by get().
    connection_id = _configure_on_file(make_auth, db_dir, None)

    assert SECRET.encode() in _file_bytes(db_dir)
    reopened = make_auth(store=SQLiteStore(db_dir / "auth.db"))
    assert reopened.sso.get(connection_id).has_client_secret
    assert reopened.sso._client_secret(connection_id) == SECRET


def test_a_sealed_secret_needs_the_same_key(make_auth: AuthFactory, db_dir: Path) -> None:
    connection_id = _configure_on_file(make_auth, db_dir, KEY)

    other_key = make_auth(store=SQLiteStore(db_dir / "auth.db"), secret_key=bytes(32))
    with pytest.raises(DecryptionError) as wrong:
        other_key.sso._client_secret(connection_id)
    no_key = make_auth(store=SQLiteStore(db_dir / "auth.db"))
    with pytest.raises(DecryptionError, match="secret_key"):
        no_key.sso._client_secret(connection_id)
    _scan(str(wrong.value))


def test_a_sealed_secret_copied_to_another_connection_does_not_open(
    make_auth: AuthFactory,
) -> None:
    auth = make_auth(ledger=RecordingLedger(), secret_key=KEY)
    org = new_org(auth)
    first = auth.sso.configure(org.id, oidc())
    second = auth.sso.configure(org.id, oidc(client_secret="other-secret", domains=[]))
    stolen = auth.store.get_sso_client_secret(first.id)
    auth.store.update_sso_connection(second, stolen)

    with pytest.raises(DecryptionError):
        auth.sso._client_secret(second.id)


# -- the key and the box ---------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33)])
def test_secret_key_must_be_32_bytes(key: bytes) -> None:
    with pytest.raises(ValueError, match="32"):
        Authsome(secret_key=key)


@pytest.mark.parametrize("key", ["k" * 32, bytearray(32), 32])
def test_secret_key_must_be_bytes(key: object) -> None:
    with pytest.raises(TypeError):
        Authsome(secret_key=key)  # type: ignore[arg-type]


def test_box_round_trips_with_a_fresh_nonce_each_time() -> None:
    box = SecretBox(KEY)
    one, two = box.seal(SECRET, aad="a"), box.seal(SECRET, aad="a")

    assert one != two
    assert box.open(one, aad="a") == box.open(two, aad="a") == SECRET
    assert SECRET not in one
    assert repr(box) == "SecretBox(key=<hidden>)"
    assert box.open(box.seal("", aad=""), aad="") == ""
    assert box.open(box.seal("ünïcode ✓", aad="x"), aad="x") == "ünïcode ✓"


def _flip(token: str, at: int) -> str:
    replacement = "A" if token[at] != "A" else "B"
    return token[:at] + replacement + token[at + 1 :]


def test_box_refuses_wrong_key_aad_tampering_and_garbage() -> None:
    box = SecretBox(KEY)
    token = box.seal(SECRET, aad="conn-1")
    bad = [
        (SecretBox(secrets.token_bytes(32)), token, "conn-1"),
        (box, token, "conn-2"),
        (box, _flip(token, 5), "conn-1"),  # in the nonce
        (box, _flip(token, len(token) // 2), "conn-1"),  # in the ciphertext
        (box, _flip(token, len(token) - 2), "conn-1"),  # in the tag
        (box, token[:-4], "conn-1"),
        (box, "v1.", "conn-1"),
        (box, "v1.!!!!", "conn-1"),
        (box, "v2." + token[3:], "conn-1"),
        (box, SECRET, "conn-1"),
    ]
    for opener, candidate, aad in bad:
        with pytest.raises(DecryptionError) as caught:
            opener.open(candidate, aad=aad)
        _scan(str(caught.value))


@settings(max_examples=200, deadline=None)
@given(token=st.text(max_size=120))
def test_box_opens_no_arbitrary_text(token: str) -> None:
    with pytest.raises(DecryptionError):
        SecretBox(KEY).open(token, aad="conn-1")
