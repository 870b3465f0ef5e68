"""GitHub sign-in end to end against the local server keeping GitHub's documented
OAuth 2 and user-API contract: the numeric id is the link, only the verified primary
address counts, a code is good once."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from authsome import Authsome
from authsome.errors import InvalidCredentials
from authsome.stores import SQLiteStore
from authsome.testing import RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.github_oauth import GitHubEmail, GitHubOAuthServer, OAuthApp
from tests.support.stores import postgres_store
from tests.test_mfa import code, enrol

CALLBACK = "https://app.example/auth/social/github/callback"
TENANT = "acme"


@pytest.fixture
def app(github_oauth: GitHubOAuthServer, social_auth: Authsome) -> OAuthApp:
    return configure_github(social_auth, github_oauth)


def configure_github(auth: Authsome, github_oauth: GitHubOAuthServer) -> OAuthApp:
    """Register an app at the local server and configure it as the tenant's GitHub."""
    registered = github_oauth.add_app(redirect_uri=CALLBACK)
    auth.social.configure(
        "github",
        tenant=TENANT,
        client_id=registered.client_id,
        client_secret=registered.client_secret,
        authorization_endpoint=github_oauth.authorize_url,
        token_endpoint=github_oauth.token_url,
        api_base=github_oauth.api_base_url,
    )
    return registered


def _callback(auth: Authsome, login: str) -> tuple[dict[str, str], str]:
    """Begin a sign-in and follow it through the provider as ``login``: the callback's
    parameters and the handle."""
    redirect = auth.social.begin("github", redirect_uri=CALLBACK, tenant=TENANT)
    query = parse_qs(urlsplit(redirect.url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"] == [redirect.handle]
    answer = httpx.get(f"{redirect.url}&login={login}", timeout=10)
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(CALLBACK + "?")
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    return params, redirect.handle


def test_a_verified_primary_address_provisions_a_verified_user_once(
    social_auth: Authsome,
    github_oauth: GitHubOAuthServer,
    app: OAuthApp,
    ledger: RecordingLedger,
) -> None:
    github_oauth.add_user(
        "octocat",
        user_id=583231,
        emails=(
            GitHubEmail("old@corp.example", primary=False, verified=True),
            GitHubEmail("Octo@Corp.example", primary=True, verified=True),
        ),
    )
    params, handle = _callback(social_auth, "octocat")

    signed_in = social_auth.social.complete(params, handle=handle, tenant=TENANT, ip="192.0.2.1")

    assert signed_in.tokens is not None
    user = signed_in.user
    assert (user.email, user.tenant) == ("octo@corp.example", TENANT)
    assert user.email_verified_at is not None
    session = social_auth.sessions.validate(signed_in.tokens.access_token, tenant=TENANT)
    assert session.user_id == user.id
    assert [(link.provider, link.subject) for link in social_auth.sso.identities(user.id)] == [
        ("social:github", "583231")
    ]
    assert sorted(c.feature_key for c in ledger.usage()) == [
        "authsome.sessions.created",
        "authsome.users.active",
        "authsome.users.created",
    ]

    # The second sign-in finds the same user by GitHub's id, and provisions nobody.
    ledger.clear()
    params, handle = _callback(social_auth, "octocat")
    again = social_auth.social.complete(params, handle=handle, tenant=TENANT, ip="192.0.2.1")
    assert again.user.id == user.id
    assert ledger.usage("authsome.users.created") == []


def test_a_verified_address_links_the_user_who_verified_it_too(
    social_auth: Authsome, github_oauth: GitHubOAuthServer, app: OAuthApp
) -> None:
    ada = social_auth.users.register("ada@corp.example", PASSWORD, tenant=TENANT)
    social_auth.store.mark_email_verified(ada.id, ada.email, ada.created_at)
    github_oauth.add_user("ada", emails=(GitHubEmail("ada@corp.example", True, True),))

    params, handle = _callback(social_auth, "ada")
    signed_in = social_auth.social.complete(params, handle=handle, tenant=TENANT)

    assert signed_in.user.id == ada.id


@pytest.mark.parametrize(
    ("github_verified", "authsome_verified"),
    [(False, True), (True, False)],
    ids=["unverified-at-github", "unverified-at-authsome"],
)
def test_an_address_verified_on_one_side_only_is_never_linked(
    social_auth: Authsome,
    github_oauth: GitHubOAuthServer,
    app: OAuthApp,
    github_verified: bool,
    authsome_verified: bool,
) -> None:
    ada = social_auth.users.register("ada@corp.example", PASSWORD, tenant=TENANT)
    if authsome_verified:
        social_auth.store.mark_email_verified(ada.id, ada.email, ada.created_at)
    emails = (GitHubEmail("ada@corp.example", primary=True, verified=github_verified),)
    github_oauth.add_user("mallory", emails=emails)

    params, handle = _callback(social_auth, "mallory")
    with pytest.raises(InvalidCredentials):
        social_auth.social.complete(params, handle=handle, tenant=TENANT)

    assert social_auth.sso.identities(ada.id) == []


def test_a_verified_address_that_is_not_primary_is_not_used(
    social_auth: Authsome, github_oauth: GitHubOAuthServer, app: OAuthApp
) -> None:
    ada = social_auth.users.register("ada@corp.example", PASSWORD, tenant=TENANT)
    social_auth.store.mark_email_verified(ada.id, ada.email, ada.created_at)
    github_oauth.add_user(
        "mallory",
        emails=(
            GitHubEmail("mallory@elsewhere.example", primary=True, verified=False),
            GitHubEmail("ada@corp.example", primary=False, verified=True),
        ),
    )
    params, handle = _callback(social_auth, "mallory")
    with pytest.raises(InvalidCredentials):  # the primary address is not verified
        social_auth.social.complete(params, handle=handle, tenant=TENANT)

    assert social_auth.sso.identities(ada.id) == []
    assert social_auth.store.find_user_by_email(TENANT, "mallory@elsewhere.example") is None


def test_a_code_is_good_once_and_a_handle_is_good_once(
    social_auth: Authsome, github_oauth: GitHubOAuthServer, app: OAuthApp
) -> None:
    github_oauth.add_user("octocat", emails=(GitHubEmail("o@corp.example", True, True),))
    params, handle = _callback(social_auth, "octocat")
    social_auth.social.complete(params, handle=handle, tenant=TENANT)

    # The same callback again: the handle is used up.
    with pytest.raises(InvalidCredentials):
        social_auth.social.complete(params, handle=handle, tenant=TENANT)
    # The used code with a fresh handle: GitHub refuses it (bad_verification_code).
    fresh = social_auth.social.begin("github", redirect_uri=CALLBACK, tenant=TENANT)
    requests_before = github_oauth.token_requests
    with pytest.raises(InvalidCredentials):
        social_auth.social.complete(
            {"code": params["code"], "state": fresh.handle}, handle=fresh.handle, tenant=TENANT
        )
    assert github_oauth.token_requests == requests_before + 1


def test_a_state_that_is_not_the_handle_is_refused_and_uses_the_handle_up(
    social_auth: Authsome, github_oauth: GitHubOAuthServer, app: OAuthApp
) -> None:
    github_oauth.add_user("octocat", emails=(GitHubEmail("o@corp.example", True, True),))
    params, handle = _callback(social_auth, "octocat")
    other = social_auth.social.begin("github", redirect_uri=CALLBACK, tenant=TENANT)
    with pytest.raises(InvalidCredentials):
        social_auth.social.complete({**params, "state": other.handle}, handle=handle, tenant=TENANT)
    with pytest.raises(InvalidCredentials):
        social_auth.social.complete(params, handle=handle, tenant=TENANT)
    assert github_oauth.token_requests == 0


def test_a_handle_of_another_tenant_or_past_its_life_is_refused(
    social_auth: Authsome, github_oauth: GitHubOAuthServer, app: OAuthApp, clock: FakeClock
) -> None:
    github_oauth.add_user("octocat", emails=(GitHubEmail("o@corp.example", True, True),))
    params, handle = _callback(social_auth, "octocat")
    with pytest.raises(InvalidCredentials):
        social_auth.social.complete(params, handle=handle, tenant="other")

    params, handle = _callback(social_auth, "octocat")
    clock.advance(minutes=11)
    with pytest.raises(InvalidCredentials):
        social_auth.social.complete(params, handle=handle, tenant=TENANT)


def test_a_user_with_a_second_factor_gets_a_ticket_and_no_session_until_the_code(
    social_auth: Authsome,
    github_oauth: GitHubOAuthServer,
    app: OAuthApp,
    ledger: RecordingLedger,
    clock: FakeClock,
) -> None:
    github_oauth.add_user("ada", emails=(GitHubEmail("ada@corp.example", True, True),))
    params, handle = _callback(social_auth, "ada")
    user = social_auth.social.complete(params, handle=handle, tenant=TENANT).user
    setup, _ = enrol(social_auth, user, clock)
    ledger.clear()

    params, handle = _callback(social_auth, "ada")
    pending = social_auth.social.complete(params, handle=handle, tenant=TENANT)
    assert pending.mfa_required
    assert pending.tokens is None
    assert pending.ticket is not None
    assert ledger.usage() == []

    done = social_auth.mfa.verify(pending.ticket, code(setup, clock), tenant=TENANT)
    assert done.tokens is not None
    assert len(ledger.usage("authsome.users.active")) == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_github_journey_on_the_durable_stores(
    request: pytest.FixtureRequest,
    make_auth: AuthFactory,
    provider_http: httpx.Client,
    github_oauth: GitHubOAuthServer,
    tmp_path: Path,
    kind: str,
) -> None:
    store = SQLiteStore(str(tmp_path / "auth.db")) if kind == "sqlite" else postgres_store(request)
    auth = make_auth(store=store, sso_allow_insecure_loopback=True, http_client=provider_http)
    configure_github(auth, github_oauth)
    github_oauth.add_user("octocat", user_id=1, emails=(GitHubEmail("o@corp.example", True, True),))

    params, handle = _callback(auth, "octocat")
    first = auth.social.complete(params, handle=handle, tenant=TENANT)
    params, handle = _callback(auth, "octocat")
    second = auth.social.complete(params, handle=handle, tenant=TENANT)
    with pytest.raises(InvalidCredentials):
        auth.social.complete(params, handle=handle, tenant=TENANT)

    assert first.user.id == second.user.id
    assert first.tokens is not None
    assert auth.sessions.validate(first.tokens.access_token, tenant=TENANT).user_id == first.user.id
