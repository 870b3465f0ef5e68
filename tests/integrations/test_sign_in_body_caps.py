"""Request-body caps on the sign-in routes of FastAPI, Flask and Django.

The SAML ACS takes bodies up to its own cap (``SAML_ACS_MAX_BODY_BYTES``, what the
SAML limits accept, percent-encoded at worst), whatever the app's cap; every other
route, the ``form_post`` social callback among them, keeps the app's cap; and a
sign-in route reads a bounded body even in an app without a cap. A body over a cap
is a 413 JSON answer whether its length is declared or it streams in chunked
(Django, which cannot count a chunked body, answers 411 instead of reading it).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from fastapi import Request  # named by an annotation FastAPI resolves at import
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authsome import Authsome
from authsome._saml import MAX_RELAY_STATE, MAX_RESPONSE_CHARS
from authsome.integrations._http import DEFAULT_MAX_BODY_BYTES
from authsome.integrations._signin_routes import MAX_PARAM, SAML_ACS_MAX_BODY_BYTES
from tests.conftest import AuthFactory
from tests.support.saml_scene import SP

BASE = "https://testserver/auth"
FORM = "application/x-www-form-urlencoded"
ACS = "/auth/sso/saml/acs/sso_anything"
SOCIAL_FORM_POST = "/auth/social/apple/callback"
ECHO = "/echo"  # an application route of its own, under the app's cap


@dataclass
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Post = Callable[[str, bytes, bool], Reply]
"""(path, urlencoded body, sent chunked?) -> reply"""
App = Callable[[Authsome, int | None], Iterator[Post]]


def _fastapi(auth: Authsome, cap: int | None) -> Iterator[Post]:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from authsome.integrations.fastapi import install, sign_in_router

    app = FastAPI()
    install(app, auth, max_body_bytes=cap)
    app.include_router(sign_in_router(BASE), prefix="/auth")

    @app.post(ECHO)
    async def echo(request: Request) -> dict[str, int]:
        return {"length": len(await request.body())}

    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:

        def post(path: str, body: bytes, chunked: bool) -> Reply:
            # A generator has no length: httpx sends it chunked, without Content-Length.
            content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
            sent = content if chunked else body
            r = client.post(path, content=sent, headers={"Content-Type": FORM})
            return Reply(r.status_code, r.content)

        yield post


def _flask(auth: Authsome, cap: int | None) -> Iterator[Post]:
    from flask import Flask, request

    from authsome.integrations.flask import Authsome as Extension
    from authsome.integrations.flask import sign_in_blueprint

    app = Flask(__name__)
    Extension(app, auth, max_body_bytes=cap)
    app.register_blueprint(sign_in_blueprint(BASE), url_prefix="/auth")

    @app.post(ECHO)
    def echo() -> dict[str, int]:
        return {"length": len(request.get_data())}

    client = app.test_client(use_cookies=False)

    def post(path: str, body: bytes, chunked: bool) -> Reply:
        if not chunked:
            r = client.post(path, data=body, content_type=FORM, base_url="https://testserver")
            return Reply(r.status_code, r.data)
        stream = io.BytesIO(body)
        # No Content-Length, a stream the server says is terminated: werkzeug's chunked case.
        r = client.post(
            path,
            input_stream=stream,
            content_type=FORM,
            base_url="https://testserver",
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert stream.tell() <= (cap or SAML_ACS_MAX_BODY_BYTES) + 65536 * 2  # not read whole
        return Reply(r.status_code, r.data)

    yield post


urlpatterns: list[Any] = []


def _django(auth: Authsome, cap: int | None) -> Iterator[Post]:
    from django.http import HttpRequest, JsonResponse
    from django.test import Client, override_settings
    from django.urls import clear_url_caches, include, path
    from django.views.decorators.csrf import csrf_exempt

    import tests.integrations.test_django  # noqa: F401 - configures Django once
    from authsome.integrations.django import sign_in_urls

    @csrf_exempt
    def echo(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"length": len(request.body)})

    urlpatterns[:] = [path("auth/", include(sign_in_urls(BASE))), path(ECHO[1:], echo)]
    clear_url_caches()
    with override_settings(
        AUTHSOME_ENGINE=auth, AUTHSOME_MAX_BODY_BYTES=cap, ROOT_URLCONF=__name__
    ):
        client = Client()

        def post(path: str, body: bytes, chunked: bool) -> Reply:
            # Chunked as a WSGI server passes it on: no CONTENT_LENGTH, the header kept.
            extra = {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked"} if chunked else {}
            r = client.post(path, body, content_type=FORM, secure=True, **extra)  # type: ignore[arg-type]
            return Reply(r.status_code, r.content)

        yield post
    clear_url_caches()


FRAMEWORKS: dict[str, App] = {"fastapi": _fastapi, "flask": _flask, "django": _django}


@pytest.fixture
def auth(make_auth: AuthFactory) -> Authsome:
    return make_auth(saml=replace(SP, base_url=BASE))


@pytest.fixture(params=sorted(FRAMEWORKS))
def framework(request: pytest.FixtureRequest) -> App:
    return FRAMEWORKS[request.param]


@pytest.fixture
def app_for(framework: App, auth: Authsome) -> Iterator[Callable[[int | None], Post]]:
    """An app of the framework with the given app cap (one per test)."""
    opened: list[Iterator[Post]] = []

    def make(cap: int | None) -> Post:
        serving = framework(auth, cap)
        opened.append(serving)
        return next(serving)

    yield make
    for serving in opened:
        next(serving, None)  # leave the app's context


def _saml_form(size: int) -> bytes:
    """An ACS form of exactly ``size`` bytes whose fields the SAML limits accept, as
    long as the encoding can make them: every character percent-encoded."""
    head = b"SAMLResponse=" + b"%2B" * MAX_RESPONSE_CHARS + b"&RelayState=" + b"%41" * 80
    assert MAX_RELAY_STATE == 80
    padding = size - len(head) - len(b"&pad=")
    assert 0 <= padding <= MAX_RESPONSE_CHARS
    return head + b"&pad=" + b"a" * padding


def _social_form(size: int) -> bytes:
    """A callback form of exactly ``size`` bytes, each field within ``MAX_PARAM``."""
    fields: list[bytes] = []
    left = size
    while left > 0:
        name = b"f%d=" % len(fields)
        separator = 1 if fields else 0
        value = min(MAX_PARAM, left - len(name) - separator)
        assert value >= 0
        fields.append(name + b"a" * value)
        left -= len(name) + separator + value
    return b"&".join(fields)


def _assert_too_large(reply: Reply) -> None:
    assert reply.status == 413, reply.body[:300]
    assert reply.json()["error"] == "payload_too_large"


def _assert_refused_unread(reply: Reply, framework: str) -> None:
    """A chunked body over the cap: 413, or 411 from Django, which cannot count it."""
    if framework == "django":
        assert reply.status == 411, reply.body[:300]
        assert reply.json()["error"] == "length_required"
    else:
        _assert_too_large(reply)


def _name(framework: App) -> str:
    return next(name for name, made in FRAMEWORKS.items() if made is framework)


# -- the SAML ACS: its own cap ---------------------------------------------------------------


def test_the_acs_takes_a_body_as_long_as_its_cap_over_the_apps(
    app_for: Callable[[int | None], Post],
) -> None:
    post = app_for(DEFAULT_MAX_BODY_BYTES)
    body = _saml_form(SAML_ACS_MAX_BODY_BYTES)

    reply = post(ACS, body, False)

    # No state cookie: the page that posts the whole form again from our origin.
    assert reply.status == 200, reply.body[:300]
    assert ("+" * MAX_RESPONSE_CHARS).encode() in reply.body


def test_the_acs_refuses_a_body_one_byte_over_its_cap(
    app_for: Callable[[int | None], Post],
) -> None:
    post = app_for(DEFAULT_MAX_BODY_BYTES)

    _assert_too_large(post(ACS, _saml_form(SAML_ACS_MAX_BODY_BYTES) + b"a", False))


def test_the_acs_refuses_a_chunked_body_over_its_cap(
    app_for: Callable[[int | None], Post], framework: App
) -> None:
    post = app_for(DEFAULT_MAX_BODY_BYTES)
    body = _saml_form(SAML_ACS_MAX_BODY_BYTES) + b"a" * 100_000

    _assert_refused_unread(post(ACS, body, True), _name(framework))


@pytest.mark.parametrize("app_cap", [None, 1024, 4 * SAML_ACS_MAX_BODY_BYTES])
def test_the_acs_cap_is_its_own_whatever_the_apps(
    app_for: Callable[[int | None], Post], app_cap: int | None
) -> None:
    post = app_for(app_cap)

    assert post(ACS, _saml_form(SAML_ACS_MAX_BODY_BYTES), False).status == 200
    _assert_too_large(post(ACS, _saml_form(SAML_ACS_MAX_BODY_BYTES) + b"a", False))


# -- every other route: the app's cap --------------------------------------------------------


def test_the_form_post_callback_takes_a_body_as_long_as_the_apps_cap(
    app_for: Callable[[int | None], Post],
) -> None:
    post = app_for(DEFAULT_MAX_BODY_BYTES)

    reply = post(SOCIAL_FORM_POST, _social_form(DEFAULT_MAX_BODY_BYTES), False)

    assert reply.status == 200, reply.body[:300]  # the page that posts it again


def test_the_form_post_callback_refuses_a_body_one_byte_over_the_apps_cap(
    app_for: Callable[[int | None], Post],
) -> None:
    post = app_for(DEFAULT_MAX_BODY_BYTES)

    _assert_too_large(post(SOCIAL_FORM_POST, _social_form(DEFAULT_MAX_BODY_BYTES + 1), False))


def test_the_form_post_callback_refuses_a_chunked_body_over_the_apps_cap(
    app_for: Callable[[int | None], Post], framework: App
) -> None:
    post = app_for(DEFAULT_MAX_BODY_BYTES)
    body = _social_form(DEFAULT_MAX_BODY_BYTES + 100_000)

    _assert_refused_unread(post(SOCIAL_FORM_POST, body, True), _name(framework))


def test_the_form_post_callback_keeps_a_smaller_app_cap(
    app_for: Callable[[int | None], Post],
) -> None:
    post = app_for(1024)

    assert post(SOCIAL_FORM_POST, _social_form(1024), False).status == 200
    _assert_too_large(post(SOCIAL_FORM_POST, _social_form(1025), False))


def test_the_apps_own_routes_keep_the_apps_cap_beside_the_acs(
    app_for: Callable[[int | None], Post],
) -> None:
    post = app_for(DEFAULT_MAX_BODY_BYTES)

    assert post(ECHO, b"a" * DEFAULT_MAX_BODY_BYTES, False).json() == {
        "length": DEFAULT_MAX_BODY_BYTES
    }
    _assert_too_large(post(ECHO, b"a" * (DEFAULT_MAX_BODY_BYTES + 1), False))


def test_a_sign_in_route_reads_a_bounded_body_in_an_app_without_a_cap(
    app_for: Callable[[int | None], Post], framework: App
) -> None:
    post = app_for(None)
    over = _social_form(DEFAULT_MAX_BODY_BYTES + 1)

    assert post(ECHO, b"a" * 200_000, False).json() == {"length": 200_000}  # the app's choice
    assert post(SOCIAL_FORM_POST, _social_form(DEFAULT_MAX_BODY_BYTES), False).status == 200
    _assert_too_large(post(SOCIAL_FORM_POST, over, False))
    _assert_refused_unread(post(SOCIAL_FORM_POST, over + b"a" * 100_000, True), _name(framework))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # the engine is reused
)
@given(size=st.integers(min_value=3, max_value=2048), chunked=st.booleans())
def test_a_form_post_callback_is_read_exactly_when_it_fits_the_apps_cap(
    auth: Authsome, framework: App, size: int, chunked: bool
) -> None:
    serving = framework(auth, 1024)
    try:
        reply = next(serving)(SOCIAL_FORM_POST, _social_form(size), chunked)
    finally:
        next(serving, None)  # leave the app's context

    if chunked and _name(framework) == "django":
        assert reply.status == 411, reply.body[:300]  # Django cannot count it
    elif size <= 1024:
        assert reply.status == 200, reply.body[:300]
    else:
        _assert_too_large(reply)
