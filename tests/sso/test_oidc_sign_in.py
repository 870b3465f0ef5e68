"""Signing in through an OIDC connection, end to end against a real OpenID Provider.

The provider is the npm ``oidc-provider`` on 127.0.0.1 (``tests/support/oidc_op.py``);
its login and consent pages are driven over HTTP like a browser. The engine's clock
starts at the real time, since the provider stamps its ID tokens with it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from authsome import Authsome
from authsome.errors import FeatureNotEntitled, InvalidCredentials, NotFound, ValidationError
from authsome.features import Feature, UsageEvent
from authsome.models import OrgRole
from authsome.sso import OIDCConnection
from authsome.testing import DenyingLedger, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.oidc_op import OpenIDProvider
from tests.support.sso_scene import DOMAIN, IP, TENANT, Scene, prove, query, refused

# Stands for the test client's id in parameters (known only once the client exists).
CLIENT = "<the client's id>"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def scene(make_auth: AuthFactory, ledger: RecordingLedger, oidc_op: OpenIDProvider) -> Scene:
    auth = make_auth(ledger=ledger, sso_allow_insecure_loopback=True)
    made = Scene(auth, oidc_op, oidc_op.add_client())
    ledger.clear()
    return made


def _events(ledger: RecordingLedger, key: str) -> list[str | None]:
    return [call.ctx.event_id for call in ledger.usage(key)]


# -- the journey -------------------------------------------------------------------------


def test_a_first_sign_in_provisions_the_user_into_the_org_and_records_each_event_once(
    scene: Scene, ledger: RecordingLedger
) -> None:
    account = scene.account(email=f"Ada@{DOMAIN.upper()}")

    signed_in = scene.sign_in(account)

    assert signed_in.tokens is not None and not signed_in.mfa_required
    user = signed_in.user
    assert (user.tenant, user.email) == (TENANT, f"ada@{DOMAIN}")
    assert user.email_verified_at is not None
    session = scene.auth.sessions.validate(signed_in.tokens.access_token, tenant=TENANT)
    assert session.user_id == user.id
    assert scene.auth.orgs.role_of(scene.org.id, user.id) == OrgRole.MEMBER
    [identity] = scene.auth.sso.identities(user.id)
    assert (identity.provider, identity.subject, identity.tenant) == (
        scene.connection.id,
        account,
        TENANT,
    )
    session_id = signed_in.tokens.session.id
    assert _events(ledger, UsageEvent.USERS_CREATED) == [user.id]
    assert len(_events(ledger, UsageEvent.ORGS_MEMBERS)) == 1
    assert _events(ledger, UsageEvent.SESSIONS_CREATED) == [session_id]
    assert _events(ledger, UsageEvent.USERS_ACTIVE) == [session_id]
    # A provisioned user has no password: none signs them in.
    with pytest.raises(InvalidCredentials):
        scene.auth.sign_in(user.email, "!no-password", tenant=TENANT, ip=IP)


def test_the_device_list_shows_the_client_that_signed_in_through_the_provider(
    scene: Scene,
) -> None:
    params, handle = scene.callback(scene.account())

    signed_in = scene.auth.sso.complete(
        params, handle=handle, tenant=TENANT, ip=IP, user_agent="Firefox/140"
    )

    assert signed_in.tokens is not None
    [device] = scene.auth.sessions.list(signed_in.user.id)
    assert (device.id, device.ip, device.user_agent) == (
        signed_in.tokens.session.id,
        IP,
        "Firefox/140",
    )


def test_the_next_sign_in_finds_the_user_by_subject_and_provisions_nothing(
    scene: Scene, ledger: RecordingLedger
) -> None:
    account = scene.account()
    first = scene.sign_in(account)
    ledger.clear()
    # The address at the provider changes: the subject still names the same user.
    scene.op.add_account(account, email=f"renamed@{DOMAIN}", email_verified=True)

    again = scene.sign_in(account)

    assert again.user.id == first.user.id
    assert _events(ledger, UsageEvent.USERS_CREATED) == []
    assert _events(ledger, UsageEvent.ORGS_MEMBERS) == []
    assert len(_events(ledger, UsageEvent.USERS_ACTIVE)) == 1


def test_jit_role_is_the_connections(
    make_auth: AuthFactory, oidc_op: OpenIDProvider, ledger: RecordingLedger
) -> None:
    auth = make_auth(ledger=ledger, sso_allow_insecure_loopback=True)
    scene = Scene(auth, oidc_op, oidc_op.add_client(), jit_role="admin")

    signed_in = scene.sign_in(scene.account())

    assert auth.orgs.role_of(scene.org.id, signed_in.user.id) == OrgRole.ADMIN


def test_without_jit_an_unknown_account_is_refused_and_nothing_is_written(
    make_auth: AuthFactory, oidc_op: OpenIDProvider, ledger: RecordingLedger
) -> None:
    auth = make_auth(ledger=ledger, sso_allow_insecure_loopback=True)
    scene = Scene(auth, oidc_op, oidc_op.add_client(), jit=False)
    ledger.clear()

    with pytest.raises(InvalidCredentials):
        scene.sign_in(scene.account(email=f"nobody@{DOMAIN}"))

    assert auth.store.find_user_by_email(TENANT, f"nobody@{DOMAIN}") is None
    assert ledger.usage() == []


@pytest.mark.parametrize("method", ["client_secret_post", "private_key_jwt"])
def test_each_client_authentication_method_signs_in(
    make_auth: AuthFactory, oidc_op: OpenIDProvider, method: str
) -> None:
    auth = make_auth(sso_allow_insecure_loopback=True)
    if method == "private_key_jwt":
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public_jwk = ECKey.import_key(pem).as_dict(private=False)
        client = oidc_op.add_client(
            token_endpoint_auth_method=method,
            jwks={"keys": [public_jwk]},
            token_endpoint_auth_signing_alg="ES256",
        )
        scene = Scene(auth, oidc_op, client, auth_method=method, client_secret=pem)
    else:
        client = oidc_op.add_client(token_endpoint_auth_method=method)
        scene = Scene(auth, oidc_op, client, auth_method=method)

    assert scene.sign_in(scene.account()).tokens is not None


def test_a_begin_by_email_routes_through_the_proven_domain(scene: Scene) -> None:
    prove(scene.auth.store)
    redirect = scene.auth.sso.begin(
        email=f"someone@{DOMAIN}", redirect_uri=scene.client.redirect_uri, tenant=TENANT
    )

    asked = query(redirect.url)
    assert asked["login_hint"] == f"someone@{DOMAIN}"
    assert asked["code_challenge_method"] == "S256"
    assert "code_verifier" not in asked
    params = query(scene.op.login(redirect.url, scene.account()))
    signed_in = scene.auth.sso.complete(params, handle=redirect.handle, tenant=TENANT, ip=IP)
    assert signed_in.tokens is not None
    with pytest.raises(NotFound):
        scene.auth.sso.begin(
            email="x@elsewhere.test", redirect_uri=scene.client.redirect_uri, tenant=TENANT
        )


# -- MFA policy ----------------------------------------------------------------------------


def _with_totp(auth: Authsome, user_id: str) -> None:
    setup = auth.mfa.begin_totp(user_id)
    auth.mfa.confirm_totp(user_id, pyotp.TOTP(setup.secret).now())


def test_a_user_with_a_second_factor_is_asked_for_it_by_default(scene: Scene) -> None:
    account = scene.account(amr=["pwd", "mfa"])
    user = scene.sign_in(account).user
    _with_totp(scene.auth, user.id)

    again = scene.sign_in(account)

    assert again.mfa_required and again.tokens is None and again.ticket is not None


def test_a_connection_that_trusts_the_providers_mfa_skips_ours_only_when_it_was_done(
    make_auth: AuthFactory, oidc_op: OpenIDProvider
) -> None:
    auth = make_auth(sso_allow_insecure_loopback=True)
    scene = Scene(auth, oidc_op, oidc_op.add_client(), trust_idp_mfa=True)
    with_mfa = scene.account(amr=["pwd", "mfa"])
    without = scene.account(amr=["pwd"])
    for account in (with_mfa, without):
        _with_totp(auth, scene.sign_in(account).user.id)

    assert scene.sign_in(with_mfa).tokens is not None
    assert scene.sign_in(without).mfa_required


# -- refusals ------------------------------------------------------------------------------


def test_a_wrong_state_is_refused_and_uses_the_handle_up(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    params, handle = scene.callback(scene.account())

    with refused(caplog, "state parameter"):
        scene.auth.sso.complete({**params, "state": "forged"}, handle=handle, tenant=TENANT)
    with refused(caplog, "state handle"):
        scene.auth.sso.complete(params, handle=handle, tenant=TENANT)


def test_a_handle_works_once_and_only_in_its_tenant(scene: Scene) -> None:
    account = scene.account()
    params, handle = scene.callback(account)
    with pytest.raises(InvalidCredentials):
        scene.auth.sso.complete(params, handle=handle, tenant="other")
    params, handle = scene.callback(account)
    scene.auth.sso.complete(params, handle=handle, tenant=TENANT)

    with pytest.raises(InvalidCredentials):
        scene.auth.sso.complete(params, handle=handle, tenant=TENANT)


def test_a_reused_code_is_refused(scene: Scene, caplog: pytest.LogCaptureFixture) -> None:
    account = scene.account()
    params, handle = scene.callback(account)
    scene.auth.sso.complete(params, handle=handle, tenant=TENANT)
    redirect = scene.auth.sso.begin(
        scene.connection.id, redirect_uri=scene.client.redirect_uri, tenant=TENANT
    )
    replay = {"code": params["code"], "state": query(redirect.url)["state"]}

    with refused(caplog, "HTTP 400"):  # the provider's invalid_grant
        scene.auth.sso.complete(replay, handle=redirect.handle, tenant=TENANT)


def test_an_error_from_the_provider_is_refused(scene: Scene) -> None:
    redirect = scene.auth.sso.begin(
        scene.connection.id, redirect_uri=scene.client.redirect_uri, tenant=TENANT
    )
    url = scene.op.login(redirect.url, scene.account(), consent=False)
    assert "error" in query(url)

    with pytest.raises(InvalidCredentials):
        scene.auth.sso.complete(query(url), handle=redirect.handle, tenant=TENANT)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        pytest.param({"nonce": "not-this-sign-ins"}, "nonce", id="wrong-nonce"),
        pytest.param({"nonce": None}, "nonce", id="no-nonce"),
        pytest.param({"aud": "another-client"}, "aud", id="wrong-aud"),
        pytest.param({"iss": "https://evil.example"}, "iss", id="wrong-iss"),
        pytest.param({"aud": [CLIENT, "x"], "azp": "another-client"}, "azp", id="wrong-azp"),
        pytest.param({"aud": [CLIENT, "x"], "azp": None}, "azp", id="no-azp-for-many-aud"),
    ],
)
def test_an_id_token_with_wrong_claims_is_refused(
    scene: Scene,
    claims: dict[str, object],
    reason: str,
    ledger: RecordingLedger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = scene.account()
    client_id = scene.client.client_id
    claims = {
        k: [client_id if a == CLIENT else a for a in v] if isinstance(v, list) else v
        for k, v in claims.items()
    }
    scene.op.tamper_next_id_token(client_id, claims=claims)

    with refused(caplog, f"id_token's {reason}"):
        scene.sign_in(account)
    assert ledger.usage() == []


@pytest.mark.parametrize("alg", ["none", "HS256-public-key"])
def test_an_id_token_signed_with_none_or_hs256_over_the_public_key_is_refused(
    scene: Scene, alg: str, ledger: RecordingLedger, caplog: pytest.LogCaptureFixture
) -> None:
    account = scene.account()
    scene.op.tamper_next_id_token(scene.client.client_id, alg=alg)  # type: ignore[arg-type]

    with refused(caplog, "is not one the provider publishes"):
        scene.sign_in(account)
    assert ledger.usage() == []


def test_an_expired_id_token_is_refused(
    scene: Scene, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    account = scene.account()
    scene.op.set_id_token_ttl(scene.client.client_id, 30)
    params, handle = scene.callback(account)
    clock.advance(seconds=30 + 119)  # past exp, within the two minutes of allowed skew
    scene.auth.sso.complete(params, handle=handle, tenant=TENANT)
    params, handle = scene.callback(account)
    clock.advance(seconds=30 + 121)  # past exp and the skew

    with refused(caplog, "expired"):
        scene.auth.sso.complete(params, handle=handle, tenant=TENANT)


def test_a_key_rotated_at_the_provider_is_accepted_after_a_refetch(
    make_auth: AuthFactory, fresh_oidc_op: OpenIDProvider
) -> None:
    auth = make_auth(sso_allow_insecure_loopback=True)
    scene = Scene(auth, fresh_oidc_op, fresh_oidc_op.add_client())
    account = scene.account()
    scene.sign_in(account)  # the key set is cached now

    fresh_oidc_op.rotate_keys(drop_old=True)

    assert scene.sign_in(account).tokens is not None


def test_an_unverified_address_matching_a_user_does_not_link(
    scene: Scene, ledger: RecordingLedger, caplog: pytest.LogCaptureFixture
) -> None:
    prove(scene.auth.store)
    victim = scene.auth.users.register(f"victim@{DOMAIN}", PASSWORD, tenant=TENANT)
    ledger.clear()

    with refused(caplog, "unverified"):
        scene.sign_in(scene.account(email=f"victim@{DOMAIN}", email_verified=False))

    assert scene.auth.sso.identities(victim.id) == []
    assert ledger.usage() == []


def test_a_verified_address_links_only_in_a_domain_the_tenant_proved(scene: Scene) -> None:
    user = scene.auth.users.register(f"bea@{DOMAIN}", PASSWORD, tenant=TENANT)
    account = scene.account(email=f"bea@{DOMAIN}", email_verified=True)
    with pytest.raises(InvalidCredentials):
        scene.sign_in(account)  # the domain is not proven yet
    prove(scene.auth.store)

    signed_in = scene.sign_in(account)

    assert signed_in.user.id == user.id
    [identity] = scene.auth.sso.identities(user.id)
    assert identity.subject == account


def test_a_removed_identity_no_longer_signs_in_as_that_user(scene: Scene) -> None:
    account = scene.account()
    user = scene.sign_in(account).user

    assert scene.auth.sso.remove_identity(user.id, scene.connection.id, account)
    assert not scene.auth.sso.remove_identity(user.id, scene.connection.id, account)

    # Its address is the user's but not proven: no link, and no second user either.
    with pytest.raises(InvalidCredentials):
        scene.sign_in(account)


# -- plain http and plans --------------------------------------------------------------------


def test_an_issuer_over_plain_http_is_refused_without_the_loopback_option(
    make_auth: AuthFactory, oidc_op: OpenIDProvider
) -> None:
    auth = make_auth()
    owner = auth.users.register(f"o@{DOMAIN}", PASSWORD, tenant=TENANT)
    org = auth.orgs.create(owner.id, "Acme")
    client = oidc_op.add_client()
    with pytest.raises(ValidationError):
        auth.sso.configure(
            org.id, OIDCConnection(oidc_op.issuer, client.client_id, client.client_secret)
        )
    loose = make_auth(sso_allow_insecure_loopback=True)
    owner = loose.users.register(f"o@{DOMAIN}", PASSWORD, tenant=TENANT)
    org = loose.orgs.create(owner.id, "Acme")
    with pytest.raises(ValidationError):  # loopback only, even with the option
        loose.sso.configure(
            org.id, OIDCConnection("http://op.example", client.client_id, client.client_secret)
        )


def test_a_plan_without_sso_refuses_sign_in_before_anything_is_written(
    make_auth: AuthFactory, oidc_op: OpenIDProvider
) -> None:
    ledger = DenyingLedger(Feature.SSO)
    ledger.denied = frozenset()  # allowed while the connection is configured
    auth = make_auth(ledger=ledger, sso_allow_insecure_loopback=True)
    scene = Scene(auth, oidc_op, oidc_op.add_client())
    account = scene.account(email=f"late@{DOMAIN}")
    params, handle = scene.callback(account)
    ledger.denied = frozenset({Feature.SSO.value})
    ledger.clear()

    with pytest.raises(FeatureNotEntitled):
        auth.sso.complete(params, handle=handle, tenant=TENANT)
    with pytest.raises(FeatureNotEntitled):
        auth.sso.begin(scene.connection.id, redirect_uri=scene.client.redirect_uri, tenant=TENANT)

    assert auth.store.find_user_by_email(TENANT, f"late@{DOMAIN}") is None
    assert ledger.usage() == []
    with pytest.raises(FeatureNotEntitled):  # configuring stays refused, as before
        auth.sso.configure(
            scene.org.id,
            OIDCConnection(oidc_op.issuer, "other", "secret-secret", domains=()),
        )


def test_key_set_refetches_for_unknown_kids_are_rate_limited(
    make_auth: AuthFactory,
    fresh_oidc_op: OpenIDProvider,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fetched: list[str] = []

    def count_key_set_fetches(request: httpx.Request) -> None:
        if request.url.path.endswith("/jwks"):
            fetched.append(str(request.url))

    with httpx.Client(timeout=10, event_hooks={"request": [count_key_set_fetches]}) as http:
        auth = make_auth(sso_allow_insecure_loopback=True, http_client=http)
        scene = Scene(auth, fresh_oidc_op, fresh_oidc_op.add_client())
        account = scene.account()
        scene.sign_in(account)
        fresh_oidc_op.rotate_keys(drop_old=True)
        scene.sign_in(account)  # an unknown kid: fetched again at once
        assert len(fetched) == 2

        # A second unknown kid within the minute is not fetched for...
        fresh_oidc_op.rotate_keys(drop_old=True)
        with refused(caplog, "does not verify"):
            scene.sign_in(account)
        assert len(fetched) == 2
        # ...until the minute has passed.
        clock.advance(seconds=61)
        assert scene.sign_in(account).tokens is not None
        assert len(fetched) == 3


def test_an_answer_naming_another_issuer_is_refused(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    params, handle = scene.callback(scene.account())
    assert params["iss"] == scene.op.issuer  # RFC 9207: the provider names itself

    with refused(caplog, "iss is not the connection's issuer"):
        scene.auth.sso.complete(
            {**params, "iss": "https://evil.example"}, handle=handle, tenant=TENANT
        )


def test_userinfo_is_read_when_the_connection_asks_for_it(
    make_auth: AuthFactory, oidc_op: OpenIDProvider
) -> None:
    paths: list[str] = []
    with httpx.Client(
        timeout=10, event_hooks={"request": [lambda r: paths.append(r.url.path)]}
    ) as http:
        auth = make_auth(sso_allow_insecure_loopback=True, http_client=http)
        scene = Scene(auth, oidc_op, oidc_op.add_client(), userinfo=True)

        signed_in = scene.sign_in(scene.account(email=f"info@{DOMAIN}"))

    assert signed_in.user.email == f"info@{DOMAIN}"
    assert paths[-1] == urlsplit(_discovery(oidc_op)["userinfo_endpoint"]).path


def _discovery(op: OpenIDProvider) -> dict[str, str]:
    document: dict[str, str] = httpx.get(
        f"{op.issuer}/.well-known/openid-configuration", timeout=10
    ).json()
    return document
