"""Django integration (extra ``authsome-engine[django]``).

In ``settings.py``::

    MIDDLEWARE = [..., "authsome.integrations.django.AuthsomeMiddleware"]
    AUTHSOME_ENGINE = "myproject.auth.build_auth"  # dotted path to a factory (or an engine)
    # optional:
    AUTHSOME_TENANT = tenant_by_domain(default="default")  # or a dotted path to a resolver
    AUTHSOME_TRUSTED_PROXY_COUNT = 1        # or AUTHSOME_TRUSTED_PROXIES = ["10.0.0.0/8"]
    AUTHSOME_MAX_BODY_BYTES = 64 * 1024     # the default; None: no cap
    AUTHSOME_JSON_ERRORS = True             # Django's own 400/403/404/405/500 pages as JSON

The middleware puts the engine on ``request.authsome`` and the request's
:class:`Principal` (or ``None`` when anonymous) on ``request.authsome_principal``;
a credential that is present but bad is answered with 401 before any view runs.
Every :class:`~authsome.errors.AuthsomeError` a view raises becomes the same JSON
answer as in the other integrations. Decorate views with :func:`login_required`.

The principal is resolved before the view runs for every request that carries a
credential, so a valid API key is metered (``authsome.apikeys.validated``) once
per request; :func:`scopes_required` names the scopes a view needs, which the
engine checks before it meters the key.
Views read JSON bodies with :func:`json_body` and :func:`string_field` (415, 400,
422 as in the other integrations) and pass :func:`client_ip` to ``sign_in``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec

from django.conf import settings
from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotAllowed,
    HttpResponseNotFound,
    HttpResponseRedirect,
    HttpResponseServerError,
    JsonResponse,
)
from django.urls import Resolver404, URLPattern, path, resolve
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from authsome.engine import Authsome
from authsome.errors import AuthsomeError, InvalidToken
from authsome.integrations._http import (
    AUTHENTICATION_REQUIRED,
    DEFAULT_MAX_BODY_BYTES,
    ErrorResponse,
    IntegrationSettings,
    Principal,
    RequestAuth,
    RequestFacts,
    TrustedProxies,
    answer,
    body_cap,
    bounded,
    check_declared_length,
    http_error,
    json_object,
    length_required,
    require,
    string_field,
    with_body_cap,
)
from authsome.integrations._signin_routes import (
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
    "AuthsomeMiddleware",
    "Principal",
    "client_ip",
    "client_user_agent",
    "engine_of",
    "error_json",
    "json_body",
    "load_engine",
    "load_settings",
    "login_required",
    "principal_of",
    "scopes_required",
    "sign_in_urls",
    "string_field",
    "tenant_of",
]

P = ParamSpec("P")
View = Callable[Concatenate[HttpRequest, P], HttpResponse]
_SCOPES_ATTRIBUTE = "authsome_scopes"  # on a view: the API-key scopes it needs


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


def load_settings() -> IntegrationSettings:
    """The integration's options from ``AUTHSOME_TENANT`` (a resolver, or the dotted
    path to one), ``AUTHSOME_TRUSTED_PROXY_COUNT`` or ``AUTHSOME_TRUSTED_PROXIES``
    and ``AUTHSOME_MAX_BODY_BYTES``; a bad value raises ``ImproperlyConfigured``."""
    tenant: object = getattr(settings, "AUTHSOME_TENANT", None)
    if isinstance(tenant, str):
        tenant = import_string(tenant)
    count: object = getattr(settings, "AUTHSOME_TRUSTED_PROXY_COUNT", 0)
    networks: object = getattr(settings, "AUTHSOME_TRUSTED_PROXIES", ())
    limit: object = getattr(settings, "AUTHSOME_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
    try:
        proxies = TrustedProxies(count=count, networks=networks)  # type: ignore[arg-type]
        return IntegrationSettings(
            tenant=tenant,  # type: ignore[arg-type]
            trusted_proxies=proxies,
            max_body_bytes=limit,  # type: ignore[arg-type]
        )
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"authsome settings: {exc}") from None


def error_json(exc: AuthsomeError) -> JsonResponse:
    """The JSON answer to ``exc``, from the mapping shared by every integration
    (server faults among them logged on ``authsome.integrations``)."""
    return _json(answer(exc))


def _json(answer_: ErrorResponse) -> JsonResponse:
    response = JsonResponse(answer_.body, status=answer_.status)
    for name, value in answer_.headers.items():
        response[name] = value
    return response


# Django's own error pages, answered in JSON when AUTHSOME_JSON_ERRORS is on (default).
_DJANGO_ERRORS = (
    HttpResponseBadRequest,
    HttpResponseForbidden,
    HttpResponseNotFound,
    HttpResponseNotAllowed,
    HttpResponseServerError,
)


class AuthsomeMiddleware:
    """Resolves the request's principal and maps authsome's errors to HTTP answers.

    The engine and the settings are loaded once, when Django builds its middleware
    chain. A body whose ``Content-Length`` passes the cap (the routed view's own, as
    the SAML ACS has, else the app's) is refused
    (413) before any view runs, and where a cap applies so is a body without one
    (chunked, 411): under WSGI Django would read it as empty, and under ASGI it has
    buffered it whole before any middleware runs.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.auth = load_engine()
        self.settings = load_settings()
        self.json_errors = bool(getattr(settings, "AUTHSOME_JSON_ERRORS", True))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.authsome = self.auth  # type: ignore[attr-defined]
        request_auth = _request_auth(request, self.auth, self.settings)
        request.authsome_request = request_auth  # type: ignore[attr-defined]
        try:
            _check_body(request, self._cap(request))
        except AuthsomeError as exc:
            return error_json(exc)
        return self._as_json(self.get_response(request))

    def _cap(self, request: HttpRequest) -> int | None:
        """The body cap of the view the request is routed to, else the app's."""
        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            return self.settings.max_body_bytes
        return body_cap(match.func, self.settings.max_body_bytes)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[object, ...],
        view_kwargs: dict[str, object],
    ) -> HttpResponse | None:
        """Resolve the principal before the view runs, with the scopes the view
        demands (:func:`scopes_required`), so a key lacking one is refused unmetered."""
        scopes: tuple[str, ...] = getattr(view_func, _SCOPES_ATTRIBUTE, ())
        try:
            principal = _request_auth_of(request).principal(scopes)
        except AuthsomeError as exc:
            return error_json(exc)
        request.authsome_principal = principal  # type: ignore[attr-defined]
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Answer an ``AuthsomeError`` raised by a view; leave other errors to Django."""
        if isinstance(exception, AuthsomeError):
            return error_json(exception)
        return None

    def _as_json(self, response: HttpResponse) -> HttpResponse:
        """Django's own error page (an unknown route, a wrong method, ...) in JSON."""
        if not self.json_errors or not isinstance(response, _DJANGO_ERRORS):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        if response.status_code >= 500 and settings.DEBUG:
            return response  # the debug page is the developer's
        headers = {"Allow": response["Allow"]} if response.has_header("Allow") else {}
        return _json(http_error(response.status_code, None, headers))


def _check_body(request: HttpRequest, limit: int | None) -> None:
    """A body over ``limit`` is a 413; one of undeclared length, which Django cannot
    count as it reads, a 411 (with no cap, Django's own handling stands)."""
    if limit is None:
        return
    declared = request.META.get("CONTENT_LENGTH")
    if not declared and "HTTP_TRANSFER_ENCODING" in request.META:
        raise length_required()
    check_declared_length(declared, limit)


def _form(request: HttpRequest, limit: int) -> dict[str, str]:
    """The request's form, of at most ``limit`` bytes even with no app cap."""
    _check_body(request, limit)
    return request.POST.dict()


def _request_auth(
    request: HttpRequest, auth: Authsome, options: IntegrationSettings
) -> RequestAuth:
    def header(name: str) -> str | None:
        return request.headers.get(name)

    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return RequestAuth(
        auth,
        options,
        facts=RequestFacts(host=_host(request), header=header, request=request),
        peer=request.META.get("REMOTE_ADDR") or None,
        forwarded_for=[forwarded] if forwarded else [],
    )


def _host(request: HttpRequest) -> str | None:
    # get_host() checks ALLOWED_HOSTS (and honours USE_X_FORWARDED_HOST) first.
    try:
        return request.get_host()
    except DisallowedHost:  # no tenant serves a host Django refuses
        return None


def engine_of(request: HttpRequest) -> Authsome:
    """The engine :class:`AuthsomeMiddleware` attached to ``request``."""
    auth = getattr(request, "authsome", None)
    if not isinstance(auth, Authsome):
        raise ImproperlyConfigured("add authsome.integrations.django.AuthsomeMiddleware")
    return auth


def principal_of(request: HttpRequest) -> Principal | None:
    """The request's :class:`Principal`, or ``None`` when it is anonymous (worked
    out once per request, by the middleware before the view runs)."""
    return _request_auth_of(request).principal()


def _request_auth_of(request: HttpRequest) -> RequestAuth:
    engine_of(request)
    found = getattr(request, "authsome_request", None)
    if not isinstance(found, RequestAuth):
        raise ImproperlyConfigured("add authsome.integrations.django.AuthsomeMiddleware")
    return found


def tenant_of(request: HttpRequest) -> str | None:
    """The tenant the request serves, from ``AUTHSOME_TENANT`` (``None`` without a
    resolver; a 404 when no tenant serves the request)."""
    return _request_auth_of(request).tenant()


def client_ip(request: HttpRequest) -> str | None:
    """The client's address for ``auth.sign_in(ip=...)``: ``REMOTE_ADDR`` unless
    trusted proxies (``AUTHSOME_TRUSTED_PROXY_COUNT``/``AUTHSOME_TRUSTED_PROXIES``)
    forwarded it."""
    return _request_auth_of(request).client_ip()


def client_user_agent(request: HttpRequest) -> str | None:
    """The request's ``User-Agent`` for ``auth.sign_in(user_agent=...)`` (shown in
    the user's device list)."""
    return _request_auth_of(request).user_agent()


def json_body(request: HttpRequest) -> dict[str, object]:
    """The request body as a JSON object: 415 unless declared JSON, 400 when it does
    not parse, 422 when it is not an object, 413 past the cap."""
    limit = _request_auth_of(request).settings.max_body_bytes
    check_declared_length(request.META.get("CONTENT_LENGTH"), limit)
    return json_object(request.content_type, request.body)


def scopes_required(*scopes: str) -> Callable[[View[P]], View[P]]:
    """Decorate a view so that it needs a principal, and an API key every one of
    ``scopes`` (403 otherwise); a session passes as with :func:`login_required`.

    The middleware reads the scopes before the view runs and asks the engine for
    them when it validates the key, so a key lacking one is refused before it is
    metered.
    """
    wanted = tuple(scopes)
    if not all(isinstance(scope, str) for scope in wanted):
        raise TypeError("scopes are strings")

    def decorate(view: View[P]) -> View[P]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
            try:  # already validated by the middleware: this only checks the scopes
                require(_request_auth_of(request).principal(wanted))
            except AuthsomeError as exc:
                return error_json(exc)
            return view(request, *args, **kwargs)

        setattr(wrapper, _SCOPES_ATTRIBUTE, wanted)
        return wrapper

    return decorate


def login_required(view: View[P]) -> View[P]:
    """Decorate a view so that an anonymous request gets a 401 instead of running it."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        if principal_of(request) is None:
            return error_json(InvalidToken(AUTHENTICATION_REQUIRED))
        return view(request, *args, **kwargs)

    return wrapper


# -- sign-in routes ------------------------------------------------------------------------


def sign_in_urls(base_url: str) -> list[URLPattern]:
    """The SSO and social sign-in routes, to include where ``base_url`` points::

        urlpatterns = [path("auth/", include(sign_in_urls("https://app.example.com/auth")))]

    The same routes and answers as FastAPI's :func:`~authsome.integrations.fastapi.
    sign_in_router`; the engine is the middleware's. The callbacks are exempt from
    Django's CSRF check: the signed state cookie and the one-time handle are the
    check (Apple's callback and SAML's ACS are cross-site POSTs that could not carry
    a CSRF token). The start routes are POSTs from the application's pages and are
    not exempt: with ``CsrfViewMiddleware`` the form posting to them carries
    ``{% csrf_token %}``. SAML's metadata and ACS routes are included.
    """
    routes: dict[int, SignInRoutes] = {}

    def flow(request: HttpRequest) -> tuple[SignInRoutes, RequestAuth]:
        auth = engine_of(request)
        found = routes.get(id(auth))
        if found is None or found.auth is not auth:
            found = routes[id(auth)] = SignInRoutes(auth, base_url)
        return found, _request_auth_of(request)

    def answered(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except AuthsomeError as exc:
                return error_json(exc)

        return wrapper

    @require_POST
    @answered
    def sso_start(request: HttpRequest) -> HttpResponse:
        routes_, request_ = flow(request)
        form = _form(request, bounded(request_.settings.max_body_bytes))
        return _redirect(routes_.start_sso(request_, form))

    @require_GET
    @answered
    def sso_callback(request: HttpRequest) -> HttpResponse:
        routes_, request_ = flow(request)
        cookie = request.COOKIES.get(STATE_COOKIE)
        return _signed_in(routes_.finish_sso(request_, request.GET.dict(), cookie))

    @require_POST
    @answered
    def social_start(request: HttpRequest, provider: str) -> HttpResponse:
        routes_, request_ = flow(request)
        return _redirect(routes_.start_social(request_, provider))

    @csrf_exempt
    @require_http_methods(["GET", "POST"])
    @answered
    def social_callback(request: HttpRequest, provider: str) -> HttpResponse:
        routes_, request_ = flow(request)
        cookie = request.COOKIES.get(STATE_COOKIE)
        if request.method == "POST":
            form = _form(request, bounded(request_.settings.max_body_bytes))
            return _posted(routes_.post_social(request_, provider, form, cookie))
        return _signed_in(routes_.finish_social(request_, provider, request.GET.dict(), cookie))

    @require_GET
    @answered
    def saml_metadata(request: HttpRequest, connection_id: str) -> HttpResponse:
        routes_, request_ = flow(request)
        xml = routes_.saml_metadata(request_, connection_id)
        return HttpResponse(xml, content_type=SAML_METADATA_TYPE)

    @csrf_exempt
    @require_POST
    @answered
    def saml_acs(request: HttpRequest, connection_id: str) -> HttpResponse:
        routes_, request_ = flow(request)
        cookie = request.COOKIES.get(STATE_COOKIE)
        form = _form(request, SAML_ACS_MAX_BODY_BYTES)
        return _posted(routes_.post_saml(request_, connection_id, form, cookie))

    return [
        path("sso/start", sso_start),
        path("sso/callback", sso_callback),
        path("social/<str:provider>/start", social_start),
        path("social/<str:provider>/callback", social_callback),
        path("sso/saml/metadata/<str:connection_id>", saml_metadata),
        # An IdP's signed (perhaps encrypted) response outgrows the app's cap.
        path("sso/saml/acs/<str:connection_id>", with_body_cap(saml_acs, SAML_ACS_MAX_BODY_BYTES)),
    ]


def _redirect(started: Started) -> HttpResponse:
    response = HttpResponseRedirect(started.url, status=303)  # a GET after the POST
    response.set_cookie(STATE_COOKIE, started.cookie, **SignInRoutes.cookie_attributes())
    return response


def _posted(answer: SignIn | Resubmit) -> HttpResponse:
    if isinstance(answer, Resubmit):
        return HttpResponse(answer.page, content_type="text/html; charset=utf-8")
    return _signed_in(answer)


def _signed_in(sign_in: SignIn) -> HttpResponse:
    response = JsonResponse(signed_in_body(sign_in))
    response["Cache-Control"] = "no-store"
    response.delete_cookie(STATE_COOKIE, path="/", samesite="Lax")
    return response
