"""Shared fixtures: a clock that tests move by hand, cheap hashing, a recording ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from authsome import Authsome, PasswordHashing
from authsome.bridge import Ledger
from authsome.stores import MemoryStore, Store
from authsome.testing import RecordingLedger

FAST = PasswordHashing.fast_insecure_for_tests()
PASSWORD = "correct horse battery staple"


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
