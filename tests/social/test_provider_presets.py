"""What is special about the providers: Apple's signed client secret, Microsoft's
per-directory issuer, Apple's string ``email_verified``, https-only endpoints."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey

from authsome._oidc import check_endpoint_setting
from authsome._social_providers import (
    MICROSOFT_ISSUER_TEMPLATE,
    apple_client_secret,
    check_apple_private_key,
    email_is_verified,
    microsoft_issuer_matches,
)
from authsome.errors import ValidationError

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
TID = "9122040d-6c67-4c5b-b112-36a304b66dad"
OTHER_TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def test_apples_client_secret_verifies_with_the_teams_public_key() -> None:
    key = ECKey.generate_key("P-256")
    secret = apple_client_secret(
        team_id="TEAM123456",
        key_id="KEY1234567",
        client_id="com.example.web",
        private_key=key.as_pem(private=True).decode(),
        now=NOW,
    )
    public = ECKey.import_key(key.as_pem(private=False))
    token = jwt.decode(secret, public, algorithms=["ES256"])
    assert (token.header["alg"], token.header["kid"]) == ("ES256", "KEY1234567")
    assert token.claims["iss"] == "TEAM123456"
    assert token.claims["sub"] == "com.example.web"
    assert token.claims["aud"] == "https://appleid.apple.com"
    assert token.claims["iat"] == int(NOW.timestamp())
    assert 0 < token.claims["exp"] - token.claims["iat"] <= 15_777_000  # Apple: six months

    with pytest.raises(BadSignatureError):
        jwt.decode(secret, ECKey.generate_key("P-256"), algorithms=["ES256"])


def test_an_apple_key_must_be_a_p256_private_key() -> None:
    check_apple_private_key(ECKey.generate_key("P-256").as_pem(private=True).decode())
    for bad in (
        "not a key",
        ECKey.generate_key("P-384").as_pem(private=True).decode(),
        ECKey.generate_key("P-256").as_pem(private=False).decode(),
    ):
        with pytest.raises(ValidationError):
            check_apple_private_key(bad)


def test_microsofts_issuer_is_the_template_filled_with_the_tokens_own_tid() -> None:
    issued_by = f"https://login.microsoftonline.com/{TID}/v2.0"
    assert microsoft_issuer_matches(MICROSOFT_ISSUER_TEMPLATE, {"iss": issued_by, "tid": TID})
    # Another directory's tid, or a token whose tid and iss disagree, is refused.
    assert not microsoft_issuer_matches(
        MICROSOFT_ISSUER_TEMPLATE, {"iss": issued_by, "tid": OTHER_TID}
    )
    assert not microsoft_issuer_matches(MICROSOFT_ISSUER_TEMPLATE, {"iss": issued_by})
    assert not microsoft_issuer_matches(
        MICROSOFT_ISSUER_TEMPLATE, {"iss": "https://evil.example/v2.0", "tid": TID}
    )


def test_a_single_directory_app_accepts_only_its_own_issuer() -> None:
    own = f"https://login.microsoftonline.com/{TID}/v2.0"
    assert microsoft_issuer_matches(own, {"iss": own, "tid": TID})
    other = f"https://login.microsoftonline.com/{OTHER_TID}/v2.0"
    assert not microsoft_issuer_matches(own, {"iss": other, "tid": OTHER_TID})


@given(st.text(max_size=60))
def test_a_tid_that_is_not_a_directory_id_never_bends_the_template(tid: str) -> None:
    issuer = MICROSOFT_ISSUER_TEMPLATE.replace("{tid}", tid)
    matched = microsoft_issuer_matches(MICROSOFT_ISSUER_TEMPLATE, {"iss": issuer, "tid": tid})
    is_guid = len(tid) == 36 and all(c in "0123456789abcdefABCDEF-" for c in tid)
    assert matched == (is_guid and [len(p) for p in tid.split("-")] == [8, 4, 4, 4, 12])


@pytest.mark.parametrize(
    ("claim", "verified"),
    [(True, True), ("true", True), (False, False), ("false", False), (None, False), (1, False)],
)
def test_email_verified_as_apple_and_the_others_send_it(claim: object, verified: bool) -> None:
    assert email_is_verified(claim) is verified


def test_endpoints_are_https_unless_loopback_http_is_explicitly_allowed() -> None:
    assert check_endpoint_setting("e", "https://idp.example/x", allow_insecure_loopback=False)
    assert check_endpoint_setting("e", "http://127.0.0.1:9000/x", allow_insecure_loopback=True)
    for url, allowed in [
        ("http://127.0.0.1:9000/x", False),
        ("http://idp.example/x", True),
        ("https://idp.example/x#frag", True),
        ("ftp://idp.example/", True),
    ]:
        with pytest.raises(ValidationError):
            check_endpoint_setting("e", url, allow_insecure_loopback=allowed)
