"""Engines for the social sign-in tests: a recording ledger, the fake clock, and
plain http allowed to the local providers on 127.0.0.1."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from authsome import Authsome
from authsome.testing import RecordingLedger
from tests.conftest import AuthFactory, FakeClock


@pytest.fixture
def provider_http() -> Iterator[httpx.Client]:
    """The engine's HTTP client to the providers, closed after the test."""
    with httpx.Client(timeout=10.0, follow_redirects=False) as client:
        yield client


@pytest.fixture
def social_auth(
    make_auth: AuthFactory, ledger: RecordingLedger, provider_http: httpx.Client, clock: FakeClock
) -> Authsome:
    clock.now = datetime.now(UTC)  # the provider signs ID tokens with the real time
    return make_auth(
        ledger=ledger,
        secret_key=secrets.token_bytes(32),
        sso_allow_insecure_loopback=True,
        http_client=provider_http,
    )
