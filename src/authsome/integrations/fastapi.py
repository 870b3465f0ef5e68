"""FastAPI integration (extra ``authsome-engine[fastapi]``).

::

    from fastapi import Depends, FastAPI
    from authsome.integrations.fastapi import Principal, install, require_principal

    app = FastAPI()
    install(app, auth)  # error handlers, body cap, and the engine the dependencies use

    @app.get("/me")
    def me(principal: Principal = Depends(require_principal())) -> dict[str, str]:
        return {"user_id": principal.user_id}

The dependencies are plain (synchronous) functions, so FastAPI runs them in its
thread pool: session and API-key validation may touch a database. The request's
principal is worked out once however many dependencies ask for it, so a route
with a router-level and an endpoint-level dependency validates (and meters) an
API key once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authsome.engine import Authsome
from authsome.errors import AuthsomeError, InvalidCredentials, ValidationError
from authsome.integrations._http import (
    DEFAULT_MAX_BODY_BYTES,
    ErrorResponse,
    IntegrationSettings,
    Principal,
    RequestAuth,
    RequestError,
    RequestFacts,
    TenantResolver,
    TrustedProxies,
    answer,
    body_too_large,
    bounded,
    check_declared_length,
    http_error,
    is_json_content_type,
    malformed_json,
    require,
    unsupported_media_type,
)
from authsome.integrations._signin_routes import (
    MAX_PARAMS,
    SAML_ACS_MAX_BODY_BYTES,
    SAML_METADATA_TYPE,
    STATE_COOKIE,
    Resubmit,
    SignInRoutes,
    Started,
    signed_in_body,
)
from authsome.models import SignIn

__all__ = [
    "Principal",
    "TrustedProxies",
    "client_ip",
    "client_user_agent",
    "engine_of",
    "handle_authsome_error",
    "install",
    "optional_principal",
    "request_auth",
    "request_tenant",
    "require_principal",
    "sign_in_router",
]

_STATE_KEY = "authsome"
_SETTINGS_KEY = "authsome_settings"
_REQUESTS_KEY = "authsome_requests"
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def install(
    app: FastAPI,
    auth: Authsome,
    *,
    tenant: TenantResolver | None = None,
    trusted_proxies: TrustedProxies | None = None,
    max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Map every :class:`~authsome.errors.AuthsomeError` to its HTTP answer and
    make ``auth`` the engine of the dependencies that are not given one.

    ``FeatureNotEntitled`` → 403 ``{"error": "feature_not_entitled", "feature": key}``,
    ``InvalidCredentials``/``InvalidToken`` → 401 with ``WWW-Authenticate: Bearer``,
    ``RateLimited`` → 429 with ``Retry-After``, ``LedgerUnavailable`` → 503,
    ``ValidationError`` → 422, ``AlreadyExists``/``Conflict`` → 409, ``NotFound`` → 404.
    FastAPI's own errors get the same body: a request that fails validation is a
    422 that never echoes the input (400 for malformed JSON, 415 for a body that is
    not JSON), and ``HTTPException`` (404, 405, ...) is ``{"error", "message"}``.

    ``tenant`` binds every request to the tenant it serves (a bearer token or API
    key of another tenant is refused like an unknown one); ``trusted_proxies`` says
    whose ``X-Forwarded-For`` :func:`client_ip` believes (default: nobody's);
    request bodies longer than ``max_body_bytes`` are refused with 413 before
    they are read (the SAML ACS of :func:`sign_in_router` has its own cap,
    :data:`~authsome.integrations.SAML_ACS_MAX_BODY_BYTES`).
    """
    if not isinstance(auth, Authsome):
        raise TypeError(f"auth must be an Authsome engine, not {type(auth).__name__}")
    settings = IntegrationSettings(
        tenant=tenant,
        trusted_proxies=trusted_proxies or TrustedProxies(),
        max_body_bytes=max_body_bytes,
    )
    setattr(app.state, _STATE_KEY, auth)
    setattr(app.state, _SETTINGS_KEY, settings)
    app.add_exception_handler(AuthsomeError, handle_authsome_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_error)
    # Starlette still re-raises the exception after this answer, so the server logs it.
    app.add_exception_handler(Exception, _handle_unexpected_error)
    if max_body_bytes is not None:
        app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)


def _json(response: ErrorResponse) -> JSONResponse:
    return JSONResponse(response.body, status_code=response.status, headers=response.headers)


async def handle_authsome_error(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler :func:`install` registers for ``AuthsomeError``."""
    if not isinstance(exc, AuthsomeError):  # registered for AuthsomeError only
        raise exc
    return _json(answer(exc))


async def _handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: Sequence[Any] = exc.errors()
    refused: AuthsomeError
    if any(error.get("type") == "json_invalid" for error in errors):
        refused = malformed_json()
    elif _has_body(request) and _not_json(request.headers.get("content-type")):
        refused = unsupported_media_type()
    else:
        refused = ValidationError(_describe(errors))
    return _json(answer(refused))


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length", "0").strip()
    return length not in ("", "0") or "transfer-encoding" in request.headers


def _not_json(content_type: str | None) -> bool:
    if is_json_content_type(content_type):
        return False
    return not (content_type or "").lower().startswith(_FORM_TYPES)


def _describe(errors: Sequence[Any], most: int = 5) -> str:
    """What failed and where, from pydantic's messages: never the submitted input."""
    parts = []
    for error in errors[:most]:
        loc = [str(part) for part in error.get("loc", ())]
        where = ".".join(loc[1:]) or ".".join(loc) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is invalid"


async def _handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    detail: object = exc.detail
    message = detail if isinstance(detail, str) else None
    return _json(http_error(exc.status_code, message, exc.headers))


async def _handle_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return _json(http_error(500))


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a body passes the cap."""


class _Cap:
    """One request's body cap, kept in its ASGI scope: an endpoint replaces it before
    it reads the body (:func:`_form`), and copies of the scope share it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit


_CAP_KEY = "authsome.body_cap"


class _BodyLimit:
    """ASGI middleware refusing request bodies longer than the cap with 413.

    The cap is ``max_bytes``, unless the endpoint replaced it for its request (the
    SAML ACS, whose IdP posts more than any other route takes). So the body is
    checked when the app first reads it, before any of it is read: a
    ``Content-Length`` above the cap is refused at once, a body without one
    (chunked) is counted as it streams in and cut off at the cap.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = scope[_CAP_KEY] = _Cap(self.max_bytes)
        declared = _header(scope, b"content-length")
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            if received == 0:
                try:
                    check_declared_length(declared, cap.limit)
                except RequestError:
                    raise _too_large(cap.limit) from None
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap.limit:
                    raise _too_large(cap.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await _json(answer(body_too_large(cap.limit)))(scope, receive, send)


def _too_large(limit: int) -> _BodyTooLarge:
    return _BodyTooLarge(413, str(body_too_large(limit)))


def _raise_cap(request: Request, limit: int) -> None:
    """Make ``limit`` the cap of ``request``'s body, in place of the app's."""
    cap = request.scope.get(_CAP_KEY)
    if isinstance(cap, _Cap):
        cap.limit = limit


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            text: str = value.decode("latin-1")
            return text
    return None


def engine_of(request: Request) -> Authsome:
    """The engine :func:`install` registered on the request's app."""
    auth = getattr(request.app.state, _STATE_KEY, None)
    if not isinstance(auth, Authsome):
        raise RuntimeError("call authsome.integrations.fastapi.install(app, auth) first")
    return auth


def request_auth(request: Request, auth: Authsome | None = None) -> RequestAuth:
    """The request as authsome sees it (tenant, principal, client address), built
    once per request and engine and kept on ``request.state``."""
    engine = auth or engine_of(request)
    cache: dict[int, RequestAuth] | None = getattr(request.state, _REQUESTS_KEY, None)
    if cache is None:
        cache = {}
        setattr(request.state, _REQUESTS_KEY, cache)
    found = cache.get(id(engine))
    if found is None or found.auth is not engine:
        found = cache[id(engine)] = _request_auth(request, engine)
    return found


def _request_auth(request: Request, engine: Authsome) -> RequestAuth:
    settings = getattr(request.app.state, _SETTINGS_KEY, None)
    if not isinstance(settings, IntegrationSettings):
        settings = IntegrationSettings()
    headers = request.headers
    facts = RequestFacts(host=headers.get("host"), header=headers.get, request=request)
    return RequestAuth(
        engine,
        settings,
        facts=facts,
        peer=request.client.host if request.client else None,
        forwarded_for=headers.getlist("x-forwarded-for"),
    )


def client_ip(request: Request) -> str | None:
    """The client's address for ``auth.sign_in(ip=...)``, under the app's
    ``trusted_proxies`` (the socket peer unless trusted proxies forwarded it);
    usable as a dependency too."""
    return request_auth(request).client_ip()


def client_user_agent(request: Request) -> str | None:
    """The request's ``User-Agent`` for ``auth.sign_in(user_agent=...)`` (shown in
    the user's device list); usable as a dependency too."""
    return request_auth(request).user_agent()


def request_tenant(request: Request) -> str | None:
    """The tenant the request serves, from the ``tenant`` resolver given to
    :func:`install` (``None`` without one; 404 when no tenant serves it); usable
    as a dependency too."""
    return request_auth(request).tenant()


def require_principal(
    auth: Authsome | None = None, *, scopes: Iterable[str] = ()
) -> Callable[[Request], Principal]:
    """A dependency yielding the request's :class:`Principal`, or a 401.

    The principal comes from ``Authorization: Bearer <access token>`` or
    ``X-API-Key: <secret>``; an API key must hold every one of ``scopes`` (403
    otherwise). ``auth`` defaults to the engine given to :func:`install`.
    """
    wanted = tuple(scopes)

    def dependency(request: Request) -> Principal:
        return require(request_auth(request, auth).principal(wanted))

    return dependency


def optional_principal(
    auth: Authsome | None = None,
) -> Callable[[Request], Principal | None]:
    """A dependency yielding the request's :class:`Principal`, or ``None`` for an
    anonymous request; a credential that is present but bad is still a 401."""

    def dependency(request: Request) -> Principal | None:
        return request_auth(request, auth).principal()

    return dependency


# -- sign-in routes ------------------------------------------------------------------------


def sign_in_router(base_url: str, auth: Authsome | None = None) -> APIRouter:
    """The SSO and social sign-in routes, to mount where ``base_url`` points::

        app.include_router(sign_in_router("https://app.example.com/auth"), prefix="/auth")

    ``POST /sso/start`` (a form with ``connection_id`` or ``email``) and ``POST
    /social/{provider}/start`` redirect to the identity provider (303) and set the
    signed state cookie; they refuse a start from another site (login CSRF). ``GET
    /sso/callback`` and ``GET|POST /social/{provider}/callback`` finish the sign-in
    and answer ``{"user_id", "mfa_required": false, "access_token", "refresh_token",
    "expires_at"}`` (or ``{"user_id", "mfa_required": true, "ticket"}``). For SAML connections
    (``Authsome(saml=SAMLServiceProvider(base_url))`` with the same ``base_url``),
    ``GET /sso/saml/metadata/{connection_id}`` serves the SP metadata and ``POST
    /sso/saml/acs/{connection_id}`` finishes the sign-in the same way. Errors are the
    usual JSON answers (401 for a refused or replayed sign-in, 404 for an unknown
    provider or connection). The state cookie is described in the "Sign-in routes"
    section of the web frameworks documentation.
    """
    router = APIRouter()
    routes: dict[int, SignInRoutes] = {}

    def routes_for(request: Request) -> tuple[SignInRoutes, RequestAuth]:
        engine = auth or engine_of(request)
        found = routes.get(id(engine))
        if found is None or found.auth is not engine:
            found = routes[id(engine)] = SignInRoutes(engine, base_url)
        return found, request_auth(request, engine)

    @router.post("/sso/start")
    async def sso_start(request: Request) -> Response:
        flow, request_ = routes_for(request)
        form = await _form(request, bounded(request_.settings.max_body_bytes))
        return _redirect(await run_in_threadpool(flow.start_sso, request_, form))

    @router.get("/sso/callback")
    def sso_callback(request: Request) -> Response:
        flow, request_ = routes_for(request)
        cookie = request.cookies.get(STATE_COOKIE)
        return _signed_in(flow.finish_sso(request_, dict(request.query_params), cookie))

    @router.post("/social/{provider}/start")
    def social_start(request: Request, provider: str) -> Response:
        flow, request_ = routes_for(request)
        return _redirect(flow.start_social(request_, provider))

    @router.get("/social/{provider}/callback")
    def social_callback(request: Request, provider: str) -> Response:
        flow, request_ = routes_for(request)
        cookie = request.cookies.get(STATE_COOKIE)
        params = dict(request.query_params)
        return _signed_in(flow.finish_social(request_, provider, params, cookie))

    @router.post("/social/{provider}/callback")
    async def social_form_post(request: Request, provider: str) -> Response:
        flow, request_ = routes_for(request)
        cookie = request.cookies.get(STATE_COOKIE)
        form = await _form(request, bounded(request_.settings.max_body_bytes))
        answer = await run_in_threadpool(flow.post_social, request_, provider, form, cookie)
        return _posted(answer)

    @router.get("/sso/saml/metadata/{connection_id}")
    def saml_metadata(request: Request, connection_id: str) -> Response:
        flow, request_ = routes_for(request)
        xml = flow.saml_metadata(request_, connection_id)
        return Response(xml, media_type=SAML_METADATA_TYPE)

    @router.post("/sso/saml/acs/{connection_id}")
    async def saml_acs(request: Request, connection_id: str) -> Response:
        flow, request_ = routes_for(request)
        cookie = request.cookies.get(STATE_COOKIE)
        form = await _form(request, SAML_ACS_MAX_BODY_BYTES)
        answer = await run_in_threadpool(flow.post_saml, request_, connection_id, form, cookie)
        return _posted(answer)

    return router


async def _form(request: Request, limit: int) -> dict[str, str]:
    """A urlencoded form body of at most ``limit`` bytes, the request's cap in place of
    the app's (the ACS's is larger), parsed here so no multipart parser is needed.
    Counted here too, so an app without a cap (``install(..., max_body_bytes=None)``)
    still never reads an unbounded body."""
    _raise_cap(request, limit)
    check_declared_length(request.headers.get("content-length"), limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks).decode("utf-8", "replace")
    try:
        return dict(parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_PARAMS))
    except ValueError:  # more fields than any sign-in form or callback has
        raise InvalidCredentials() from None


def _redirect(started: Started) -> Response:
    # 303: the browser follows a POSTed start with a GET to the provider.
    response = RedirectResponse(started.url, status_code=303)
    response.set_cookie(STATE_COOKIE, started.cookie, **SignInRoutes.cookie_attributes())
    return response


def _posted(answer: SignIn | Resubmit) -> Response:
    if isinstance(answer, Resubmit):
        return HTMLResponse(answer.page)
    return _signed_in(answer)


def _signed_in(sign_in: SignIn) -> Response:
    response = JSONResponse(signed_in_body(sign_in), headers={"Cache-Control": "no-store"})
    response.delete_cookie(STATE_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response
