"""What each social sign-in provider needs that the others do not.

Google, Microsoft, Apple and GitLab are OpenID Connect providers: the OIDC client
signs users in, and a preset only says where the provider lives and what is special
about it (Microsoft's per-tenant issuer, Apple's form_post and signed client
secret, Apple's ``email_verified`` as a string). GitHub speaks plain OAuth 2: no ID
token, so the profile comes from its REST API (``/user`` and ``/user/emails``), and
only the primary address GitHub marks verified counts as verified.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from authsome.errors import InvalidCredentials, ValidationError

__all__ = [
    "PRESETS",
    "Preset",
    "ProviderProfile",
    "SocialProviderName",
    "apple_client_secret",
    "email_is_verified",
    "github_exchange_code",
    "github_profile",
    "microsoft_issuer_matches",
]

MICROSOFT_ISSUER_TEMPLATE = "https://login.microsoftonline.com/{tid}/v2.0"
# What the multi-tenant discovery documents (common, organizations, consumers) name.
MICROSOFT_DISCOVERY_ISSUER = "https://login.microsoftonline.com/{tenantid}/v2.0"
APPLE_ISSUER = "https://appleid.apple.com"
# Apple accepts a client secret up to six months old; one made per sign-in lives
# just long enough for the token request.
APPLE_SECRET_LIFETIME = timedelta(minutes=5)
MAX_EMAILS = 100


class SocialProviderName(StrEnum):
    """The social providers authsome has presets for."""

    GOOGLE = "google"
    MICROSOFT = "microsoft"
    APPLE = "apple"
    GITLAB = "gitlab"
    GITHUB = "github"


@dataclass(frozen=True, slots=True)
class Preset:
    """Where a provider lives and how it speaks.

    ``kind`` is ``"oidc"`` (discovery at ``issuer``) or ``"oauth2"`` (GitHub: fixed
    endpoints and a REST API for the profile). ``response_mode`` is how the
    provider returns to the app: ``"query"`` (a GET) or ``"form_post"`` (Apple: a
    cross-site POST).
    """

    name: SocialProviderName
    kind: Literal["oidc", "oauth2"]
    scopes: tuple[str, ...]
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    api_base: str | None = None
    response_mode: Literal["query", "form_post"] = "query"


PRESETS: Mapping[SocialProviderName, Preset] = {
    SocialProviderName.GOOGLE: Preset(
        SocialProviderName.GOOGLE,
        "oidc",
        ("openid", "email", "profile"),
        issuer="https://accounts.google.com",
    ),
    SocialProviderName.MICROSOFT: Preset(
        SocialProviderName.MICROSOFT,
        "oidc",
        ("openid", "email", "profile"),
        issuer="https://login.microsoftonline.com/common/v2.0",
    ),
    SocialProviderName.APPLE: Preset(
        SocialProviderName.APPLE,
        "oidc",
        ("openid", "email", "name"),
        issuer=APPLE_ISSUER,
        response_mode="form_post",
    ),
    SocialProviderName.GITLAB: Preset(
        SocialProviderName.GITLAB,
        "oidc",
        ("openid", "email", "profile"),
        issuer="https://gitlab.com",
    ),
    SocialProviderName.GITHUB: Preset(
        SocialProviderName.GITHUB,
        "oauth2",
        ("read:user", "user:email"),
        authorization_endpoint="https://github.com/login/oauth/authorize",
        token_endpoint="https://github.com/login/oauth/access_token",  # noqa: S106 - a URL
        api_base="https://api.github.com",
    ),
}


@dataclass(frozen=True, slots=True)
class ProviderProfile:
    """Who signed in at the provider: its stable ``subject`` (OIDC ``sub``, GitHub's
    numeric user id), and the e-mail address it vouches for, if any."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None = None


# -- checks --------------------------------------------------------------------------


def email_is_verified(value: object) -> bool:
    """Whether a provider's ``email_verified`` claim says yes. Apple sends the
    string ``"true"``; anything but ``True`` or ``"true"`` is no."""
    return value is True or value == "true"


def microsoft_issuer_matches(configured: str, claims: Mapping[str, object]) -> bool:
    """Whether the ID token's ``iss`` is right for a Microsoft (Entra ID v2) app.

    A multi-tenant app (``common``, ``organizations``, ``consumers``) gets tokens
    from the user's own directory, issued as ``https://login.microsoftonline.com/
    {tid}/v2.0``: the issuer must be that template filled with the token's own
    ``tid`` claim. A single-tenant app's issuer is fixed. Anything else is refused.
    """
    issuer = claims.get("iss")
    if not isinstance(issuer, str):
        return False
    if "{tid}" not in configured and "{tenantid}" not in configured:
        return issuer == configured
    tid = claims.get("tid")
    if not isinstance(tid, str) or not _is_directory_id(tid):
        return False
    expected = configured.replace("{tenantid}", "{tid}").replace("{tid}", tid)
    return issuer == expected


def _is_directory_id(tid: str) -> bool:
    # A directory id is a GUID; anything else could bend the template.
    parts = tid.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(
        c in "0123456789abcdef" for c in tid.replace("-", "").lower()
    )


# -- Apple ----------------------------------------------------------------------------


def apple_client_secret(
    *, team_id: str, key_id: str, client_id: str, private_key: str, now: datetime
) -> str:
    """Apple's client secret: a JWT signed ES256 with the team's private key (PEM,
    from the Apple developer account), naming the team (``iss``), the Services ID
    (``sub``) and Apple (``aud``), with ``kid`` the key's id."""
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey

    try:
        key = ECKey.import_key(private_key)
    except (JoseError, ValueError, TypeError):
        raise ValidationError("private_key must be an EC P-256 private key in PEM") from None
    issued = int(now.timestamp())
    claims = {
        "iss": team_id,
        "iat": issued,
        "exp": issued + int(APPLE_SECRET_LIFETIME.total_seconds()),
        "aud": APPLE_ISSUER,
        "sub": client_id,
    }
    return jwt.encode({"alg": "ES256", "kid": key_id}, claims, key, algorithms=["ES256"])


def check_apple_private_key(private_key: str) -> None:
    """:class:`ValidationError` unless ``private_key`` is a P-256 private key in PEM."""
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey

    try:
        key = ECKey.import_key(private_key)
    except (JoseError, ValueError, TypeError):
        raise ValidationError("private_key must be an EC P-256 private key in PEM") from None
    if key.curve_name != "P-256" or not key.is_private:
        raise ValidationError("private_key must be an EC P-256 private key in PEM")


# -- GitHub ---------------------------------------------------------------------------

Send = Callable[..., bytes]
"""``send(method, url, **httpx_options) -> body``: the OIDC client's bounded HTTP call,
which raises on a non-200 answer."""


def github_exchange_code(
    send: Send,
    token_endpoint: str,
    *,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    code_verifier: str,
) -> str:
    """The access token GitHub gives for ``code``. GitHub answers a refused code
    (``bad_verification_code``: unknown, used or expired) with 200 and an
    ``error``; every refusal is one :class:`InvalidCredentials`."""
    body = _json_object(
        send(
            "POST",
            token_endpoint,
            data={
                "client_id": client_id,
                "client_secret": client_secret,
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
            headers={"Accept": "application/json"},
        )
    )
    token = body.get("access_token")
    if "error" in body or not isinstance(token, str) or not token:
        raise InvalidCredentials()
    return token


def github_profile(send: Send, api_base: str, access_token: str) -> ProviderProfile:
    """The signed-in GitHub user: the numeric id as subject, and the primary
    address only if GitHub marks it verified (a public profile address, or a
    verified address that is not primary, is not used)."""
    headers = {
        "Authorization": f"Bearer {access_token}",
        "Accept": "application/vnd.github+json",
    }
    base = api_base.rstrip("/")
    user = _json_object(send("GET", f"{base}/user", headers=headers))
    user_id = user.get("id")
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
        raise InvalidCredentials()
    emails = _json(send("GET", f"{base}/user/emails", headers=headers))
    if not isinstance(emails, list):
        raise InvalidCredentials()
    primary = next(
        (e for e in emails[:MAX_EMAILS] if isinstance(e, dict) and e.get("primary") is True),
        None,
    )
    email = primary.get("email") if primary is not None else None
    verified = primary is not None and primary.get("verified") is True
    name = user.get("name")
    return ProviderProfile(
        subject=str(user_id),
        email=email if isinstance(email, str) else None,
        email_verified=verified and isinstance(email, str),
        name=name if isinstance(name, str) else None,
    )


def _json_object(body: bytes) -> dict[str, Any]:
    value = _json(body)
    if not isinstance(value, dict):
        raise InvalidCredentials()
    return value


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeError):
        raise InvalidCredentials() from None
