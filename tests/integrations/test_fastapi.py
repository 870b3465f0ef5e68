"""The FastAPI example app, driven through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from examples.fastapi_app import build_auth, create_app
from fastapi.testclient import TestClient

from authsome.bridge import Ledger
from authsome.testing import RecordingLedger
from tests.conftest import FAST, FakeClock
from tests.integrations import _scenarios as s


@pytest.fixture
def make_harness(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[s.MakeHarness]:
    monkeypatch.delenv("AUTHSOME_DB", raising=False)
    made: list[tuple[TestClient, Any]] = []

    def make(ledger: RecordingLedger) -> s.Harness:
        lg: Ledger = ledger
        auth = build_auth(lg, password_hashing=FAST, clock=clock)
        client = TestClient(create_app(auth))
        made.append((client, auth))

        def call(
            method: str,
            path: str,
            *,
            json: object = None,
            headers: dict[str, str] | None = None,
        ) -> s.Reply:
            r = client.request(method, path, json=json, headers=headers)
            is_json = r.headers.get("content-type") == "application/json"
            return s.Reply(r.status_code, r.json() if is_json else None, r.headers, r.text)

        return s.Harness(call, auth, ledger)

    yield make
    for client, auth in made:
        client.close()
        auth.close()


@pytest.mark.parametrize("step", s.JOURNEY)
def test_journey(make_harness: s.MakeHarness, step: s.Step) -> None:
    step.run(make_harness)
