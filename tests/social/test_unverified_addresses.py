"""A social first sign-in never provisions or links with an address the provider did
not verify: it would squat the address, and the owner's later password reset would
leave the squatter's provider account linked. Refused generically instead, per
provider: GitHub's unverified primary address, any Microsoft address without the
``xms_edov`` claim, an OIDC provider's ``email_verified`` other than true. An
account linked already still signs in by its subject."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from authsome import Authsome
from authsome.testing import Outbox, RecordingLedger
from tests.conftest import PASSWORD
from tests.social.conftest import AtProvider
from tests.social.test_github_sign_in import CALLBACK as GITHUB_CALLBACK
from tests.social.test_github_sign_in import configure_github
from tests.support.github_oauth import GitHubEmail, GitHubOAuthServer
from tests.support.oidc_op import OpenIDClient, OpenIDProvider
from tests.support.sso_scene import refused

TENANT = "acme"
IP = "192.0.2.1"
MS_CALLBACK = "https://app.example/auth/social/microsoft/callback"
TID = "9122040d-6c67-4c5b-b112-36a304b66dad"
MS_ISSUER = f"https://login.microsoftonline.com/{TID}/v2.0"


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# -- GitHub ---------------------------------------------------------------------------


def _github_sign_in(auth: Authsome, login: str) -> str:
    redirect = auth.social.begin("github", redirect_uri=GITHUB_CALLBACK, tenant=TENANT)
    answer = httpx.get(f"{redirect.url}&login={login}", timeout=10)
    params = _query(answer.headers["location"])
    return auth.social.complete(params, handle=redirect.handle, tenant=TENANT, ip=IP).user.id


def test_an_unverified_github_address_squats_nothing_and_the_owner_registers(
    mail_social_auth: Authsome,
    github_oauth: GitHubOAuthServer,
    outbox: Outbox,
    ledger: RecordingLedger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = mail_social_auth
    configure_github(auth, github_oauth)
    emails = (GitHubEmail("victim@corp.example", primary=True, verified=False),)
    github_oauth.add_user("mallory", user_id=666, emails=emails)
    ledger.clear()

    with refused(caplog, "an unverified address provisions nobody"):
        _github_sign_in(auth, "mallory")

    assert auth.users.find_by_email("victim@corp.example", tenant=TENANT) is None
    assert ledger.usage() == []
    # The owner registers and verifies the address; the attacker's account stays out.
    victim = auth.users.register("victim@corp.example", PASSWORD, tenant=TENANT)
    auth.users.send_verification(victim.id)
    verified = auth.users.verify_email(outbox.token(), tenant=TENANT)
    assert verified.email_verified_at is not None
    with refused(caplog, "unverified address matches"):
        _github_sign_in(auth, "mallory")
    assert auth.sso.identities(victim.id) == []


def test_an_unverified_github_address_does_not_link_a_verified_user(
    social_auth: Authsome, github_oauth: GitHubOAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    configure_github(social_auth, github_oauth)
    ada = social_auth.users.register("ada@corp.example", PASSWORD, tenant=TENANT)
    social_auth.store.mark_email_verified(ada.id, ada.email, ada.created_at)
    emails = (GitHubEmail("ada@corp.example", primary=True, verified=False),)
    github_oauth.add_user("mallory", emails=emails)

    with refused(caplog, "unverified address matches"):
        _github_sign_in(social_auth, "mallory")

    assert social_auth.sso.identities(ada.id) == []


# -- Microsoft ------------------------------------------------------------------------


@pytest.fixture
def microsoft(at_provider: AtProvider) -> OpenIDClient:
    return at_provider("microsoft")


def _microsoft_sign_in(
    auth: Authsome, op: OpenIDProvider, client: OpenIDClient, account: str, **claims: object
) -> str:
    """Sign in as ``account`` with an Entra-style ID token carrying ``claims``."""
    op.tamper_next_id_token(client.client_id, claims={"iss": MS_ISSUER, "tid": TID, **claims})
    redirect = auth.social.begin("microsoft", redirect_uri=MS_CALLBACK, tenant=TENANT)
    params = _query(op.login(redirect.url, account))
    return auth.social.complete(params, handle=redirect.handle, tenant=TENANT, ip=IP).user.id


@pytest.mark.parametrize(
    "claims",
    [{}, {"xms_edov": False}, {"xms_edov": "true"}, {"xms_edov": 1}],
    ids=["no-xms_edov", "false", "a-string", "a-number"],
)
def test_a_microsoft_address_without_xms_edov_true_provisions_nobody(
    social_auth: Authsome,
    oidc_op: OpenIDProvider,
    microsoft: OpenIDClient,
    caplog: pytest.LogCaptureFixture,
    claims: dict[str, object],
) -> None:
    # email_verified says yes: Microsoft's own word for it is xms_edov only.
    account = oidc_op.add_account(
        f"ms-{secrets.token_hex(4)}", email="bob@contoso.example", email_verified=True
    )

    with refused(caplog, "an unverified address provisions nobody"):
        _microsoft_sign_in(social_auth, oidc_op, microsoft, account, **claims)

    assert social_auth.users.find_by_email("bob@contoso.example", tenant=TENANT) is None


def test_xms_edov_provisions_a_verified_user_who_then_signs_in_by_subject(
    social_auth: Authsome, oidc_op: OpenIDProvider, microsoft: OpenIDClient
) -> None:
    account = oidc_op.add_account(f"ms-{secrets.token_hex(4)}", email="cy@contoso.example")

    user_id = _microsoft_sign_in(social_auth, oidc_op, microsoft, account, xms_edov=True)

    user = social_auth.users.get(user_id)
    assert (user.email, user.email_verified_at is not None) == ("cy@contoso.example", True)
    # Linked now: later tokens without the claim still sign the same user in.
    assert _microsoft_sign_in(social_auth, oidc_op, microsoft, account) == user_id


def test_xms_edov_links_a_user_who_verified_the_address_here(
    social_auth: Authsome, oidc_op: OpenIDProvider, microsoft: OpenIDClient
) -> None:
    dee = social_auth.users.register("dee@contoso.example", PASSWORD, tenant=TENANT)
    social_auth.store.mark_email_verified(dee.id, dee.email, dee.created_at)
    account = oidc_op.add_account(f"ms-{secrets.token_hex(4)}", email="dee@contoso.example")

    assert _microsoft_sign_in(social_auth, oidc_op, microsoft, account, xms_edov=True) == dee.id
    assert [link.subject for link in social_auth.sso.identities(dee.id)] == [account]


# -- an OpenID Connect preset ---------------------------------------------------------


@pytest.mark.parametrize("email_verified", [False, None, "yes"], ids=["false", "absent", "yes"])
def test_an_oidc_address_not_verified_provisions_nobody(
    at_provider: AtProvider,
    social_auth: Authsome,
    oidc_op: OpenIDProvider,
    caplog: pytest.LogCaptureFixture,
    email_verified: object,
) -> None:
    callback = "https://app.example/auth/social/gitlab/callback"
    at_provider("gitlab")
    claims = {} if email_verified is None else {"email_verified": email_verified}
    account = oidc_op.add_account(f"gl-{secrets.token_hex(4)}", email="eve@corp.example", **claims)

    redirect = social_auth.social.begin("gitlab", redirect_uri=callback, tenant=TENANT)
    params = _query(oidc_op.login(redirect.url, account))
    with refused(caplog, "an unverified address provisions nobody"):
        social_auth.social.complete(params, handle=redirect.handle, tenant=TENANT, ip=IP)

    assert social_auth.users.find_by_email("eve@corp.example", tenant=TENANT) is None
