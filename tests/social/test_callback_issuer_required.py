"""RFC 9207 for social OpenID Connect providers: when the provider advertises
``authorization_response_iss_parameter_supported``, a callback without ``iss`` is
refused."""

from __future__ import annotations

import logging
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest

from authsome import Authsome
from authsome.errors import InvalidCredentials
from tests.social.conftest import AtProvider
from tests.support.oidc_op import OpenIDProvider

TENANT = "acme"
CALLBACK = "https://app.example/auth/social/gitlab/callback"


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_a_social_callback_without_iss_is_refused(
    at_provider: AtProvider,
    social_auth: Authsome,
    oidc_op: OpenIDProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    at_provider("gitlab")
    account = oidc_op.add_account(f"acct-{secrets.token_hex(4)}", email="g@navy.example")
    redirect = social_auth.social.begin("gitlab", redirect_uri=CALLBACK, tenant=TENANT)
    params = _query(oidc_op.login(redirect.url, account))
    assert params.pop("iss") == oidc_op.issuer

    with caplog.at_level(logging.WARNING), pytest.raises(InvalidCredentials):
        social_auth.social.complete(params, handle=redirect.handle, tenant=TENANT)
    assert "lacks the iss" in caplog.text
