"""Microsoft's multi-tenant issuer end to end: ID tokens the real provider signs with
Entra-style ``iss`` and ``tid`` claims are accepted only when ``iss`` is the template
filled with the token's own ``tid``."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import pytest

from authsome import Authsome
from authsome.errors import InvalidCredentials
from tests.social.conftest import AtProvider
from tests.support.oidc_op import OpenIDClient, OpenIDProvider

TENANT = "acme"
CALLBACK = "https://app.example/auth/social/microsoft/callback"
TID = "9122040d-6c67-4c5b-b112-36a304b66dad"
OTHER_TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _issuer(tid: str) -> str:
    return f"https://login.microsoftonline.com/{tid}/v2.0"


@pytest.fixture
def client(at_provider: AtProvider) -> OpenIDClient:
    # Discovery at the local provider; the token issuer rule stays Microsoft's.
    return at_provider("microsoft")


def _sign_in(auth: Authsome, op: OpenIDProvider, account: str) -> str:
    redirect = auth.social.begin("microsoft", redirect_uri=CALLBACK, tenant=TENANT)
    url = op.login(redirect.url, account)
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return auth.social.complete(params, handle=redirect.handle, tenant=TENANT).user.id


def test_the_issuer_of_the_tokens_own_directory_is_accepted(
    social_auth: Authsome, oidc_op: OpenIDProvider, client: OpenIDClient
) -> None:
    account = oidc_op.add_account(f"ms-{secrets.token_hex(4)}", email="ann@contoso.example")
    oidc_op.tamper_next_id_token(
        client.client_id, claims={"iss": _issuer(TID), "tid": TID, "xms_edov": True}
    )

    user_id = _sign_in(social_auth, oidc_op, account)

    links = social_auth.sso.identities(user_id)
    assert [(link.provider, link.subject) for link in links] == [("social:microsoft", account)]


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": _issuer(TID), "tid": OTHER_TID},  # another directory's tid
        {"iss": _issuer(TID), "tid": None},  # no tid at all
        {"iss": _issuer("{tid}"), "tid": "{tid}"},  # a tid that is not a directory id
    ],
    ids=["other-tid", "no-tid", "not-a-guid"],
)
def test_an_issuer_that_is_not_the_tokens_own_directory_is_refused(
    social_auth: Authsome, oidc_op: OpenIDProvider, client: OpenIDClient, claims: dict[str, object]
) -> None:
    account = oidc_op.add_account(f"ms-{secrets.token_hex(4)}", email="eve@contoso.example")
    oidc_op.tamper_next_id_token(client.client_id, claims=claims)
    with pytest.raises(InvalidCredentials):
        _sign_in(social_auth, oidc_op, account)


def test_the_providers_own_issuer_is_not_a_microsoft_issuer(
    social_auth: Authsome, oidc_op: OpenIDProvider, client: OpenIDClient
) -> None:
    account = oidc_op.add_account(f"ms-{secrets.token_hex(4)}", email="eve@contoso.example")
    with pytest.raises(InvalidCredentials):
        _sign_in(social_auth, oidc_op, account)


def test_a_microsoft_address_without_xms_edov_never_links_an_existing_user(
    social_auth: Authsome, oidc_op: OpenIDProvider, client: OpenIDClient
) -> None:
    ann = social_auth.users.register(
        "ann@contoso.example", "correct horse battery staple", tenant=TENANT
    )
    social_auth.store.mark_email_verified(ann.id, ann.email, ann.created_at)
    account = oidc_op.add_account(
        f"ms-{secrets.token_hex(4)}", email="ann@contoso.example", email_verified=True
    )
    oidc_op.tamper_next_id_token(client.client_id, claims={"iss": _issuer(TID), "tid": TID})
    with pytest.raises(InvalidCredentials):
        _sign_in(social_auth, oidc_op, account)
    assert social_auth.sso.identities(ann.id) == []
