"""An engine with an org whose OIDC connection points at the test OpenID Provider,
and the steps of one sign-in, for the SSO sign-in tests."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from authsome import Authsome
from authsome.errors import InvalidCredentials
from authsome.models import Domain, Org, SignIn, SSOConnectionInfo
from authsome.sso import OIDCConnection
from authsome.stores import Store
from tests.support.oidc_op import OpenIDClient, OpenIDProvider

PASSWORD = "correct horse battery staple"  # the suite's (tests/conftest.py)

TENANT = "acme"
DOMAIN = "acme.test"
IP = "203.0.113.7"


class Scene:
    """An engine with an org of tenant ``acme`` whose OIDC connection points at the
    test provider, and helpers for one sign-in."""

    def __init__(
        self, auth: Authsome, op: OpenIDProvider, client: OpenIDClient, **settings: object
    ) -> None:
        self.auth = auth
        self.op = op
        self.client = client
        owner = auth.users.register(f"owner@{DOMAIN}", PASSWORD, tenant=TENANT)
        self.org: Org = auth.orgs.create(owner.id, "Acme")
        fields: dict[str, object] = {
            "issuer": op.issuer,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "domains": (DOMAIN,),
            **settings,
        }
        self.connection: SSOConnectionInfo = auth.sso.configure(
            self.org.id,
            OIDCConnection(**fields),  # type: ignore[arg-type]
        )

    def account(self, **claims: object) -> str:
        """A new account at the provider (its id is the ``sub``)."""
        claims.setdefault("email", f"user-{secrets.token_hex(4)}@{DOMAIN}")
        claims.setdefault("email_verified", True)
        return self.op.add_account(f"acct-{secrets.token_hex(6)}", **claims)

    def callback(self, account_id: str) -> tuple[dict[str, str], str]:
        """Begin, sign in at the provider; the callback's parameters and the handle."""
        redirect = self.auth.sso.begin(
            self.connection.id, redirect_uri=self.client.redirect_uri, tenant=TENANT
        )
        url = self.op.login(redirect.url, account_id)
        assert url.startswith(self.client.redirect_uri + "?")
        return query(url), redirect.handle

    def sign_in(self, account_id: str) -> SignIn:
        params, handle = self.callback(account_id)
        return self.auth.sso.complete(params, handle=handle, tenant=TENANT, ip=IP)


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def prove(store: Store, domain: str = DOMAIN, tenant: str = TENANT) -> None:
    """Record ``domain`` as a verified custom domain of ``tenant`` (the DNS proof
    itself is tested with the custom domains)."""
    now = datetime.now(UTC)
    record = Domain(f"dom_{secrets.token_hex(4)}", tenant, domain, now)
    store.create_domain(record, secrets.token_hex(8))
    store.mark_domain_verified(record.id, now)


@contextlib.contextmanager
def refused(caplog: pytest.LogCaptureFixture, reason: str) -> Iterator[None]:
    """Expect the one generic refusal, for the logged ``reason``."""
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, "authsome.security"),
        pytest.raises(InvalidCredentials) as raised,
    ):
        yield
    assert str(raised.value) == "invalid credentials"
    logged = " | ".join(r.getMessage() for r in caplog.records if r.name == "authsome.security")
    assert reason in logged
