"""The journey every example app must support, written once for the three frameworks.

Each test module wraps its framework's own test client in a :class:`Harness`
(one ``call`` function) and runs every step of :data:`JOURNEY` against its example
app.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from authsome import Authsome, Feature, UsageEvent
from authsome.testing import DenyingLedger, FailingLedger, RecordingLedger
from tests.conftest import PASSWORD

EMAIL = "ada@example.com"


@dataclass(frozen=True)
class Reply:
    """What a framework's test client answered, in one shape."""

    status: int
    body: Any
    headers: Mapping[str, str]
    text: str


Call = Callable[..., Reply]  # call(method, path, *, json=None, headers=None) -> Reply


@dataclass
class Harness:
    """An example app under test: its client, its engine, the ledger it reports to."""

    call: Call
    auth: Authsome
    ledger: RecordingLedger
    tokens: dict[str, str] = field(default_factory=dict)

    def signup(self, email: str = EMAIL, password: str = PASSWORD) -> Reply:
        return self.call("POST", "/signup", json={"email": email, "password": password})

    def signin(self, email: str = EMAIL, password: str = PASSWORD) -> Reply:
        return self.call("POST", "/signin", json={"email": email, "password": password})

    def signed_in(self) -> str:
        """Sign up and in; the access token."""
        assert self.signup().status == 201
        reply = self.signin()
        assert reply.status == 200, reply.text
        token: str = reply.body["access_token"]
        return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def check_signup_signin_and_protected_route(h: Harness) -> None:
    signup = h.signup()
    assert signup.status == 201, signup.text
    user_id = signup.body["user_id"]
    signin = h.signin()
    assert signin.status == 200, signin.text
    assert signin.body["token_type"] == "bearer"
    assert signin.body["refresh_token"]

    me = h.call("GET", "/me", headers=bearer(signin.body["access_token"]))

    assert me.status == 200, me.text
    assert me.body == {"kind": "session", "tenant": "default", "user_id": user_id, "org_id": None}


def check_protected_route_refuses_missing_and_bad_tokens(h: Harness) -> None:
    token = h.signed_in()
    bad = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for headers in (
        {},
        bearer(bad),
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        {"X-API-Key": "ask_not-a-real-key"},
        {**bearer(token), "X-API-Key": "ask_not-a-real-key"},  # ambiguous: refused
    ):
        reply = h.call("GET", "/me", headers=headers)
        assert reply.status == 401, (headers, reply.text)
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        assert reply.body["error"] == "invalid_token"
        assert bad not in reply.text and token not in reply.text


def check_protected_route_accepts_api_key(h: Harness) -> None:
    token = h.signed_in()
    created = h.call("POST", "/api-keys", headers=bearer(token))
    assert created.status == 201, created.text
    h.ledger.clear()

    me = h.call("GET", "/me", headers={"X-API-Key": created.body["secret"]})

    assert me.status == 200, me.text
    assert me.body["kind"] == "api_key"
    assert me.body["user_id"] == h.auth.users.find_by_email(EMAIL).id  # type: ignore[union-attr]
    assert [c.feature_key for c in h.ledger.usage()] == [UsageEvent.APIKEYS_VALIDATED.value]


def check_gated_route_allowed(h: Harness) -> None:
    token = h.signed_in()

    reply = h.call("POST", "/orgs", json={"name": "Acme Inc"}, headers=bearer(token))

    assert reply.status == 201, reply.text
    assert reply.body["slug"] == "acme-inc"
    assert [c.feature_key for c in h.ledger.checks()] == [Feature.ORGS.value]


def _user_orgs(h: Harness) -> list[object]:
    user = h.auth.users.find_by_email(EMAIL)
    assert user is not None
    return list(h.auth.store.list_user_orgs(user.id))


def check_gated_route_denied_names_the_feature(h: Harness) -> None:
    token = h.signed_in()

    reply = h.call("POST", "/orgs", json={"name": "Acme Inc"}, headers=bearer(token))

    assert reply.status == 403, reply.text
    assert reply.body["error"] == "feature_not_entitled"
    assert reply.body["feature"] == "authsome.feature.orgs"
    assert _user_orgs(h) == []


def check_gated_route_with_failing_ledger_is_unavailable(h: Harness) -> None:
    token = h.signed_in()

    reply = h.call("POST", "/orgs", json={"name": "Acme Inc"}, headers=bearer(token))

    assert reply.status == 503, reply.text
    assert reply.body["error"] == "ledger_unavailable"
    assert _user_orgs(h) == []


def check_failed_signins_are_throttled(h: Harness) -> None:
    assert h.signup().status == 201
    wrong = "not the password at all"
    per_account_ip = 5  # ThrottlePolicy's default
    for _ in range(per_account_ip):
        reply = h.signin(password=wrong)
        assert reply.status == 401, reply.text
        assert reply.body["error"] == "invalid_credentials"
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        assert wrong not in reply.text

    throttled = h.signin(password=PASSWORD)  # even the right password waits now

    assert throttled.status == 429, throttled.text
    assert throttled.headers["Retry-After"] == "900"  # the 15-minute window, clock frozen
    assert throttled.body["error"] == "rate_limited"
    assert PASSWORD not in throttled.text


def check_bad_signup_input(h: Harness) -> None:
    short = h.signup(password="short")
    assert short.status == 422, short.text
    assert short.body["error"] == "validation_error"
    assert "short" not in short.body["message"]
    assert h.signup().status == 201
    again = h.signup(email=EMAIL.upper())
    assert again.status == 409, again.text
    assert again.body["error"] == "already_exists"


MakeHarness = Callable[[RecordingLedger], Harness]


@dataclass(frozen=True)
class Step:
    """One check of the journey and the ledger it runs against."""

    check: Callable[[Harness], None]
    ledger: Callable[[], RecordingLedger] = RecordingLedger

    def run(self, make_harness: MakeHarness) -> None:
        self.check(make_harness(self.ledger()))


# Each framework's module runs every step: @pytest.mark.parametrize("step", JOURNEY).
JOURNEY = [
    pytest.param(Step(check_signup_signin_and_protected_route), id="signup_signin_and_me"),
    pytest.param(Step(check_protected_route_refuses_missing_and_bad_tokens), id="bad_tokens_401"),
    pytest.param(Step(check_protected_route_accepts_api_key), id="api_key_accepted"),
    pytest.param(Step(check_gated_route_allowed), id="gated_route_allowed"),
    pytest.param(
        Step(check_gated_route_denied_names_the_feature, lambda: DenyingLedger(Feature.ORGS)),
        id="gated_route_denied_403",
    ),
    pytest.param(
        Step(
            check_gated_route_with_failing_ledger_is_unavailable,
            lambda: FailingLedger(fail=["check_entitlement"]),
        ),
        id="gated_route_ledger_down_503",
    ),
    pytest.param(Step(check_failed_signins_are_throttled), id="signins_throttled_429"),
    pytest.param(Step(check_bad_signup_input), id="bad_signup_422_duplicate_409"),
]
