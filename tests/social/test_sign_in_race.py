"""A first social sign-in that loses a race with another first sign-in of the same
account (its write refused as a duplicate and rolled back) looks again and signs in
as the winner's user, like an SSO sign-in."""

from __future__ import annotations

import secrets

import httpx

from authsome.features import UsageEvent
from authsome.testing import RecordingLedger
from tests.conftest import AuthFactory
from tests.social.test_github_sign_in import TENANT, _callback, configure_github
from tests.support.github_oauth import GitHubEmail, GitHubOAuthServer
from tests.support.raced_first_sign_in import RacedFirstSignInStore

RACER = "racer@corp.example"


def test_a_first_social_sign_in_that_loses_a_race_signs_in_as_the_winners_user(
    make_auth: AuthFactory,
    github_oauth: GitHubOAuthServer,
    provider_http: httpx.Client,
    ledger: RecordingLedger,
) -> None:
    store = RacedFirstSignInStore(RACER)
    auth = make_auth(
        store=store,
        ledger=ledger,
        secret_key=secrets.token_bytes(32),
        sso_allow_insecure_loopback=True,
        http_client=provider_http,
    )
    configure_github(auth, github_oauth)
    github_oauth.add_user("racer", emails=(GitHubEmail(RACER, primary=True, verified=True),))
    params, handle = _callback(auth, "racer")
    ledger.clear()

    signed_in = auth.social.complete(params, handle=handle, tenant=TENANT, ip="192.0.2.1")

    assert signed_in.user.id == store.raced_user_id
    assert signed_in.tokens is not None
    assert ledger.usage(UsageEvent.USERS_CREATED) == []  # the winner's to record
