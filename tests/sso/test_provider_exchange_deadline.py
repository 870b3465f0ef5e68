"""One deadline bounds each exchange with a provider: a provider that trickles its
answer a byte at a time (each read well within the read timeout) cannot hold a
sign-in start open; the start is refused once the deadline passes."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest

from authsome.errors import InvalidCredentials, ValidationError
from authsome.sso import OIDCConnection
from tests.conftest import PASSWORD, AuthFactory
from tests.support.trickle_server import trickle_server

TENANT = "acme"


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_trickling_provider_is_refused_at_the_deadline(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture, headers_too: bool
) -> None:
    auth = make_auth(sso_allow_insecure_loopback=True, sso_exchange_deadline=timedelta(seconds=0.5))
    owner = auth.users.register("owner@acme.test", PASSWORD, tenant=TENANT)
    org = auth.orgs.create(owner.id, "Acme")
    with trickle_server(headers_too=headers_too) as port:
        connection = auth.sso.configure(
            org.id, OIDCConnection(f"http://127.0.0.1:{port}", "client", "a-client-secret")
        )
        started = time.monotonic()
        with caplog.at_level(logging.WARNING), pytest.raises(InvalidCredentials):
            auth.sso.begin(connection.id, redirect_uri="http://127.0.0.1/cb", tenant=TENANT)
        elapsed = time.monotonic() - started

    assert "deadline" in caplog.text or "ReadTimeout" in caplog.text
    assert 0.5 <= elapsed < 5  # the read timeout (10 s) never fires: the deadline did


@pytest.mark.parametrize("deadline", [timedelta(0), timedelta(seconds=-1), timedelta(hours=1)])
def test_the_deadline_must_be_positive_and_at_most_ten_minutes(
    make_auth: AuthFactory, deadline: timedelta
) -> None:
    with pytest.raises(ValidationError):
        make_auth(sso_exchange_deadline=deadline)
