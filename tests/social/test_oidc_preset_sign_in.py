"""An OpenID Connect preset (GitLab, self-hosted, and Google) pointed at a real
OpenID Provider on 127.0.0.1: discovery, PKCE, nonce, ID token, account linking."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc.jwk import ECKey

from authsome import Authsome
from authsome.errors import InvalidCredentials, ValidationError
from authsome.testing import RecordingLedger
from tests.conftest import PASSWORD, AuthFactory
from tests.social.conftest import AtProvider
from tests.support.oidc_op import OpenIDProvider

TENANT = "acme"


def _callback_params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.mark.parametrize("provider", ["gitlab", "google"])
def test_an_oidc_preset_signs_a_user_in_through_a_real_provider(
    at_provider: AtProvider,
    social_auth: Authsome,
    oidc_op: OpenIDProvider,
    ledger: RecordingLedger,
    provider: str,
) -> None:
    callback = f"https://app.example/auth/social/{provider}/callback"
    at_provider(provider)
    account = oidc_op.add_account(
        f"acct-{secrets.token_hex(4)}", email="grace@navy.example", email_verified=True
    )

    redirect = social_auth.social.begin(provider, redirect_uri=callback, tenant=TENANT)
    query = _callback_params(redirect.url)
    assert (query["code_challenge_method"], query["state"]) == ("S256", redirect.handle)
    assert query["nonce"]
    params = _callback_params(oidc_op.login(redirect.url, account))
    signed_in = social_auth.social.complete(params, handle=redirect.handle, tenant=TENANT)

    assert signed_in.tokens is not None
    assert signed_in.user.email == "grace@navy.example"
    assert signed_in.user.email_verified_at is not None
    links = social_auth.sso.identities(signed_in.user.id)
    assert [(link.provider, link.subject) for link in links] == [(f"social:{provider}", account)]
    assert len(ledger.usage("authsome.users.active")) == 1
    assert len(ledger.usage("authsome.sessions.created")) == 1

    # A replayed callback (same code, same handle) is refused.
    with pytest.raises(InvalidCredentials):
        social_auth.social.complete(params, handle=redirect.handle, tenant=TENANT)


def test_an_unverified_address_at_the_provider_does_not_link_an_existing_user(
    at_provider: AtProvider, social_auth: Authsome, oidc_op: OpenIDProvider
) -> None:
    callback = "https://app.example/auth/social/gitlab/callback"
    at_provider("gitlab", base_url=oidc_op.issuer)
    ada = social_auth.users.register("ada@corp.example", PASSWORD, tenant=TENANT)
    social_auth.store.mark_email_verified(ada.id, ada.email, ada.created_at)
    account = oidc_op.add_account(
        f"acct-{secrets.token_hex(4)}", email="ada@corp.example", email_verified=False
    )

    redirect = social_auth.social.begin("gitlab", redirect_uri=callback, tenant=TENANT)
    params = _callback_params(oidc_op.login(redirect.url, account))
    with pytest.raises(InvalidCredentials):
        social_auth.social.complete(params, handle=redirect.handle, tenant=TENANT)
    assert social_auth.sso.identities(ada.id) == []


def test_a_plain_http_provider_is_refused_without_the_loopback_option(
    make_auth: AuthFactory, oidc_op: OpenIDProvider
) -> None:
    auth = make_auth()
    with pytest.raises(ValidationError, match="https"):
        auth.social.configure(
            "gitlab", tenant=TENANT, client_id="c", client_secret="s", base_url=oidc_op.issuer
        )


def test_apple_asks_for_a_form_post_carrying_the_handle_as_state(
    social_auth: Authsome, oidc_op: OpenIDProvider
) -> None:
    callback = "https://app.example/auth/social/apple/callback"
    client = oidc_op.add_client(redirect_uri=callback)
    social_auth.social.configure(
        "apple",
        tenant=TENANT,
        client_id=client.client_id,
        private_key=ECKey.generate_key("P-256").as_pem(private=True).decode(),
        team_id="TEAM123456",
        key_id="KEY1234567",
        issuer=oidc_op.issuer,
    )
    account = oidc_op.add_account(f"apple-{secrets.token_hex(4)}", email="tim@apple.example")

    redirect = social_auth.social.begin("apple", redirect_uri=callback, tenant=TENANT)
    query = _callback_params(redirect.url)
    assert query["response_mode"] == "form_post"
    assert query["scope"] == "openid email name"

    # The provider answers with a cross-site POST whose state is the handle itself.
    posted = oidc_op.login_callback(redirect.url, account)
    assert (posted.method, posted.url) == ("POST", callback)
    assert posted.params["state"] == redirect.handle
    assert posted.params["code"]


def test_a_callback_naming_another_issuer_is_refused(
    at_provider: AtProvider, social_auth: Authsome, oidc_op: OpenIDProvider
) -> None:
    callback = "https://app.example/auth/social/google/callback"
    at_provider("google")
    account = oidc_op.add_account(f"acct-{secrets.token_hex(4)}", email="g@corp.example")
    redirect = social_auth.social.begin("google", redirect_uri=callback, tenant=TENANT)
    params = _callback_params(oidc_op.login(redirect.url, account))
    assert params["iss"] == oidc_op.issuer  # the provider names itself (RFC 9207)

    with pytest.raises(InvalidCredentials):
        social_auth.social.complete(
            {**params, "iss": "https://accounts.google.com"}, handle=redirect.handle, tenant=TENANT
        )
