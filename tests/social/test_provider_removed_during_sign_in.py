"""A provider configuration removed between begin and complete refuses the sign-in
with the one generic error (counted against the client's address), like an SSO
connection deleted during a sign-in."""

from __future__ import annotations

import pytest

from authsome import Authsome
from authsome.errors import InvalidCredentials
from tests.social.test_github_sign_in import TENANT, _callback, configure_github
from tests.support.github_oauth import GitHubEmail, GitHubOAuthServer


def test_a_provider_removed_during_the_sign_in_refuses_it_generically(
    social_auth: Authsome, github_oauth: GitHubOAuthServer
) -> None:
    configure_github(social_auth, github_oauth)
    github_oauth.add_user("gone", emails=(GitHubEmail("gone@corp.example", True, True),))
    params, handle = _callback(social_auth, "gone")
    assert social_auth.social.delete("github", tenant=TENANT)

    with pytest.raises(InvalidCredentials):
        social_auth.social.complete(params, handle=handle, tenant=TENANT, ip="192.0.2.1")
