"""What the web integrations share, free of any web framework.

* :func:`authenticate` turns the two credential headers into a :class:`Principal`.
* :func:`error_response` maps every :class:`~authsome.errors.AuthsomeError` to an
  HTTP status, a JSON body and headers, written once so FastAPI, Flask and Django
  answer the same error the same way; :func:`answer` does the same and logs the
  server faults among them.
* :class:`RequestAuth` is one request's view of authsome: its tenant, its principal
  and its client address, each worked out once, under the app's
  :class:`IntegrationSettings`.
* :func:`json_object` and :func:`string_field` read a JSON body the same way in the
  frameworks that have no request models of their own.

Bodies are ``{"error": "<code>", "message": "<text>", ...}``. Messages come from
the library's exceptions, which never contain secrets; server-side failures
(store, decryption, unknown errors) get a fixed message so nothing internal leaks.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal, TypeVar

from authsome._validation import check_tenant
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
    MailNotSent,
    NotFound,
    RateLimited,
    StoreError,
    ValidationError,
    VerificationFailed,
)
from authsome.integrations._proxies import TrustedProxies, client_address
from authsome.models import ApiKey, Session

__all__ = [
    "API_KEY_HEADER",
    "AUTHENTICATION_REQUIRED",
    "DEFAULT_MAX_BODY_BYTES",
    "ErrorResponse",
    "IntegrationSettings",
    "Principal",
    "RequestAuth",
    "RequestError",
    "RequestFacts",
    "TenantResolver",
    "TrustedProxies",
    "answer",
    "authenticate",
    "check_scopes",
    "error_response",
    "http_error",
    "json_object",
    "require",
    "string_field",
    "tenant_by_domain",
    "tenant_by_header",
]

logger = logging.getLogger("authsome.integrations")

API_KEY_HEADER = "X-API-Key"
"""The request header that carries an API key secret."""

AUTHENTICATION_REQUIRED = "authentication required"
"""The message of the :class:`~authsome.errors.InvalidToken` raised for a request
that carries no credential at all."""

_View = TypeVar("_View")

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
    tenant: str | None = None,
) -> Principal | None:
    """The principal of a request, from its ``Authorization`` and ``X-API-Key`` headers.

    ``Authorization: Bearer <access token>`` is validated as a session,
    ``X-API-Key: <secret>`` as an API key (which must hold every one of
    ``scopes``). Returns ``None`` when the request carries neither header, so
    the caller decides whether anonymous access is allowed. A credential that is
    present but malformed, unknown, expired or revoked, or a request with both,
    raises :class:`~authsome.errors.InvalidToken`. ``tenant`` is the tenant the
    request serves: a credential of any other tenant gets that same
    :class:`~authsome.errors.InvalidToken`, as if it did not exist. The engine
    decides all of it, tenant and scopes, before it meters a key, so only a key
    that is let through is metered.
    """
    if authorization is not None and api_key is not None:
        raise InvalidToken("send either a bearer token or an API key, not both")
    if authorization is not None:
        session = auth.sessions.validate(_bearer_token(authorization), tenant=tenant)
        return Principal.of_session(session)
    if api_key is not None:
        key = auth.api_keys.validate(_credential(api_key), required_scopes=scopes, tenant=tenant)
        return Principal.of_api_key(key)
    return None


def check_scopes(principal: Principal | None, scopes: Iterable[str]) -> None:
    """:class:`~authsome.errors.InsufficientScope` unless an API-key principal holds
    every one of ``scopes`` (sessions carry no scopes and always pass)."""
    if principal is None or principal.api_key is None:
        return
    held = principal.api_key.scopes
    missing = tuple(scope for scope in scopes if scope not in held)
    if missing:
        raise InsufficientScope(missing)


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


class RequestError(AuthsomeError):
    """A request refused by the integration itself, before the app's code runs:
    a body too large (413), not JSON (415) or of undeclared length where it cannot
    be counted (411), malformed JSON (400), a host no tenant serves (404). ``status``
    and ``code`` are its HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def __reduce__(self) -> tuple[type[RequestError], tuple[int, str, str]]:
        return (type(self), (self.status, self.code, str(self)))


def body_too_large(limit: int) -> RequestError:
    """The 413 of a body longer than ``limit`` bytes."""
    return RequestError(413, "payload_too_large", f"the request body exceeds {limit} bytes")


def length_required() -> RequestError:
    """The 411 of a body whose length is not declared where a cap applies and the
    framework cannot count it as it streams in (Django)."""
    return RequestError(
        411, "length_required", "send the request body with a Content-Length, not chunked"
    )


def unsupported_media_type() -> RequestError:
    """The 415 of a body that is not declared as JSON."""
    return RequestError(
        415, "unsupported_media_type", "the body must be JSON (Content-Type: application/json)"
    )


def malformed_json() -> RequestError:
    """The 400 of a body that does not parse as JSON."""
    return RequestError(400, "malformed_json", "the body is not valid JSON")


def unknown_tenant() -> RequestError:
    """The 404 of a request no tenant serves."""
    return RequestError(404, "unknown_tenant", "no tenant serves this request")


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


def _request_error(exc: AuthsomeError) -> ErrorResponse:
    assert isinstance(exc, RequestError)
    return ErrorResponse(exc.status, {"error": exc.code, "message": str(exc)})


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
    RequestError: _request_error,
    VerificationFailed: _verification_failed,
    # Server-side faults: the message could name internals, so it is fixed.
    StoreError: _fixed(503, "store_unavailable", "the data store is unavailable"),
    MailNotSent: _fixed(503, "mail_unavailable", "the message could not be sent; try again"),
    DecryptionError: _internal,
    ExtraNotInstalled: _internal,  # a deployment fault; the message stays in the logs
    AuthsomeError: _internal,
}


def answer(exc: AuthsomeError) -> ErrorResponse:
    """:func:`error_response`, and a server fault among them (5xx) logged at ERROR on
    the ``authsome.integrations`` logger with its traceback; the client's answer
    keeps its fixed message.

    The library's messages hold no secrets, but the errors they wrap (a driver's,
    a ledger client's) may quote anything, a connection string or a URL with its
    key: those are named by type only. No request data is logged.
    """
    response = error_response(exc)
    if response.status >= 500:
        logger.error(
            "answered %d (%s): %s%s",
            response.status,
            response.body["error"],
            type(exc).__name__,
            _causes(exc),
            exc_info=(type(exc), _unchained(exc), exc.__traceback__),
        )
    return response


def _causes(exc: BaseException) -> str:
    """`` caused by <type>, <type>`` for the chain behind ``exc``, types only."""
    names: list[str] = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(names) < 5:
        names.append(f"{type(cause).__module__}.{type(cause).__qualname__}")
        cause = cause.__cause__ or cause.__context__
    return f" caused by {', '.join(names)}" if names else ""


def _unchained(exc: AuthsomeError) -> BaseException:
    """``exc`` without the errors it wraps, for a traceback that prints only its own."""
    try:
        clone = copy.copy(exc)
    except Exception:  # an application's subclass that cannot be copied
        return AuthsomeError(type(exc).__name__)
    clone.__cause__ = clone.__context__ = None
    clone.__suppress_context__ = True
    return clone


# The codes of the HTTP errors a framework raises by itself; others use the status name.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
}


def http_error(
    status: int, message: str | None = None, headers: Mapping[str, str] | None = None
) -> ErrorResponse:
    """The library's JSON answer to an HTTP error the framework raised itself (an
    unknown route, a wrong method, an ``abort(403, ...)``), so every error a client
    sees has the same body."""
    try:
        phrase = HTTPStatus(status).phrase
        code = _HTTP_CODES.get(status) or HTTPStatus(status).name.lower()
    except ValueError:
        phrase, code = "error", _HTTP_CODES.get(status, "error")
    body: dict[str, object] = {"error": code, "message": message or phrase.lower()}
    return ErrorResponse(status, body, dict(headers or {}))


# -- request bodies ----------------------------------------------------------------------

DEFAULT_MAX_BODY_BYTES = 64 * 1024
"""The default cap on a request body: far more than any authsome route needs, far less
than what it takes to make text normalisation expensive."""


ROUTE_BODY_CAP = "authsome_max_body_bytes"
"""The attribute of a view (endpoint) whose body cap replaces the app's for that
route alone, set with :func:`with_body_cap`."""


def with_body_cap(view: _View, limit: int) -> _View:
    """``view``, marked to take bodies of up to ``limit`` bytes whatever the app's cap
    (the SAML ACS, whose IdP posts more than any other route takes)."""
    setattr(view, ROUTE_BODY_CAP, limit)
    return view


def body_cap(view: object, app_cap: int | None) -> int | None:
    """The cap on the bodies of a request to ``view``: its own, else the app's."""
    own: object = getattr(view, ROUTE_BODY_CAP, None)
    return own if isinstance(own, int) else app_cap


def bounded(limit: int | None) -> int:
    """``limit``, or :data:`DEFAULT_MAX_BODY_BYTES` when the app set none: a route
    that reads its own body never reads an unbounded one."""
    return DEFAULT_MAX_BODY_BYTES if limit is None else limit


def is_json_content_type(content_type: str | None) -> bool:
    """Whether ``content_type`` is ``application/json`` or ``application/*+json``."""
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def check_declared_length(content_length: str | None, limit: int | None) -> None:
    """:func:`body_too_large` when a ``Content-Length`` announces more than ``limit``."""
    if limit is None or content_length is None:
        return
    text = content_length.strip()
    if not text.isdigit() or len(text) > 20 or int(text) > limit:
        raise body_too_large(limit)


def json_object(content_type: str | None, raw: bytes) -> dict[str, object]:
    """A request body that must be a JSON object, with the one answer per fault that
    every framework gives: none or not an object → 422, not declared JSON → 415,
    unparsable → 400."""
    if not raw:
        raise ValidationError("the body must be a JSON object")
    if not is_json_content_type(content_type):
        raise unsupported_media_type()
    try:
        value: object = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        raise malformed_json() from None
    if not isinstance(value, dict):
        raise ValidationError("the body must be a JSON object")
    return value


_MISSING = object()


def string_field(body: Mapping[str, object], name: str, *, default: str | None = None) -> str:
    """``body[name]``, which must be a string; ``default`` when absent (required when
    ``default`` is ``None``). A number, list or ``null`` is a
    :class:`~authsome.errors.ValidationError` (422), never a server error."""
    value = body.get(name, _MISSING)
    if value is _MISSING:
        if default is None:
            raise ValidationError(f"{name} is required")
        return default
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string")
    return value


# -- the request's tenant -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a tenant resolver may look at: the request's ``Host`` (as the framework
    reports it), a header by name, and the framework's own request object."""

    host: str | None
    header: Callable[[str], str | None]
    request: object


TenantResolver = Callable[[Authsome, RequestFacts], "str | None"]
"""Gives the tenant a request serves, or ``None`` when none does (answered 404)."""


def tenant_by_domain(*, default: str | None = None) -> TenantResolver:
    """The tenant whose verified custom domain is the request's host
    (:meth:`~authsome.domains.Domains.tenant_for_host`); ``default`` for any
    other host (for example the app's own domain), else the request is refused."""

    def resolve(auth: Authsome, facts: RequestFacts) -> str | None:
        tenant = auth.domains.tenant_for_host(facts.host) if facts.host else None
        return tenant if tenant is not None else default

    return resolve


def tenant_by_header(name: str, *, default: str | None = None) -> TenantResolver:
    """The tenant named by the request header ``name`` (which a trusted front end
    sets); ``default`` when the header is absent, else the request is refused."""
    if not str(name).strip():
        raise ValueError("name the header that carries the tenant")

    def resolve(auth: Authsome, facts: RequestFacts) -> str | None:
        value = facts.header(name)
        return value.strip() if value is not None and value.strip() else default

    return resolve


@dataclass(frozen=True, slots=True)
class IntegrationSettings:
    """How an integration treats requests; the same three options in every framework.

    ``tenant`` binds each request to a tenant (:func:`tenant_by_domain`,
    :func:`tenant_by_header`, or any callable ``(auth, facts) -> tenant | None``);
    ``None`` binds nothing, and a credential of any tenant is accepted.
    ``trusted_proxies`` says whose ``X-Forwarded-For`` is believed (default: nobody's).
    ``max_body_bytes`` caps request bodies (``None``: no cap).
    """

    tenant: TenantResolver | None = None
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        if self.tenant is not None and not callable(self.tenant):
            raise TypeError("tenant must be a resolver: a callable (auth, facts) -> str | None")
        if not isinstance(self.trusted_proxies, TrustedProxies):
            raise TypeError("trusted_proxies must be a TrustedProxies")
        limit = self.max_body_bytes
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError("max_body_bytes must be an int or None")
        if limit is not None and limit < 1:
            raise ValueError("max_body_bytes must be at least 1")


_UNSET: object = object()


def _served_tenant(resolved: object) -> str:
    """The tenant a resolver gave; a 404 when it gave none, or no valid tenant id
    (a header naming no tenant that could exist), so no credential is looked up."""
    if resolved is None:
        raise unknown_tenant()
    if not isinstance(resolved, str):
        raise TypeError(f"a tenant resolver returns a str or None, not {type(resolved).__name__}")
    try:
        return check_tenant(resolved)
    except ValidationError:
        raise unknown_tenant() from None


class RequestAuth:
    """One request as authsome sees it: its tenant, principal and client address.

    Each is worked out at most once per request, however many dependencies,
    decorators or helpers ask, so an API key is validated (and metered) once.
    """

    def __init__(
        self,
        auth: Authsome,
        settings: IntegrationSettings,
        *,
        facts: RequestFacts,
        peer: str | None,
        forwarded_for: Iterable[str],
    ) -> None:
        self.auth = auth
        self.settings = settings
        self._facts = facts
        self._peer = peer
        self._forwarded_for = tuple(forwarded_for)
        self._tenant: object = _UNSET
        self._principal: object = _UNSET

    def tenant(self) -> str | None:
        """The tenant the request serves, from the resolver; ``None`` without one.

        A request no tenant serves raises a 404 :class:`RequestError`.
        """
        if self._tenant is _UNSET:
            resolver = self.settings.tenant
            self._tenant = (
                None if resolver is None else _served_tenant(resolver(self.auth, self._facts))
            )
        assert self._tenant is None or isinstance(self._tenant, str)
        return self._tenant

    def principal(self, scopes: Iterable[str] = ()) -> Principal | None:
        """The request's principal (``None`` when anonymous), bound to its tenant.

        Validated on the first call, with that call's ``scopes`` (a key lacking one
        is refused before it is metered); later calls check their own ``scopes``
        against the key already validated.
        """
        wanted = tuple(scopes)
        if self._principal is _UNSET:
            authorization = self._facts.header("Authorization")
            api_key = self._facts.header(API_KEY_HEADER)
            anonymous = authorization is None and api_key is None
            self._principal = (
                None
                if anonymous
                else authenticate(
                    self.auth,
                    authorization=authorization,
                    api_key=api_key,
                    scopes=wanted,
                    tenant=self.tenant(),
                )
            )
        principal = self._principal
        assert principal is None or isinstance(principal, Principal)
        check_scopes(principal, wanted)
        return principal

    def client_ip(self) -> str | None:
        """The client's address under the trusted-proxy setting (for ``sign_in(ip=)``)."""
        return client_address(self._peer, self._forwarded_for, self.settings.trusted_proxies)

    def header(self, name: str) -> str | None:
        """The request's header ``name`` as sent; ``None`` without one."""
        return self._facts.header(name)

    def user_agent(self) -> str | None:
        """The request's ``User-Agent`` header as sent (for ``sign_in(user_agent=)``,
        which keeps it as untrusted text for the device list); ``None`` without one."""
        return self._facts.header("User-Agent")
