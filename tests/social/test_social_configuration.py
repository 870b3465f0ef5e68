"""Per-tenant provider configuration: validated at the edge, the secret write-only
and sealed with the engine's secret_key like SSO client secrets."""

from __future__ import annotations

import secrets

import pytest
from joserfc.jwk import ECKey

from authsome import Authsome
from authsome.errors import NotFound, ValidationError
from tests.conftest import AuthFactory

KEY = secrets.token_bytes(32)


@pytest.fixture
def auth(make_auth: AuthFactory) -> Authsome:
    return make_auth(secret_key=KEY)


def test_configure_get_list_and_delete_per_tenant(auth: Authsome) -> None:
    info = auth.social.configure(
        "github", tenant="acme", client_id="gh-id", client_secret="gh-secret"
    )
    auth.social.configure("google", tenant="acme", client_id="g-id", client_secret="g-secret")
    auth.social.configure("github", tenant="other", client_id="x", client_secret="y")

    assert info.provider == "github"
    assert info.has_client_secret
    assert "gh-secret" not in repr(info)
    assert auth.social.get("github", tenant="acme") == info
    assert [p.provider for p in auth.social.list(tenant="acme")] == ["github", "google"]
    assert auth.social.delete("github", tenant="acme") is True
    assert auth.social.delete("github", tenant="acme") is False
    with pytest.raises(NotFound):
        auth.social.get("github", tenant="acme")
    assert auth.social.get("github", tenant="other").client_id == "x"


def test_the_secret_is_sealed_at_rest_and_bound_to_its_record(auth: Authsome) -> None:
    info = auth.social.configure("github", tenant="acme", client_id="id", client_secret="gh-secret")
    stored = auth.store.get_social_client_secret(info.id)
    assert stored is not None
    assert stored.sealed
    assert "gh-secret" not in stored.value
    assert auth.reseal_secrets().social_client_secrets.current == 1


def test_a_secret_stored_in_clear_is_sealed_by_reseal(make_auth: AuthFactory) -> None:
    plain = make_auth()
    info = plain.social.configure("github", tenant="acme", client_id="id", client_secret="s")
    assert plain.store.get_social_client_secret(info.id).sealed is False  # type: ignore[union-attr]
    keyed = make_auth(store=plain.store, secret_key=KEY)
    assert keyed.reseal_secrets().social_client_secrets.resealed == 1
    assert keyed.store.get_social_client_secret(info.id).sealed is True  # type: ignore[union-attr]


def test_apple_takes_a_p256_key_with_team_and_key_ids(auth: Authsome) -> None:
    pem = ECKey.generate_key("P-256").as_pem(private=True).decode()
    info = auth.social.configure(
        "apple", tenant="acme", client_id="com.acme.web", private_key=pem, team_id="T1", key_id="K1"
    )
    assert dict(info.settings) == {"key_id": "K1", "team_id": "T1"}
    with pytest.raises(ValidationError):
        auth.social.configure("apple", tenant="acme", client_id="c", private_key=pem, team_id="T1")
    with pytest.raises(ValidationError):
        auth.social.configure(
            "apple", tenant="acme", client_id="c", private_key="nope", team_id="T", key_id="K"
        )
    with pytest.raises(ValidationError):
        auth.social.configure("apple", tenant="acme", client_id="c", client_secret="s")


@pytest.mark.parametrize(
    "options",
    [
        {"provider": "myspace"},
        {"client_id": ""},
        {"client_secret": ""},
        {"client_secret": "x" * 10_000},
        {"issuer": "https://idp.example"},  # GitHub has no issuer
        {"api_base": "http://api.example"},
        {"api_base": "http://127.0.0.1:9"},  # loopback http needs the engine's option
        {"directory": "common"},  # only Microsoft has one
        {"scopes": "read:user"},
    ],
)
def test_bad_settings_are_refused_and_nothing_is_stored(
    auth: Authsome, options: dict[str, object]
) -> None:
    given: dict[str, object] = {
        "provider": "github",
        "client_id": "id",
        "client_secret": "secret",
        **options,
    }
    provider = given.pop("provider")
    with pytest.raises(ValidationError):
        auth.social.configure(provider, tenant="acme", **given)  # type: ignore[arg-type]
    assert auth.social.list(tenant="acme") == []


def test_an_oidc_preset_needs_the_openid_scope(auth: Authsome) -> None:
    with pytest.raises(ValidationError, match="openid"):
        auth.social.configure(
            "google", tenant="acme", client_id="c", client_secret="s", scopes=("email",)
        )
    info = auth.social.configure(
        "microsoft", tenant="acme", client_id="c", client_secret="s", directory="organizations"
    )
    assert info.scopes == ("openid", "email", "profile")
