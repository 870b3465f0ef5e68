"""Event ids are remembered for a retention, then pruned (on every store).

A store forgets an id ``event_id_retention`` after it recorded it (by default the
longest period of its plans plus 35 days); within that a retry counts once, after it
the id counts again. Stores prune on their own while they apply batches.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authsome import ledger
from authsome.ledger.stores import ConsumeRequest, EventIds, UsageBatch, UsageDelta
from authsome.ledger.stores.sqlite import MIGRATIONS
from tests.ledger.conftest import START, EngineFactory
from tests.support.pgschema import drop_schema

T0 = 1_706_702_400  # a period start
StoreFactory = Callable[..., ledger.LedgerStore]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Stores of one kind on one database, all closed (and the schema dropped) after."""
    made: list[ledger.LedgerStore] = []
    pg = (
        (request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_schema"))
        if request.param == "postgres"
        else None
    )

    def make(**kwargs: Any) -> ledger.LedgerStore:
        s: ledger.LedgerStore
        if pg is not None:
            s = ledger.PostgresStore(pg[0], schema=pg[1], max_size=2, **kwargs)
        elif request.param == "sqlite":
            s = ledger.SQLiteStore(tmp_path / "l.db", **kwargs)
        else:
            s = ledger.MemoryStore(**kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
    if pg is not None:
        drop_schema(*pg)


def one(event_id: str, feature: str = "f") -> UsageBatch:
    return UsageBatch([UsageDelta("t", feature, T0, 1, event_id)])


def test_only_ids_past_retention_are_pruned(
    make_store: StoreFactory, clock: ledger.ManualClock
) -> None:
    store = make_store(event_id_retention=timedelta(days=10), clock=clock)
    store.apply_usage(one("old"))
    store.apply_usage(UsageBatch(events=[EventIds("t", "g", T0, 1, ["old-bulk"])]))
    clock.advance(days=6)
    store.apply_usage(one("new"))
    clock.advance(days=4, seconds=-1)  # "old" is one second short of 10 days
    assert store.prune_event_ids() == 0

    clock.advance(seconds=2)
    assert store.prune_event_ids() == 2
    assert store.known_events("t", "f", ["old", "new"]) == {"new"}
    assert store.known_events("t", "g", ["old-bulk"]) == set()
    store.apply_usage(
        UsageBatch([UsageDelta("t", "f", T0, 1, "old"), UsageDelta("t", "f", T0, 1, "new")])
    )
    assert store.get_usage("t", "f", T0) == 3  # old, new, and old again: it was forgotten


def test_a_retry_within_retention_counts_once(
    make_store: StoreFactory, clock: ledger.ManualClock
) -> None:
    store = make_store(event_id_retention=timedelta(days=10), clock=clock)
    store.apply_usage(one("e1"))
    clock.advance(days=9, hours=23)
    store.apply_usage(one("e1"))  # the store's own pruning runs here and keeps e1
    assert store.prune_event_ids() == 0
    assert store.consume(ConsumeRequest("t", "f", T0, 1, 10, event_id="e1")) == (True, 1)
    assert store.get_usage("t", "f", T0) == 1


def test_stores_prune_by_themselves_while_applying_batches(
    make_store: StoreFactory, clock: ledger.ManualClock
) -> None:
    store = make_store(event_id_retention=timedelta(days=1), clock=clock)
    store.apply_usage(UsageBatch(events=[EventIds("t", "f", T0, 1, [f"e{i}" for i in range(5)])]))
    clock.advance(days=2)
    store.apply_usage(one("later"))
    assert store.known_events("t", "f", ["e0", "e4", "later"]) == {"later"}


def test_a_prune_can_be_bounded(make_store: StoreFactory, clock: ledger.ManualClock) -> None:
    store = make_store(event_id_retention=timedelta(hours=1), clock=clock)
    store.apply_usage(UsageBatch(events=[EventIds("t", "f", T0, 1, [f"e{i}" for i in range(5)])]))
    clock.advance(hours=2)
    assert store.prune_event_ids(limit=2) == 2
    assert len(store.known_events("t", "f", [f"e{i}" for i in range(5)])) == 3
    assert store.prune_event_ids() == 3


@pytest.mark.parametrize(("period", "kept_days"), [("monthly", 31 + 35), ("yearly", 366 + 35)])
def test_the_default_is_the_longest_period_of_the_plans_plus_35_days(
    make_store: StoreFactory, clock: ledger.ManualClock, period: str, kept_days: int
) -> None:
    store = make_store(clock=clock)
    store.put_plan(ledger.Plan("p", [ledger.Feature.metered("f", 10, period=period)]))
    store.put_plan(ledger.Plan("q", [ledger.Feature.seat("s", 3)]))
    store.apply_usage(one("e1"))
    clock.advance(days=kept_days, seconds=-1)
    assert store.prune_event_ids() == 0
    clock.advance(seconds=2)
    assert store.prune_event_ids() == 1


def test_without_plans_ids_are_kept_a_month_and_the_margin(
    make_store: StoreFactory, clock: ledger.ManualClock
) -> None:
    store = make_store(clock=clock)
    store.apply_usage(one("e1"))
    clock.advance(days=65)
    assert store.prune_event_ids() == 0
    clock.advance(days=1, seconds=1)
    assert store.prune_event_ids() == 1


def test_an_engine_retry_within_the_default_retention_counts_once(
    make_store: StoreFactory, make_engine: EngineFactory, clock: ledger.ManualClock
) -> None:
    store = make_store(clock=clock)
    eng = make_engine(store=store)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api", limit=None)]))
    eng.subscribe("acme", "p")
    eng.meter("acme", "api", event_id="req-1")
    eng.flush()
    clock.advance(days=60)  # two periods later, still within 31 + 35 days
    eng.meter("acme", "api", event_id="req-1")
    eng.flush()
    assert sum(r.used for r in store.usage_records("acme")) == 1


@pytest.mark.parametrize(
    ("value", "error"),
    [(5, ledger.InvalidArgumentType), (timedelta(0), ledger.InvalidArgument)],
)
def test_the_retention_is_a_positive_timedelta(
    make_store: StoreFactory, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        make_store(event_id_retention=value)


@pytest.mark.parametrize(
    ("limit", "error"),
    [(0, ledger.InvalidArgument), (-1, ledger.InvalidArgument), (True, ledger.InvalidArgumentType)],
)
def test_a_prune_limit_is_a_positive_int(
    make_store: StoreFactory, limit: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        make_store().prune_event_ids(limit)  # type: ignore[arg-type]


def test_ids_of_a_file_from_before_retention_count_from_the_upgrade(
    tmp_path: Path, clock: ledger.ManualClock
) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for step in MIGRATIONS[:2]:
        for statement in step:
            db.execute(statement)
    db.execute("PRAGMA user_version = 2")
    db.execute("INSERT INTO ledger_events VALUES ('t', 'f', 'e1', ?, 1)", (T0,))
    db.commit()
    db.close()
    clock.set(START.replace(year=2100))  # whatever the clock says, e1 was just recorded
    store = ledger.SQLiteStore(path, event_id_retention=timedelta(days=1))
    try:
        assert store.schema_version == len(MIGRATIONS)
        assert store.prune_event_ids() == 0
        assert store.known_events("t", "f", ["e1"]) == {"e1"}
    finally:
        store.close()


# Steps: ("send", id) records an event with that id now; ("wait", hours) moves time.
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from(["a", "b", "c", "d"])),
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=60)),
    ),
    max_size=30,
)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_steps)
def test_counts_match_a_model_that_forgets_ids_after_retention(
    kind: str, tmp_path: Path, steps: list[tuple[str, Any]]
) -> None:
    clock = ledger.ManualClock(START)
    retention = timedelta(hours=48)
    store: ledger.LedgerStore = (
        ledger.MemoryStore(event_id_retention=retention, clock=clock)
        if kind == "memory"
        else ledger.SQLiteStore(
            tmp_path / f"{uuid.uuid4().hex}.db", event_id_retention=retention, clock=clock
        )
    )
    recorded: dict[str, float] = {}  # id -> when the model last counted it
    counted = 0
    try:
        for action, arg in steps:
            now = clock().timestamp()
            if action == "wait":
                clock.advance(hours=arg)
                continue
            if arg not in recorded or recorded[arg] < now - retention.total_seconds():
                recorded[arg] = now
                counted += 1
            store.prune_event_ids()  # what the store may have done by itself by now
            store.apply_usage(one(arg))
            assert store.get_usage("t", "f", T0) == counted
    finally:
        store.close()
