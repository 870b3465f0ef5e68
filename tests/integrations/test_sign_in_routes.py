"""The sign-in routes of FastAPI, Flask and Django, driven end to end through a real
OpenID Provider: start → the provider's login → callback → a session; and the
signed state cookie, refused when missing, changed, expired or of another flow."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from authsome import Authsome, OIDCConnection
from authsome.integrations._signin_routes import RESUBMITTED, STATE_COOKIE
from tests.conftest import AuthFactory, FakeClock
from tests.support.oidc_op import OpenIDProvider
from tests.support.sso_scene import prove

BASE = "https://testserver/auth"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    set_cookie: list[str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


Send = Callable[[str, str, dict[str, str] | None, str | None], Reply]
"""(method, path with query, form or None, cookie value or None) -> reply"""


# What the browser says it is: the sign-in keeps it with the session (device list).
USER_AGENT = "RouteTest/1.0"


# Headers every request of a test carries besides these (set with monkeypatch.setitem).
EXTRA_HEADERS: dict[str, str] = {}


def _headers(cookie: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, **EXTRA_HEADERS}
    if cookie:
        headers["Cookie"] = f"{STATE_COOKIE}={cookie}"
    return headers


def _fastapi(auth: Authsome) -> Iterator[Send]:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from authsome.integrations.fastapi import install, sign_in_router

    app = FastAPI()
    install(app, auth)
    app.include_router(sign_in_router(BASE), prefix="/auth")
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:

        def send(
            method: str, target: str, form: dict[str, str] | None, cookie: str | None
        ) -> Reply:
            client.cookies.clear()
            headers = _headers(cookie)
            r = client.request(method, target, data=form, headers=headers)
            return Reply(
                r.status_code, dict(r.headers), r.headers.get_list("set-cookie"), r.content
            )

        yield send


def _flask(auth: Authsome) -> Iterator[Send]:
    from flask import Flask

    from authsome.integrations.flask import Authsome as Extension
    from authsome.integrations.flask import sign_in_blueprint

    app = Flask(__name__)
    Extension(app, auth)
    app.register_blueprint(sign_in_blueprint(BASE), url_prefix="/auth")
    client = app.test_client(use_cookies=False)

    def send(method: str, target: str, form: dict[str, str] | None, cookie: str | None) -> Reply:
        headers = _headers(cookie)
        r = client.open(
            target, method=method, data=form, headers=headers, base_url="https://testserver"
        )
        return Reply(r.status_code, dict(r.headers), r.headers.getlist("Set-Cookie"), r.data)

    yield send


urlpatterns: list[Any] = []


def _django(auth: Authsome) -> Iterator[Send]:
    from django.test import Client, override_settings
    from django.urls import clear_url_caches, include, path

    import tests.integrations.test_django  # noqa: F401 - configures Django once
    from authsome.integrations.django import sign_in_urls

    urlpatterns[:] = [path("auth/", include(sign_in_urls(BASE)))]
    clear_url_caches()
    with override_settings(AUTHSOME_ENGINE=auth, ROOT_URLCONF=__name__):
        client = Client(enforce_csrf_checks=True)

        def send(
            method: str, target: str, form: dict[str, str] | None, cookie: str | None
        ) -> Reply:
            client.cookies.clear()
            headers = _headers(cookie)
            if method == "POST":
                r = client.post(target, form or {}, headers=headers, secure=True)
            else:
                r = client.get(target, headers=headers, secure=True)
            cookies = [m.OutputString() for m in r.cookies.values()]
            return Reply(r.status_code, dict(r.headers), cookies, r.content)

        yield send
    clear_url_caches()


FRAMEWORKS = {"fastapi": _fastapi, "flask": _flask, "django": _django}


@pytest.fixture
def auth(make_auth: AuthFactory, clock: FakeClock) -> Iterator[Authsome]:
    clock.now = datetime.now(UTC)  # the provider signs ID tokens with the real time
    with httpx.Client(timeout=10.0, follow_redirects=False) as http:
        yield make_auth(
            secret_key=secrets.token_bytes(32), sso_allow_insecure_loopback=True, http_client=http
        )


@pytest.fixture(params=sorted(FRAMEWORKS))
def send(request: pytest.FixtureRequest, auth: Authsome) -> Iterator[Send]:
    yield from FRAMEWORKS[request.param](auth)


@pytest.fixture
def account(auth: Authsome, oidc_op: OpenIDProvider) -> str:
    """GitLab at the real provider for the tenant ``default``, and an account there."""
    client = oidc_op.add_client(redirect_uri=f"{BASE}/social/gitlab/callback")
    auth.social.configure(
        "gitlab",
        tenant="default",
        client_id=client.client_id,
        client_secret=client.client_secret,
        base_url=oidc_op.issuer,
    )
    return oidc_op.add_account(
        f"acct-{secrets.token_hex(4)}", email="linus@kernel.example", email_verified=True
    )


def _started(send: Send, path: str, form: dict[str, str] | None = None) -> tuple[str, str, str]:
    """Start a sign-in (a POST from the app's page): the provider URL, the state
    cookie and its Set-Cookie line."""
    reply = send("POST", path, form or {}, None)
    assert reply.status == 303, reply.body
    line = next(c for c in reply.set_cookie if c.startswith(f"{STATE_COOKIE}="))
    jar: SimpleCookie = SimpleCookie()
    jar.load(line)
    return reply.headers.get("location") or reply.headers["Location"], jar[STATE_COOKIE].value, line


def _callback_target(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "https://testserver"
    return f"{parts.path}?{parts.query}"


def test_social_start_to_callback_gives_a_session(
    send: Send, auth: Authsome, oidc_op: OpenIDProvider, account: str
) -> None:
    location, cookie, line = _started(send, "/auth/social/gitlab/start")
    attributes = {a.strip().split("=")[0].lower() for a in line.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= attributes
    assert "samesite=lax" in line.lower().replace(" ", "")
    assert location.startswith(oidc_op.issuer + "/")

    target = _callback_target(oidc_op.login(location, account))
    reply = send("GET", target, None, cookie)

    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["mfa_required"] is False
    session = auth.sessions.validate(body["access_token"], tenant="default")
    assert session.user_id == body["user_id"]
    [device] = auth.sessions.list(body["user_id"])
    assert (device.id, device.user_agent) == (session.id, USER_AGENT)
    assert reply.headers.get("cache-control", reply.headers.get("Cache-Control")) == "no-store"
    # The state cookie is deleted, and the callback cannot be replayed.
    assert any(c.startswith(f"{STATE_COOKIE}=") for c in reply.set_cookie)
    assert send("GET", target, None, cookie).status == 401


def test_a_changed_missing_or_foreign_cookie_is_refused_and_the_right_one_still_works(
    send: Send, oidc_op: OpenIDProvider, account: str
) -> None:
    location, cookie, _ = _started(send, "/auth/social/gitlab/start")
    target = _callback_target(oidc_op.login(location, account))

    flipped = cookie[:-1] + ("A" if cookie[-1] != "A" else "B")
    body, _, mac = cookie.rpartition(".")
    version, expires, handle = body.split(".", 2)
    for bad in (
        None,
        flipped,
        f"{version}.{int(expires) + 3600}.{handle}.{mac}",  # a later expiry, same MAC
        "x" * 600,
    ):
        reply = send("GET", target, None, bad)
        assert reply.status == 401
        assert reply.json()["error"] == "invalid_token"
    # Another flow's route does not take this flow's cookie.
    assert send("GET", target.replace("/gitlab/", "/google/"), None, cookie).status == 401

    assert send("GET", target, None, cookie).status == 200


def test_an_expired_cookie_is_refused(
    send: Send, oidc_op: OpenIDProvider, account: str, clock: FakeClock
) -> None:
    location, cookie, _ = _started(send, "/auth/social/gitlab/start")
    target = _callback_target(oidc_op.login(location, account))
    clock.advance(minutes=10, seconds=1)
    assert send("GET", target, None, cookie).status == 401


def test_a_posted_callback_without_the_cookie_is_posted_again_from_our_origin(
    send: Send, oidc_op: OpenIDProvider, account: str
) -> None:
    location, cookie, _ = _started(send, "/auth/social/gitlab/start")
    target = _callback_target(oidc_op.login(location, account))
    path, _, query = target.partition("?")
    form = dict(pair.split("=", 1) for pair in query.split("&"))
    from urllib.parse import unquote_plus

    form = {k: unquote_plus(v) for k, v in form.items()}

    page = send("POST", path, form, None)
    assert page.status == 200
    text = page.body.decode()
    assert f'name="{RESUBMITTED}"' in text
    assert f'value="{form["state"]}"' in text
    assert 'method="post"' in text
    assert f'action="{BASE}/social/gitlab/callback"' in text  # configured, not the Host

    # The same-site POST carries the cookie and completes the sign-in.
    reply = send("POST", path, {**form, RESUBMITTED: "1"}, cookie)
    assert reply.status == 200, reply.body
    assert reply.json()["access_token"]


def test_sso_start_to_callback_gives_a_session(
    send: Send, auth: Authsome, oidc_op: OpenIDProvider
) -> None:
    client = oidc_op.add_client(redirect_uri=f"{BASE}/sso/callback")
    owner = auth.users.register("owner@acme.example", "correct horse battery staple")
    org = auth.orgs.create(owner.id, "Acme")
    connection = auth.sso.configure(
        org.id,
        OIDCConnection(
            issuer=oidc_op.issuer,
            client_id=client.client_id,
            client_secret=client.client_secret,
            domains=("acme.example",),
        ),
    )
    prove(auth.store, "acme.example", tenant="default")
    account = oidc_op.add_account(
        f"acct-{secrets.token_hex(4)}", email="new@acme.example", email_verified=True
    )
    location, cookie, _ = _started(send, "/auth/sso/start", {"connection_id": connection.id})
    reply = send("GET", _callback_target(oidc_op.login(location, account)), None, cookie)

    assert reply.status == 200, reply.body
    session = auth.sessions.validate(reply.json()["access_token"], tenant="default")
    assert [o.id for o in auth.orgs.orgs_of(session.user_id)] == [org.id]


def test_an_unknown_provider_is_a_404(send: Send) -> None:
    reply = send("POST", "/auth/social/gitlab/start", {}, None)
    assert reply.status == 404
