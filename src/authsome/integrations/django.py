"""Django integration (extra ``authsome-engine[django]``).

In ``settings.py``::

    MIDDLEWARE = [..., "authsome.integrations.django.AuthsomeMiddleware"]
    AUTHSOME_ENGINE = "myproject.auth.build_auth"  # dotted path to a factory (or an engine)

The middleware puts the engine on ``request.authsome`` and the request's
:class:`Principal` (or ``None`` when anonymous) on ``request.authsome_principal``;
a credential that is present but bad is answered with 401 before any view runs.
Every :class:`~authsome.errors.AuthsomeError` a view raises becomes the same JSON
answer as in the other integrations. Decorate views with :func:`login_required`.

The principal is resolved for every request that carries a credential, so a
valid API key is metered (``authsome.apikeys.validated``) once per request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string

from authsome.engine import Authsome
from authsome.errors import AuthsomeError, InvalidToken
from authsome.integrations._http import (
    API_KEY_HEADER,
    AUTHENTICATION_REQUIRED,
    Principal,
    authenticate,
    error_response,
)

__all__ = [
    "AuthsomeMiddleware",
    "Principal",
    "engine_of",
    "error_json",
    "load_engine",
    "login_required",
    "principal_of",
]

P = ParamSpec("P")
View = Callable[Concatenate[HttpRequest, P], HttpResponse]


def load_engine() -> Authsome:
    """The engine named by the ``AUTHSOME_ENGINE`` setting.

    The setting is an :class:`~authsome.Authsome` engine, a callable returning
    one, or the dotted path to either. Anything else raises
    ``ImproperlyConfigured``.
    """
    value: object = getattr(settings, "AUTHSOME_ENGINE", None)
    if value is None:
        raise ImproperlyConfigured("set AUTHSOME_ENGINE to the dotted path of an engine factory")
    if isinstance(value, str):
        value = import_string(value)
    if not isinstance(value, Authsome) and callable(value):
        value = value()
    if not isinstance(value, Authsome):
        raise ImproperlyConfigured(
            f"AUTHSOME_ENGINE must give an authsome.Authsome engine, not {type(value).__name__}"
        )
    return value


def error_json(exc: AuthsomeError) -> JsonResponse:
    """The JSON answer to ``exc``, from the mapping shared by every integration."""
    answer = error_response(exc)
    response = JsonResponse(answer.body, status=answer.status)
    for name, value in answer.headers.items():
        response[name] = value
    return response


class AuthsomeMiddleware:
    """Resolves the request's principal and maps authsome's errors to HTTP answers.

    The engine is loaded once, when Django builds its middleware chain.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.auth = load_engine()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.authsome = self.auth  # type: ignore[attr-defined]
        try:
            principal = authenticate(
                self.auth,
                authorization=request.headers.get("Authorization"),
                api_key=request.headers.get(API_KEY_HEADER),
            )
        except AuthsomeError as exc:
            return error_json(exc)
        request.authsome_principal = principal  # type: ignore[attr-defined]
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Answer an ``AuthsomeError`` raised by a view; leave other errors to Django."""
        if isinstance(exception, AuthsomeError):
            return error_json(exception)
        return None


def engine_of(request: HttpRequest) -> Authsome:
    """The engine :class:`AuthsomeMiddleware` attached to ``request``."""
    auth = getattr(request, "authsome", None)
    if not isinstance(auth, Authsome):
        raise ImproperlyConfigured("add authsome.integrations.django.AuthsomeMiddleware")
    return auth


def principal_of(request: HttpRequest) -> Principal | None:
    """The request's :class:`Principal`, or ``None`` when it is anonymous."""
    engine_of(request)  # fails loudly when the middleware is missing
    principal = getattr(request, "authsome_principal", None)
    return principal if isinstance(principal, Principal) else None


def login_required(view: View[P]) -> View[P]:
    """Decorate a view so that an anonymous request gets a 401 instead of running it."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        if principal_of(request) is None:
            return error_json(InvalidToken(AUTHENTICATION_REQUIRED))
        return view(request, *args, **kwargs)

    return wrapper
