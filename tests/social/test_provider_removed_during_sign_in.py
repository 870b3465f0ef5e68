"""A provider configuration removed between begin and complete refuses the sign-in
with the one generic error (counted against the client's address), like an SSO
connection deleted during a sign-in."""

from __future__ import annotations

import pytest

from authsome import Authsome
from authsome.errors import InvalidCredentials
from tests.social.test_github_sign_in import CALLBACK, TENANT, _callback
from tests.support.github_oauth import GitHubEmail, GitHubOAuthServer


def test_a_provider_removed_during_the_sign_in_refuses_it_generically(
    social_auth: Authsome, github_oauth: GitHubOAuthServer
) -> None:
    app = github_oauth.add_app(redirect_uri=CALLBACK)
    social_auth.social.configure(
        TENANT,
        "github",
        client_id=app.client_id,
        client_secret=app.client_secret,
        authorization_endpoint=github_oauth.authorize_url,
        token_endpoint=github_oauth.token_url,
        api_base=github_oauth.api_base_url,
    )
    github_oauth.add_user("gone", emails=(GitHubEmail("gone@corp.example", True, True),))
    params, handle = _callback(social_auth, "gone")
    assert social_auth.social.delete(TENANT, "github")

    with pytest.raises(InvalidCredentials):
        social_auth.social.complete(params, handle=handle, tenant=TENANT, ip="192.0.2.1")
