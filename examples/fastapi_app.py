"""A FastAPI app on authsome: sign-up, sign-in, a protected route, a plan-gated route.

Run it (``pip install "authsome-engine[fastapi]" uvicorn``)::

    python -m examples.fastapi_app            # http://127.0.0.1:8000/docs
    # in production: uvicorn --factory examples.fastapi_app:create_app --port 8000

Then::

    curl -X POST localhost:8000/signup -H 'content-type: application/json' \\
         -d '{"email": "ada@example.com", "password": "correct horse battery staple"}'
    curl -X POST localhost:8000/signin -H 'content-type: application/json' \\
         -d '{"email": "ada@example.com", "password": "correct horse battery staple"}'
    curl localhost:8000/me -H 'Authorization: Bearer <access_token>'

Users live in memory unless ``AUTHSOME_DB`` names a SQLite file. Features are gated
by the embedded ledger when ``AUTHSOME_LEDGER_DB`` (or ``authsome migrate``'s file
beside ``AUTHSOME_DB``) names one, and allowed otherwise (``NoopLedger``). With
``AUTHSOME_EXAMPLE_BASE_URL=http://127.0.0.1:8000/auth`` the SSO and social sign-in
routes are mounted under ``/auth`` (a form POSTed to ``/auth/sso/start`` with the
user's ``email`` sends the browser to the org's identity provider; the callback
answers the session's tokens in JSON); see :mod:`examples._engine`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

from authsome import Authsome
from authsome.integrations.fastapi import (
    Principal,
    client_ip,
    install,
    require_principal,
    sign_in_router,
)
from examples._engine import build_auth, close_auth, sign_in_base_url, sign_in_mount_path

# The request's session or API key; 401 without one. Uses the engine given to install().
CurrentPrincipal = Annotated[Principal, Depends(require_principal())]


class Credentials(BaseModel):
    """Body of /signup and /signin."""

    email: str
    password: str
    tenant: str = "default"


class NewOrg(BaseModel):
    """Body of /orgs."""

    name: str


def create_app(auth: Authsome | None = None) -> FastAPI:
    """The app, around ``auth`` (default: :func:`build_auth`, closed at shutdown)."""
    owned = auth is None
    auth = auth or build_auth()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:  # drain the ledger now: uvicorn ends by re-raising SIGTERM, no atexit
            close_auth(auth)

    app = FastAPI(title="authsome example", lifespan=lifespan)
    install(app, auth)  # authsome errors become 401/403/409/422/429/503 JSON answers
    base_url = sign_in_base_url()
    if base_url is not None:  # SSO and social sign-in: POST {base_url}/sso/start, ...
        app.include_router(sign_in_router(base_url), prefix=sign_in_mount_path(base_url))

    @app.post("/signup", status_code=201)
    def signup(body: Credentials) -> dict[str, str]:
        user = auth.users.register(body.email, body.password, tenant=body.tenant)
        return {"user_id": user.id, "email": user.email, "tenant": user.tenant}

    @app.post("/signin")
    def signin(body: Credentials, request: Request) -> dict[str, Any]:
        ip = client_ip(request)  # the socket peer unless install() trusts proxies
        result = auth.sign_in(body.email, body.password, tenant=body.tenant, ip=ip)
        if result.tokens is None:  # a second factor is due: exchange the ticket
            return {"mfa_required": True, "ticket": result.ticket}
        return {
            "access_token": result.tokens.access_token,
            "refresh_token": result.tokens.refresh_token,
            "token_type": "bearer",
            "expires_at": result.tokens.session.access_expires_at.isoformat(),
        }

    @app.get("/me")
    def me(principal: CurrentPrincipal) -> dict[str, str | None]:
        return {
            "kind": principal.kind,
            "tenant": principal.tenant,
            "user_id": principal.user_id,
            "org_id": principal.org_id,
        }

    @app.post("/api-keys", status_code=201)
    def create_api_key(principal: CurrentPrincipal) -> dict[str, str]:
        user_id = _signed_in_user(principal)
        created = auth.api_keys.create(user_id, "example key")
        return {"id": created.key.id, "secret": created.secret}  # shown this once only

    @app.post("/orgs", status_code=201)
    def create_org(body: NewOrg, principal: CurrentPrincipal) -> dict[str, str]:
        # Gated by authsome.feature.orgs: a plan without it answers 403 with the key.
        org = auth.orgs.create(_signed_in_user(principal), body.name)
        return {"id": org.id, "slug": org.slug, "name": org.name}

    return app


def _signed_in_user(principal: Principal) -> str:
    if principal.kind != "session" or principal.user_id is None:
        raise HTTPException(403, "this route needs a signed-in user, not an API key")
    return principal.user_id


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)
