"""The OpenID Provider the SSO tests sign in against works, proven with plain HTTP.

No authsome code here: an authorization-code flow with PKCE written out with httpx,
and the ID token checked with joserfc against the provider's published keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from tests.support.oidc_op import OpenIDClient, OpenIDProvider


def _discovery(op: OpenIDProvider) -> dict[str, Any]:
    response = httpx.get(f"{op.issuer}/.well-known/openid-configuration", timeout=10)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Flow:
    """One authorization-code + PKCE sign-in, step by step."""

    def __init__(self, op: OpenIDProvider, client: OpenIDClient) -> None:
        self.op = op
        self.client = client
        self.config = _discovery(op)
        self.state = secrets.token_urlsafe(16)
        self.nonce = secrets.token_urlsafe(16)
        self.verifier, self.challenge = _pkce_pair()

    def authorize_url(self, **overrides: str) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client.client_id,
            "redirect_uri": self.client.redirect_uri,
            "scope": "openid email profile",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            **overrides,
        }
        params = {key: value for key, value in params.items() if value}
        return f"{self.config['authorization_endpoint']}?{urlencode(params)}"

    def callback(self, account_id: str, **overrides: str) -> dict[str, str]:
        url = self.op.login(self.authorize_url(**overrides), account_id)
        assert url.startswith(self.client.redirect_uri + "?")
        return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}

    def exchange(self, code: str, **auth: Any) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.client.redirect_uri,
            "code_verifier": self.verifier,
            **auth.pop("form", {}),
        }
        return httpx.post(self.config["token_endpoint"], data=form, timeout=10, **auth)

    def sign_in(self, account_id: str) -> dict[str, Any]:
        """The token response of a whole sign-in (client_secret_basic)."""
        response = self.exchange(self.callback(account_id)["code"], auth=self.basic())
        response.raise_for_status()
        tokens: dict[str, Any] = response.json()
        return tokens

    def basic(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.client.client_id, self.client.client_secret)

    def jwks(self) -> dict[str, Any]:
        response = httpx.get(self.config["jwks_uri"], timeout=10)
        response.raise_for_status()
        keys: dict[str, Any] = response.json()
        return keys


def _header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    header: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return header


def _payload(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    padded = segment + "=" * (-len(segment) % 4)
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return payload


def _verified_claims(flow: Flow, id_token: str) -> dict[str, Any]:
    published: Any = flow.jwks()
    keys = KeySet.import_key_set(published)
    algorithms = flow.config["id_token_signing_alg_values_supported"]
    claims: dict[str, Any] = jwt.decode(id_token, keys, algorithms=algorithms).claims
    return claims


@pytest.fixture
def alice(oidc_op: OpenIDProvider) -> str:
    return oidc_op.add_account(
        f"alice-{secrets.token_hex(4)}",
        email="alice@corp.example",
        email_verified=True,
        name="Alice Example",
        amr=["pwd", "mfa"],
        acr="urn:example:mfa",
    )


def test_discovery_describes_the_code_flow_with_pkce(oidc_op: OpenIDProvider) -> None:
    config = _discovery(oidc_op)

    assert config["issuer"] == oidc_op.issuer
    assert config["response_types_supported"] == ["code"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["authorization_response_iss_parameter_supported"] is True
    assert {"RS256", "ES256"} <= set(config["id_token_signing_alg_values_supported"])
    assert "none" not in config["id_token_signing_alg_values_supported"]


def test_sign_in_returns_code_state_and_iss_and_a_signed_id_token(
    oidc_op: OpenIDProvider, oidc_client: OpenIDClient, alice: str
) -> None:
    flow = Flow(oidc_op, oidc_client)

    callback = flow.callback(alice)
    assert callback["state"] == flow.state
    assert callback["iss"] == oidc_op.issuer
    tokens = flow.exchange(callback["code"], auth=flow.basic())

    assert tokens.status_code == 200, tokens.text
    id_token = tokens.json()["id_token"]
    assert _header(id_token)["alg"] == "RS256"
    assert _header(id_token)["kid"] in {key["kid"] for key in flow.jwks()["keys"]}
    claims = _verified_claims(flow, id_token)
    assert claims["iss"] == oidc_op.issuer
    assert claims["aud"] == oidc_client.client_id
    assert claims["sub"] == alice
    assert claims["nonce"] == flow.nonce
    assert claims["email"] == "alice@corp.example"
    assert claims["email_verified"] is True
    assert claims["name"] == "Alice Example"
    assert claims["amr"] == ["pwd", "mfa"]
    assert claims["acr"] == "urn:example:mfa"


def test_userinfo_answers_the_access_token(
    oidc_op: OpenIDProvider, oidc_client: OpenIDClient, alice: str
) -> None:
    flow = Flow(oidc_op, oidc_client)
    tokens = flow.exchange(flow.callback(alice)["code"], auth=flow.basic()).json()

    userinfo = httpx.get(
        flow.config["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )

    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == alice
    assert userinfo.json()["email"] == "alice@corp.example"


def test_a_code_is_good_once(
    oidc_op: OpenIDProvider, oidc_client: OpenIDClient, alice: str
) -> None:
    flow = Flow(oidc_op, oidc_client)
    code = flow.callback(alice)["code"]

    assert flow.exchange(code, auth=flow.basic()).status_code == 200
    again = flow.exchange(code, auth=flow.basic())

    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_the_code_needs_its_pkce_verifier(
    oidc_op: OpenIDProvider, oidc_client: OpenIDClient, alice: str
) -> None:
    flow = Flow(oidc_op, oidc_client)
    code = flow.callback(alice)["code"]

    wrong = flow.exchange(
        code, auth=flow.basic(), form={"code_verifier": secrets.token_urlsafe(48)}
    )

    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"


def test_pkce_is_required(oidc_op: OpenIDProvider, oidc_client: OpenIDClient, alice: str) -> None:
    flow = Flow(oidc_op, oidc_client)

    callback = flow.callback(alice, code_challenge="", code_challenge_method="")

    assert callback["error"] == "invalid_request"
    assert "code" not in callback


def test_a_refused_consent_comes_back_as_access_denied(
    oidc_op: OpenIDProvider, oidc_client: OpenIDClient, alice: str
) -> None:
    flow = Flow(oidc_op, oidc_client)

    url = oidc_op.login(flow.authorize_url(), alice, consent=False)

    params = parse_qs(urlsplit(url).query)
    assert params["error"] == ["access_denied"]
    assert params["state"] == [flow.state]


def test_client_secret_post(oidc_op: OpenIDProvider, alice: str) -> None:
    client = oidc_op.add_client(token_endpoint_auth_method="client_secret_post")
    flow = Flow(oidc_op, client)
    code = flow.callback(alice)["code"]
    secret = {"client_id": client.client_id, "client_secret": client.client_secret}
    by_post = flow.exchange(code, form=secret)

    assert by_post.status_code == 200, by_post.text
    assert "id_token" in by_post.json()


def test_private_key_jwt_and_es256_id_tokens(oidc_op: OpenIDProvider, alice: str) -> None:
    private = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    public = {**private.as_dict(private=False), "kid": "client-key-1", "alg": "ES256"}
    client = oidc_op.add_client(
        token_endpoint_auth_method="private_key_jwt",
        id_token_signed_response_alg="ES256",
        jwks={"keys": [public]},
    )
    flow = Flow(oidc_op, client)
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "ES256", "kid": "client-key-1"},
        {
            "iss": client.client_id,
            "sub": client.client_id,
            "aud": oidc_op.issuer,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + 60,
        },
        private,
    )
    form = {
        "client_id": client.client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }

    tokens = flow.exchange(flow.callback(alice)["code"], form=form)

    assert tokens.status_code == 200, tokens.text
    id_token = tokens.json()["id_token"]
    assert _header(id_token)["alg"] == "ES256"
    assert _verified_claims(flow, id_token)["sub"] == alice


def test_id_token_lifetime_is_set_per_client(
    oidc_op: OpenIDProvider, oidc_client: OpenIDClient, alice: str
) -> None:
    oidc_op.set_id_token_ttl(oidc_client.client_id, 5)
    flow = Flow(oidc_op, oidc_client)

    tokens = flow.exchange(flow.callback(alice)["code"], auth=flow.basic()).json()

    claims = _verified_claims(flow, tokens["id_token"])
    assert claims["exp"] - claims["iat"] == 5


def test_rotated_keys_sign_with_a_new_kid(fresh_oidc_op: OpenIDProvider) -> None:
    op = fresh_oidc_op
    client = op.add_client()
    account = op.add_account("bob", email="bob@corp.example", email_verified=True)
    flow = Flow(op, client)
    before = _header(
        flow.exchange(flow.callback(account)["code"], auth=flow.basic()).json()["id_token"]
    )

    published = op.rotate_keys()

    after = _header(
        flow.exchange(flow.callback(account)["code"], auth=flow.basic()).json()["id_token"]
    )
    assert after["kid"] != before["kid"]
    assert after["kid"] == published[0]
    assert {before["kid"], after["kid"]} <= {key["kid"] for key in flow.jwks()["keys"]}

    op.rotate_keys(drop_old=True)
    assert {key["kid"] for key in flow.jwks()["keys"]} == set(op.signing_kids())
    assert after["kid"] not in op.signing_kids()


def test_a_sign_in_in_flight_survives_a_rotation(fresh_oidc_op: OpenIDProvider) -> None:
    op = fresh_oidc_op
    client = op.add_client()
    flow = Flow(op, client)
    code = flow.callback(op.add_account("carol", email="carol@corp.example"))["code"]

    op.rotate_keys(drop_old=True)
    tokens = flow.exchange(code, auth=flow.basic())

    assert tokens.status_code == 200, tokens.text
    assert _header(tokens.json()["id_token"])["kid"] == op.signing_kids()[0]


def test_form_post_response_mode(
    oidc_op: OpenIDProvider, oidc_client: OpenIDClient, alice: str
) -> None:
    flow = Flow(oidc_op, oidc_client)

    callback = oidc_op.login_callback(flow.authorize_url(response_mode="form_post"), alice)

    assert (callback.method, callback.url) == ("POST", oidc_client.redirect_uri)
    assert callback.params["state"] == flow.state
    assert callback.params["iss"] == oidc_op.issuer
    assert flow.exchange(callback.params["code"], auth=flow.basic()).status_code == 200


def test_provider_specific_claims_ride_in_the_id_token(
    oidc_op: OpenIDProvider, oidc_client: OpenIDClient
) -> None:
    tenant_id = "9188040d-6c67-4c5b-b112-36a304b66dad"
    account = oidc_op.add_account(
        f"dave-{secrets.token_hex(4)}", email="dave@corp.example", tid=tenant_id
    )
    flow = Flow(oidc_op, oidc_client)

    claims = _verified_claims(flow, flow.sign_in(account)["id_token"])

    assert claims["tid"] == tenant_id


def test_a_tampered_id_token_is_signed_by_the_providers_key(
    oidc_op: OpenIDProvider, oidc_client: OpenIDClient, alice: str
) -> None:
    flow = Flow(oidc_op, oidc_client)
    oidc_op.tamper_next_id_token(
        oidc_client.client_id, claims={"aud": "someone-else", "nonce": None}
    )

    spoiled = _verified_claims(flow, flow.sign_in(alice)["id_token"])
    genuine = _verified_claims(flow, flow.sign_in(alice)["id_token"])

    assert spoiled["aud"] == "someone-else"
    assert "nonce" not in spoiled
    assert spoiled["sub"] == alice
    assert genuine["aud"] == oidc_client.client_id


def test_an_unsigned_id_token(
    oidc_op: OpenIDProvider, oidc_client: OpenIDClient, alice: str
) -> None:
    flow = Flow(oidc_op, oidc_client)
    oidc_op.tamper_next_id_token(oidc_client.client_id, alg="none")

    id_token = flow.sign_in(alice)["id_token"]

    assert _header(id_token)["alg"] == "none"
    assert id_token.endswith(".")
    assert _payload(id_token)["sub"] == alice


def test_an_id_token_hmac_keyed_with_the_public_key(
    oidc_op: OpenIDProvider, oidc_client: OpenIDClient, alice: str
) -> None:
    flow = Flow(oidc_op, oidc_client)
    oidc_op.tamper_next_id_token(oidc_client.client_id, alg="HS256-public-key")

    id_token = flow.sign_in(alice)["id_token"]

    header = _header(id_token)
    assert header["alg"] == "HS256"
    public = next(key for key in flow.jwks()["keys"] if key["kid"] == header["kid"])
    pem = RSAKey.import_key(public).as_pem(private=False)
    signing_input, _, signature = id_token.rpartition(".")
    expected = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature
    assert _payload(id_token)["sub"] == alice


def test_admin_endpoints_want_the_token(oidc_op: OpenIDProvider) -> None:
    response = httpx.post(f"{oidc_op.issuer}/__test/rotate-keys", json={}, timeout=10)

    assert response.status_code == 403
