"""SAML sign-in at its edges: the connection's sign-in settings and the service
provider settings are validated, the ACS input is bounded and always gets a typed
answer, failures are throttled per address, and the journey works on every store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authsome import Authsome
from authsome.errors import InvalidCredentials, RateLimited, ValidationError
from authsome.sso import SAMLConnection, SAMLServiceProvider
from authsome.testing import RecordingLedger
from authsome.throttle import ThrottlePolicy
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.saml_scene import SP, SP_KEYS, SamlScene, idp_keys
from tests.support.sso_scene import DOMAIN, IP, TENANT
from tests.support.stores import STORE_KINDS

IDP_CERTIFICATE = idp_keys().certificate_pem
_PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def clock() -> FakeClock:
    """The real time: the IdP stamps its assertions with it."""
    return FakeClock(datetime.now(UTC))


def _configure(auth: Authsome, **settings_: object) -> str:
    owner = auth.users.register(f"o@{DOMAIN}", PASSWORD, tenant=TENANT)
    org = auth.orgs.create(owner.id, "Acme")
    connection = SAMLConnection(
        "https://idp.acme.test/",
        "https://idp.acme.test/sso",
        IDP_CERTIFICATE,
        **settings_,  # type: ignore[arg-type]
    )
    return auth.sso.configure(org.id, connection).id


@pytest.mark.parametrize(
    ("settings_", "error"),
    [
        ({"jit_role": "owner"}, ValidationError),
        ({"jit": "yes"}, TypeError),
        ({"email_attribute": ""}, ValidationError),
        ({"name_attribute": " mail"}, ValidationError),
        ({"groups_attribute": "g" * 300}, ValidationError),
        ({"groups_attribute": 7}, TypeError),
        ({"admin_groups": "admins"}, TypeError),  # a str, not a sequence of them
        ({"admin_groups": ("ok", "")}, ValidationError),
        ({"admin_groups": tuple(f"g{i}" for i in range(101))}, ValidationError),
    ],
)
def test_bad_sign_in_settings_are_refused(
    make_auth: AuthFactory, settings_: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        _configure(make_auth(), **settings_)


def test_admin_groups_keep_their_order_without_repeats(make_auth: AuthFactory) -> None:
    auth = make_auth()
    connection_id = _configure(auth, admin_groups=["b", "a", "b"])

    assert auth.sso.get(connection_id).admin_groups == ("b", "a")


def _ec_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("sp", "error"),
    [
        (SAMLServiceProvider("http://app.example/auth"), ValidationError),
        (SAMLServiceProvider("https://app.example/auth?x=1"), ValidationError),
        (SAMLServiceProvider("https://user@app.example/auth"), ValidationError),
        (SAMLServiceProvider("app.example/auth"), ValidationError),
        (replace(SP, certificate=None), ValidationError),  # a key without its certificate
        (replace(SP, private_key=None), ValidationError),
        (replace(SP, private_key="not a key"), ValidationError),
        (replace(SP, private_key=_ec_key_pem()), ValidationError),  # SAML signs with RSA
        (replace(SP, certificate=IDP_CERTIFICATE), ValidationError),  # another key's
        ("https://app.example/auth", TypeError),
    ],
)
def test_bad_service_provider_settings_are_refused_when_the_engine_is_built(
    make_auth: AuthFactory, sp: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        make_auth(saml=sp)


def test_service_provider_settings_without_a_key_send_unsigned_requests(
    make_auth: AuthFactory,
) -> None:
    auth = make_auth(saml=SAMLServiceProvider("https://app.example/auth/"))
    connection_id = _configure(auth)

    url = auth.sso.begin(connection_id, tenant=TENANT).url
    metadata = auth.sso.saml_metadata(connection_id, tenant=TENANT)

    assert "Signature=" not in url and "SigAlg=" not in url
    assert 'AuthnRequestsSigned="false"' in metadata
    assert f'entityID="https://app.example/auth/sso/saml/metadata/{connection_id}"' in metadata


def test_the_service_provider_key_never_shows_in_a_repr() -> None:
    assert "PRIVATE KEY" not in repr(SP)
    assert SP_KEYS.key_pem.splitlines()[1] not in repr(SP)


@_PROPERTY
@given(
    form=st.dictionaries(
        st.sampled_from(["SAMLResponse", "RelayState", "other"]),
        st.text(max_size=300),
        max_size=3,
    ).map(lambda form: {"SAMLResponse": "", **form}),
    handle=st.one_of(st.none(), st.text(max_size=100)),
)
def test_any_acs_input_gets_a_typed_answer(
    make_auth: AuthFactory, form: dict[str, str], handle: str | None
) -> None:
    auth = make_auth(saml=SP)
    with pytest.raises((InvalidCredentials, ValidationError)):
        auth.sso.complete(form, handle=handle, connection_id="sso_x", tenant=TENANT)


def test_oversized_or_mistyped_acs_input_is_refused_before_any_work(
    make_auth: AuthFactory,
) -> None:
    auth = make_auth(saml=SP)
    with pytest.raises(ValidationError):
        auth.sso.complete({"SAMLResponse": "x" * (512 * 1024 + 1)}, handle="h", tenant=TENANT)
    with pytest.raises(ValidationError):
        auth.sso.complete({"SAMLResponse": "x", "RelayState": "r" * 81}, handle="h")
    with pytest.raises(TypeError):
        auth.sso.complete({"SAMLResponse": 1}, handle="h")  # type: ignore[dict-item]
    with pytest.raises(ValidationError):  # neither a handle nor the connection
        auth.sso.complete({"SAMLResponse": "x"}, tenant=TENANT)
    with pytest.raises(ValidationError):  # an id no connection has, before it is logged
        auth.sso.complete({"SAMLResponse": "x"}, connection_id="sso\nforged: entry")
    with pytest.raises(ValidationError):
        auth.sso.complete({"SAMLResponse": "x"}, connection_id="c" * 129)
    with pytest.raises(ValidationError):  # OIDC needs its handle
        auth.sso.complete({"code": "c", "state": "s"}, tenant=TENANT)


def test_failed_responses_are_throttled_per_address(make_auth: AuthFactory) -> None:
    auth = make_auth(saml=SP, throttle=ThrottlePolicy(per_ip=3, window=timedelta(minutes=15)))
    form = {"SAMLResponse": "PHNhbWw+", "RelayState": "forged"}
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            auth.sso.complete(form, handle="forged", tenant=TENANT, ip=IP)

    with pytest.raises(RateLimited):
        auth.sso.complete(form, handle="forged", tenant=TENANT, ip=IP)
    with pytest.raises(InvalidCredentials):  # another address is not held back
        auth.sso.complete(form, handle="forged", tenant=TENANT, ip="198.51.100.1")


def test_starts_are_limited_per_address(make_auth: AuthFactory) -> None:
    auth = make_auth(saml=SP, throttle=ThrottlePolicy(starts_per_ip=2))
    connection_id = _configure(auth)
    for _ in range(2):
        auth.sso.begin(connection_id, tenant=TENANT, ip=IP)

    with pytest.raises(RateLimited):  # each start stores a state: limited like OIDC's
        auth.sso.begin(connection_id, tenant=TENANT, ip=IP)
    auth.sso.begin(connection_id, tenant=TENANT, ip="198.51.100.1")  # another address


@pytest.mark.parametrize("kind", sorted(STORE_KINDS))
def test_the_journey_on_every_store(
    make_auth: AuthFactory, request: pytest.FixtureRequest, kind: str
) -> None:
    ledger = RecordingLedger()
    auth = make_auth(
        store=STORE_KINDS[kind](request), ledger=ledger, sso_allow_insecure_loopback=True, saml=SP
    )
    scene = SamlScene(auth, idp_keys(), admin_groups=("acme-admins",))
    with scene.running():
        first = scene.sign_in("bob")
        again = scene.sign_in("bob")
        replayed, handle = scene.posted("bob")
        auth.sso.complete(replayed, handle=handle, tenant=TENANT, ip=IP)
        with pytest.raises(InvalidCredentials):
            auth.sso.complete(replayed, handle=handle, tenant=TENANT, ip=IP)

    assert first.tokens is not None and again.tokens is not None
    assert again.user.id == first.user.id
    assert [i.subject for i in auth.sso.identities(first.user.id)] == ["bob-0815"]
    assert scene.connection.admin_groups == ("acme-admins",)
