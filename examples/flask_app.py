"""A Flask app on authsome: sign-up, sign-in, a protected route, a plan-gated route.

Run it (``pip install "authsome-engine[flask]"``)::

    python -m examples.flask_app              # http://127.0.0.1:5000
    # or: flask --app examples.flask_app run
    # in production: gunicorn --preload --workers 4 'examples.flask_app:create_app()'

Then::

    curl -X POST localhost:5000/signup -H 'content-type: application/json' \\
         -d '{"email": "ada@example.com", "password": "correct horse battery staple"}'
    curl -X POST localhost:5000/signin -H 'content-type: application/json' \\
         -d '{"email": "ada@example.com", "password": "correct horse battery staple"}'
    curl localhost:5000/me -H 'Authorization: Bearer <access_token>'

Users live in memory unless ``AUTHSOME_DB`` names a SQLite file. Features are gated
by the embedded ledger when ``AUTHSOME_LEDGER_DB`` (or ``authsome migrate``'s file
beside ``AUTHSOME_DB``) names one, and allowed otherwise (``NoopLedger``). With
``AUTHSOME_EXAMPLE_BASE_URL=http://127.0.0.1:5000/auth`` the SSO and social sign-in
routes are mounted under ``/auth`` (a form POSTed to ``/auth/sso/start`` with the
user's ``email`` sends the browser to the org's identity provider; the callback
answers the session's tokens in JSON); see :mod:`examples._engine`.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort

from authsome import Authsome
from authsome.integrations import flask as authsome_flask
from authsome.integrations.flask import (
    client_ip,
    current_principal,
    json_body,
    login_required,
    sign_in_blueprint,
    string_field,
)
from examples._engine import build_auth, sign_in_base_url, sign_in_mount_path


def create_app(auth: Authsome | None = None) -> Flask:
    """The app, around ``auth`` (default: :func:`build_auth`)."""
    auth = auth or build_auth()
    app = Flask(__name__)
    # authsome errors become 401/403/409/422/429/503 JSON answers
    authsome_flask.Authsome(app, auth)
    base_url = sign_in_base_url()
    if base_url is not None:  # SSO and social sign-in: POST {base_url}/sso/start, ...
        prefix = sign_in_mount_path(base_url) or None
        app.register_blueprint(sign_in_blueprint(base_url), url_prefix=prefix)

    @app.post("/signup")
    def signup() -> tuple[dict[str, str], int]:
        body = json_body()  # 415/400/422 JSON answers for a body that is not an object
        user = auth.users.register(
            string_field(body, "email"),
            string_field(body, "password"),
            tenant=string_field(body, "tenant", default="default"),
        )
        return {"user_id": user.id, "email": user.email, "tenant": user.tenant}, 201

    @app.post("/signin")
    def signin() -> dict[str, Any]:
        body = json_body()
        result = auth.sign_in(
            string_field(body, "email"),
            string_field(body, "password"),
            tenant=string_field(body, "tenant", default="default"),
            ip=client_ip(),  # the socket peer unless the extension trusts proxies
        )
        if result.tokens is None:  # a second factor is due: exchange the ticket
            return {"mfa_required": True, "ticket": result.ticket}
        return {
            "access_token": result.tokens.access_token,
            "refresh_token": result.tokens.refresh_token,
            "token_type": "bearer",
            "expires_at": result.tokens.session.access_expires_at.isoformat(),
        }

    @app.get("/me")
    @login_required
    def me() -> dict[str, str | None]:
        principal = current_principal()
        assert principal is not None  # login_required saw to it
        return {
            "kind": principal.kind,
            "tenant": principal.tenant,
            "user_id": principal.user_id,
            "org_id": principal.org_id,
        }

    @app.post("/api-keys")
    @login_required
    def create_api_key() -> tuple[dict[str, str], int]:
        created = auth.api_keys.create(_signed_in_user(), "example key")
        return {"id": created.key.id, "secret": created.secret}, 201  # shown this once only

    @app.post("/orgs")
    @login_required
    def create_org() -> tuple[dict[str, str], int]:
        # Gated by authsome.feature.orgs: a plan without it answers 403 with the key.
        org = auth.orgs.create(_signed_in_user(), string_field(json_body(), "name"))
        return {"id": org.id, "slug": org.slug, "name": org.name}, 201

    return app


def _signed_in_user() -> str:
    principal = current_principal()
    if principal is None or principal.kind != "session" or principal.user_id is None:
        abort(403, "this route needs a signed-in user, not an API key")
    return principal.user_id


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=5000)
