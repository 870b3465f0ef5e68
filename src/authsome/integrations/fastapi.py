"""FastAPI integration (extra ``authsome-engine[fastapi]``).

::

    from fastapi import Depends, FastAPI
    from authsome.integrations.fastapi import Principal, install, require_principal

    app = FastAPI()
    install(app, auth)  # error handlers, and the engine the dependencies use

    @app.get("/me")
    def me(principal: Principal = Depends(require_principal())) -> dict[str, str]:
        return {"user_id": principal.user_id}

The dependencies are plain (synchronous) functions, so FastAPI runs them in its
thread pool: session and API-key validation may touch a database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from authsome.engine import Authsome
from authsome.errors import AuthsomeError
from authsome.integrations._http import (
    API_KEY_HEADER,
    Principal,
    authenticate,
    error_response,
    require,
)

__all__ = [
    "Principal",
    "engine_of",
    "handle_authsome_error",
    "install",
    "optional_principal",
    "require_principal",
]

_STATE_KEY = "authsome"


def install(app: FastAPI, auth: Authsome) -> None:
    """Map every :class:`~authsome.errors.AuthsomeError` to its HTTP answer and
    make ``auth`` the engine of the dependencies that are not given one.

    ``FeatureNotEntitled`` → 403 ``{"error": "feature_not_entitled", "feature": key}``,
    ``InvalidCredentials``/``InvalidToken`` → 401 with ``WWW-Authenticate: Bearer``,
    ``RateLimited`` → 429 with ``Retry-After``, ``LedgerUnavailable`` → 503,
    ``ValidationError`` → 422, ``AlreadyExists``/``Conflict`` → 409, ``NotFound`` → 404.
    """
    if not isinstance(auth, Authsome):
        raise TypeError(f"auth must be an Authsome engine, not {type(auth).__name__}")
    setattr(app.state, _STATE_KEY, auth)
    app.add_exception_handler(AuthsomeError, handle_authsome_error)


async def handle_authsome_error(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler :func:`install` registers for ``AuthsomeError``."""
    if not isinstance(exc, AuthsomeError):  # registered for AuthsomeError only
        raise exc
    answer = error_response(exc)
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


def engine_of(request: Request) -> Authsome:
    """The engine :func:`install` registered on the request's app."""
    auth = getattr(request.app.state, _STATE_KEY, None)
    if not isinstance(auth, Authsome):
        raise RuntimeError("call authsome.integrations.fastapi.install(app, auth) first")
    return auth


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
        return require(_principal(request, auth, wanted))

    return dependency


def optional_principal(
    auth: Authsome | None = None,
) -> Callable[[Request], Principal | None]:
    """A dependency yielding the request's :class:`Principal`, or ``None`` for an
    anonymous request; a credential that is present but bad is still a 401."""

    def dependency(request: Request) -> Principal | None:
        return _principal(request, auth, ())

    return dependency


def _principal(
    request: Request, auth: Authsome | None, scopes: tuple[str, ...]
) -> Principal | None:
    return authenticate(
        auth or engine_of(request),
        authorization=request.headers.get("authorization"),
        api_key=request.headers.get(API_KEY_HEADER),
        scopes=scopes,
    )
