"""The sign-in routes every integration mounts, free of any web framework.

``POST /sso/start`` and ``POST /social/{provider}/start`` send the browser to the
identity provider; ``/sso/callback`` and ``/social/{provider}/callback`` finish the
sign-in and answer the session's tokens in JSON (or an MFA ticket).

The start routes take POST only, from the application's own pages: a start reachable
by a GET (a link, an image, a top-level navigation another site triggers) would let
another site start sign-ins in a victim's browser (login CSRF). A start whose
``Sec-Fetch-Site`` is not ``same-origin`` (or ``none``), or whose ``Origin`` is not
``base_url``'s, is refused; Django's CSRF middleware applies to them as well.

The sign-in's state handle travels in a cookie set by the start route:
``__Host-authsome-state``, ``HttpOnly; Secure; SameSite=Lax; Path=/``, ten minutes.
Its value is the handle with an expiry and an HMAC-SHA256 over both, the tenant and
the flow (``sso`` or ``social:<provider>``), under a key derived from the engine's
``secret_key`` (or the store's root key without one): a cookie that was changed, is
too long, has expired, or was made for another tenant or flow is refused like a
missing one, with a constant-time compare.
The handle itself is a one-time token: single use, short-lived, tenant bound.

``/sso/start`` serves SAML connections too: the IdP then POSTs its response to the
connection's ACS, ``/sso/saml/acs/{connection_id}``, with the handle as
``RelayState``; ``/sso/saml/metadata/{connection_id}`` serves the connection's SP
metadata (its URL is the connection's entity id). A response counts as the answer
to this browser's sign-in only when the state cookie holds the very handle the
response's ``RelayState`` carries; otherwise it can only be an unsolicited
(IdP-initiated) response, which the connection must allow.

Apple and every SAML IdP return with a cross-site ``POST`` (``response_mode=form_post``,
the HTTP-POST binding), which does not carry ``SameSite=Lax`` cookies. Trusting the
POST's ``state`` alone would let anyone complete a sign-in they started in someone
else's browser (login CSRF), so a POST without the cookie is answered with a small
page that posts the same fields to the same URL from our own origin, where the
browser does send the cookie; the sign-in then completes as on any other callback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from authsome import _saml
from authsome.engine import Authsome
from authsome.errors import InvalidCredentials, InvalidToken, NotFound, ValidationError
from authsome.integrations._http import RequestAuth
from authsome.models import SignIn

__all__ = [
    "MAX_PARAMS",
    "RESUBMITTED",
    "SAML_ACS_MAX_BODY_BYTES",
    "SAML_METADATA_TYPE",
    "STATE_COOKIE",
    "STATE_COOKIE_TTL",
    "SignInRoutes",
    "Started",
    "signed_in_body",
]

STATE_COOKIE = "__Host-authsome-state"
STATE_COOKIE_TTL = timedelta(minutes=10)
SAML_METADATA_TYPE = "application/samlmetadata+xml"
RESUBMITTED = "authsome_resubmitted"
"""The form field of the page that re-posts a cross-site ``form_post`` callback."""

SAML_ACS_MAX_BODY_BYTES = 3 * (_saml.MAX_RESPONSE_CHARS + _saml.MAX_RELAY_STATE) + 1024
"""The body cap of the SAML ACS route, in place of the app's: the urlencoded form of
the longest ``SAMLResponse`` and ``RelayState`` the SAML limits accept, with every
character percent-encoded (three bytes, the worst case), and room for the names."""

MAX_COOKIE = 512  # far more than a signed handle needs; longer values are refused unread
MAX_PARAMS = 32
MAX_PARAM = 16 * 1024  # an ID token posted by Apple fits
_KEY_PURPOSE = "authsome.integrations.state-cookie"
_CONNECTION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # what new_id makes, with room
_VERSION = "v1"


class _Complete(Protocol):
    """``auth.sso.complete`` and ``auth.social.complete``."""

    def __call__(
        self,
        params: Mapping[str, str],
        *,
        handle: str,
        tenant: str,
        ip: str | None,
        user_agent: str | None,
    ) -> SignIn: ...


@dataclass(frozen=True, slots=True)
class Started:
    """A start route's answer: redirect to ``url``, setting the state cookie to
    ``cookie`` with :meth:`SignInRoutes.cookie_attributes`."""

    url: str
    cookie: str


@dataclass(frozen=True, slots=True)
class Resubmit:
    """A POSTed callback's answer when it came cross-site without the state cookie:
    serve ``page`` (HTML), which posts the form again from the application's origin."""

    page: str


class SignInRoutes:
    """What the sign-in routes do, for one engine and one public base URL.

    ``base_url`` is where the routes are mounted as the browser sees them (``https://
    app.example.com/auth``); the callback URLs registered at each provider are
    ``{base_url}/sso/callback`` and ``{base_url}/social/{provider}/callback``. It is
    configured, never read from the request, so a forged ``Host`` cannot redirect
    a sign-in elsewhere.
    """

    def __init__(self, auth: Authsome, base_url: str) -> None:
        if not str(base_url).startswith(("https://", "http://")):
            raise ValueError("base_url must be the absolute URL the routes are mounted at")
        self.auth = auth
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}".lower()
        saml_base = auth.sso._saml_base_url()
        if saml_base is not None and saml_base != self.base_url:
            # The IdP posts to the ACS the engine's metadata names: routes mounted
            # elsewhere would never see a response.
            raise ValueError(
                "base_url must be the one of Authsome(saml=SAMLServiceProvider(base_url=...))"
            )
        self._key = auth._purpose_keys.key(_KEY_PURPOSE)

    # -- redirect URIs -----------------------------------------------------------------
    def sso_callback_url(self) -> str:
        """The redirect URI to register for SSO connections."""
        return f"{self.base_url}/sso/callback"

    def social_callback_url(self, provider: str) -> str:
        """The redirect URI to register at ``provider``."""
        return f"{self.base_url}/social/{provider}/callback"

    def saml_acs_url(self, connection_id: str) -> str:
        """The assertion consumer service of a SAML connection (as its metadata says,
        when ``Authsome(saml=...)`` has this ``base_url``)."""
        return f"{self.base_url}/sso/saml/acs/{_connection_id(connection_id)}"

    # -- SAML ----------------------------------------------------------------------------
    def _require_saml(self) -> None:
        """An engine without ``Authsome(saml=...)`` serves no SAML connection: a request
        to a SAML route is a 404, not a server fault anyone could trigger."""
        if self.auth.sso._saml_base_url() is None:
            raise NotFound("no such SAML connection")

    def saml_metadata(self, request: RequestAuth, connection_id: str) -> str:
        """The SP metadata XML of a SAML connection of the request's tenant."""
        self._require_saml()
        return self.auth.sso.saml_metadata(_connection_id(connection_id), tenant=_tenant(request))

    def finish_saml(
        self,
        request: RequestAuth,
        connection_id: str,
        form: Mapping[str, str],
        cookie: str | None,
    ) -> SignIn:
        """Complete a SAML sign-in from the form the IdP posted to the connection's ACS.

        The response answers this browser's sign-in when the state cookie holds the
        handle its ``RelayState`` carries; any other response is passed on as
        unsolicited, which only a connection allowing IdP-initiated sign-in accepts."""
        self._require_saml()
        tenant = _tenant(request)
        fields = _params(form, limit=_saml.MAX_RESPONSE_CHARS)
        handle = self._handle_of(cookie, tenant, "sso")
        if handle is not None and not hmac.compare_digest(
            handle.encode("ascii"), fields.get("RelayState", "").encode("utf-8")
        ):
            handle = None  # the cookie is of another sign-in than this response's
        return self.auth.sso.complete(
            fields,
            handle=handle,
            connection_id=_connection_id(connection_id),
            tenant=tenant,
            ip=request.client_ip(),
            user_agent=request.user_agent(),
        )

    def post_saml(
        self,
        request: RequestAuth,
        connection_id: str,
        form: Mapping[str, str],
        cookie: str | None,
    ) -> SignIn | Resubmit:
        """The ACS route: the form posted again from our origin when it came without
        the state cookie (see :meth:`needs_resubmit`), else :meth:`finish_saml`."""
        if self.needs_resubmit(form, cookie):
            return Resubmit(self.saml_resubmit_page(connection_id, form))
        return self.finish_saml(request, connection_id, form, cookie)

    def saml_resubmit_page(self, connection_id: str, form: Mapping[str, str]) -> str:
        """The page that posts the IdP's form again to the connection's ACS from our
        own origin (see :meth:`resubmit_page`)."""
        self._require_saml()
        fields = _params(form, limit=_saml.MAX_RESPONSE_CHARS)
        return _resubmit_page(self.saml_acs_url(connection_id), fields)

    # -- start ---------------------------------------------------------------------------
    def start_sso(self, request: RequestAuth, query: Mapping[str, str]) -> Started:
        """Begin an SSO sign-in for ``connection_id`` or ``email`` from the POSTed form."""
        self._check_same_origin(request)
        tenant = _tenant(request)
        connection_id = _optional(query, "connection_id")
        email = _optional(query, "email")
        if (connection_id is None) == (email is None):
            raise ValidationError("give either connection_id or email")
        redirect = self.auth.sso.begin(
            connection_id,
            email=email,
            redirect_uri=self.sso_callback_url(),
            tenant=tenant,
            ip=request.client_ip(),
        )
        return Started(redirect.url, self._seal(redirect.handle, tenant, "sso"))

    def start_social(self, request: RequestAuth, provider: str) -> Started:
        """Begin a sign-in at the social ``provider``."""
        self._check_same_origin(request)
        tenant = _tenant(request)
        redirect = self.auth.social.begin(
            provider,
            redirect_uri=self.social_callback_url(provider),
            tenant=tenant,
            ip=request.client_ip(),
        )
        return Started(redirect.url, self._seal(redirect.handle, tenant, f"social:{provider}"))

    def _check_same_origin(self, request: RequestAuth) -> None:
        """A start comes from the application's own pages. Browsers say where a
        request comes from in ``Sec-Fetch-Site``, and older ones in ``Origin``; a
        start another site triggered (login CSRF) is refused."""
        site = request.header("Sec-Fetch-Site")
        origin = request.header("Origin")
        if (site is not None and site.lower() not in {"same-origin", "none"}) or (
            origin is not None and origin.lower() != self._origin
        ):
            raise ValidationError("a sign-in starts from the application's own pages")

    # -- callback ------------------------------------------------------------------------
    def finish_sso(
        self, request: RequestAuth, params: Mapping[str, str], cookie: str | None
    ) -> SignIn:
        """Complete an SSO sign-in from the provider's callback parameters."""
        return self._finish(request, params, cookie, "sso", self.auth.sso.complete)

    def finish_social(
        self,
        request: RequestAuth,
        provider: str,
        params: Mapping[str, str],
        cookie: str | None,
    ) -> SignIn:
        """Complete a social sign-in from the provider's callback parameters."""
        flow = f"social:{provider}"
        return self._finish(request, params, cookie, flow, self.auth.social.complete)

    def post_social(
        self,
        request: RequestAuth,
        provider: str,
        form: Mapping[str, str],
        cookie: str | None,
    ) -> SignIn | Resubmit:
        """A social callback the provider POSTed (``form_post``): the form posted again
        from our origin when it came without the state cookie (see
        :meth:`needs_resubmit`), else :meth:`finish_social`."""
        if self.needs_resubmit(form, cookie):
            return Resubmit(self.resubmit_page(provider, form))
        return self.finish_social(request, provider, form, cookie)

    def _finish(
        self,
        request: RequestAuth,
        params: Mapping[str, str],
        cookie: str | None,
        flow: str,
        complete: _Complete,
    ) -> SignIn:
        """Complete a sign-in of ``flow`` with the handle in its cookie, for the
        request's tenant and client."""
        tenant = _tenant(request)
        handle = self._open(cookie, tenant, flow)
        return complete(
            _params(params),
            handle=handle,
            tenant=tenant,
            ip=request.client_ip(),
            user_agent=request.user_agent(),
        )

    def needs_resubmit(self, form: Mapping[str, str], cookie: str | None) -> bool:
        """Whether a ``form_post`` callback came without the state cookie (a cross-site
        POST) and has not been re-posted from our origin yet."""
        return cookie is None and RESUBMITTED not in form

    def resubmit_page(self, provider: str, form: Mapping[str, str]) -> str:
        """The page that posts ``form`` again to the provider's callback from our own
        origin, so the browser sends the ``SameSite=Lax`` state cookie this time. The
        action is the configured callback URL, never one built from the request."""
        return _resubmit_page(self.social_callback_url(provider), _params(form))

    # -- the cookie ------------------------------------------------------------------------
    @staticmethod
    def cookie_attributes() -> dict[str, Any]:
        """The state cookie's attributes (framework-neutral names)."""
        return {
            "max_age": int(STATE_COOKIE_TTL.total_seconds()),
            "path": "/",
            "secure": True,
            "httponly": True,
            "samesite": "Lax",
        }

    def _seal(self, handle: str, tenant: str, flow: str) -> str:
        expires = int((self.auth._clock() + STATE_COOKIE_TTL).timestamp())
        body = f"{_VERSION}.{expires}.{handle}"
        return f"{body}.{self._mac(body, tenant, flow)}"

    def _open(self, cookie: str | None, tenant: str, flow: str) -> str:
        """The handle in a cookie this engine made for ``tenant`` and ``flow``, still
        fresh; :class:`InvalidToken` for anything else."""
        if cookie is None or not 0 < len(cookie) <= MAX_COOKIE or not cookie.isascii():
            raise InvalidToken("the sign-in state is missing or invalid; start again")
        body, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac.encode("ascii"), self._mac(body, tenant, flow).encode()):
            raise InvalidToken("the sign-in state is missing or invalid; start again")
        version, expires, handle = [*body.split(".", 2), "", ""][:3]
        if version != _VERSION or not expires.isdigit() or not handle:
            raise InvalidToken("the sign-in state is missing or invalid; start again")
        if self.auth._clock() >= datetime.fromtimestamp(int(expires), self.auth._clock().tzinfo):
            raise InvalidToken("the sign-in state is missing or invalid; start again")
        return handle

    def _handle_of(self, cookie: str | None, tenant: str, flow: str) -> str | None:
        """The handle in the cookie, or ``None`` when there is none that opens."""
        try:
            return self._open(cookie, tenant, flow)
        except InvalidToken:
            return None

    def _mac(self, body: str, tenant: str, flow: str) -> str:
        message = f"{body}|{tenant}|{flow}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def signed_in_body(sign_in: SignIn) -> dict[str, object]:
    """The JSON answer of a completed callback: the session's tokens, or the MFA
    ticket to exchange with a second factor."""
    if sign_in.tokens is None:
        return {"user_id": sign_in.user.id, "mfa_required": True, "ticket": sign_in.ticket}
    session = sign_in.tokens.session
    return {
        "user_id": sign_in.user.id,
        "mfa_required": False,
        "access_token": sign_in.tokens.access_token,
        "refresh_token": sign_in.tokens.refresh_token,
        "expires_at": session.expires_at.isoformat(),
    }


def _tenant(request: RequestAuth) -> str:
    tenant = request.tenant()
    return "default" if tenant is None else tenant


def _optional(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    return value if value else None


def _resubmit_page(action: str, fields: Mapping[str, str]) -> str:
    """A page that posts ``fields`` to ``action`` (a configured URL) at once."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
        if k != RESUBMITTED
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Signing in</title></head>"
        '<body onload="document.forms[0].submit()">'
        f'<form method="post" action="{html.escape(action)}">{inputs}'
        f'<input type="hidden" name="{RESUBMITTED}" value="1">'
        "<noscript><button type=submit>Continue</button></noscript></form></body></html>"
    )


def _connection_id(connection_id: str) -> str:
    """A connection id from a URL path: refused unread when it cannot be one."""
    if _CONNECTION_ID.fullmatch(connection_id) is None:
        raise NotFound("no such SSO connection")
    return connection_id


def _params(params: Mapping[str, str], *, limit: int = MAX_PARAM) -> dict[str, str]:
    """The callback's parameters, bounded before anything reads them."""
    if len(params) > MAX_PARAMS:
        raise InvalidCredentials()
    out: dict[str, str] = {}
    for name, value in params.items():
        if len(name) > 64 or len(value) > limit:
            raise InvalidCredentials()
        out[name] = value
    return out
