"""The sign-in start routes are POSTs from the application's own pages (login
CSRF): a GET is not allowed, a start another site triggers (``Sec-Fetch-Site``,
``Origin``) is refused, Django's CSRF middleware applies to them, and starts are
limited per client address."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from authsome import Authsome
from authsome.throttle import ThrottlePolicy
from tests.conftest import AuthFactory
from tests.integrations import test_sign_in_routes as routes
from tests.integrations.test_sign_in_routes import FRAMEWORKS, Send

START = "/auth/social/github/start"


@pytest.fixture
def auth(make_auth: AuthFactory) -> Authsome:
    made = make_auth(secret_key=secrets.token_bytes(32), throttle=ThrottlePolicy(starts_per_ip=2))
    made.social.configure(
        "github", tenant="default", client_id="app", client_secret="a-client-secret"
    )
    return made


@pytest.fixture(params=sorted(FRAMEWORKS))
def send(request: pytest.FixtureRequest, auth: Authsome) -> Iterator[Send]:
    yield from FRAMEWORKS[request.param](auth)


@pytest.mark.parametrize("path", [START, "/auth/sso/start?connection_id=sso_x"])
def test_a_get_does_not_start_a_sign_in(send: Send, path: str) -> None:
    reply = send("GET", path, None, None)
    assert reply.status == 405
    assert not any(c.startswith(routes.STATE_COOKIE) for c in reply.set_cookie)


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example"},
    ],
)
def test_a_start_from_another_site_is_refused(
    send: Send, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in headers.items():
        monkeypatch.setitem(routes.EXTRA_HEADERS, name, value)
    reply = send("POST", START, {}, None)
    assert reply.status == 422  # ValidationError
    assert not any(c.startswith(routes.STATE_COOKIE) for c in reply.set_cookie)


def test_a_start_from_the_apps_own_page_redirects(
    send: Send, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(routes.EXTRA_HEADERS, "Sec-Fetch-Site", "same-origin")
    monkeypatch.setitem(routes.EXTRA_HEADERS, "Origin", "https://testserver")
    reply = send("POST", START, {}, None)
    assert reply.status == 303
    location = reply.headers.get("location") or reply.headers["Location"]
    assert location.startswith("https://github.com/login/oauth/authorize?")


def test_starts_are_limited_per_client_address(send: Send) -> None:
    assert [send("POST", START, {}, None).status for _ in range(3)] == [303, 303, 429]


def test_django_csrf_middleware_guards_the_start(auth: Authsome) -> None:
    from django.middleware.csrf import get_token
    from django.test import Client, RequestFactory, override_settings
    from django.urls import clear_url_caches, include, path

    import tests.integrations.test_django  # noqa: F401 - configures Django once
    from authsome.integrations.django import sign_in_urls

    middleware = [
        "django.middleware.csrf.CsrfViewMiddleware",
        "authsome.integrations.django.AuthsomeMiddleware",
    ]
    routes.urlpatterns[:] = [path("auth/", include(sign_in_urls(routes.BASE)))]
    clear_url_caches()
    with override_settings(
        AUTHSOME_ENGINE=auth, ROOT_URLCONF=routes.__name__, MIDDLEWARE=middleware
    ):
        client = Client(enforce_csrf_checks=True)
        assert client.post(START, {}, secure=True).status_code == 403
        token = get_token(RequestFactory().get("/"))
        client.cookies["csrftoken"] = token
        page = {"Referer": "https://testserver/sign-in"}  # Django checks it over https
        reply = client.post(START, {"csrfmiddlewaretoken": token}, secure=True, headers=page)
        assert reply.status_code == 303
