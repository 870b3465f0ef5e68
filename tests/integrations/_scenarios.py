"""What every framework must do alike, written once for the three of them.

Each test module wraps its framework's own test client in a :class:`Harness`
(one ``call`` function) and runs every step of :data:`JOURNEY` and every row of
:data:`ERROR_CONTRACT` against its example app, and every check of :data:`BARE`
against a minimal app built with the integration's options (:data:`MakeBare`).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from authsome import Authsome, Feature, LedgerUnavailable, UsageEvent
from authsome.integrations import TrustedProxies, tenant_by_domain, tenant_by_header
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


# call(method, path, *, json=None, body=None, headers=None) -> Reply; ``body`` is sent
# as raw bytes with only the headers given (the Content-Type among them).
Call = Callable[..., Reply]


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


# -- server faults are logged, never with a secret -----------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def check_server_fault_is_logged_without_secrets(h: Harness) -> None:
    token = h.signed_in()
    handler = _Records()
    integrations_log = logging.getLogger("authsome.integrations")
    integrations_log.addHandler(handler)
    try:
        reply = h.call("POST", "/orgs", json={"name": PASSWORD}, headers=bearer(token))
    finally:
        integrations_log.removeHandler(handler)

    assert reply.status == 503, reply.text
    errors = [r for r in handler.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is LedgerUnavailable
    logged = "\n".join(logging.Formatter().format(r) for r in handler.records)
    assert "LedgerUnavailable" in logged
    assert PASSWORD not in logged and token not in logged


JOURNEY.append(
    pytest.param(
        Step(
            check_server_fault_is_logged_without_secrets,
            lambda: FailingLedger(fail=["check_entitlement"]),
        ),
        id="server_fault_logged",
    )
)


# -- one error contract: the same status and JSON body on every framework -------------------

SECRET_INPUT = "s3cr3t-submitted-value"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Refusal:
    """A request every example app refuses, and the answer they all give."""

    method: str
    path: str
    status: int
    code: str
    json: object = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def check(self, h: Harness) -> None:
        reply = h.call(
            self.method, self.path, json=self.json, body=self.body, headers=dict(self.headers)
        )
        assert reply.status == self.status, reply.text
        assert reply.headers["Content-Type"].startswith("application/json"), reply.headers
        assert isinstance(reply.body, dict), reply.text
        assert reply.body["error"] == self.code, reply.body
        assert isinstance(reply.body["message"], str)
        assert SECRET_INPUT not in reply.text and PASSWORD not in reply.text


def _credentials(**fields: object) -> dict[str, object]:
    return {"email": EMAIL, "password": PASSWORD, **fields}


ERROR_CONTRACT = [
    pytest.param(
        Refusal("POST", "/signup", 400, "malformed_json", body=b'{"email": "a', headers=JSON),
        id="malformed_json_400",
    ),
    pytest.param(
        Refusal("POST", "/signin", 422, "validation_error", json=["not", "an", "object"]),
        id="json_array_422",
    ),
    pytest.param(
        Refusal("POST", "/signup", 422, "validation_error", json={"email": EMAIL}),
        id="missing_field_422",
    ),
    pytest.param(
        Refusal(
            "POST",
            "/signup",
            422,
            "validation_error",
            json=_credentials(password={"value": SECRET_INPUT}),
        ),
        id="wrong_type_422_input_not_echoed",
    ),
    *[
        pytest.param(
            Refusal("POST", path, 422, "validation_error", json=_credentials(tenant=tenant)),
            id=f"{path[1:]}_tenant_{type(tenant).__name__}_422",
        )
        for path in ("/signup", "/signin")
        for tenant in (42, ["acme"], None)
    ],
    pytest.param(
        Refusal(
            "POST",
            "/signup",
            415,
            "unsupported_media_type",
            body=b'{"email": "ada@example.com", "password": "correct horse battery staple"}',
            headers={"Content-Type": "text/plain"},
        ),
        id="not_json_415",
    ),
    pytest.param(
        Refusal(
            "POST",
            "/signup",
            413,
            "payload_too_large",
            body=b'{"email": "' + b"a\xcc\x81\xcc\x96" * 40_000 + b'@example.com"}',
            headers=JSON,
        ),
        id="body_too_large_413",
    ),
    pytest.param(Refusal("GET", "/nowhere", 404, "not_found"), id="unknown_route_404"),
    pytest.param(Refusal("GET", "/signup", 405, "method_not_allowed"), id="wrong_method_405"),
]


def check_api_key_on_a_user_route_is_a_json_403(h: Harness) -> None:
    token = h.signed_in()
    secret = h.call("POST", "/api-keys", headers=bearer(token)).body["secret"]

    reply = h.call("POST", "/api-keys", headers={"X-API-Key": secret})

    assert reply.status == 403, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    assert isinstance(reply.body["error"], str) and isinstance(reply.body["message"], str)


def check_wrong_method_names_the_allowed_ones(h: Harness) -> None:
    reply = h.call("GET", "/signup")
    assert reply.status == 405
    assert "POST" in reply.headers["Allow"]


def _timed(call: Callable[[], Reply], expected: int, runs: int) -> list[float]:
    """The time of each of ``runs`` calls, each answered ``expected``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        reply = call()
        times.append(time.perf_counter() - start)
        assert reply.status == expected, reply.text
    return times


MEBIBYTE = 1 << 20


def _json_body_of_one_mebibyte(repeated: str) -> bytes:
    """A valid JSON sign-in body of 1 MiB, its e-mail ``"a"`` then ``repeated`` over and over."""
    fields = {"email": "a@example.com", "password": PASSWORD}
    room = MEBIBYTE - len(json.dumps(fields).encode())
    fields["email"] = "a" + repeated * (room // len(repeated.encode())) + "@example.com"
    return json.dumps(fields, ensure_ascii=False).encode()


def check_a_hostile_megabyte_body_costs_no_more_than_a_small_refusal(h: Harness) -> None:
    # Alternating combining marks make NFKC quadratic; the cap refuses them unread, so
    # they cost what any megabyte costs (the test client copying it, mostly).
    hostile = _json_body_of_one_mebibyte("\u0301\u0316")
    benign = _json_body_of_one_mebibyte("a")
    small = json.dumps({"email": "a" * 20, "password": PASSWORD}).encode()
    assert len(hostile) <= MEBIBYTE and len(benign) <= MEBIBYTE

    def timed(body: bytes, expected: int) -> list[float]:
        return _timed(lambda: h.call("POST", "/signin", body=body, headers=JSON), expected, 3)

    times: dict[str, list[float]] = {"hostile": [], "benign": [], "small": []}
    for _ in range(5):  # interleaved, so a slow moment of the machine hits all three
        times["hostile"] += timed(hostile, 413)
        times["benign"] += timed(benign, 413)
        times["small"] += timed(small, 422)

    median = {name: statistics.median(values) for name, values in times.items()}
    assert median["hostile"] <= 3 * median["benign"], median
    assert median["hostile"] <= 10 * median["small"], median


ERROR_CONTRACT_STEPS = [
    pytest.param(
        Step(check_a_hostile_megabyte_body_costs_no_more_than_a_small_refusal),
        id="hostile_1mib_body_refused_fast",
    ),
    pytest.param(Step(check_api_key_on_a_user_route_is_a_json_403), id="api_key_user_route_403"),
    pytest.param(Step(check_wrong_method_names_the_allowed_ones), id="405_allow_header"),
]


# -- the integration's options, on a minimal app per framework ------------------------------

# make_bare(auth, **options) -> call, for an app built with the integration's options
# (tenant=, trusted_proxies=) and three routes:
#   GET  /whoami  a principal required, asked for twice (by two layers of the app);
#                 answers {"tenant", "user_id", "request_tenant"}
#   GET  /writer  as /whoami, but an API key must hold the scope "write"
#   GET  /ip      {"ip": the integration's client address}
#   POST /signin  {"email", "password"} -> sign_in(tenant=request tenant or "default",
#                 ip=client address, user_agent=the User-Agent header) -> {"signed_in": true}
#   GET  /crash   raises RuntimeError(CRASH) (the client must not raise it in the test)
MakeBare = Callable[..., Call]
MakeAuth = Callable[..., Authsome]


class FakeDns:
    """TXT records published by the test, for verifying custom domains."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}

    def resolve_txt(self, name: str) -> list[str]:
        return list(self.records.get(name, []))


@dataclass(frozen=True)
class BareStep:
    check: Callable[[MakeBare, Authsome, RecordingLedger, FakeDns], None]

    def run(self, make_bare: MakeBare, make_auth: MakeAuth) -> None:
        ledger, dns = RecordingLedger(), FakeDns()
        self.check(make_bare, make_auth(ledger=ledger, dns_resolver=dns), ledger, dns)


def _sign_in(auth: Authsome, tenant: str = "default") -> str:
    tokens = auth.sign_in(EMAIL, PASSWORD, tenant=tenant, ip="192.0.2.1").tokens
    assert tokens is not None
    return tokens.access_token


def check_principal_is_resolved_once_per_request(
    make_bare: MakeBare, auth: Authsome, ledger: RecordingLedger, dns: FakeDns
) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    secret = auth.api_keys.create(user.id, "k").secret
    call = make_bare(auth)
    ledger.clear()

    for _ in range(3):
        reply = call("GET", "/whoami", headers={"X-API-Key": secret})
        assert reply.status == 200, reply.text

    validated = [u for u in ledger.usage() if u.feature_key == UsageEvent.APIKEYS_VALIDATED]
    assert len(validated) == 3  # one per request, not one per layer that asks


def _validated(ledger: RecordingLedger) -> int:
    return sum(u.feature_key == UsageEvent.APIKEYS_VALIDATED for u in ledger.usage())


def check_credential_of_another_tenant_is_refused_like_an_unknown_one(
    make_bare: MakeBare, auth: Authsome, ledger: RecordingLedger, dns: FakeDns
) -> None:
    user = auth.users.register(EMAIL, PASSWORD, tenant="acme")
    token = _sign_in(auth, "acme")
    secret = auth.api_keys.create(user.id, "k", scopes=("write",)).secret
    auth.users.register(EMAIL, PASSWORD, tenant="globex")
    call = make_bare(auth, tenant=tenant_by_header("X-Tenant"))
    unknown = call("GET", "/whoami", headers={**bearer("x" * 43), "X-Tenant": "globex"})
    assert unknown.status == 401, unknown.text

    for path in ("/whoami", "/writer"):
        for credential in (bearer(token), {"X-API-Key": secret}):
            own = call("GET", path, headers={**credential, "X-Tenant": "acme"})
            ledger.clear()
            other = call("GET", path, headers={**credential, "X-Tenant": "globex"})

            assert own.status == 200, own.text
            assert own.body["request_tenant"] == own.body["tenant"] == "acme"
            assert other.status == 401, other.text
            assert other.body == unknown.body
            assert other.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"]
            assert ledger.usage() == []  # refused like an unknown key: nothing metered


def check_key_lacking_a_scope_is_refused_before_it_is_metered(
    make_bare: MakeBare, auth: Authsome, ledger: RecordingLedger, dns: FakeDns
) -> None:
    user = auth.users.register(EMAIL, PASSWORD, tenant="acme")
    reader = auth.api_keys.create(user.id, "reader", scopes=("read",)).secret
    writer = auth.api_keys.create(user.id, "writer", scopes=("read", "write")).secret
    call = make_bare(auth, tenant=tenant_by_header("X-Tenant"))
    ledger.clear()

    denied = call("GET", "/writer", headers={"X-API-Key": reader, "X-Tenant": "acme"})

    assert denied.status == 403, denied.text
    assert denied.body["error"] == "insufficient_scope"
    assert denied.body["missing"] == ["write"]
    assert _validated(ledger) == 0  # a refused key is not a validation to bill
    allowed = call("GET", "/writer", headers={"X-API-Key": writer, "X-Tenant": "acme"})
    assert allowed.status == 200, allowed.text
    assert _validated(ledger) == 1


def check_tenant_by_verified_custom_domain(
    make_bare: MakeBare, auth: Authsome, ledger: RecordingLedger, dns: FakeDns
) -> None:
    auth.users.register(EMAIL, PASSWORD, tenant="acme")
    token = _sign_in(auth, "acme")
    challenge = auth.domains.add("login.globex.example", tenant="globex")
    dns.records[challenge.record_name] = [challenge.record_value]
    auth.domains.verify(challenge.domain.id)
    auth.domains.add("login.initech.example", tenant="initech")  # claimed, never verified
    call = make_bare(auth, tenant=tenant_by_domain(default="acme"))

    home = call("GET", "/whoami", headers={**bearer(token), "Host": "app.example"})
    globex = call("GET", "/whoami", headers={**bearer(token), "Host": "login.globex.example"})
    unverified = call("GET", "/whoami", headers={**bearer(token), "Host": "login.initech.example"})

    assert home.status == 200 and home.body["request_tenant"] == "acme", home.text
    assert globex.status == 401 and globex.body["error"] == "invalid_token", globex.text
    assert unverified.status == 200 and unverified.body["request_tenant"] == "acme"


def check_request_no_tenant_serves_is_404(
    make_bare: MakeBare, auth: Authsome, ledger: RecordingLedger, dns: FakeDns
) -> None:
    auth.users.register(EMAIL, PASSWORD)
    token = _sign_in(auth)
    call = make_bare(auth, tenant=tenant_by_header("X-Tenant"))

    reply = call("GET", "/whoami", headers=bearer(token))
    # A header naming no tenant that could exist: no tenant serves it either.
    for impossible in ("t" * 129, "acme\x7f"):
        bogus = call("GET", "/whoami", headers={**bearer(token), "X-Tenant": impossible})
        assert bogus.status == 404, bogus.text
        assert bogus.body["error"] == "unknown_tenant"

    assert reply.status == 404, reply.text
    assert reply.body["error"] == "unknown_tenant"
    assert call("GET", "/ip").status == 200  # an anonymous route needs no tenant


def _wrong_signins(call: Call, forwarded: list[str]) -> list[int]:
    body = {"email": EMAIL, "password": "not the password at all"}
    return [
        call("POST", "/signin", json=body, headers={"X-Forwarded-For": value}).status
        for value in forwarded
    ]


def check_forwarded_for_is_not_trusted_by_default(
    make_bare: MakeBare, auth: Authsome, ledger: RecordingLedger, dns: FakeDns
) -> None:
    auth.users.register(EMAIL, PASSWORD)
    call = make_bare(auth)
    fresh = [f"198.51.100.{i}" for i in range(1, 21)]

    statuses = _wrong_signins(call, fresh)

    per_account_ip = 5  # ThrottlePolicy's default
    assert statuses[:per_account_ip] == [401] * per_account_ip
    assert set(statuses[per_account_ip:]) == {429}
    assert call("GET", "/ip", headers={"X-Forwarded-For": "203.0.113.9"}).body["ip"] in PEERS


PEERS = {"127.0.0.1", "testclient", "192.0.2.10"}  # what the test clients connect from


def check_one_trusted_hop_uses_the_right_most_address(
    make_bare: MakeBare, auth: Authsome, ledger: RecordingLedger, dns: FakeDns
) -> None:
    auth.users.register(EMAIL, PASSWORD)
    call = make_bare(auth, trusted_proxies=TrustedProxies(count=1))

    ip = call("GET", "/ip", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
    statuses = _wrong_signins(call, [f"10.9.9.{i}, 198.51.100.7" for i in range(6)])
    elsewhere = call(
        "POST", "/signin", json=_credentials(), headers={"X-Forwarded-For": "198.51.100.8"}
    )

    assert ip.body == {"ip": "198.51.100.7"}
    assert statuses == [401] * 5 + [429]  # a fresh left part buys no guesses
    assert elsewhere.status == 200, elsewhere.text  # another client is not blocked


def check_trusted_networks_skip_every_proxy(
    make_bare: MakeBare, auth: Authsome, ledger: RecordingLedger, dns: FakeDns
) -> None:
    # The test client's own address (PEERS) is the outermost proxy here.
    proxies = TrustedProxies(networks=("127.0.0.0/8", "10.0.0.0/8", "192.0.2.10/32"))
    call = make_bare(auth, trusted_proxies=proxies)

    chain = "192.0.2.66, 203.0.113.9, 10.1.2.3"
    reply = call("GET", "/ip", headers={"X-Forwarded-For": chain})

    assert reply.body == {"ip": "203.0.113.9"}


def check_sign_in_passes_the_client_to_the_device_list(
    make_bare: MakeBare, auth: Authsome, ledger: RecordingLedger, dns: FakeDns
) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    call = make_bare(auth)
    agent = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

    reply = call("POST", "/signin", json=_credentials(), headers={"User-Agent": agent})

    assert reply.status == 200, reply.text
    [device] = auth.sessions.list(user.id)
    assert device.user_agent == agent
    assert device.ip in PEERS


CRASH = "a bug's message, naming internals"


def check_an_unexpected_error_is_a_json_500_that_tells_nothing(
    make_bare: MakeBare, auth: Authsome, ledger: RecordingLedger, dns: FakeDns
) -> None:
    reply = make_bare(auth)("GET", "/crash")

    assert reply.status == 500
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.body["error"] == "internal_error"
    assert CRASH not in reply.text


BARE = [
    pytest.param(
        BareStep(check_an_unexpected_error_is_a_json_500_that_tells_nothing), id="crash_500"
    ),
    pytest.param(BareStep(check_principal_is_resolved_once_per_request), id="principal_once"),
    pytest.param(
        BareStep(check_credential_of_another_tenant_is_refused_like_an_unknown_one),
        id="tenant_bound_by_header",
    ),
    pytest.param(
        BareStep(check_key_lacking_a_scope_is_refused_before_it_is_metered),
        id="scope_miss_403_not_metered",
    ),
    pytest.param(BareStep(check_tenant_by_verified_custom_domain), id="tenant_by_domain"),
    pytest.param(BareStep(check_request_no_tenant_serves_is_404), id="unknown_tenant_404"),
    pytest.param(
        BareStep(check_forwarded_for_is_not_trusted_by_default), id="forwarded_for_ignored"
    ),
    pytest.param(BareStep(check_one_trusted_hop_uses_the_right_most_address), id="one_trusted_hop"),
    pytest.param(BareStep(check_trusted_networks_skip_every_proxy), id="trusted_networks"),
    pytest.param(
        BareStep(check_sign_in_passes_the_client_to_the_device_list), id="device_list_client"
    ),
]
