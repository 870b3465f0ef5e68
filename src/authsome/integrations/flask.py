"""Flask integration (extra ``authsome-engine[flask]``).

::

    from flask import Flask
    from authsome.integrations.flask import Authsome, current_principal, login_required

    app = Flask(__name__)
    Authsome(app, auth)  # or ext = Authsome(); ext.init_app(app, auth)

    @app.get("/me")
    @login_required
    def me():
        return {"user_id": current_principal().user_id}

Every :class:`~authsome.errors.AuthsomeError` a view raises becomes the same JSON
answer as in the other integrations (403 with the feature key for
``FeatureNotEntitled``, 401, 429 with ``Retry-After``, 503, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Flask, Response, current_app, g, jsonify, request

from authsome.engine import Authsome as Engine
from authsome.errors import AuthsomeError
from authsome.integrations._http import (
    API_KEY_HEADER,
    Principal,
    authenticate,
    error_response,
    require,
)

__all__ = ["Authsome", "Principal", "current_principal", "engine", "login_required"]

_EXTENSION_KEY = "authsome"
_UNSET = object()
P = ParamSpec("P")
R = TypeVar("R")


class Authsome:
    """The Flask extension: registers the engine and the error mapping on an app.

    ``Authsome(app, auth)`` sets up ``app`` at once; ``Authsome()`` then
    :meth:`init_app` suits the application-factory pattern.
    """

    def __init__(self, app: Flask | None = None, auth: Engine | None = None) -> None:
        self.auth = auth
        if app is not None:
            self.init_app(app, auth)

    def init_app(self, app: Flask, auth: Engine | None = None) -> None:
        """Register the engine (``auth``, else the one given to the constructor)
        and the handler that maps every ``AuthsomeError`` to its HTTP answer."""
        engine_ = auth or self.auth
        if not isinstance(engine_, Engine):
            raise TypeError(f"auth must be an Authsome engine, not {type(engine_).__name__}")
        app.extensions[_EXTENSION_KEY] = engine_
        app.register_error_handler(AuthsomeError, _handle_authsome_error)


def _handle_authsome_error(exc: AuthsomeError) -> Response:
    answer = error_response(exc)
    response = jsonify(answer.body)
    response.status_code = answer.status
    response.headers.update(answer.headers)
    return response


def engine() -> Engine:
    """The engine registered on the current app."""
    auth = current_app.extensions.get(_EXTENSION_KEY)
    if not isinstance(auth, Engine):
        raise RuntimeError("initialise authsome.integrations.flask.Authsome on this app first")
    return auth


def current_principal() -> Principal | None:
    """The current request's :class:`Principal`, or ``None`` when it is anonymous.

    Read from ``Authorization: Bearer`` or ``X-API-Key`` once per request. A
    credential that is present but bad raises :class:`~authsome.errors.InvalidToken`
    (answered with 401).
    """
    cached = g.get("authsome_principal", _UNSET)
    if cached is _UNSET:
        cached = authenticate(
            engine(),
            authorization=request.headers.get("Authorization"),
            api_key=request.headers.get(API_KEY_HEADER),
        )
        g.authsome_principal = cached
    assert cached is None or isinstance(cached, Principal)
    return cached


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    """Decorate a view so that an anonymous request gets a 401 instead of running it."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        require(current_principal())
        return view(*args, **kwargs)

    return wrapper
