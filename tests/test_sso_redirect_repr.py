"""``SSORedirect``'s repr shows where the browser goes but not the query, which
carries the one-time handle (social sign-in's ``state``, SAML's ``RelayState``)."""

from __future__ import annotations

from authsome import SSORedirect
from tests.conftest import AuthFactory


def test_a_social_redirect_repr_hides_the_handle_its_url_carries(make_auth: AuthFactory) -> None:
    auth = make_auth()
    auth.social.configure("github", tenant="acme", client_id="Iv1.abc", client_secret="gh-secret")

    redirect = auth.social.begin("github", redirect_uri="https://app.example/cb", tenant="acme")

    assert redirect.handle in redirect.url
    assert redirect.handle not in repr(redirect)
    assert repr(redirect) == "SSORedirect(url='https://github.com/login/oauth/authorize?...')"


def test_the_repr_of_any_redirect_leaves_out_the_query() -> None:
    redirect = SSORedirect(
        url="https://idp.example/sso?SAMLRequest=x&RelayState=h-123", handle="h-123"
    )

    assert "h-123" not in repr(redirect) and "SAMLRequest" not in repr(redirect)
    assert redirect == SSORedirect(url=redirect.url, handle="h-123")
