"""What the web integrations share, free of any web framework.

* :func:`authenticate` turns the two credential headers into a :class:`Principal`.
* :func:`error_response` maps every :class:`~authsome.errors.AuthsomeError` to an
  HTTP status, a JSON body and headers, written once so FastAPI, Flask and Django
  answer the same error the same way.

Bodies are ``{"error": "<code>", "message": "<text>", ...}``. Messages come from
the library's exceptions, which never contain secrets; server-side failures
(store, decryption, unknown errors) get a fixed message so nothing internal leaks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from authsome.engine import Authsome
from authsome.errors import (
    AlreadyExists,
    AuthsomeError,
    Conflict,
    DecryptionError,
    ExtraNotInstalled,
    FeatureNotEntitled,
    InsufficientScope,
    InvalidCredentials,
    InvalidToken,
    LedgerUnavailable,
    NotFound,
    RateLimited,
    StoreError,
    ValidationError,
    VerificationFailed,
)
from authsome.models import ApiKey, Session

__all__ = [
    "API_KEY_HEADER",
    "AUTHENTICATION_REQUIRED",
    "ErrorResponse",
    "Principal",
    "authenticate",
    "error_response",
    "require",
]

API_KEY_HEADER = "X-API-Key"
"""The request header that carries an API key secret."""

AUTHENTICATION_REQUIRED = "authentication required"
"""The message of the :class:`~authsome.errors.InvalidToken` raised for a request
that carries no credential at all."""

_MAX_CREDENTIAL = 512  # longer than any token authsome issues; refused unread
_BEARER = 'Bearer realm="authsome"'


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: a signed-in session or an API key.

    ``user_id`` is set for sessions and for keys owned by a user; ``org_id`` for
    keys owned by an org. ``tenant`` is the one billed for the request. The record
    that authenticated the request is in ``session`` or ``api_key`` (never a secret).
    """

    kind: Literal["session", "api_key"]
    tenant: str
    user_id: str | None = None
    org_id: str | None = None
    session: Session | None = None
    api_key: ApiKey | None = None

    @classmethod
    def of_session(cls, session: Session) -> Principal:
        """The principal of a validated session."""
        return cls("session", session.tenant, user_id=session.user_id, session=session)

    @classmethod
    def of_api_key(cls, key: ApiKey) -> Principal:
        """The principal of a validated API key, acting for its owner."""
        user_id = key.owner_id if key.owner_kind == "user" else None
        org_id = key.owner_id if key.owner_kind == "org" else None
        return cls("api_key", key.tenant, user_id=user_id, org_id=org_id, api_key=key)


def authenticate(
    auth: Authsome,
    *,
    authorization: str | None,
    api_key: str | None,
    scopes: tuple[str, ...] = (),
) -> Principal | None:
    """The principal of a request, from its ``Authorization`` and ``X-API-Key`` headers.

    ``Authorization: Bearer <access token>`` is validated as a session,
    ``X-API-Key: <secret>`` as an API key (which must hold every one of
    ``scopes``). Returns ``None`` when the request carries neither header, so
    the caller decides whether anonymous access is allowed. A credential that is
    present but malformed, unknown, expired or revoked, or a request with both,
    raises :class:`~authsome.errors.InvalidToken`.
    """
    if authorization is not None and api_key is not None:
        raise InvalidToken("send either a bearer token or an API key, not both")
    if authorization is not None:
        return Principal.of_session(auth.sessions.validate(_bearer_token(authorization)))
    if api_key is not None:
        secret = _credential(api_key)
        return Principal.of_api_key(auth.api_keys.validate(secret, required_scopes=scopes))
    return None


def require(principal: Principal | None) -> Principal:
    """``principal`` itself; :class:`~authsome.errors.InvalidToken` (a 401) when ``None``."""
    if principal is None:
        raise InvalidToken(AUTHENTICATION_REQUIRED)
    return principal


def _bearer_token(header: str) -> str:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise InvalidToken("the Authorization header must use the Bearer scheme")
    return _credential(token)


def _credential(value: str) -> str:
    text = value.strip()
    if not text or len(text) > _MAX_CREDENTIAL:
        raise InvalidToken()
    return text


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An HTTP answer to an error: status, JSON-serializable body, extra headers."""

    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)


_Builder = Callable[[AuthsomeError], ErrorResponse]


def error_response(exc: AuthsomeError) -> ErrorResponse:
    """The HTTP answer to ``exc``; the most specific class in its MRO decides.

    An error class outside the table (an application's own ``AuthsomeError``
    subclass) is a 500 with a fixed message.
    """
    for cls in type(exc).__mro__:
        build = _RESPONSES.get(cls)
        if build is not None:
            return build(exc)
    return _internal(exc)  # unreachable: AuthsomeError itself is in the table


def _simple(status: int, code: str, *, headers: dict[str, str] | None = None) -> _Builder:
    def build(exc: AuthsomeError) -> ErrorResponse:
        return ErrorResponse(status, {"error": code, "message": str(exc)}, dict(headers or {}))

    return build


def _fixed(status: int, code: str, message: str) -> _Builder:
    def build(exc: AuthsomeError) -> ErrorResponse:
        return ErrorResponse(status, {"error": code, "message": message})

    return build


def _feature_not_entitled(exc: AuthsomeError) -> ErrorResponse:
    assert isinstance(exc, FeatureNotEntitled)
    body: dict[str, object] = {
        "error": "feature_not_entitled",
        "feature": exc.feature,
        "message": str(exc),
    }
    return ErrorResponse(403, body)


def _insufficient_scope(exc: AuthsomeError) -> ErrorResponse:
    assert isinstance(exc, InsufficientScope)
    body: dict[str, object] = {
        "error": "insufficient_scope",
        "missing": list(exc.missing),
        "message": str(exc),
    }
    return ErrorResponse(403, body)


def _rate_limited(exc: AuthsomeError) -> ErrorResponse:
    assert isinstance(exc, RateLimited)
    # Retry-After takes whole seconds; rounding down would invite a retry that fails.
    seconds = max(1, math.ceil(exc.retry_after))
    body: dict[str, object] = {"error": "rate_limited", "retry_after": seconds}
    body["message"] = f"too many attempts; retry after {seconds} s"
    return ErrorResponse(429, body, {"Retry-After": str(seconds)})


def _verification_failed(exc: AuthsomeError) -> ErrorResponse:
    assert isinstance(exc, VerificationFailed)
    body: dict[str, object] = {
        "error": "verification_failed",
        "reason": exc.reason,
        "message": str(exc),
    }
    return ErrorResponse(422, body)


def _internal(exc: AuthsomeError) -> ErrorResponse:
    return ErrorResponse(500, {"error": "internal_error", "message": "internal error"})


# Every 401 must name the scheme (RFC 9110); one challenge for missing and bad tokens.
_UNAUTHORIZED = {"WWW-Authenticate": _BEARER}

_RESPONSES: dict[type[AuthsomeError], _Builder] = {
    FeatureNotEntitled: _feature_not_entitled,
    InsufficientScope: _insufficient_scope,
    InvalidCredentials: _simple(401, "invalid_credentials", headers=_UNAUTHORIZED),
    InvalidToken: _simple(401, "invalid_token", headers=_UNAUTHORIZED),
    RateLimited: _rate_limited,
    LedgerUnavailable: _simple(503, "ledger_unavailable"),
    ValidationError: _simple(422, "validation_error"),
    AlreadyExists: _simple(409, "already_exists"),
    Conflict: _simple(409, "conflict"),
    NotFound: _simple(404, "not_found"),
    VerificationFailed: _verification_failed,
    # Server-side faults: the message could name internals, so it is fixed.
    StoreError: _fixed(503, "store_unavailable", "the data store is unavailable"),
    DecryptionError: _internal,
    ExtraNotInstalled: _internal,  # a deployment fault; the message stays in the logs
    AuthsomeError: _internal,
}
