"""A first social sign-in that loses a race with another first sign-in of the same
account (its write refused as a duplicate and rolled back) looks again and signs in
as the winner's user, like an SSO sign-in."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import httpx

from authsome.features import UsageEvent
from authsome.models import Identity, User
from authsome.stores import MemoryStore
from authsome.testing import RecordingLedger
from tests.conftest import AuthFactory
from tests.social.test_github_sign_in import CALLBACK, TENANT, _callback
from tests.support.github_oauth import GitHubEmail, GitHubOAuthServer

RACER = "racer@corp.example"


class _RacedStore(MemoryStore):
    """A store where another first sign-in of the same account lands between our
    lookups (no link, no user with the address) and our own writes."""

    def __init__(self) -> None:
        super().__init__()
        self.raced_user_id: str | None = None
        self.pending_account: list[tuple[str, str]] = []

    def find_user_by_email(self, tenant: str, email: str) -> User | None:
        if self.raced_user_id is None and email == RACER:
            [(provider, subject)] = self.pending_account
            now = datetime.now(UTC)
            user = User("usr_racer", tenant, email, None, now)
            self.create_user(user, "!")
            self.create_identity(Identity(tenant, provider, subject, user.id, now))
            self.raced_user_id = user.id
            return None  # what our lookup saw, a moment before
        return super().find_user_by_email(tenant, email)

    def find_identity(self, tenant: str, provider: str, subject: str) -> Identity | None:
        self.pending_account = [(provider, subject)]
        return super().find_identity(tenant, provider, subject)


def test_a_first_social_sign_in_that_loses_a_race_signs_in_as_the_winners_user(
    make_auth: AuthFactory,
    github_oauth: GitHubOAuthServer,
    provider_http: httpx.Client,
    ledger: RecordingLedger,
) -> None:
    store = _RacedStore()
    auth = make_auth(
        store=store,
        ledger=ledger,
        secret_key=secrets.token_bytes(32),
        sso_allow_insecure_loopback=True,
        http_client=provider_http,
    )
    app = github_oauth.add_app(redirect_uri=CALLBACK)
    auth.social.configure(
        TENANT,
        "github",
        client_id=app.client_id,
        client_secret=app.client_secret,
        authorization_endpoint=github_oauth.authorize_url,
        token_endpoint=github_oauth.token_url,
        api_base=github_oauth.api_base_url,
    )
    github_oauth.add_user("racer", emails=(GitHubEmail(RACER, primary=True, verified=True),))
    params, handle = _callback(auth, "racer")
    ledger.clear()

    signed_in = auth.social.complete(params, handle=handle, tenant=TENANT, ip="192.0.2.1")

    assert signed_in.user.id == store.raced_user_id
    assert signed_in.tokens is not None
    assert ledger.usage(UsageEvent.USERS_CREATED) == []  # the winner's to record
