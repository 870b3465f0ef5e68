"""Engines for the social sign-in tests: a recording ledger, the fake clock, and
plain http allowed to the local providers on 127.0.0.1."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import pytest

from authsome import Authsome
from authsome.mail import MailSettings
from authsome.testing import Outbox, RecordingLedger
from tests.conftest import AuthFactory, FakeClock
from tests.support.oidc_op import OpenIDClient, OpenIDProvider

SOCIAL_TENANT = "acme"


@pytest.fixture
def provider_http() -> Iterator[httpx.Client]:
    """The engine's HTTP client to the providers, closed after the test."""
    with httpx.Client(timeout=10.0, follow_redirects=False) as client:
        yield client


def _social_engine(
    make_auth: AuthFactory, ledger: RecordingLedger, clock: FakeClock, **options: Any
) -> Authsome:
    clock.now = datetime.now(UTC)  # the provider signs ID tokens with the real time
    return make_auth(
        ledger=ledger,
        secret_key=secrets.token_bytes(32),
        sso_allow_insecure_loopback=True,
        **options,
    )


@pytest.fixture
def social_auth(
    make_auth: AuthFactory, ledger: RecordingLedger, provider_http: httpx.Client, clock: FakeClock
) -> Authsome:
    return _social_engine(make_auth, ledger, clock, http_client=provider_http)


@pytest.fixture
def mail_social_auth(
    make_auth: AuthFactory, outbox: Outbox, ledger: RecordingLedger, clock: FakeClock
) -> Authsome:
    """Like ``social_auth``, and mailing to ``outbox``."""
    mail = MailSettings(link_base_url="https://app.example")
    return _social_engine(make_auth, ledger, clock, mailer=outbox, mail=mail)


class AtProvider(Protocol):
    def __call__(self, provider: str, **where: str) -> OpenIDClient: ...


@pytest.fixture
def at_provider(social_auth: Authsome, oidc_op: OpenIDProvider) -> AtProvider:
    """Configure ``social_auth``'s ``provider`` for the ``acme`` tenant with a client
    registered at the local provider for the callback
    ``https://app.example/auth/social/{provider}/callback``; found by discovery at
    the local provider unless ``where`` says otherwise (GitLab's ``base_url=``)."""

    def configure(provider: str, **where: str) -> OpenIDClient:
        client = oidc_op.add_client(
            redirect_uri=f"https://app.example/auth/social/{provider}/callback"
        )
        social_auth.social.configure(
            provider,
            tenant=SOCIAL_TENANT,
            client_id=client.client_id,
            client_secret=client.client_secret,
            **(where or {"issuer": oidc_op.issuer}),
        )
        return client

    return configure
