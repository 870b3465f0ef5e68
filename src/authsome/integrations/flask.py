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
``FeatureNotEntitled``, 401, 429 with ``Retry-After``, 503, ...), and so do
Flask's own HTTP errors (404, 405, ``abort(403)``, 413) once the extension is
installed. :func:`json_body` and :func:`string_field` read a JSON body with the
same answers as FastAPI's request models (415, 400, 422).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from authsome.engine import Authsome as Engine
from authsome.errors import AuthsomeError
from authsome.integrations._http import (
    DEFAULT_MAX_BODY_BYTES,
    ErrorResponse,
    IntegrationSettings,
    Principal,
    RequestAuth,
    RequestFacts,
    TenantResolver,
    TrustedProxies,
    answer,
    body_cap,
    bounded,
    check_declared_length,
    http_error,
    json_object,
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
    "Authsome",
    "Principal",
    "TrustedProxies",
    "client_ip",
    "client_user_agent",
    "current_principal",
    "current_tenant",
    "engine",
    "json_body",
    "login_required",
    "request_auth",
    "scopes_required",
    "sign_in_blueprint",
    "string_field",
]

_EXTENSION_KEY = "authsome"
_SETTINGS_KEY = "authsome_settings"
P = ParamSpec("P")
R = TypeVar("R")


class Authsome:
    """The Flask extension: registers the engine and the error mapping on an app.

    ``Authsome(app, auth)`` sets up ``app`` at once; ``Authsome()`` then
    :meth:`init_app` suits the application-factory pattern. ``tenant`` binds every
    request to the tenant it serves (a credential of another tenant is refused
    like an unknown one), ``trusted_proxies`` says whose ``X-Forwarded-For``
    :func:`client_ip` believes (default: nobody's), and request bodies longer than
    ``max_body_bytes`` are refused with 413 before they are read (the SAML ACS of
    :func:`sign_in_blueprint` has its own cap,
    :data:`~authsome.integrations.SAML_ACS_MAX_BODY_BYTES`).
    """

    def __init__(
        self,
        app: Flask | None = None,
        auth: Engine | None = None,
        *,
        tenant: TenantResolver | None = None,
        trusted_proxies: TrustedProxies | None = None,
        max_body_bytes: int | None = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.auth = auth
        self.settings = IntegrationSettings(
            tenant=tenant,
            trusted_proxies=trusted_proxies or TrustedProxies(),
            max_body_bytes=max_body_bytes,
        )
        if app is not None:
            self.init_app(app, auth)

    def init_app(self, app: Flask, auth: Engine | None = None) -> None:
        """Register the engine (``auth``, else the one given to the constructor),
        the handlers that answer every ``AuthsomeError`` and HTTP error in JSON,
        and the body cap."""
        engine_ = auth or self.auth
        if not isinstance(engine_, Engine):
            raise TypeError(f"auth must be an Authsome engine, not {type(engine_).__name__}")
        app.extensions[_EXTENSION_KEY] = engine_
        app.extensions[_SETTINGS_KEY] = self.settings
        app.register_error_handler(AuthsomeError, _handle_authsome_error)
        app.register_error_handler(HTTPException, _handle_http_error)
        app.before_request(_cap_body)


def _json(answer_: ErrorResponse) -> Response:
    response = jsonify(answer_.body)
    response.status_code = answer_.status
    response.headers.update(answer_.headers)
    return response


def _handle_authsome_error(exc: AuthsomeError) -> Response:
    return _json(answer(exc))


def _handle_http_error(exc: HTTPException) -> Response | HTTPException:
    if exc.code is None or exc.code < 400:
        return exc  # redirects (a missing trailing slash) are routing, not errors
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    message = exc.description if exc.code < 500 else None  # a fault's text stays in the logs
    return _json(http_error(exc.code, message, headers))


def _cap_body() -> None:
    """Cap the body at the routed view's own cap (:func:`with_body_cap`), else the app's."""
    view = current_app.view_functions.get(request.endpoint or "")
    _cap_request(body_cap(view, _settings().max_body_bytes))


def _cap_request(limit: int | None) -> None:
    check_declared_length(request.headers.get("Content-Length"), limit)
    # Also bounds a streamed (chunked) body: werkzeug stops reading at the cap with 413.
    if limit is not None:
        current = request.max_content_length
        request.max_content_length = limit if current is None else min(current, limit)


def _form(limit: int) -> dict[str, str]:
    """The request's form, of at most ``limit`` bytes even in an app without a cap."""
    _cap_request(limit)
    return request.form.to_dict()


def _settings() -> IntegrationSettings:
    settings = current_app.extensions.get(_SETTINGS_KEY)
    return settings if isinstance(settings, IntegrationSettings) else IntegrationSettings()


def engine() -> Engine:
    """The engine registered on the current app."""
    auth = current_app.extensions.get(_EXTENSION_KEY)
    if not isinstance(auth, Engine):
        raise RuntimeError("initialise authsome.integrations.flask.Authsome on this app first")
    return auth


def request_auth() -> RequestAuth:
    """The current request as authsome sees it (tenant, principal, client address),
    built once per request."""
    found = g.get("authsome_request")
    if not isinstance(found, RequestAuth):
        facts = RequestFacts(host=request.host, header=request.headers.get, request=request)
        found = RequestAuth(
            engine(),
            _settings(),
            facts=facts,
            peer=_socket_peer(),
            forwarded_for=request.headers.getlist("X-Forwarded-For"),
        )
        g.authsome_request = found
    return found


def _socket_peer() -> str | None:
    # werkzeug's ProxyFix keeps the address it replaced; the integration's own
    # trusted-proxy setting decides from the socket's.
    original = request.environ.get("werkzeug.proxy_fix.orig")
    if isinstance(original, dict) and isinstance(original.get("REMOTE_ADDR"), str):
        peer: str = original["REMOTE_ADDR"]
        return peer
    return request.remote_addr


def current_principal() -> Principal | None:
    """The current request's :class:`Principal`, or ``None`` when it is anonymous.

    Read from ``Authorization: Bearer`` or ``X-API-Key`` once per request. A
    credential that is present but bad, or of another tenant than the request's,
    raises :class:`~authsome.errors.InvalidToken` (answered with 401).
    """
    return request_auth().principal()


def current_tenant() -> str | None:
    """The tenant the current request serves, from the ``tenant`` resolver
    (``None`` without one; a 404 when no tenant serves the request)."""
    return request_auth().tenant()


def client_ip() -> str | None:
    """The client's address for ``auth.sign_in(ip=...)``, under ``trusted_proxies``
    (the socket peer unless trusted proxies forwarded it)."""
    return request_auth().client_ip()


def client_user_agent() -> str | None:
    """The request's ``User-Agent`` for ``auth.sign_in(user_agent=...)`` (shown in
    the user's device list)."""
    return request_auth().user_agent()


def json_body() -> dict[str, object]:
    """The request body as a JSON object: 415 unless declared JSON, 400 when it does
    not parse, 422 when it is not an object, 413 past the cap."""
    return json_object(request.content_type, request.get_data(cache=True))


def scopes_required(*scopes: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a view so that it needs a principal, and an API key every one of
    ``scopes`` (403 otherwise); a session passes as with :func:`login_required`.

    Put it outermost (above any decorator that reads the principal): the key is
    then validated with these scopes, and one lacking a scope is refused before it
    is metered.
    """
    wanted = tuple(scopes)
    if not all(isinstance(scope, str) for scope in wanted):
        raise TypeError("scopes are strings")

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            require(request_auth().principal(wanted))
            return view(*args, **kwargs)

        return wrapper

    return decorate


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    """Decorate a view so that an anonymous request gets a 401 instead of running it."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        require(current_principal())
        return view(*args, **kwargs)

    return wrapper


# -- sign-in routes ------------------------------------------------------------------------


def sign_in_blueprint(base_url: str, name: str = "authsome_sign_in") -> Blueprint:
    """The SSO and social sign-in routes as a blueprint, to register where
    ``base_url`` points::

        app.register_blueprint(sign_in_blueprint("https://app.example.com/auth"),
                               url_prefix="/auth")

    The same routes and answers as FastAPI's :func:`~authsome.integrations.fastapi.
    sign_in_router` (SAML's metadata and ACS included); the engine is the one the
    extension registered.
    """
    blueprint = Blueprint(name, __name__)
    routes: dict[int, SignInRoutes] = {}

    def flow() -> SignInRoutes:
        auth = engine()
        found = routes.get(id(auth))
        if found is None or found.auth is not auth:
            found = routes[id(auth)] = SignInRoutes(auth, base_url)
        return found

    @blueprint.post("/sso/start")
    def sso_start() -> Response:
        form = _form(bounded(_settings().max_body_bytes))
        return _redirect(flow().start_sso(request_auth(), form))

    @blueprint.get("/sso/callback")
    def sso_callback() -> Response:
        cookie = request.cookies.get(STATE_COOKIE)
        return _signed_in(flow().finish_sso(request_auth(), request.args.to_dict(), cookie))

    @blueprint.post("/social/<provider>/start")
    def social_start(provider: str) -> Response:
        return _redirect(flow().start_social(request_auth(), provider))

    @blueprint.route("/social/<provider>/callback", methods=["GET", "POST"])
    def social_callback(provider: str) -> Response:
        cookie = request.cookies.get(STATE_COOKIE)
        if request.method == "POST":
            form = _form(bounded(_settings().max_body_bytes))
            return _posted(flow().post_social(request_auth(), provider, form, cookie))
        params = request.args.to_dict()
        return _signed_in(flow().finish_social(request_auth(), provider, params, cookie))

    @blueprint.get("/sso/saml/metadata/<connection_id>")
    def saml_metadata(connection_id: str) -> Response:
        xml = flow().saml_metadata(request_auth(), connection_id)
        return Response(xml, mimetype=SAML_METADATA_TYPE)

    @blueprint.post("/sso/saml/acs/<connection_id>")
    def saml_acs(connection_id: str) -> Response:
        cookie = request.cookies.get(STATE_COOKIE)
        form = _form(SAML_ACS_MAX_BODY_BYTES)
        return _posted(flow().post_saml(request_auth(), connection_id, form, cookie))

    # An IdP's signed (perhaps encrypted) response outgrows the app's cap.
    with_body_cap(saml_acs, SAML_ACS_MAX_BODY_BYTES)
    return blueprint


def _redirect(started: Started) -> Response:
    # 303: the browser follows a POSTed start with a GET to the provider.
    response = Response(status=303, headers={"Location": started.url})
    response.set_cookie(STATE_COOKIE, started.cookie, **SignInRoutes.cookie_attributes())
    return response


def _posted(answer: SignIn | Resubmit) -> Response:
    if isinstance(answer, Resubmit):
        return Response(answer.page, mimetype="text/html")
    return _signed_in(answer)


def _signed_in(sign_in: SignIn) -> Response:
    response = jsonify(signed_in_body(sign_in))
    response.headers["Cache-Control"] = "no-store"
    response.delete_cookie(STATE_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
    return response
