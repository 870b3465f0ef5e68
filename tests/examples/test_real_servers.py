"""Each example app under the server it is deployed with, driven over HTTP on 127.0.0.1.

FastAPI under uvicorn; Flask and Django under gunicorn with ``--preload`` and two
workers (the app, its SQLite store and its ledger engine are built before the fork).
The auth store is a SQLite file, the ledger the embedded one on another SQLite file;
after the server stops, the usage the ledger stored is checked: each worker metered
into the engine it inherited and drained it on the way out.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from authsome import ledger
from tests.examples._servers import REPO_ROOT, authsome_cli, running_server

PASSWORD = "correct horse battery staple"
PLANS = str(REPO_ROOT / "examples" / "plans.toml")
SUBSCRIBED = "acme"  # on the Starter plan: organizations allowed
UNSUBSCRIBED = "globex"  # no plan: every gated feature refused


@dataclass(frozen=True)
class Example:
    """How one example app is served."""

    name: str
    argv: tuple[str, ...]


def gunicorn(app: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", app)


EXAMPLES = {
    "fastapi": Example(
        "fastapi",
        (sys.executable, "-m", "uvicorn", "--factory", "examples.fastapi_app:create_app"),
    ),
    "flask": Example("flask", gunicorn("examples.flask_app:create_app()")),
    "django": Example("django", gunicorn("examples.django_app.wsgi:application")),
}


def bind_args(example: Example, fd: int) -> list[str]:
    """Serve on the listening socket inherited as ``fd``."""
    if example.name == "fastapi":
        return ["--fd", str(fd)]
    return ["--bind", f"fd://{fd}"]


def start_configured(example: Example, tmp_path: Path) -> tuple[list[str], dict[str, str], Path]:
    """The server's command line and environment, configured as the README shows (the
    auth store's file, the ledger's file, the plans file), and the ledger's file.

    FastAPI's run finds the ledger where the command line puts it by default instead
    (beside the auth database, made by ``authsome migrate``), with the plans loaded
    and the tenant subscribed beforehand.
    """
    auth_db = tmp_path / "auth.db"
    env = {"AUTHSOME_DB": str(auth_db)}
    if example.name == "fastapi":
        authsome_cli("migrate", "--db", str(auth_db))
        authsome_cli("plans", "load", PLANS, "--db", str(auth_db))
        authsome_cli("subscribe", SUBSCRIBED, "starter", "--db", str(auth_db))
        return list(example.argv), env, tmp_path / "auth.ledger.db"
    ledger_db = tmp_path / "ledger.db"
    env |= {"AUTHSOME_LEDGER_DB": str(ledger_db), "AUTHSOME_PLANS": PLANS}
    return list(example.argv), env, ledger_db


def signed_in(client: httpx.Client, tenant: str) -> str:
    credentials = {"email": f"ada@{tenant}.example", "password": PASSWORD, "tenant": tenant}
    signup = client.post("/signup", json=credentials)
    assert signup.status_code == 201, signup.text
    assert signup.json()["tenant"] == tenant
    signin = client.post("/signin", json=credentials)
    assert signin.status_code == 200, signin.text
    token: str = signin.json()["access_token"]
    return token


def journey(client: httpx.Client, example: Example) -> None:
    """Sign up and in, ``/me`` with the bearer token and with an API key, an allowed
    and a refused organization, and a body that is not JSON."""
    bearer = {"Authorization": f"Bearer {signed_in(client, SUBSCRIBED)}"}
    me = client.get("/me", headers=bearer)
    assert me.status_code == 200, me.text
    assert (me.json()["kind"], me.json()["tenant"]) == ("session", SUBSCRIBED)

    created = client.post("/api-keys", headers=bearer)
    assert created.status_code == 201, created.text
    by_key = client.get("/me", headers={"X-API-Key": created.json()["secret"]})
    assert by_key.status_code == 200, by_key.text
    assert (by_key.json()["kind"], by_key.json()["tenant"]) == ("api_key", SUBSCRIBED)

    org = client.post("/orgs", headers=bearer, json={"name": "Acme Rockets"})
    assert org.status_code == 201, org.text

    other = {"Authorization": f"Bearer {signed_in(client, UNSUBSCRIBED)}"}
    refused = client.post("/orgs", headers=other, json={"name": "Globex"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "feature_not_entitled"
    assert refused.json()["feature"] == "authsome.feature.orgs"

    malformed = client.post(
        "/signup", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    # One error contract on every framework: the library's JSON body, the same status.
    assert malformed.status_code == 400, malformed.text
    assert malformed.json()["error"] == "malformed_json"
    # Still serving; and metered just before the server stops, so this event reaches
    # the ledger only if the worker drains its buffer on the way out.
    assert client.get("/me", headers={"X-API-Key": created.json()["secret"]}).status_code == 200


EXPECTED_USAGE = {
    "authsome.users.created": 1,
    "authsome.sessions.created": 1,
    "authsome.users.active": 1,
    "authsome.apikeys.validated": 2,
    "authsome.orgs.members": 1,
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_serves_the_journey_and_the_ledger_stores_its_usage(
    name: str, tmp_path: Path
) -> None:
    example = EXAMPLES[name]
    argv, env, ledger_db = start_configured(example, tmp_path)
    with running_server(lambda fd: [*argv, *bind_args(example, fd)], env) as served:
        if example.name != "fastapi":
            # The app loaded the plans file when it started: the tenant can subscribe.
            authsome_cli(
                "subscribe",
                SUBSCRIBED,
                "starter",
                "--db",
                env["AUTHSOME_DB"],
                "--ledger-db",
                str(ledger_db),
            )
        with httpx.Client(base_url=served.url, timeout=60) as client:
            journey(client, example)
    # Stopped: every worker drained its buffer into the ledger on the way out.
    store = ledger.SQLiteStore(ledger_db)
    try:
        with ledger.Engine(store=store) as engine:
            usage = {key: engine.usage(SUBSCRIBED, key) for key in EXPECTED_USAGE}
    finally:
        store.close()
    assert usage == EXPECTED_USAGE
