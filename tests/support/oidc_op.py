"""A real OpenID Provider for the tests: the ``oidc-provider`` npm package under node.

:class:`OpenIDProvider` starts ``tests/support/oidc_provider/op.mjs`` on a free
127.0.0.1 port (issuer ``http://127.0.0.1:<port>``), registers clients and accounts,
rotates its signing keys, and drives its login and consent pages over HTTP the way a
browser would, returning the redirect back to the relying party.

The npm packages come from ``npm ci --prefix tests/support/oidc_provider`` (CI runs
it); without node or them, starting raises :class:`OPUnavailable`.
"""

from __future__ import annotations

import json
import re
import secrets
import selectors
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from tests.support.ports import free_tcp_port

__all__ = ["Callback", "OPUnavailable", "OpenIDClient", "OpenIDProvider"]

OP_DIR = Path(__file__).parent / "oidc_provider"
_FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)" data-prompt="([a-z]+)"')
_MAX_HOPS = 20


class OPUnavailable(RuntimeError):
    """The OpenID Provider could not be started here (no node, or no npm packages)."""


@dataclass(frozen=True)
class Callback:
    """How the provider sends the browser back to the client."""

    method: str  # "GET" (a redirect; params are its query) or "POST" (form_post)
    url: str  # the redirect URI (with the query, for GET)
    params: dict[str, str]


class _FormPostParser(HTMLParser):
    """The auto-submitting form of ``response_mode=form_post``: its action and fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and attributes.get("method", "").lower() == "post":
            self.action = attributes.get("action")
        elif tag == "input" and self.action is not None and "name" in attributes:
            self.fields[attributes["name"]] = attributes.get("value", "")


def _form_post(page: httpx.Response) -> Callback | None:
    if page.status_code not in {200, 400} or "data-prompt=" in page.text:
        return None
    parser = _FormPostParser()
    parser.feed(page.text)
    if parser.action is None:
        return None
    return Callback("POST", parser.action, parser.fields)


@dataclass(frozen=True)
class OpenIDClient:
    """A client registered at the provider (oidc-provider's client metadata)."""

    client_id: str
    client_secret: str
    redirect_uri: str
    token_endpoint_auth_method: str = "client_secret_basic"
    id_token_signed_response_alg: str = "RS256"
    metadata: dict[str, Any] = field(default_factory=dict)


def _client_metadata(client: OpenIDClient) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "client_id": client.client_id,
        "redirect_uris": [client.redirect_uri],
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "response_types": ["code"],
        "grant_types": ["authorization_code"],
    }
    if client.token_endpoint_auth_method != "private_key_jwt":
        metadata["client_secret"] = client.client_secret
    return {**metadata, **client.metadata}


class OpenIDProvider:
    """One node process running the provider; a context manager."""

    def __init__(
        self,
        *,
        clients: list[OpenIDClient] | None = None,
        accounts: dict[str, dict[str, Any]] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.port = free_tcp_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self._clients = list(clients or [])
        self._accounts = dict(accounts or {})
        self._startup_timeout = startup_timeout
        self._admin_token = secrets.token_urlsafe(24)
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._admin = httpx.Client(
            base_url=self.issuer,
            headers={"x-admin-token": self._admin_token},
            timeout=10.0,
        )

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> OpenIDProvider:
        node = shutil.which("node")
        if node is None:
            raise OPUnavailable("node is not installed")
        if not (OP_DIR / "node_modules" / "oidc-provider").is_dir():
            raise OPUnavailable(
                "npm packages missing: run npm ci --prefix tests/support/oidc_provider"
            )
        self._workdir = Path(tempfile.mkdtemp(prefix="authsome-op-"))
        config = self._workdir / "config.json"
        config.write_text(self._config_json(), encoding="utf-8")
        stderr = (self._workdir / "stderr.log").open("wb")
        self._process = subprocess.Popen(
            [node, str(OP_DIR / "op.mjs"), str(self.port), str(config)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=OP_DIR,
        )
        stderr.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None
        self._admin.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> OpenIDProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _config_json(self) -> str:
        return json.dumps(
            {
                "adminToken": self._admin_token,
                "clients": [_client_metadata(client) for client in self._clients],
                "accounts": self._accounts,
            }
        )

    def _wait_ready(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + self._startup_timeout
        expected = f"READY {self.port}".encode()
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            while (remaining := deadline - time.monotonic()) > 0:
                if not selector.select(timeout=remaining):
                    continue
                line = self._process.stdout.readline()
                if line.strip() == expected:
                    return
                if not line:  # stdout closed: node exited
                    break
        raise OPUnavailable(f"the OpenID Provider did not start: {self.stderr_text()[-2000:]}")

    def stderr_text(self) -> str:
        """What node wrote to stderr so far (warnings, server errors)."""
        if self._workdir is None:
            return ""
        log = self._workdir / "stderr.log"
        return log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""

    # -- configuration at run time -----------------------------------------------

    def _post(self, path: str, body: object) -> dict[str, Any]:
        response = self._admin.post(f"/__test/{path}", json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def add_client(
        self,
        client_id: str | None = None,
        *,
        redirect_uri: str = "https://app.example/sso/callback",
        client_secret: str | None = None,
        token_endpoint_auth_method: str = "client_secret_basic",  # noqa: S107 (a method name)
        id_token_signed_response_alg: str = "RS256",  # noqa: S107 (an algorithm name)
        **metadata: Any,
    ) -> OpenIDClient:
        """Register (or replace) a client; extra keyword arguments are client metadata
        (``jwks={"keys": [...]}`` for ``private_key_jwt``)."""
        client = OpenIDClient(
            client_id=client_id or f"client-{secrets.token_hex(6)}",
            client_secret=client_secret or secrets.token_urlsafe(32),
            redirect_uri=redirect_uri,
            token_endpoint_auth_method=token_endpoint_auth_method,
            id_token_signed_response_alg=id_token_signed_response_alg,
            metadata=metadata,
        )
        self._post("clients", _client_metadata(client))
        return client

    def add_account(self, account_id: str, **claims: Any) -> str:
        """Add (or replace) an account: ``sub`` is ``account_id``; ``amr`` and ``acr``
        describe the login, everything else (``email``, ``email_verified``, ``name``…)
        is a claim."""
        self._post("accounts", {account_id: claims})
        return account_id

    def set_id_token_ttl(self, client_id: str, seconds: int) -> None:
        """ID tokens issued to this client from now on live ``seconds``."""
        self._post("ttl", {"client_id": client_id, "id_token": seconds})

    def tamper_next_id_token(
        self,
        client_id: str,
        *,
        claims: dict[str, Any] | None = None,
        alg: Literal["none", "HS256-public-key"] | None = None,
    ) -> None:
        """Spoil the ID token in this client's next token response: ``claims`` are
        changed (``None`` removes one) and the token re-signed with the provider's own
        current key, or, with ``alg``, signed with ``none`` or with HS256 keyed by the
        provider's public key (PEM). Everything else about the response is genuine."""
        self._post("tamper", {"client_id": client_id, "claims": claims or {}, "alg": alg})

    def rotate_keys(self, *, drop_old: bool = False) -> list[str]:
        """New RS256 and ES256 keys sign from now on; returns the published kids,
        newest first (the old ones stay published unless ``drop_old``)."""
        kids: list[str] = self._post("rotate-keys", {"drop_old": drop_old})["kids"]
        return kids

    def signing_kids(self) -> list[str]:
        """The kids the provider publishes, newest first."""
        response = self._admin.get("/__test/keys")
        response.raise_for_status()
        kids: list[str] = response.json()["kids"]
        return kids

    # -- the browser's part --------------------------------------------------------

    def login(self, authorize_url: str, account_id: str, *, consent: bool = True) -> str:
        """Follow ``authorize_url`` as a fresh browser, sign in as ``account_id`` and
        consent (or refuse, with ``consent=False``); return the URL the provider sends
        the browser back to (the relying party's redirect URI with ``code``, ``state``
        and ``iss``, or with ``error``)."""
        callback = self.login_callback(authorize_url, account_id, consent=consent)
        if callback.method != "GET":
            raise AssertionError("the provider answered with a form post: use login_callback")
        return callback.url

    def login_callback(
        self, authorize_url: str, account_id: str, *, consent: bool = True
    ) -> Callback:
        """Like :meth:`login`, for every response mode: a redirect back (``query``) is a
        GET of ``url``; ``response_mode=form_post`` is a POST of ``params`` to ``url``."""
        with httpx.Client(timeout=10.0) as browser:
            response = browser.get(authorize_url)
            for _ in range(_MAX_HOPS):
                if response.is_redirect:
                    target = urljoin(str(response.url), response.headers["location"])
                    if not target.startswith(self.issuer + "/"):
                        query = parse_qs(urlsplit(target).query)
                        return Callback("GET", target, {k: v[0] for k, v in query.items()})
                    response = browser.get(target)
                    continue
                posted = _form_post(response)
                if posted is not None:
                    return posted
                response = self._submit(browser, response, account_id, consent=consent)
            raise AssertionError("the provider never sent the browser back to the client")

    def _submit(
        self, browser: httpx.Client, page: httpx.Response, account_id: str, *, consent: bool
    ) -> httpx.Response:
        match = _FORM_ACTION.search(page.text) if page.status_code == 200 else None
        if match is None:
            raise AssertionError(
                f"unexpected page from the provider: {page.status_code} {page.text[:500]}"
            )
        action, prompt = match.groups()
        if not consent:
            action = action.rsplit("/", 1)[0] + "/abort"
        form = {"account": account_id} if prompt == "login" else {}
        return browser.post(urljoin(str(page.url), action), data=form)
