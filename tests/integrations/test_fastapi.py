"""The FastAPI integration, driven through FastAPI's TestClient behind uvicorn's own
proxy-headers middleware with its defaults (it trusts 127.0.0.1's X-Forwarded-For),
so the client addresses seen are those a uvicorn deployment sees."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from examples.fastapi_app import build_auth, create_app
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from authsome import Authsome
from authsome.bridge import Ledger
from authsome.integrations.fastapi import (
    Principal,
    client_ip,
    client_user_agent,
    install,
    optional_principal,
    request_tenant,
    require_principal,
)
from authsome.testing import RecordingLedger
from tests.conftest import FAST, AuthFactory, FakeClock
from tests.integrations import _scenarios as s

CurrentPrincipal = Annotated[Principal, Depends(require_principal())]
MaybePrincipal = Annotated[Principal | None, Depends(optional_principal())]
Reader = Annotated[Principal, Depends(require_principal(scopes=("read",)))]
Writer = Annotated[Principal, Depends(require_principal(scopes=("write",)))]
ClientIp = Annotated[str | None, Depends(client_ip)]


class Credentials(BaseModel):
    email: str
    password: str


# A remote client behind uvicorn's own proxy-headers middleware with its defaults: uvicorn
# believes X-Forwarded-For only from 127.0.0.1, so from here the header is the client's
# claim, and the integration must not believe it either.
UVICORN_PEER = ("192.0.2.10", 50000)


def _client(app: FastAPI, *, raise_server_exceptions: bool = True) -> TestClient:
    return TestClient(
        ProxyHeadersMiddleware(app),  # type: ignore[arg-type]
        client=UVICORN_PEER,
        raise_server_exceptions=raise_server_exceptions,
    )


def _caller(client: TestClient) -> s.Call:
    def call(
        method: str,
        path: str,
        *,
        json: object = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> s.Reply:
        r = client.request(method, path, json=json, content=body, headers=headers)
        is_json = r.headers.get("content-type", "").startswith("application/json")
        return s.Reply(r.status_code, r.json() if is_json else None, r.headers, r.text)

    return call


@pytest.fixture
def make_harness(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[s.MakeHarness]:
    monkeypatch.delenv("AUTHSOME_DB", raising=False)
    made: list[tuple[TestClient, Any]] = []

    def make(ledger: RecordingLedger) -> s.Harness:
        lg: Ledger = ledger
        auth = build_auth(lg, password_hashing=FAST, clock=clock)
        client = _client(create_app(auth))
        made.append((client, auth))
        return s.Harness(_caller(client), auth, ledger)

    yield make
    for client, auth in made:
        client.close()
        auth.close()


@pytest.fixture
def make_bare() -> Iterator[s.MakeBare]:
    clients: list[TestClient] = []

    def make(auth: Authsome, **options: Any) -> s.Call:
        app = FastAPI()
        install(app, auth, **options)
        # Two layers ask for the principal: the router and the endpoint.
        router = APIRouter(dependencies=[Depends(require_principal())])

        @router.get("/whoami")
        def whoami(request: Request, principal: CurrentPrincipal) -> dict[str, str | None]:
            return {
                "tenant": principal.tenant,
                "user_id": principal.user_id,
                "request_tenant": request_tenant(request),
            }

        @app.get("/writer")  # outside the router: the scope is asked on the first validation
        def writer(request: Request, principal: Writer) -> dict[str, str | None]:
            return whoami(request, principal)

        @app.get("/ip")
        def ip(address: ClientIp) -> dict[str, str | None]:
            return {"ip": address}

        @app.post("/signin")
        def signin(body: Credentials, request: Request) -> dict[str, bool]:
            tenant = request_tenant(request) or "default"
            auth.sign_in(
                body.email,
                body.password,
                tenant=tenant,
                ip=client_ip(request),
                user_agent=client_user_agent(request),
            )
            return {"signed_in": True}

        @app.get("/crash")
        def crash() -> None:
            raise RuntimeError(s.CRASH)

        app.include_router(router)
        client = _client(app, raise_server_exceptions=False)
        clients.append(client)
        return _caller(client)

    yield make
    for client in clients:
        client.close()


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


# -- FastAPI specifics ---------------------------------------------------------------------


def test_a_streamed_body_past_the_cap_is_cut_off_with_413(make_harness: s.MakeHarness) -> None:
    h = make_harness(RecordingLedger())

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for _ in range(64):
            yield b" " * 4096

    reply = h.call("POST", "/signup", body=chunks(), headers=s.JSON)  # type: ignore[arg-type]

    assert reply.status == 413, reply.text
    assert reply.body["error"] == "payload_too_large"


def test_the_cap_is_configurable(make_auth: AuthFactory) -> None:
    app = FastAPI()
    install(app, make_auth(), max_body_bytes=10)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"length": len(await request.body())}

    with TestClient(app) as client:
        assert client.post("/echo", content=b"x" * 10).json() == {"length": 10}
        assert client.post("/echo", content=b"x" * 11).status_code == 413


def test_optional_principal_is_none_for_anonymous_requests(make_auth: AuthFactory) -> None:
    auth = make_auth()
    app = FastAPI()
    install(app, auth)

    @app.get("/maybe")
    def maybe(principal: MaybePrincipal) -> dict[str, bool]:
        return {"anonymous": principal is None}

    with TestClient(app) as client:
        assert client.get("/maybe").json() == {"anonymous": True}
        assert client.get("/maybe", headers=s.bearer("x" * 43)).status_code == 401


def test_an_endpoint_scope_is_checked_against_the_key_the_router_validated(
    make_auth: AuthFactory,
) -> None:
    ledger = RecordingLedger()
    auth = make_auth(ledger=ledger)
    user = auth.users.register(s.EMAIL, s.PASSWORD)
    key = auth.api_keys.create(user.id, "k", scopes=("read",)).secret
    app = FastAPI()
    install(app, auth)
    router = APIRouter(dependencies=[Depends(require_principal())])

    @router.get("/read")
    def read(_: Reader) -> dict[str, str]:
        return {"ok": "read"}

    @router.get("/write")
    def write(_: Writer) -> dict[str, str]:
        return {"ok": "write"}

    app.include_router(router)
    with TestClient(app) as client:
        assert client.get("/read", headers={"X-API-Key": key}).status_code == 200
        denied = client.get("/write", headers={"X-API-Key": key})
    assert denied.status_code == 403
    assert denied.json()["missing"] == ["write"]
