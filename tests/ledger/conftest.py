"""Fixtures of the ledger tests: a manual clock, every store, engines that get closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from authsome import ledger
from tests.support.pgschema import drop_schema

START = datetime(2024, 1, 31, 12, 0, tzinfo=UTC)

STARTER = ledger.Plan(
    "starter",
    [
        ledger.Feature.boolean("sso", enabled=False),
        ledger.Feature.boolean("mfa", enabled=True),
        ledger.Feature.metered("mau", limit=3, aggregation="unique"),
        ledger.Feature.metered("api", limit=10, soft_limit=8),
        ledger.Feature.metered("exports", limit=None),
        ledger.Feature.metered("overage", limit=None, soft_limit=2),
        ledger.Feature.metered("reports", limit=2, period="yearly"),
        ledger.Feature.seat("members", limit=2),
    ],
)


@pytest.fixture
def starter() -> ledger.Plan:
    """The plan most tests subscribe ``acme`` to (see STARTER)."""
    return STARTER


@pytest.fixture
def clock() -> ledger.ManualClock:
    """Time stands still at 31 January 2024, 12:00 UTC until a test moves it."""
    return ledger.ManualClock(START)


@pytest.fixture
def engines() -> Iterator[list[ledger.Engine]]:
    """Every engine a test made; closed before any store goes away."""
    made: list[ledger.Engine] = []
    yield made
    close_all(made)


def close_all(made: list[ledger.Engine]) -> None:
    while made:
        made.pop().close(timeout=5)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, engines: list[ledger.Engine]
) -> Iterator[ledger.LedgerStore]:
    """Each store implementation, fresh (PostgreSQL: a schema of its own, dropped after)."""
    s: ledger.LedgerStore
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("pg_dsn")
        schema: str = request.getfixturevalue("pg_schema")
        s = ledger.PostgresStore(dsn, schema=schema, max_size=4)
        try:
            yield s
        finally:
            close_all(engines)
            s.close()
            drop_schema(dsn, schema)
        return
    s = ledger.MemoryStore() if request.param == "memory" else ledger.SQLiteStore(tmp_path / "l.db")
    yield s
    close_all(engines)
    s.close()


EngineFactory = Callable[..., ledger.Engine]


@pytest.fixture
def make_engine(clock: ledger.ManualClock, engines: list[ledger.Engine]) -> Iterator[EngineFactory]:
    """Build engines (manual clock, slow background flushes by default); all closed at the end."""

    def make(**kwargs: Any) -> ledger.Engine:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("flush_interval", 60.0)  # tests flush explicitly unless they say so
        kwargs.setdefault("retry_backoff", (0.001, 0.01))
        eng = ledger.Engine(**kwargs)
        engines.append(eng)
        return eng

    yield make
    close_all(engines)


@pytest.fixture
def engine(make_engine: EngineFactory, store: ledger.LedgerStore) -> ledger.Engine:
    """An engine on each store with the starter plan and tenant ``acme`` subscribed at START."""
    eng = make_engine(store=store)
    eng.define_plan(STARTER)
    eng.subscribe("acme", "starter")
    return eng
