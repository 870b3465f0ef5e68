"""The Django integration, driven through ``django.test.Client``."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import django
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.test import Client, override_settings
from django.urls import path
from django.views.decorators.http import require_POST
from examples.django_app import settings as example_settings
from examples.django_app.engine import build_auth

from authsome import Authsome
from authsome.integrations import TrustedProxies
from authsome.integrations import django as authsome_django
from authsome.integrations.django import load_engine, load_settings
from authsome.testing import RecordingLedger
from tests.conftest import FAST, AuthFactory, FakeClock
from tests.integrations import _scenarios as s

if not settings.configured:  # once per process: the example's own settings
    values = {name: getattr(example_settings, name) for name in dir(example_settings)}
    values = {name: value for name, value in values.items() if name.isupper()}
    values["ALLOWED_HOSTS"] = [*values["ALLOWED_HOSTS"], "testserver"]
    settings.configure(**values)
    django.setup()


def _caller(client: Client) -> s.Call:
    def call(
        method: str,
        path: str,
        *,
        json: object = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> s.Reply:
        headers = dict(headers or {})
        content_type = headers.pop("Content-Type", "application/json")
        data: bytes | str = body if body is not None else b""
        if json is not None:
            data = jsonlib.dumps(json)
        r = client.generic(method, path, data, content_type=content_type, headers=headers)
        text = r.content.decode()
        is_json = r.headers.get("Content-Type", "").startswith("application/json")
        return s.Reply(r.status_code, jsonlib.loads(text) if is_json else None, r.headers, text)

    return call


@pytest.fixture
def make_harness(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[s.MakeHarness]:
    monkeypatch.delenv("AUTHSOME_DB", raising=False)
    with ExitStack() as stack:

        def make(ledger: RecordingLedger) -> s.Harness:
            auth = build_auth(ledger, password_hashing=FAST, clock=clock)
            stack.callback(auth.close)
            # The middleware loads the engine when the client builds its handler.
            stack.enter_context(override_settings(AUTHSOME_ENGINE=auth))
            return s.Harness(_caller(Client()), auth, ledger)

        yield make


def _whoami(request: HttpRequest) -> JsonResponse:
    principal = authsome_django.principal_of(request)  # the middleware asked first
    assert principal is not None
    return JsonResponse(
        {
            "tenant": principal.tenant,
            "user_id": principal.user_id,
            "request_tenant": authsome_django.tenant_of(request),
        }
    )


def _ip(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ip": authsome_django.client_ip(request)})


@require_POST
def _signin(request: HttpRequest) -> JsonResponse:
    body = authsome_django.json_body(request)
    authsome_django.engine_of(request).sign_in(
        authsome_django.string_field(body, "email"),
        authsome_django.string_field(body, "password"),
        tenant=authsome_django.tenant_of(request) or "default",
        ip=authsome_django.client_ip(request),
        user_agent=authsome_django.client_user_agent(request),
    )
    return JsonResponse({"signed_in": True})


def _crash(request: HttpRequest) -> JsonResponse:
    raise RuntimeError(s.CRASH)


# This module is the minimal app's URLconf.
urlpatterns = [
    path("whoami", authsome_django.login_required(_whoami)),
    path("writer", authsome_django.scopes_required("write")(_whoami)),
    path("ip", _ip),
    path("signin", _signin),
    path("crash", _crash),
]


def _option_settings(
    tenant: object = None, trusted_proxies: TrustedProxies | None = None
) -> dict[str, object]:
    proxies = trusted_proxies or TrustedProxies()
    return {
        "AUTHSOME_TENANT": tenant,
        "AUTHSOME_TRUSTED_PROXY_COUNT": proxies.count,
        "AUTHSOME_TRUSTED_PROXIES": list(proxies.networks),
    }


@pytest.fixture
def make_bare() -> Iterator[s.MakeBare]:
    with ExitStack() as stack:

        def make(auth: Authsome, **options: Any) -> s.Call:
            overrides = override_settings(
                AUTHSOME_ENGINE=auth,
                ROOT_URLCONF=__name__,
                ALLOWED_HOSTS=["*"],
                **_option_settings(**options),
            )
            stack.enter_context(overrides)
            return _caller(Client(raise_request_exception=False))

        yield make


@pytest.mark.parametrize("step", s.JOURNEY)
def test_journey(make_harness: s.MakeHarness, step: s.Step) -> None:
    step.run(make_harness)


@pytest.mark.parametrize("refusal", s.ERROR_CONTRACT)
def test_error_contract(make_harness: s.MakeHarness, refusal: s.Refusal) -> None:
    refusal.check(make_harness(RecordingLedger()))


@pytest.mark.parametrize("step", s.ERROR_CONTRACT_STEPS)
def test_error_contract_steps(make_harness: s.MakeHarness, step: s.Step) -> None:
    step.run(make_harness)


@pytest.mark.parametrize("step", s.BARE)
def test_integration_options(
    make_bare: s.MakeBare, make_auth: AuthFactory, step: s.BareStep
) -> None:
    step.run(make_bare, make_auth)


# -- Django specifics ----------------------------------------------------------------------


def test_django_error_pages_stay_html_when_json_errors_are_off(
    make_harness: s.MakeHarness,
) -> None:
    with override_settings(AUTHSOME_JSON_ERRORS=False):
        h = make_harness(RecordingLedger())
        reply = h.call("GET", "/nowhere")
    assert reply.status == 404
    assert reply.body is None  # Django's own page, for apps that serve HTML too


# -- the settings --------------------------------------------------------------------------


def test_engine_setting_takes_a_dotted_factory_path_an_engine_or_a_callable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AUTHSOME_DB", raising=False)
    with override_settings(AUTHSOME_ENGINE="examples.django_app.engine.build_auth"):
        load_engine().close()
    engine = build_auth()
    with override_settings(AUTHSOME_ENGINE=engine):
        assert load_engine() is engine
    with override_settings(AUTHSOME_ENGINE=lambda: engine):
        assert load_engine() is engine
    engine.close()


@pytest.mark.parametrize("value", [None, 42, "examples.django_app.settings.DEBUG"])
def test_a_bad_engine_setting_is_improperly_configured(value: object) -> None:
    with override_settings(AUTHSOME_ENGINE=value), pytest.raises(ImproperlyConfigured):
        load_engine()


def test_option_settings_are_read_and_a_dotted_resolver_is_imported() -> None:
    dotted = "authsome.integrations.tenant_by_header"  # any importable callable will do
    with override_settings(
        AUTHSOME_TENANT=dotted, AUTHSOME_TRUSTED_PROXY_COUNT=2, AUTHSOME_MAX_BODY_BYTES=1024
    ):
        options = load_settings()
    assert options.tenant is not None and options.tenant.__name__ == "tenant_by_header"
    assert options.trusted_proxies == TrustedProxies(count=2)
    assert options.max_body_bytes == 1024


@pytest.mark.parametrize(
    "overrides",
    [
        {"AUTHSOME_TRUSTED_PROXY_COUNT": -1},
        {"AUTHSOME_TRUSTED_PROXY_COUNT": "1"},
        {"AUTHSOME_TRUSTED_PROXIES": ["not a network"]},
        {"AUTHSOME_TRUSTED_PROXIES": ["10.0.0.0/8"], "AUTHSOME_TRUSTED_PROXY_COUNT": 1},
        {"AUTHSOME_MAX_BODY_BYTES": 0},
        {"AUTHSOME_TENANT": 42},
    ],
)
def test_bad_option_settings_are_improperly_configured(overrides: dict[str, object]) -> None:
    with override_settings(**overrides), pytest.raises(ImproperlyConfigured):
        load_settings()
