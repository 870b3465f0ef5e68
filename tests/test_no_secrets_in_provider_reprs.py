"""The sign-in parts that hold provider secrets never show them in a repr: a
logged or printed token request or configured provider leaks nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from authsome._oidc import TokenRequest
from authsome._social_providers import PRESETS, SocialProviderName
from authsome.models import SocialProviderInfo
from authsome.social import _Provider

SECRET = "client-secret-that-must-never-leak"
CODE = "authorization-code-that-must-never-leak"
VERIFIER = "pkce-verifier-that-must-never-leak"


def test_token_request_repr_hides_credential_code_and_verifier() -> None:
    request = TokenRequest(
        client_id="app",
        credential=SECRET,
        auth_method="client_secret_basic",
        code=CODE,
        redirect_uri="https://app.example/cb",
        code_verifier=VERIFIER,
    )
    shown = repr(request) + str(request)
    assert "app" in shown
    for secret in (SECRET, CODE, VERIFIER):
        assert secret not in shown


def test_configured_social_provider_repr_hides_its_secret() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    info = SocialProviderInfo("sp_1", "default", "github", "app", (), (), True, now, now)
    provider = _Provider(info=info, preset=PRESETS[SocialProviderName.GITHUB], secret=SECRET)
    assert SECRET not in repr(provider) + str(provider)
