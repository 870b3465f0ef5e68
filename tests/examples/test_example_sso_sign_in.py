"""Each example app with ``AUTHSOME_EXAMPLE_BASE_URL`` set mounts the ready sign-in
routes; an SSO sign-in through a real OpenID Provider, driven over HTTP against the
app under its real server (FastAPI under uvicorn; Flask and Django under gunicorn with
``--preload`` and two workers, so the start and the callback may meet different
workers), ends with tokens the app's protected route accepts.

The state cookie is ``__Host-``/``Secure``: a browser keeps it only over https, so
the test, on plain http to 127.0.0.1, sends it back itself in a ``Cookie`` header.
"""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from authsome import Authsome, OIDCConnection, PasswordHashing
from authsome.integrations._signin_routes import STATE_COOKIE
from authsome.stores import SQLiteStore
from tests.examples._servers import running_server
from tests.examples.test_real_servers import EXAMPLES, bind_args
from tests.support.oidc_op import OpenIDClient, OpenIDProvider
from tests.support.sso_scene import PASSWORD, prove

DOMAIN = "initech.test"
TENANT = "default"  # the examples resolve no tenant from the request


def configure_sso(auth_db: Path, op: OpenIDProvider, client: OpenIDClient) -> None:
    """In the app's store: an org whose OIDC connection is ``client`` at ``op``, for
    the proven domain :data:`DOMAIN`."""
    auth = Authsome(
        store=SQLiteStore(auth_db),
        password_hashing=PasswordHashing.fast_insecure_for_tests(),
        sso_allow_insecure_loopback=True,  # the provider is http:// on 127.0.0.1
    )
    with auth:
        owner = auth.users.register(f"owner@{DOMAIN}", PASSWORD, tenant=TENANT)
        org = auth.orgs.create(owner.id, "Initech")
        connection = OIDCConnection(
            issuer=op.issuer,
            client_id=client.client_id,
            client_secret=client.client_secret,
            domains=(DOMAIN,),
        )
        auth.sso.configure(org.id, connection)
        prove(auth.store, DOMAIN, tenant=TENANT)


def started(http: httpx.Client, origin: str, email: str) -> tuple[str, str]:
    """POST the start form from the app's own page: the provider's URL and the state
    cookie's value (its attributes checked)."""
    reply = http.post("/auth/sso/start", data={"email": email}, headers={"Origin": origin})
    assert reply.status_code == 303, reply.text
    line = next(c for c in reply.headers.get_list("set-cookie") if c.startswith(STATE_COOKIE))
    attributes = {a.strip().split("=")[0].lower() for a in line.split(";")[1:]}
    assert {"secure", "httponly", "path"} <= attributes
    jar: SimpleCookie = SimpleCookie()
    jar.load(line)
    return reply.headers["location"], jar[STATE_COOKIE].value


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_mounts_the_sign_in_routes_and_an_sso_sign_in_reaches_its_protected_route(
    name: str, tmp_path: Path, oidc_op: OpenIDProvider
) -> None:
    example = EXAMPLES[name]
    auth_db = tmp_path / "auth.db"

    def env(port: int) -> dict[str, str]:
        return {
            "AUTHSOME_DB": str(auth_db),
            "AUTHSOME_EXAMPLE_BASE_URL": f"http://127.0.0.1:{port}/auth",
            "AUTHSOME_SSO_ALLOW_INSECURE_LOOPBACK": "1",
        }

    argv = list(example.argv)
    with running_server(lambda fd: [*argv, *bind_args(example, fd)], env) as served:
        callback = f"{served.url}/auth/sso/callback"
        configure_sso(auth_db, oidc_op, oidc_op.add_client(redirect_uri=callback))
        email = f"peter-{secrets.token_hex(4)}@{DOMAIN}"
        account = oidc_op.add_account(f"acct-{secrets.token_hex(6)}", email=email)

        with httpx.Client(base_url=served.url, timeout=60, follow_redirects=False) as http:
            foreign = http.post(
                "/auth/sso/start", data={"email": email}, headers={"Origin": "https://evil.test"}
            )
            assert foreign.status_code == 422, foreign.text  # login CSRF: refused

            location, cookie = started(http, served.url, email)
            assert location.startswith(oidc_op.issuer + "/")
            back = oidc_op.login(location, account)
            assert back.startswith(callback + "?")

            assert http.get(back).status_code == 401  # without the state cookie
            signed_in = http.get(back, headers={"Cookie": f"{STATE_COOKIE}={cookie}"})
            assert signed_in.status_code == 200, signed_in.text
            body = signed_in.json()
            assert body["mfa_required"] is False
            replayed = http.get(back, headers={"Cookie": f"{STATE_COOKIE}={cookie}"})
            assert replayed.status_code == 401, replayed.text  # the handle is single use

            me = http.get("/me", headers={"Authorization": f"Bearer {body['access_token']}"})
            assert me.status_code == 200, me.text
            assert me.json() == {
                "kind": "session",
                "tenant": TENANT,
                "user_id": body["user_id"],
                "org_id": None,
            }
