"""The embedded ledger store: one SQLite file, WAL, versioned schema, atomic upserts.

Several processes may open the same file: every write is one ``BEGIN IMMEDIATE``
transaction, event ids sit under a primary key, and counters are updated with
``INSERT ... ON CONFLICT DO UPDATE SET used = used + excluded.used``. A store opened
before ``fork()`` opens its own connection in the child on first use.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

from authsome.ledger.clock import Clock
from authsome.ledger.errors import (
    InvalidArgument,
    InvalidArgumentType,
    LedgerDataError,
    LedgerStoreError,
)
from authsome.ledger.plans import (
    MAX_COUNTER,
    Plan,
    Subscription,
    dump_plan,
    dump_subscription,
    load_plan,
    load_subscription,
)
from authsome.ledger.stores._fork import park_inherited, track
from authsome.ledger.stores._protocol import (
    ConsumeRequest,
    ConsumeResult,
    EventIds,
    UsageBatch,
    UsageRecord,
)
from authsome.ledger.stores._retention import (
    PruneSchedule,
    check_limit,
    chunk_for,
    default_retention,
)

__all__ = ["MIGRATIONS", "SQLiteStore"]

_T = TypeVar("_T")

# Each entry migrates the schema from version i to i + 1; never edit a released entry,
# append a new one. ``PRAGMA user_version`` records how far a file got.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE ledger_plans (
            key TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
            created_at REAL NOT NULL, PRIMARY KEY (key, version)) WITHOUT ROWID""",
        """CREATE TABLE ledger_subscriptions (
            tenant TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at REAL NOT NULL)
            WITHOUT ROWID""",
        """CREATE TABLE ledger_usage (
            tenant TEXT NOT NULL, feature TEXT NOT NULL, period_start INTEGER NOT NULL,
            used INTEGER NOT NULL, PRIMARY KEY (tenant, feature, period_start)) WITHOUT ROWID""",
        """CREATE TABLE ledger_events (
            tenant TEXT NOT NULL, feature TEXT NOT NULL, event_id TEXT NOT NULL,
            period_start INTEGER NOT NULL, quantity INTEGER NOT NULL,
            PRIMARY KEY (tenant, feature, event_id)) WITHOUT ROWID""",
        """CREATE TABLE ledger_users (
            tenant TEXT NOT NULL, feature TEXT NOT NULL, period_start INTEGER NOT NULL,
            user_id TEXT NOT NULL, PRIMARY KEY (tenant, feature, period_start, user_id))
            WITHOUT ROWID""",
    ),
    (
        """CREATE TABLE ledger_batches (
            batch_id TEXT PRIMARY KEY, applied_at REAL NOT NULL) WITHOUT ROWID""",
    ),
    # 3: when each event id was recorded, so ids past their retention can be pruned
    # (the ids already there count from the upgrade).
    (
        "ALTER TABLE ledger_events ADD COLUMN recorded_at INTEGER NOT NULL DEFAULT 0",
        "UPDATE ledger_events SET recorded_at = CAST(strftime('%s', 'now') AS INTEGER)",
        "CREATE INDEX ledger_events_recorded_at ON ledger_events (recorded_at)",
    ),
)

# Counters never go below 0 (releasing more seats than are held leaves 0, not a credit)
# and saturate at MAX_COUNTER instead of overflowing (SQLite would make them REAL).
_UPSERT = (
    "INSERT INTO ledger_usage (tenant, feature, period_start, used) "
    "VALUES (?1, ?2, ?3, MAX(0, ?4)) "
    "ON CONFLICT (tenant, feature, period_start) DO UPDATE SET used = MAX(0, CASE "
    "WHEN ?4 > 0 AND used > 9223372036854775807 - ?4 "
    "THEN 9223372036854775807 ELSE used + ?4 END)"
)
assert MAX_COUNTER == 9223372036854775807  # the literal above
_INSERT_EVENT = (
    "INSERT OR IGNORE INTO ledger_events "
    "(tenant, feature, event_id, period_start, quantity, recorded_at) VALUES (?, ?, ?, ?, ?, ?)"
)
# All event ids of one EventIds group in one statement: SQLite walks the JSON array
# itself, so the sqlite3 module releases the GIL once per group instead of once per id
# (executemany steps row by row), and the request threads keep running meanwhile.
_INSERT_EVENTS_JSON = (
    "INSERT OR IGNORE INTO ledger_events "
    "(tenant, feature, event_id, period_start, quantity, recorded_at) "
    "SELECT ?1, ?2, value, ?3, ?4, ?6 FROM json_each(?5)"
)
# Oldest first through the recorded_at index, a bounded number at a time.
_PRUNE_EVENTS = (
    "DELETE FROM ledger_events WHERE (tenant, feature, event_id) IN ("
    "SELECT tenant, feature, event_id FROM ledger_events WHERE recorded_at < ? LIMIT ?)"
)
_INSERT_USER = (
    "INSERT OR IGNORE INTO ledger_users (tenant, feature, period_start, user_id) "
    "VALUES (?, ?, ?, ?)"
)
_INSERT_BATCH = "INSERT OR IGNORE INTO ledger_batches (batch_id, applied_at) VALUES (?, ?)"
_PRUNE_BATCHES = "DELETE FROM ledger_batches WHERE applied_at < ?"
_PRUNE_EVERY = 1024  # batches between prunes (a prune scans the table)
_KEEP_BATCHES = 86_400.0  # seconds a batch id is remembered (retries take seconds)
_GET_USAGE = "SELECT used FROM ledger_usage WHERE tenant = ? AND feature = ? AND period_start = ?"
_CHECKPOINT_PAGES = 10_000  # WAL pages between automatic checkpoints (40 MiB of 4 KiB)
_MAX_VARS = 500  # stay far below SQLite's bound on host parameters per statement


class SQLiteStore:
    """A :class:`~authsome.ledger.stores.LedgerStore` in one SQLite file.

    One connection per store, serialized by a lock (SQLite serializes writers anyway);
    WAL mode so readers in other processes are not blocked by the flusher. Errors of
    the database surface as :class:`~authsome.ledger.errors.LedgerStoreError`.

    ``cache_mb`` bounds SQLite's page cache for this connection (memory is taken as
    pages are used). Event ids are random, so each flush inserts all over their
    index; with SQLite's default 2 MB, most of those pages are re-read every flush.

    Event ids are forgotten ``event_id_retention`` after they were recorded (default:
    the longest period of the stored plans plus 35 days; see
    :meth:`prune_event_ids`), by the clock ``clock`` (default: the system's).

    A store opened before ``os.fork()`` opens its own connection in the child the
    first time the child uses it; the parent's connection is left alone.
    """

    accepts_event_ids = True  # apply_usage takes UsageBatch.events

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        cache_mb: int = 32,
        event_id_retention: timedelta | None = None,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(cache_mb, bool) or not isinstance(cache_mb, int):
            raise InvalidArgumentType("cache_mb must be an int")
        if cache_mb < 1:
            raise InvalidArgument("cache_mb must be positive")
        self.path = os.fspath(path)
        self._timeout = timeout
        self._cache_mb = cache_mb
        self._pruning = PruneSchedule(event_id_retention, clock)
        self._lock = threading.RLock()
        self._batches = 0  # applied by this store object, to prune now and then
        self._inherited = False  # True in a forked child until it reconnects
        try:
            self._db = self._connect()
            self._migrate()
            self._json = _has_json(self._db)
        except sqlite3.Error as exc:
            raise LedgerStoreError(f"cannot open ledger database: {exc}") from exc
        self._closed = False
        track(self)

    # --- plumbing ---

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute(f"PRAGMA cache_size=-{self._cache_mb * 1024}")  # KiB when negative
        # Random event ids land each on its own page of the id index, so a flush dirties
        # about one page per new id. Checkpointing every 1,000 pages (the default) then
        # copies and syncs pages nearly every flush; every 10,000 lets a page changed by
        # several flushes be copied once (about 2x cheaper per id on a large index).
        # The WAL file is cut back to 64 MiB after a checkpoint.
        db.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
        return db

    def after_fork_in_child(self) -> None:
        """In a forked child: a fresh lock, and a connection of its own on first use."""
        self._lock = threading.RLock()
        self._inherited = True

    def _connection(self) -> sqlite3.Connection:
        """This process's connection (call with the lock held)."""
        self._check_open()
        if self._inherited:
            park_inherited(self._db)  # the parent's: never used nor closed here
            try:
                self._db = self._connect()
            except sqlite3.Error as exc:
                raise LedgerStoreError(f"cannot reopen ledger database: {exc}") from exc
            self._inherited = False
        return self._db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the database's write lock from the start."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise LedgerStoreError("the ledger store is closed")

    def _call(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except (sqlite3.IntegrityError, sqlite3.DataError, OverflowError, ValueError) as exc:
            # The data, not the database: retrying the same records fails the same way.
            # (UnicodeError is a ValueError.)
            raise LedgerDataError(f"ledger database refused the data: {exc}") from exc
        except sqlite3.Error as exc:
            raise LedgerStoreError(f"ledger database error: {exc}") from exc

    def _read(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        def run() -> list[Any]:
            with self._lock:
                return self._connection().execute(sql, params).fetchall()

        return self._call(run)

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # one migrator at a time, also across processes
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise LedgerStoreError(
                    f"ledger database schema {version} is newer than this library "
                    f"({len(MIGRATIONS)})"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number]:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        return int(self._read("PRAGMA user_version", ())[0][0])

    # --- plans and subscriptions ---

    def put_plan(self, plan: Plan) -> Plan:
        """Store ``plan`` as the newest version of its key."""

        def run() -> Plan:
            with self._tx() as db:
                row = db.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM ledger_plans WHERE key = ?",
                    (plan.key,),
                ).fetchone()
                stored = plan.with_version(int(row[0]) + 1)
                db.execute(
                    "INSERT INTO ledger_plans (key, version, body, created_at) VALUES (?,?,?,?)",
                    (plan.key, stored.version, dump_plan(plan), time.time()),
                )
                return stored

        return self._call(run)

    def get_plan(self, key: str, version: int | None = None) -> Plan | None:
        """The newest (or the given) version of plan ``key``."""
        if version is None:
            sql = "SELECT body, version FROM ledger_plans WHERE key = ? ORDER BY version DESC"
            rows = self._read(sql + " LIMIT 1", (key,))
        else:
            sql = "SELECT body, version FROM ledger_plans WHERE key = ? AND version = ?"
            rows = self._read(sql, (key, version))
        return load_plan(str(rows[0][0]), int(rows[0][1])) if rows else None

    def plan_keys(self) -> list[str]:
        """The keys of every plan ever defined."""
        return [
            str(r[0]) for r in self._read("SELECT DISTINCT key FROM ledger_plans ORDER BY key", ())
        ]

    def plan_versions(self, key: str) -> list[Plan]:
        """Every version of plan ``key``, oldest first."""
        rows = self._read(
            "SELECT body, version FROM ledger_plans WHERE key = ? ORDER BY version", (key,)
        )
        return [load_plan(str(body), int(v)) for body, v in rows]

    def put_subscription(self, sub: Subscription) -> None:
        """Create or replace the tenant's subscription."""

        def run() -> None:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO ledger_subscriptions (tenant, body, updated_at) VALUES (?,?,?) "
                    "ON CONFLICT (tenant) DO UPDATE SET body = excluded.body, "
                    "updated_at = excluded.updated_at",
                    (sub.tenant, dump_subscription(sub), time.time()),
                )

        self._call(run)

    def get_subscription(self, tenant: str) -> Subscription | None:
        """The tenant's subscription, or ``None``."""
        rows = self._read("SELECT body FROM ledger_subscriptions WHERE tenant = ?", (tenant,))
        return load_subscription(str(rows[0][0])) if rows else None

    # --- usage ---

    def apply_usage(self, batch: UsageBatch) -> None:
        """Apply ``batch`` in one transaction; event ids and users count once."""

        recorded_at = int(self._pruning.now())

        def run() -> None:
            increments: dict[tuple[str, str, int], int] = {}
            with self._tx() as db:
                if self._pruning.due(recorded_at):
                    self._prune(db, recorded_at, chunk_for(len(batch)))
                if batch.batch_id is not None:
                    now = time.time()
                    cur = db.execute(_INSERT_BATCH, (batch.batch_id, now))
                    if cur.rowcount != 1:
                        return  # applied before; its acknowledgement was lost
                    self._batches += 1
                    if self._batches % _PRUNE_EVERY == 0:
                        db.execute(_PRUNE_BATCHES, (now - _KEEP_BATCHES,))
                # Event ids go in with one executemany per (counter, quantity): its
                # rowcount is how many were new (INSERT OR IGNORE skips known ones), so
                # the increment is exact without a round trip per event.
                with_ids: dict[tuple[str, str, int, int], list[tuple[object, ...]]] = {}
                for d in batch.deltas:
                    counter = (d.tenant, d.feature, d.period_start)
                    if d.event_id is None:
                        increments[counter] = increments.get(counter, 0) + d.quantity
                    else:
                        with_ids.setdefault((*counter, d.quantity), []).append(
                            (
                                d.tenant,
                                d.feature,
                                d.event_id,
                                d.period_start,
                                d.quantity,
                                recorded_at,
                            )
                        )
                for (tenant, feature, start, quantity), rows in with_ids.items():
                    new = db.executemany(_INSERT_EVENT, rows).rowcount
                    counter = (tenant, feature, start)
                    increments[counter] = increments.get(counter, 0) + new * quantity
                for g in batch.events:
                    new = self._insert_ids(db, g, recorded_at)
                    counter = (g.tenant, g.feature, g.period_start)
                    increments[counter] = increments.get(counter, 0) + new * g.quantity
                for u in batch.uniques:
                    if db.execute(_INSERT_USER, u).rowcount == 1:
                        counter = (u.tenant, u.feature, u.period_start)
                        increments[counter] = increments.get(counter, 0) + 1
                db.executemany(_UPSERT, [(*c, _saturate(n)) for c, n in increments.items()])

        self._call(run)

    def _insert_ids(self, db: sqlite3.Connection, g: EventIds, recorded_at: int) -> int:
        """Insert the event ids of ``g``; return how many were new."""
        if self._json:
            payload = _dump_ids(list(g.event_ids))
            # JSON would turn a NUL into an escape that SQLite's json_each cuts the text
            # at; such ids (the engine refuses them) take the row-by-row way.
            if "\\u0000" not in payload:
                args = (g.tenant, g.feature, g.period_start, g.quantity, payload, recorded_at)
                return int(db.execute(_INSERT_EVENTS_JSON, args).rowcount)
        rows = [
            (g.tenant, g.feature, e, g.period_start, g.quantity, recorded_at) for e in g.event_ids
        ]
        return int(db.executemany(_INSERT_EVENT, rows).rowcount)

    # --- event-id retention ---

    def prune_event_ids(self, limit: int | None = None) -> int:
        """Forget event ids recorded longer ago than the retention (at most ``limit``);
        return how many.

        The store also does this by itself while it applies batches (see
        :mod:`authsome.ledger.stores._retention`).
        """
        limit = check_limit(limit)
        now = int(self._pruning.now())

        def run() -> int:
            with self._tx() as db:
                return self._prune(db, now, limit)

        return self._call(run)

    def _prune(self, db: sqlite3.Connection, now: int, limit: int | None) -> int:
        """Delete at most ``limit`` (``None``: all) expired ids, inside a transaction."""
        retention = self._pruning.retention
        if retention is None:
            rows = db.execute("SELECT body, version FROM ledger_plans").fetchall()
            retention = default_retention(load_plan(str(b), int(v)) for b, v in rows)
        cutoff = now - int(retention)
        bound = -1 if limit is None else limit  # LIMIT -1: no limit
        deleted = int(db.execute(_PRUNE_EVENTS, (cutoff, bound)).rowcount)
        self._pruning.done(now, deleted, bound if limit is not None else deleted + 1)
        return deleted

    def get_usage(self, tenant: str, feature: str, period_start: int) -> int:
        """The persisted usage of one period."""
        rows = self._read(_GET_USAGE, (tenant, feature, period_start))
        return int(rows[0][0]) if rows else 0

    def _subset(self, sql: str, head: tuple[object, ...], values: Collection[str]) -> set[str]:
        found: set[str] = set()
        items = list(values)
        for i in range(0, len(items), _MAX_VARS):
            chunk = items[i : i + _MAX_VARS]
            marks = ",".join("?" * len(chunk))
            rows = self._read(sql.format(marks=marks), (*head, *chunk))
            found.update(str(r[0]) for r in rows)
        return found

    def known_events(self, tenant: str, feature: str, event_ids: Collection[str]) -> set[str]:
        """The ``event_ids`` already recorded."""
        sql = (
            "SELECT event_id FROM ledger_events WHERE tenant = ? AND feature = ? "
            "AND event_id IN ({marks})"
        )
        return self._subset(sql, (tenant, feature), event_ids)

    def known_users(
        self, tenant: str, feature: str, period_start: int, user_ids: Collection[str]
    ) -> set[str]:
        """The ``user_ids`` already counted in the period."""
        sql = (
            "SELECT user_id FROM ledger_users WHERE tenant = ? AND feature = ? "
            "AND period_start = ? AND user_id IN ({marks})"
        )
        return self._subset(sql, (tenant, feature, period_start), user_ids)

    def consume(self, request: ConsumeRequest) -> ConsumeResult:
        """Record one use if it fits under ``request.ceiling``, holding the write lock."""
        r = request
        counter = (r.tenant, r.feature, r.period_start)
        recorded_at = int(self._pruning.now())

        def run() -> ConsumeResult:
            with self._tx() as db:
                row = db.execute(_GET_USAGE, counter).fetchone()
                used = int(row[0]) if row else 0
                if (
                    r.event_id is not None
                    and db.execute(
                        "SELECT 1 FROM ledger_events WHERE tenant = ? AND feature = ? "
                        "AND event_id = ?",
                        (r.tenant, r.feature, r.event_id),
                    ).fetchone()
                ):
                    return ConsumeResult(True, used)
                if r.unique:
                    if r.user_id is None:
                        return ConsumeResult(False, used)
                    if db.execute(
                        "SELECT 1 FROM ledger_users WHERE tenant = ? AND feature = ? "
                        "AND period_start = ? AND user_id = ?",
                        (*counter, r.user_id),
                    ).fetchone():
                        return ConsumeResult(True, used)
                    delta = 1
                else:
                    delta = r.quantity
                if used + delta > r.ceiling:
                    return ConsumeResult(False, used)
                if r.unique:
                    db.execute(_INSERT_USER, (*counter, r.user_id))
                if r.event_id is not None:
                    db.execute(
                        _INSERT_EVENT,
                        (r.tenant, r.feature, r.event_id, r.period_start, delta, recorded_at),
                    )
                db.execute(_UPSERT, (*counter, delta))
                return ConsumeResult(True, used + delta)

        return self._call(run)

    def usage_records(self, tenant: str) -> list[UsageRecord]:
        """Every counter of ``tenant``."""
        rows = self._read(
            "SELECT feature, period_start, used FROM ledger_usage WHERE tenant = ? "
            "ORDER BY feature, period_start",
            (tenant,),
        )
        return [UsageRecord(str(f), int(p), int(n)) for f, p, n in rows]

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._inherited:
                    park_inherited(self._db)  # the parent's to close
                else:
                    self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"


_dump_ids = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _has_json(db: sqlite3.Connection) -> bool:
    """Whether this SQLite has the JSON functions (built in since 3.38, usually before)."""
    try:
        db.execute("SELECT value FROM json_each('[]')").fetchall()
    except sqlite3.OperationalError:
        return False
    return True


def _saturate(n: int) -> int:
    """A batch's net change of one counter, within what SQLite's INTEGER holds."""
    return max(-MAX_COUNTER, min(n, MAX_COUNTER))
