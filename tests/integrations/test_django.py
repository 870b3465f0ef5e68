"""The Django example project, driven through ``django.test.Client``."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterator
from contextlib import ExitStack

import django
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from examples.django_app import settings as example_settings
from examples.django_app.engine import build_auth

from authsome.integrations.django import load_engine
from authsome.testing import RecordingLedger
from tests.conftest import FAST, FakeClock
from tests.integrations import _scenarios as s

if not settings.configured:  # once per process: the example's own settings
    values = {name: getattr(example_settings, name) for name in dir(example_settings)}
    values = {name: value for name, value in values.items() if name.isupper()}
    values["ALLOWED_HOSTS"] = [*values["ALLOWED_HOSTS"], "testserver"]
    settings.configure(**values)
    django.setup()


@pytest.fixture
def make_harness(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[s.MakeHarness]:
    monkeypatch.delenv("AUTHSOME_DB", raising=False)
    with ExitStack() as stack:

        def make(ledger: RecordingLedger) -> s.Harness:
            auth = build_auth(ledger, password_hashing=FAST, clock=clock)
            stack.callback(auth.close)
            # The middleware loads the engine when the client builds its handler.
            stack.enter_context(override_settings(AUTHSOME_ENGINE=auth))
            client = Client()

            def call(
                method: str,
                path: str,
                *,
                json: object = None,
                headers: dict[str, str] | None = None,
            ) -> s.Reply:
                data = "" if json is None else jsonlib.dumps(json)
                r = client.generic(
                    method, path, data, content_type="application/json", headers=headers or {}
                )
                text = r.content.decode()
                is_json = r.headers.get("Content-Type") == "application/json"
                return s.Reply(
                    r.status_code, jsonlib.loads(text) if is_json else None, r.headers, text
                )

            return s.Harness(call, auth, ledger)

        yield make


@pytest.mark.parametrize("step", s.JOURNEY)
def test_journey(make_harness: s.MakeHarness, step: s.Step) -> None:
    step.run(make_harness)


def test_malformed_json_is_400(make_harness: s.MakeHarness) -> None:
    h = make_harness(RecordingLedger())
    reply = h.call("POST", "/signup", json=["not", "an", "object"])
    assert reply.status == 400
    assert reply.body["error"] == "bad_request"


# -- the AUTHSOME_ENGINE setting -----------------------------------------------------------


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
