"""One contract for every ledger store (parametrized by the ``store`` fixture)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from authsome import ledger
from authsome.ledger.stores import (
    ConsumeRequest,
    EventIds,
    UniqueUse,
    UsageBatch,
    UsageDelta,
    UsageRecord,
)
from authsome.ledger.stores.sqlite import MIGRATIONS

T0 = 1_706_702_400  # a period start


def test_is_a_ledger_store(store: ledger.LedgerStore) -> None:
    assert isinstance(store, ledger.LedgerStore)


def test_plans_are_versioned(store: ledger.LedgerStore) -> None:
    assert store.get_plan("p") is None
    v1 = store.put_plan(ledger.Plan("p", [ledger.Feature.boolean("a")]))
    v2 = store.put_plan(ledger.Plan("p", [ledger.Feature.metered("b", 5, aggregation="unique")]))
    store.put_plan(ledger.Plan("q"))
    assert (v1.version, v2.version) == (1, 2)
    assert store.get_plan("p") == v2
    assert store.get_plan("p", 1) == v1
    assert store.get_plan("p", 3) is None
    assert store.plan_versions("p") == [v1, v2]
    assert store.plan_keys() == ["p", "q"]
    b = v2.feature("b")
    assert b is not None
    assert b.unique


def test_subscriptions_are_upserted(store: ledger.LedgerStore) -> None:
    at = datetime(2024, 1, 31, tzinfo=UTC)
    sub = ledger.Subscription("t", "p", at, "trialing", trial_end=datetime(2024, 2, 14, tzinfo=UTC))
    store.put_subscription(sub)
    assert store.get_subscription("t") == sub
    changed = ledger.Subscription("t", "q", at, cancel_at_period_end=True, cancel_at=at)
    store.put_subscription(changed)
    assert store.get_subscription("t") == changed
    assert store.get_subscription("other") is None


def test_apply_usage_adds_and_counts_event_ids_once(store: ledger.LedgerStore) -> None:
    batch = UsageBatch(
        [
            UsageDelta("t", "f", T0, 3),
            UsageDelta("t", "f", T0, 4, "e1"),
            UsageDelta("t", "f", T0, 4, "e1"),
            UsageDelta("t", "g", 0, 2, "e1"),  # same id, other feature: another event
        ]
    )
    store.apply_usage(batch)
    store.apply_usage(batch)  # a whole batch retried
    assert store.get_usage("t", "f", T0) == 3 + 4 + 3
    assert store.get_usage("t", "g", 0) == 2
    assert store.get_usage("t", "f", T0 + 1) == 0
    assert store.known_events("t", "f", ["e1", "e2"]) == {"e1"}
    assert store.known_events("u", "f", ["e1"]) == set()


def test_event_ids_in_bulk_count_once_like_deltas(store: ledger.LedgerStore) -> None:
    assert getattr(store, "accepts_event_ids", False) is True
    batch = UsageBatch(
        [UsageDelta("t", "f", T0, 4, "d1")],
        batch_id=None,
        events=[
            EventIds("t", "f", T0, 2, ["e1", "e2", "e1", "d1"]),  # e1 twice, d1 a delta's
            EventIds("t", "f", T0, 5, ["e3"]),
            EventIds("t", "g", 0, 1, ["e1"]),  # same id, other feature: another event
            EventIds("t", "f", T0, 1, []),
        ],
    )
    assert len(batch) == 1 + 4 + 1 + 1
    store.apply_usage(batch)
    store.apply_usage(batch)  # retried without a batch id: the ids hold it
    store.apply_usage(UsageBatch(events=[EventIds("t", "f", T0, 7, ["e2", "e4"])]))
    assert store.get_usage("t", "f", T0) == 4 + 2 * 2 + 5 + 7
    assert store.get_usage("t", "g", 0) == 1
    assert store.known_events("t", "f", ["e1", "e2", "e3", "e4", "e5", "d1"]) == {
        "e1",
        "e2",
        "e3",
        "e4",
        "d1",
    }
    assert store.consume(ConsumeRequest("t", "f", T0, 1, ceiling=100, event_id="e4")).applied
    assert store.get_usage("t", "f", T0) == 4 + 2 * 2 + 5 + 7  # e4 was known


def test_expanded_is_the_same_batch_as_deltas() -> None:
    batch = UsageBatch(
        [UsageDelta("t", "f", T0, 1)],
        [UniqueUse("t", "mau", T0, "u")],
        "b1",
        [EventIds("t", "f", T0, 2, ["e1", "e2"])],
    )
    assert batch.expanded() == UsageBatch(
        [
            UsageDelta("t", "f", T0, 1),
            UsageDelta("t", "f", T0, 2, "e1"),
            UsageDelta("t", "f", T0, 2, "e2"),
        ],
        [UniqueUse("t", "mau", T0, "u")],
        "b1",
    )
    plain = UsageBatch([UsageDelta("t", "f", T0, 1)])
    assert plain.expanded() is plain


@pytest.mark.parametrize("json", [True, False])
def test_sqlite_event_ids_in_bulk_with_and_without_json(tmp_path: Path, json: bool) -> None:
    store = ledger.SQLiteStore(tmp_path / "l.db")
    store._json = json  # as on an SQLite built without the JSON functions
    odd = ["a\u0000", 'q"uote', "back\\slash", "tab\tnew\nline", "ünï ☃ \U0001f600"]
    store.apply_usage(UsageBatch(events=[EventIds("t", "f", T0, 1, odd)]))
    store.apply_usage(UsageBatch(events=[EventIds("t", "f", T0, 1, odd)]))
    assert store.get_usage("t", "f", T0) == len(odd)
    assert store.known_events("t", "f", odd) == set(odd)
    with pytest.raises(ledger.LedgerDataError):  # a lone surrogate cannot be stored
        store.apply_usage(UsageBatch(events=[EventIds("t", "f", T0, 1, ["x", "\ud800"])]))
    assert store.known_events("t", "f", ["x"]) == set()  # all or nothing
    store.close()


def test_sqlite_page_cache_is_sized(tmp_path: Path) -> None:
    store = ledger.SQLiteStore(tmp_path / "l.db", cache_mb=8)
    assert store._db.execute("PRAGMA cache_size").fetchone()[0] == -8 * 1024
    store.close()
    with pytest.raises(ledger.InvalidArgument):
        ledger.SQLiteStore(tmp_path / "m.db", cache_mb=0)
    with pytest.raises(ledger.InvalidArgumentType):
        ledger.SQLiteStore(tmp_path / "m.db", cache_mb=True)


def test_sqlite_keeps_a_nul_in_a_bulk_event_id(tmp_path: Path) -> None:
    store = ledger.SQLiteStore(tmp_path / "l.db")
    store.apply_usage(UsageBatch(events=[EventIds("t", "f", T0, 1, ["a\x00b", "a"])]))
    assert store.get_usage("t", "f", T0) == 2  # not cut at the NUL into a second "a"
    store.close()


def test_negative_deltas_release_seats(store: ledger.LedgerStore) -> None:
    store.apply_usage(UsageBatch([UsageDelta("t", "seats", 0, 3), UsageDelta("t", "seats", 0, -1)]))
    assert store.get_usage("t", "seats", 0) == 2


def test_unique_users_count_once_per_period(store: ledger.LedgerStore) -> None:
    uses = [UniqueUse("t", "mau", T0, u) for u in ["a", "b", "a"]]
    store.apply_usage(UsageBatch(uniques=uses))
    store.apply_usage(UsageBatch(uniques=[UniqueUse("t", "mau", T0, "b")]))
    store.apply_usage(UsageBatch(uniques=[UniqueUse("t", "mau", T0 + 1, "b")]))
    assert store.get_usage("t", "mau", T0) == 2
    assert store.get_usage("t", "mau", T0 + 1) == 1
    assert store.known_users("t", "mau", T0, ["a", "c"]) == {"a"}


def test_known_subsets_handle_many_values(store: ledger.LedgerStore) -> None:
    ids = [f"e{i}" for i in range(1500)]
    store.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 1, e) for e in ids[::2]]))
    assert store.known_events("t", "f", ids) == set(ids[::2])


def test_consume_is_conditional(store: ledger.LedgerStore) -> None:
    req = ConsumeRequest("t", "f", T0, 3, ceiling=5)
    assert store.consume(req) == (True, 3)
    assert store.consume(req) == (False, 3)
    assert store.consume(req._replace(quantity=2)) == (True, 5)
    assert store.get_usage("t", "f", T0) == 5


def test_consume_with_event_id_is_idempotent(store: ledger.LedgerStore) -> None:
    req = ConsumeRequest("t", "f", T0, 2, ceiling=2, event_id="x")
    assert store.consume(req) == (True, 2)
    assert store.consume(req) == (True, 2)  # known id: accepted, not counted
    assert store.known_events("t", "f", ["x"]) == {"x"}
    store.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 2, "x")]))
    assert store.get_usage("t", "f", T0) == 2


def test_consume_unique(store: ledger.LedgerStore) -> None:
    def req(user: str) -> ConsumeRequest:
        return ConsumeRequest("t", "mau", T0, 1, ceiling=2, unique=True, user_id=user)

    assert store.consume(req("a")).applied
    assert store.consume(req("b")).applied
    assert not store.consume(req("c")).applied
    assert store.consume(req("a")) == (True, 2)
    assert store.known_users("t", "mau", T0, ["a", "b", "c"]) == {"a", "b"}


def test_consume_is_exact_under_threads(store: ledger.LedgerStore) -> None:
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(25):
            wins.append(store.consume(ConsumeRequest("t", "f", T0, 1, ceiling=60)).applied)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 60
    assert store.get_usage("t", "f", T0) == 60


def test_usage_records_list_a_tenant(store: ledger.LedgerStore) -> None:
    store.apply_usage(
        UsageBatch(
            [UsageDelta("t", "b", T0, 1), UsageDelta("t", "a", 0, 2), UsageDelta("u", "a", 0, 9)]
        )
    )
    assert store.usage_records("t") == [UsageRecord("a", 0, 2), UsageRecord("b", T0, 1)]


def test_close_is_idempotent(store: ledger.LedgerStore) -> None:
    store.close()
    store.close()


# --- SQLite specifics: persistence, schema versions, atomicity ---


def test_sqlite_persists_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    s = ledger.SQLiteStore(path)
    s.put_plan(ledger.Plan("p"))
    s.apply_usage(UsageBatch([UsageDelta("t", "f", T0, 5, "e")]))
    s.close()
    s = ledger.SQLiteStore(path)
    try:
        assert s.get_plan("p") is not None
        assert s.get_usage("t", "f", T0) == 5
        assert s.schema_version == len(MIGRATIONS)
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        s.close()


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(ledger.LedgerStoreError, match="newer"):
        ledger.SQLiteStore(path)


def test_sqlite_batch_is_all_or_nothing(tmp_path: Path) -> None:
    s = ledger.SQLiteStore(tmp_path / "l.db")
    try:
        bad = UsageBatch([UsageDelta("t", "f", T0, 5, "e1"), UsageDelta("t", "f", T0, 1, "\ud800")])
        with pytest.raises(ledger.LedgerDataError):  # unencodable, inside the transaction
            s.apply_usage(bad)
        assert s.get_usage("t", "f", T0) == 0
        assert s.known_events("t", "f", ["e1"]) == set()  # rolled back with the increment
    finally:
        s.close()


def test_sqlite_errors_are_ledger_store_errors(tmp_path: Path) -> None:
    s = ledger.SQLiteStore(tmp_path / "l.db")
    s.close()
    with pytest.raises(ledger.LedgerStoreError):
        s.get_usage("t", "f", T0)
    with pytest.raises(ledger.LedgerStoreError):
        ledger.SQLiteStore(tmp_path / "missing-dir" / "l.db")
