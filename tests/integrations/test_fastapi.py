"""The FastAPI example app, driven through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from examples.fastapi_app import build_auth, create_app
from fastapi.testclient import TestClient

from authsome import Feature
from authsome.bridge import Ledger
from authsome.testing import DenyingLedger, FailingLedger, RecordingLedger
from tests.conftest import FAST, FakeClock
from tests.integrations import _scenarios as s

MakeHarness = Callable[[RecordingLedger], s.Harness]


@pytest.fixture
def make_harness(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeHarness]:
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


def test_signup_signin_and_protected_route(make_harness: MakeHarness) -> None:
    s.check_signup_signin_and_protected_route(make_harness(RecordingLedger()))


def test_protected_route_refuses_missing_and_bad_tokens(make_harness: MakeHarness) -> None:
    s.check_protected_route_refuses_missing_and_bad_tokens(make_harness(RecordingLedger()))


def test_protected_route_accepts_api_key(make_harness: MakeHarness) -> None:
    s.check_protected_route_accepts_api_key(make_harness(RecordingLedger()))


def test_gated_route_allowed(make_harness: MakeHarness) -> None:
    s.check_gated_route_allowed(make_harness(RecordingLedger()))


def test_gated_route_denied_is_403_with_the_feature_key(make_harness: MakeHarness) -> None:
    s.check_gated_route_denied_names_the_feature(make_harness(DenyingLedger(Feature.ORGS)))


def test_gated_route_with_failing_ledger_is_503(make_harness: MakeHarness) -> None:
    ledger = FailingLedger(fail=["check_entitlement"])
    s.check_gated_route_with_failing_ledger_is_unavailable(make_harness(ledger))


def test_failed_signins_are_throttled_with_retry_after(make_harness: MakeHarness) -> None:
    s.check_failed_signins_are_throttled(make_harness(RecordingLedger()))


def test_bad_signup_input_is_422_and_duplicate_409(make_harness: MakeHarness) -> None:
    s.check_bad_signup_input(make_harness(RecordingLedger()))
