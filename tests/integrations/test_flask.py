"""The Flask example app, driven through Flask's test client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from examples.flask_app import build_auth, create_app
from flask import Flask

from authsome import Authsome
from authsome.integrations import flask as authsome_flask
from authsome.testing import RecordingLedger
from tests.conftest import FAST, FakeClock
from tests.integrations import _scenarios as s


@pytest.fixture
def make_harness(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[s.MakeHarness]:
    monkeypatch.delenv("AUTHSOME_DB", raising=False)
    made: list[Authsome] = []

    def make(ledger: RecordingLedger) -> s.Harness:
        auth = build_auth(ledger, password_hashing=FAST, clock=clock)
        made.append(auth)
        client = create_app(auth).test_client()

        def call(
            method: str,
            path: str,
            *,
            json: object = None,
            headers: dict[str, str] | None = None,
        ) -> s.Reply:
            r = client.open(path, method=method, json=json, headers=headers)
            text = r.get_data(as_text=True)
            return s.Reply(r.status_code, r.get_json(silent=True), r.headers, text)

        return s.Harness(call, auth, ledger)

    yield make
    for auth in made:
        auth.close()


@pytest.mark.parametrize("step", s.JOURNEY)
def test_journey(make_harness: s.MakeHarness, step: s.Step) -> None:
    step.run(make_harness)


# -- the extension itself ----------------------------------------------------------------


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
