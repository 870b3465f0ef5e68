"""The Flask integration, driven through Flask's test client."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from examples.flask_app import build_auth, create_app
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix

from authsome import Authsome
from authsome.integrations import flask as authsome_flask
from authsome.testing import RecordingLedger
from tests.conftest import FAST, AuthFactory, FakeClock
from tests.integrations import _scenarios as s


def _caller(client: FlaskClient) -> s.Call:
    def call(
        method: str,
        path: str,
        *,
        json: object = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> s.Reply:
        headers = dict(headers or {})
        base_url = f"http://{headers.pop('Host')}" if "Host" in headers else None
        r = client.open(
            path, method=method, json=json, data=body, headers=headers, base_url=base_url
        )
        text = r.get_data(as_text=True)
        return s.Reply(r.status_code, r.get_json(silent=True), r.headers, text)

    return call


@pytest.fixture
def make_harness(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[s.MakeHarness]:
    monkeypatch.delenv("AUTHSOME_DB", raising=False)
    made: list[Authsome] = []

    def make(ledger: RecordingLedger) -> s.Harness:
        auth = build_auth(ledger, password_hashing=FAST, clock=clock)
        made.append(auth)
        return s.Harness(_caller(create_app(auth).test_client()), auth, ledger)

    yield make
    for auth in made:
        auth.close()


def bare_app(auth: Authsome, **options: Any) -> Flask:
    app = Flask(__name__)
    authsome_flask.Authsome(app, auth, **options)

    @app.get("/whoami")
    @authsome_flask.login_required  # one layer asks for the principal, the view again
    def whoami() -> dict[str, str | None]:
        principal = authsome_flask.current_principal()
        assert principal is not None
        return {
            "tenant": principal.tenant,
            "user_id": principal.user_id,
            "request_tenant": authsome_flask.current_tenant(),
        }

    @app.get("/writer")
    @authsome_flask.scopes_required("write")
    def writer() -> dict[str, str | None]:
        return whoami()

    @app.get("/ip")
    def ip() -> dict[str, str | None]:
        return {"ip": authsome_flask.client_ip()}

    @app.post("/signin")
    def signin() -> dict[str, bool]:
        body = authsome_flask.json_body()
        auth.sign_in(
            authsome_flask.string_field(body, "email"),
            authsome_flask.string_field(body, "password"),
            tenant=authsome_flask.current_tenant() or "default",
            ip=authsome_flask.client_ip(),
            user_agent=authsome_flask.client_user_agent(),
        )
        return {"signed_in": True}

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError(s.CRASH)

    return app


@pytest.fixture
def make_bare() -> s.MakeBare:
    def make(auth: Authsome, **options: Any) -> s.Call:
        return _caller(bare_app(auth, **options).test_client())

    return make


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


# -- Flask specifics -----------------------------------------------------------------------


def test_a_streamed_body_past_the_cap_is_cut_off_with_413(make_harness: s.MakeHarness) -> None:
    h = make_harness(RecordingLedger())
    client = create_app(h.auth).test_client()
    stream = io.BytesIO(b'{"email": "' + b"a" * 200_000 + b'"}')

    # No Content-Length, a stream the server says is terminated: werkzeug's chunked case.
    r = client.post(
        "/signup",
        input_stream=stream,
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )

    assert r.status_code == 413, r.get_data(as_text=True)
    assert r.get_json()["error"] == "payload_too_large"
    assert stream.tell() <= 64 * 1024 + 65536  # stopped near the cap, not read whole


def test_a_redirect_of_the_router_is_left_alone(make_auth: AuthFactory) -> None:
    app = bare_app(make_auth())

    @app.get("/folder/")
    def folder() -> dict[str, bool]:
        return {"ok": True}

    assert app.test_client().get("/folder").status_code == 308


def test_proxy_fix_does_not_make_the_integration_trust_forwarded_for(
    make_auth: AuthFactory,
) -> None:
    app = bare_app(make_auth())
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]

    reply = app.test_client().get("/ip", headers={"X-Forwarded-For": "203.0.113.9"})

    assert reply.get_json() == {"ip": "127.0.0.1"}  # the socket peer ProxyFix replaced


def test_init_app_pattern_and_principal_is_resolved_once_per_request(
    clock: FakeClock,
) -> None:
    ledger = RecordingLedger()
    auth = build_auth(ledger, password_hashing=FAST, clock=clock)
    ext = authsome_flask.Authsome(auth=auth)
    app = Flask(__name__)
    ext.init_app(app)
    seen: list[object] = []

    @app.get("/twice")
    def twice() -> dict[str, bool]:
        seen.extend([authsome_flask.current_principal(), authsome_flask.current_principal()])
        return {"anonymous": seen[0] is None}

    user = auth.users.register("bob@example.com", s.PASSWORD)
    key = auth.api_keys.create(user.id, "k")
    ledger.clear()
    client = app.test_client()

    assert client.get("/twice").get_json() == {"anonymous": True}
    assert client.get("/twice", headers={"X-API-Key": key.secret}).status_code == 200
    assert seen[2] is seen[3] is not None
    assert len(ledger.usage()) == 1  # one validation, so one metered use, per request
    auth.close()


def test_init_app_refuses_a_non_engine() -> None:
    with pytest.raises(TypeError, match="Authsome engine"):
        authsome_flask.Authsome(Flask(__name__), object())  # type: ignore[arg-type]
