"""The redirect URI of an SSO sign-in passes the same check as a social one: an
absolute https URL with a host, no user information, fragment or whitespace (plain
http only to a loopback host, with the engine's explicit option)."""

from __future__ import annotations

import pytest

from authsome import Authsome
from authsome.errors import ValidationError
from authsome.sso import OIDCConnection
from tests.conftest import PASSWORD, AuthFactory
from tests.support.sso_scene import DOMAIN, TENANT


def _connection_id(auth: Authsome) -> str:
    owner = auth.users.register(f"o@{DOMAIN}", PASSWORD, tenant=TENANT)
    org = auth.orgs.create(owner.id, "Acme")
    connection = OIDCConnection(
        issuer="https://idp.acme.test", client_id="client", client_secret="a-client-secret"
    )
    return auth.sso.configure(org.id, connection).id


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "",
        "/relative/callback",
        "http://app.example/cb",
        "https://user:pw@app.example/cb",
        "https://app.example/cb#",
        "https://app.example/cb#frag",
        "https://app.example/c b",
        "https://app.example/" + "a" * 2048,
        "https://äpp.example/cb",
    ],
)
def test_a_bad_redirect_uri_is_refused_before_anything_else(
    make_auth: AuthFactory, redirect_uri: str
) -> None:
    auth = make_auth()
    connection_id = _connection_id(auth)

    with pytest.raises(ValidationError, match="redirect_uri"):
        auth.sso.begin(connection_id, redirect_uri=redirect_uri, tenant=TENANT)
