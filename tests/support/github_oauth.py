"""A local stand-in for GitHub's OAuth 2 web flow and its user API, on 127.0.0.1.

It follows GitHub's documented contract ("Authorizing OAuth apps", REST "Users" and
"Emails"), so a client that works here works against github.com with the base URLs
swapped:

- ``GET /login/oauth/authorize`` (client_id, redirect_uri, state, scope, login,
  code_challenge, code_challenge_method) approves at once as the user named by
  ``login`` (or the server's default user) and redirects to the redirect URI with
  ``code`` and ``state``. A redirect URI other than the registered one redirects to the
  registered one with ``error=redirect_uri_mismatch``, as GitHub does.
- ``POST /login/oauth/access_token`` (form: client_id, client_secret, code,
  redirect_uri, code_verifier; the client may instead authenticate with HTTP Basic)
  answers JSON with ``Accept: application/json`` and a form-encoded body otherwise.
  Errors come back with status 200 and an ``error`` field, as on GitHub:
  ``incorrect_client_credentials``, ``redirect_uri_mismatch``, ``bad_verification_code``
  (unknown, expired, reused code, or a wrong PKCE verifier).
- ``GET /user`` and ``GET /user/emails`` with ``Authorization: Bearer <token>`` (or
  ``token <token>``); a bad token is 401 ``Bad credentials``; ``/user/emails`` without
  the ``user:email`` (or ``user``) scope is 404 ``Not Found``.

Codes live ten minutes and are good once; tokens start with ``gho_``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.support.ports import free_tcp_port

__all__ = ["GitHubEmail", "GitHubOAuthServer", "GitHubUser", "OAuthApp", "github_server"]

CODE_LIFETIME_SECONDS = 600
_DOCS = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"
_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class GitHubEmail:
    email: str
    primary: bool = False
    verified: bool = False
    visibility: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "primary": self.primary,
            "verified": self.verified,
            "visibility": self.visibility,
        }


@dataclass(frozen=True)
class GitHubUser:
    login: str
    id: int
    name: str | None = None
    emails: tuple[GitHubEmail, ...] = ()
    public_email: str | None = None  # the ``email`` field of ``/user``

    def as_json(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "id": self.id,
            "node_id": base64.b64encode(f"04:User{self.id}".encode()).decode(),
            "type": "User",
            "name": self.name,
            "email": self.public_email,
            "avatar_url": f"https://avatars.githubusercontent.com/u/{self.id}?v=4",
        }


@dataclass(frozen=True)
class OAuthApp:
    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass
class _Grant:
    user: GitHubUser
    app: OAuthApp
    redirect_uri: str | None
    scope: str
    code_challenge: str | None
    expires_at: float


@dataclass
class _State:
    apps: dict[str, OAuthApp] = field(default_factory=dict)
    users: dict[str, GitHubUser] = field(default_factory=dict)
    default_login: str | None = None
    codes: dict[str, _Grant] = field(default_factory=dict)
    tokens: dict[str, tuple[GitHubUser, str]] = field(default_factory=dict)  # user, scope
    token_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class GitHubOAuthServer:
    """The server's handle: base URL, registration of apps and users, counters."""

    def __init__(self, state: _State, port: int) -> None:
        self._state = state
        self.base_url = f"http://127.0.0.1:{port}"
        self.authorize_url = f"{self.base_url}/login/oauth/authorize"
        self.token_url = f"{self.base_url}/login/oauth/access_token"
        self.api_base_url = self.base_url  # where /user and /user/emails live

    def add_app(
        self, *, redirect_uri: str = "https://app.example/social/github/callback"
    ) -> OAuthApp:
        app = OAuthApp(
            client_id=f"Iv1.{secrets.token_hex(8)}",
            client_secret=secrets.token_hex(20),
            redirect_uri=redirect_uri,
        )
        with self._state.lock:
            self._state.apps[app.client_id] = app
        return app

    def add_user(
        self,
        login: str,
        *,
        emails: tuple[GitHubEmail, ...] = (),
        name: str | None = None,
        public_email: str | None = None,
        user_id: int | None = None,
        default: bool = True,
    ) -> GitHubUser:
        """Add a user; with ``default`` the authorize endpoint approves as them when the
        request names no ``login``."""
        user = GitHubUser(
            login=login,
            id=user_id if user_id is not None else secrets.randbelow(10**8) + 1,
            name=name,
            emails=emails,
            public_email=public_email,
        )
        with self._state.lock:
            self._state.users[login] = user
            if default:
                self._state.default_login = login
        return user

    @property
    def token_requests(self) -> int:
        """How many token requests the server answered (successful or not)."""
        with self._state.lock:
            return self._state.token_requests


@contextmanager
def github_server() -> Iterator[GitHubOAuthServer]:
    """Run the server in a thread for the duration of the ``with`` block."""
    state = _State()
    port = free_tcp_port()
    handler = type("_BoundHandler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    # A short poll interval: shutdown() waits up to one interval for the loop to notice.
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="github-oauth", daemon=True
    )
    thread.start()
    try:
        yield GitHubOAuthServer(state, port)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _single(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read results, not access logs."""

    # -- plumbing -----------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: object) -> None:
        self._send(status, json.dumps(value).encode(), "application/json; charset=utf-8")

    def _redirect(self, url: str) -> None:
        self._send(HTTPStatus.FOUND, b"", "text/html; charset=utf-8", Location=url)

    def _form(self) -> dict[str, list[str]]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("body too large")
        return parse_qs(self.rfile.read(length).decode("utf-8"), keep_blank_values=True)

    # -- routes ---------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/login/oauth/authorize":
            self._authorize(parse_qs(url.query))
        elif url.path in {"/user", "/user/emails"}:
            self._api(url.path)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path == "/login/oauth/access_token":
            self._access_token(self._form())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})

    def _authorize(self, params: dict[str, list[str]]) -> None:
        state = self.state
        with state.lock:
            app = state.apps.get(_single(params, "client_id") or "")
            login = _single(params, "login") or state.default_login
            user = state.users.get(login or "")
        if app is None or user is None:
            self._send(HTTPStatus.NOT_FOUND, b"unknown application or user", "text/plain")
            return
        redirect_uri = _single(params, "redirect_uri")
        back = {"state": _single(params, "state") or ""}
        if redirect_uri is not None and redirect_uri != app.redirect_uri:
            back["error"] = "redirect_uri_mismatch"
            self._redirect(f"{app.redirect_uri}?{urlencode(back)}")
            return
        challenge = _single(params, "code_challenge")
        if challenge is not None and _single(params, "code_challenge_method") != "S256":
            self._send(HTTPStatus.BAD_REQUEST, b"code_challenge_method must be S256", "text/plain")
            return
        code = secrets.token_hex(10)
        grant = _Grant(
            user=user,
            app=app,
            redirect_uri=redirect_uri,
            scope=_single(params, "scope") or "",
            code_challenge=challenge,
            expires_at=time.monotonic() + CODE_LIFETIME_SECONDS,
        )
        with state.lock:
            state.codes[code] = grant
        self._redirect(f"{redirect_uri or app.redirect_uri}?{urlencode({'code': code, **back})}")

    def _client_credentials(self, form: dict[str, list[str]]) -> tuple[str, str]:
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return "", ""
            client_id, _, secret = decoded.partition(":")
            return client_id, secret
        return _single(form, "client_id") or "", _single(form, "client_secret") or ""

    def _access_token(self, form: dict[str, list[str]]) -> None:
        state = self.state
        client_id, secret = self._client_credentials(form)
        code = _single(form, "code") or ""
        with state.lock:
            state.token_requests += 1
            app = state.apps.get(client_id)
            # A presented code is spent whatever happens next, as a real server does.
            grant = state.codes.pop(code, None)
        if app is None or not hmac.compare_digest(secret.encode(), app.client_secret.encode()):
            self._token_error(
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
            )
            return
        if not _grant_matches(grant, app, form):
            self._token_error("bad_verification_code", "The code passed is incorrect or expired.")
            return
        assert grant is not None
        redirect_uri = _single(form, "redirect_uri")
        if redirect_uri is not None and redirect_uri != (grant.redirect_uri or app.redirect_uri):
            self._token_error(
                "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
            )
            return
        token = f"gho_{secrets.token_urlsafe(27)}"
        with state.lock:
            state.tokens[token] = (grant.user, grant.scope)
        self._token_answer({"access_token": token, "scope": grant.scope, "token_type": "bearer"})

    def _token_error(self, error: str, description: str) -> None:
        self._token_answer({"error": error, "error_description": description, "error_uri": _DOCS})

    def _token_answer(self, fields: dict[str, str]) -> None:
        if "application/json" in self.headers.get("Accept", ""):
            self._json(HTTPStatus.OK, fields)
        else:
            body = urlencode(fields).encode()
            self._send(HTTPStatus.OK, body, "application/x-www-form-urlencoded; charset=utf-8")

    def _api(self, path: str) -> None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        with self.state.lock:
            found = self.state.tokens.get(token) if scheme.lower() in {"bearer", "token"} else None
        if found is None:
            self._json(
                HTTPStatus.UNAUTHORIZED,
                {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"},
            )
            return
        user, scope = found
        if path == "/user":
            self._json(HTTPStatus.OK, user.as_json())
            return
        scopes = set(scope.replace(",", " ").split())
        if not scopes & {"user", "user:email"}:
            self._json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
            return
        self._json(HTTPStatus.OK, [email.as_json() for email in user.emails])


def _grant_matches(grant: _Grant | None, app: OAuthApp, form: dict[str, list[str]]) -> bool:
    """The code exists, is fresh, was issued to this app, and its PKCE verifier fits."""
    if grant is None or grant.app != app or time.monotonic() > grant.expires_at:
        return False
    if grant.code_challenge is None:
        return True
    verifier = _single(form, "code_verifier") or ""
    return hmac.compare_digest(_s256(verifier).encode(), grant.code_challenge.encode())
