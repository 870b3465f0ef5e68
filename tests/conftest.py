"""Shared fixtures: a clock that tests move by hand, cheap hashing, a recording ledger."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings

from authsome import Authsome, PasswordHashing
from authsome.bridge import Ledger
from authsome.mail import MailSettings
from authsome.stores import MemoryStore, Store
from authsome.testing import Outbox, RecordingLedger
from tests.support.github_oauth import GitHubOAuthServer, github_server
from tests.support.oidc_op import OpenIDClient, OpenIDProvider, OPUnavailable
from tests.support.pgserver import PgServer, PgUnavailable, running_server

# CI runs the property tests with a fixed seed sequence, so a landing never depends on
# luck; local runs keep exploring new examples (and the database of failures).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
    settings.load_profile("ci")

FAST = PasswordHashing.fast_insecure_for_tests()
PASSWORD = "correct horse battery staple"
# Where the links in the ``mail_auth`` engine's messages point.
LINK_BASE = "https://app.example/account"


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger() -> RecordingLedger:
    return RecordingLedger()


AuthFactory = Callable[..., Authsome]


@pytest.fixture
def make_auth(clock: FakeClock) -> Iterator[AuthFactory]:
    """Build engines with cheap hashing and the fake clock; closes them afterwards."""
    made: list[Authsome] = []

    def factory(
        *, store: Store | None = None, ledger: Ledger | None = None, **options: object
    ) -> Authsome:
        options.setdefault("password_hashing", FAST)
        options.setdefault("clock", clock)
        auth = Authsome(store=store or MemoryStore(), ledger=ledger, **options)  # type: ignore[arg-type]
        made.append(auth)
        return auth

    yield factory
    for auth in made:
        auth.close()


@pytest.fixture
def auth(make_auth: AuthFactory, ledger: RecordingLedger) -> Authsome:
    return make_auth(ledger=ledger)


@pytest.fixture
def outbox() -> Outbox:
    """Where the ``mail_auth`` engine's messages go."""
    return Outbox()


@pytest.fixture
def mail_auth(make_auth: AuthFactory, outbox: Outbox, ledger: RecordingLedger) -> Authsome:
    """An engine that mails (to ``outbox``), for the account journeys."""
    return make_auth(ledger=ledger, mailer=outbox, mail=MailSettings(link_base_url=LINK_BASE))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for the whole session (skipped locally, fatal in CI)."""
    try:
        with running_server() as server:
            yield server
    except PgUnavailable as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _started_provider() -> OpenIDProvider:
    """A running OpenID Provider (skipped locally without node or its npm packages,
    fatal in CI)."""
    try:
        return OpenIDProvider().start()
    except OPUnavailable as exc:
        if _in_ci():
            pytest.fail(f"the OpenID Provider is required in CI: {exc}")
        pytest.skip(f"OpenID Provider unavailable: {exc}")


@pytest.fixture(scope="session")
def oidc_op() -> Iterator[OpenIDProvider]:
    """A real OpenID Provider (npm ``oidc-provider``) shared by the whole session.

    Tests register their own client (``oidc_client``) and accounts, so they never see
    each other's; a test that rotates keys for good uses ``fresh_oidc_op``."""
    provider = _started_provider()
    yield provider
    provider.stop()


@pytest.fixture
def fresh_oidc_op() -> Iterator[OpenIDProvider]:
    """An OpenID Provider of this test's own (its keys and settings change nobody else's)."""
    provider = _started_provider()
    yield provider
    provider.stop()


@pytest.fixture
def oidc_client(oidc_op: OpenIDProvider) -> OpenIDClient:
    """A new confidential client (client_secret_basic, RS256) at the shared provider,
    redirecting to ``https://app.example/sso/callback``."""
    return oidc_op.add_client()


@pytest.fixture
def github_oauth() -> Iterator[GitHubOAuthServer]:
    """A local server keeping GitHub's OAuth 2 web-flow and user-API contract; register
    an app with ``add_app()`` and users with ``add_user(...)``."""
    with github_server() as server:
        yield server


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A DSN for the session's server (every test gets its own schema via ``pg_schema``)."""
    return pg_server.dsn()


@pytest.fixture
def pg_schema(request: pytest.FixtureRequest) -> str:
    """A schema name unique to this test, so tests never see each other's rows."""
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    return f"t_{digest}"
