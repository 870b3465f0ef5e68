"""SSO sign-in at its edges: the connection's sign-in settings are validated, the
callback's input is bounded, failures are throttled per address, and the journey
works on every store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authsome import Authsome
from authsome.errors import InvalidCredentials, RateLimited, ValidationError
from authsome.features import UsageEvent
from authsome.models import SSORedirect
from authsome.sso import OIDCConnection
from authsome.testing import RecordingLedger
from authsome.throttle import ThrottlePolicy
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.oidc_op import OpenIDProvider
from tests.support.raced_first_sign_in import RacedFirstSignInStore
from tests.support.sso_scene import DOMAIN, IP, TENANT, Scene
from tests.support.stores import STORE_KINDS


@pytest.fixture
def clock() -> FakeClock:
    """The real time: the provider stamps its ID tokens with it."""
    return FakeClock(datetime.now(UTC))


_PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _configure(auth: Authsome, **settings_: object) -> None:
    owner = auth.users.register(f"o@{DOMAIN}", PASSWORD, tenant=TENANT)
    org = auth.orgs.create(owner.id, "Acme")
    fields: dict[str, object] = {
        "issuer": "https://idp.acme.test",
        "client_id": "client",
        "client_secret": "a-client-secret",
        **settings_,
    }
    auth.sso.configure(org.id, OIDCConnection(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings_", "error"),
    [
        ({"auth_method": "client_secret_jwt"}, ValidationError),
        ({"auth_method": "none"}, ValidationError),
        ({"jit_role": "owner"}, ValidationError),
        ({"jit_role": "root"}, ValidationError),
        ({"jit": "yes"}, TypeError),
        ({"trust_idp_mfa": 1}, TypeError),
        ({"userinfo": None}, TypeError),
        ({"auth_method": "private_key_jwt", "client_secret": "not a key"}, ValidationError),
        ({"auth_method": "private_key_jwt", "client_secret": "x" * 20_000}, ValidationError),
    ],
)
def test_bad_sign_in_settings_are_refused(
    make_auth: AuthFactory, settings_: dict[str, object], error: type[Exception]
) -> None:
    auth = make_auth()
    with pytest.raises(error):
        _configure(auth, **settings_)


def test_a_private_key_is_kept_sealed_and_never_returned(make_auth: AuthFactory) -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    auth = make_auth(secret_key=b"k" * 32)
    _configure(auth, auth_method="private_key_jwt", client_secret=pem)
    [org] = auth.orgs.orgs_of(auth.store.find_user_by_email(TENANT, f"o@{DOMAIN}").id)  # type: ignore[union-attr]
    [info] = auth.sso.list(org.id)

    assert info.auth_method == "private_key_jwt" and info.has_client_secret
    stored = auth.store.get_sso_client_secret(info.id)
    assert stored is not None and stored.sealed and "PRIVATE KEY" not in stored.value


@_PROPERTY
@given(
    params=st.dictionaries(
        st.sampled_from(["code", "state", "error", "iss", "other"]),
        st.text(max_size=5000),
        max_size=5,
    ),
    handle=st.text(max_size=200),
)
def test_any_callback_input_gets_a_typed_answer(
    make_auth: AuthFactory, params: dict[str, str], handle: str
) -> None:
    auth = make_auth()
    with pytest.raises((InvalidCredentials, ValidationError)):
        auth.sso.complete(params, handle=handle, tenant=TENANT)


def test_oversized_or_mistyped_callback_input_is_refused_before_any_work(
    make_auth: AuthFactory,
) -> None:
    auth = make_auth()
    with pytest.raises(ValidationError):
        auth.sso.complete({"code": "c" * 5000}, handle="h", tenant=TENANT)
    with pytest.raises(ValidationError):
        auth.sso.complete({f"p{i}": "" for i in range(40)}, handle="h", tenant=TENANT)
    with pytest.raises(TypeError):
        auth.sso.complete({"code": 1}, handle="h", tenant=TENANT)  # type: ignore[dict-item]
    with pytest.raises(ValidationError):
        auth.sso.complete({}, handle="h" * 200, tenant=TENANT)


def test_failed_callbacks_are_throttled_per_address(make_auth: AuthFactory) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_ip=3, window=timedelta(minutes=15)))
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            auth.sso.complete({"state": "s", "code": "c"}, handle="forged", tenant=TENANT, ip=IP)

    with pytest.raises(RateLimited):
        auth.sso.complete({"state": "s", "code": "c"}, handle="forged", tenant=TENANT, ip=IP)
    with pytest.raises(InvalidCredentials):  # another address is not held back
        auth.sso.complete(
            {"state": "s", "code": "c"}, handle="forged", tenant=TENANT, ip="198.51.100.1"
        )


def test_begin_checks_its_arguments(make_auth: AuthFactory) -> None:
    auth = make_auth()
    with pytest.raises(ValidationError):
        auth.sso.begin(redirect_uri="https://app.example/cb", tenant=TENANT)
    with pytest.raises(ValidationError):
        auth.sso.begin("sso_x", email="a@b.test", redirect_uri="https://app.example/cb")


def test_a_handle_never_shows_in_a_repr() -> None:
    assert "secret-handle" not in repr(SSORedirect(url="https://idp/x", handle="secret-handle"))


@pytest.mark.parametrize("kind", sorted(STORE_KINDS))
def test_the_journey_on_every_store(
    make_auth: AuthFactory, oidc_op: OpenIDProvider, request: pytest.FixtureRequest, kind: str
) -> None:
    auth = make_auth(store=STORE_KINDS[kind](request), sso_allow_insecure_loopback=True)
    scene = Scene(auth, oidc_op, oidc_op.add_client())
    account = scene.account()

    first = scene.sign_in(account)
    again = scene.sign_in(account)

    assert first.tokens is not None and again.tokens is not None
    assert again.user.id == first.user.id
    assert [i.subject for i in auth.sso.identities(first.user.id)] == [account]


def test_a_first_sign_in_that_loses_a_race_signs_in_as_the_winners_user(
    make_auth: AuthFactory, oidc_op: OpenIDProvider
) -> None:
    store = RacedFirstSignInStore(f"racer@{DOMAIN}")
    ledger = RecordingLedger()
    auth = make_auth(store=store, ledger=ledger, sso_allow_insecure_loopback=True)
    scene = Scene(auth, oidc_op, oidc_op.add_client())
    ledger.clear()

    signed_in = scene.sign_in(scene.account(email=f"racer@{DOMAIN}"))

    assert signed_in.user.id == store.raced_user_id
    assert signed_in.tokens is not None
    assert ledger.usage(UsageEvent.USERS_CREATED) == []  # the winner's to record
