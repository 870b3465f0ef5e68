"""The shared ledger store: PostgreSQL through psycopg 3 and a connection pool.

For several processes (and machines) metering into one ledger. Everything that must
be exact across processes is decided by the database, never by a read in Python:

* counters are upserts, ``used = used + excluded.used``;
* an event id is a row under a primary key (until its retention ends, see
  :meth:`PostgresStore.prune_event_ids`), inserted in the same transaction as
  the increment with ``ON CONFLICT DO NOTHING ... RETURNING``: only the ids that
  come back (new ones) add their quantity, so a retried batch, a replayed spool or
  another process sending the same id never counts twice;
* a distinct user of a period is a row under a primary key, the same way;
* a batch id is a row under a primary key too, inserted first in the batch's
  transaction: a batch whose id is already there is skipped whole, so a batch whose
  commit landed but whose acknowledgement was lost does not count twice when retried
  (ids are pruned after a day);
* a counter is clamped to ``0..2**63 - 1`` after adding a batch's net delta, computed
  as ``numeric`` so it saturates instead of overflowing ``BIGINT``;
* :meth:`PostgresStore.consume` is a conditional upsert (``... DO UPDATE ... WHERE
  used + delta <= ceiling``) that holds the counter's row lock while it decides.

Every transaction takes its row locks in one global order (event ids, then users,
then counters, each sorted), so concurrent flushes do not deadlock; should the
server still report a deadlock or a serialization failure, the transaction is
retried a few times. Data the database can never take (SQLSTATE classes 22 and 23:
NUL characters, out-of-range numbers, unencodable text...) raises
:class:`~authsome.ledger.errors.LedgerDataError`; every other failure a plain
:class:`~authsome.ledger.errors.LedgerStoreError`. The schema is versioned:
:data:`MIGRATIONS` are applied under a transaction-scoped advisory lock, so processes
starting together migrate once.

Needs the optional extra: ``pip install 'authsome-engine[postgres]'``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import threading
import time
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

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
    UsageBatch,
    UsageRecord,
)
from authsome.ledger.stores._retention import (
    PruneSchedule,
    check_limit,
    chunk_for,
    default_retention,
)

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["MIGRATIONS", "PostgresStore"]

_T = TypeVar("_T")
_Counter = tuple[str, str, int]

EXTRA_HINT = "pip install 'authsome-engine[postgres]'"

# Each entry migrates the schema from version i to i + 1; never edit a released entry,
# append a new one. ``{schema}`` is replaced by the quoted schema name. The table
# ``ledger_schema`` records one row per applied version.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE {schema}.ledger_plans (
            key TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (key, version))""",
        """CREATE TABLE {schema}.ledger_subscriptions (
            tenant TEXT PRIMARY KEY, body TEXT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
        """CREATE TABLE {schema}.ledger_usage (
            tenant TEXT NOT NULL, feature TEXT NOT NULL, period_start BIGINT NOT NULL,
            used BIGINT NOT NULL, PRIMARY KEY (tenant, feature, period_start))""",
        """CREATE TABLE {schema}.ledger_events (
            tenant TEXT NOT NULL, feature TEXT NOT NULL, event_id TEXT NOT NULL,
            period_start BIGINT NOT NULL, quantity BIGINT NOT NULL,
            PRIMARY KEY (tenant, feature, event_id))""",
        """CREATE TABLE {schema}.ledger_users (
            tenant TEXT NOT NULL, feature TEXT NOT NULL, period_start BIGINT NOT NULL,
            user_id TEXT NOT NULL, PRIMARY KEY (tenant, feature, period_start, user_id))""",
    ),
    # 2: batch ids, so a batch retried after an ambiguous commit is applied once.
    (
        """CREATE TABLE {schema}.ledger_batches (
            batch_id TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
        "CREATE INDEX ledger_batches_applied_at ON {schema}.ledger_batches (applied_at)",
    ),
    # 3: when each event id was recorded (seconds since the epoch), so ids past their
    # retention can be pruned; the ids already there count from the upgrade.
    (
        "ALTER TABLE {schema}.ledger_events ADD COLUMN recorded_at BIGINT NOT NULL DEFAULT 0",
        "UPDATE {schema}.ledger_events SET recorded_at = extract(epoch FROM now())::bigint",
        "CREATE INDEX ledger_events_recorded_at ON {schema}.ledger_events (recorded_at)",
    ),
)

_BOOTSTRAP = (
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    """CREATE TABLE IF NOT EXISTS {schema}.ledger_schema (
        version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())""",
)

# The statements of the store; rendered once per store with the quoted schema name.
_QUERIES: dict[str, str] = {
    "version": "SELECT COALESCE(MAX(version), 0) FROM {schema}.ledger_schema",
    "mark_version": "INSERT INTO {schema}.ledger_schema (version) VALUES (%s)",
    "put_plan": (
        "INSERT INTO {schema}.ledger_plans (key, version, body) "
        "SELECT %s, COALESCE(MAX(version), 0) + 1, %s FROM {schema}.ledger_plans WHERE key = %s "
        "RETURNING version"
    ),
    "plan_latest": (
        "SELECT body, version FROM {schema}.ledger_plans WHERE key = %s "
        "ORDER BY version DESC LIMIT 1"
    ),
    "plan_version": (
        "SELECT body, version FROM {schema}.ledger_plans WHERE key = %s AND version = %s"
    ),
    "plan_keys": "SELECT DISTINCT key FROM {schema}.ledger_plans ORDER BY key",
    "plan_versions": (
        "SELECT body, version FROM {schema}.ledger_plans WHERE key = %s ORDER BY version"
    ),
    "put_sub": (
        "INSERT INTO {schema}.ledger_subscriptions (tenant, body) VALUES (%s, %s) "
        "ON CONFLICT (tenant) DO UPDATE SET body = excluded.body, updated_at = now()"
    ),
    "get_sub": "SELECT body FROM {schema}.ledger_subscriptions WHERE tenant = %s",
    # One counter's new event ids: the ids already stored are skipped by the primary
    # key and only the rows the INSERT returns (the new ones) are summed.
    "insert_events": (
        "WITH new AS (INSERT INTO {schema}.ledger_events "
        "(tenant, feature, event_id, period_start, quantity, recorded_at) "
        "SELECT %b, %b, e, %b, q, %b FROM unnest(%b::text[], %b::bigint[]) AS x(e, q) "
        "ON CONFLICT DO NOTHING RETURNING quantity) "
        "SELECT COALESCE(sum(quantity), 0) FROM new"
    ),
    # One counter's users: only the users new to the period's distinct set count.
    "insert_users": (
        "WITH new AS (INSERT INTO {schema}.ledger_users "
        "(tenant, feature, period_start, user_id) "
        "SELECT %b, %b, %b, u FROM unnest(%b::text[]) AS x(u) "
        "ON CONFLICT DO NOTHING RETURNING 1) "
        "SELECT count(*) FROM new"
    ),
    # Counters stay within 0..2**63 - 1: the sum is taken as numeric (BIGINT addition
    # would raise on overflow) and clamped. ``excluded.used`` must be the raw delta for
    # that, so a counter created by a negative delta is inserted negative: those rows
    # come back and "clamp_new" sets them to 0 in the same transaction (they are ours,
    # locked and invisible to anyone else until the commit).
    "upsert_usage": (
        "WITH up AS (INSERT INTO {schema}.ledger_usage AS u (tenant, feature, period_start, used) "
        "SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[]) "
        "ON CONFLICT (tenant, feature, period_start) DO UPDATE SET used = "
        "LEAST(GREATEST(u.used::numeric + excluded.used, 0), 9223372036854775807)::bigint "
        "RETURNING tenant, feature, period_start, used) "
        "SELECT tenant, feature, period_start FROM up WHERE used < 0"
    ),
    "clamp_new": (
        "UPDATE {schema}.ledger_usage SET used = 0 WHERE used < 0 AND "
        "(tenant, feature, period_start) IN "
        "(SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[]))"
    ),
    # The batch's id, first in its transaction: no row back means it was applied before.
    "claim_batch": (
        "INSERT INTO {schema}.ledger_batches (batch_id) VALUES (%b) "
        "ON CONFLICT DO NOTHING RETURNING 1"
    ),
    "prune_batches": (
        "DELETE FROM {schema}.ledger_batches "
        "WHERE applied_at < now() - make_interval(secs => %b::float8)"
    ),
    "get_usage": (
        "SELECT used FROM {schema}.ledger_usage "
        "WHERE tenant = %s AND feature = %s AND period_start = %s"
    ),
    "known_events": (
        "SELECT event_id FROM {schema}.ledger_events "
        "WHERE tenant = %s AND feature = %s AND event_id = ANY(%s::text[])"
    ),
    "known_users": (
        "SELECT user_id FROM {schema}.ledger_users "
        "WHERE tenant = %s AND feature = %s AND period_start = %s AND user_id = ANY(%s::text[])"
    ),
    "claim_event": (
        "INSERT INTO {schema}.ledger_events "
        "(tenant, feature, event_id, period_start, quantity, recorded_at) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"
    ),
    # Oldest first through the recorded_at index, a bounded number at a time.
    "prune_events": (
        "DELETE FROM {schema}.ledger_events WHERE (tenant, feature, event_id) IN ("
        "SELECT tenant, feature, event_id FROM {schema}.ledger_events "
        "WHERE recorded_at < %s LIMIT %s)"
    ),
    "plan_bodies": "SELECT body, version FROM {schema}.ledger_plans",
    "claim_user": (
        "INSERT INTO {schema}.ledger_users (tenant, feature, period_start, user_id) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1"
    ),
    # The conditional write of consume: inserts the counter if the use fits an empty
    # period, otherwise adds to it only if the sum stays within the ceiling. The row
    # lock taken by ON CONFLICT makes the check and the write one atomic step.
    "consume": (
        "INSERT INTO {schema}.ledger_usage AS u (tenant, feature, period_start, used) "
        "SELECT %(t)s, %(f)s, %(p)s, %(q)s WHERE %(q)s <= %(ceiling)s "
        "ON CONFLICT (tenant, feature, period_start) DO UPDATE SET used = "
        "LEAST(u.used::numeric + excluded.used, 9223372036854775807)::bigint "
        "WHERE u.used::numeric + excluded.used <= %(ceiling)s RETURNING used"
    ),
    "usage_records": (
        "SELECT feature, period_start, used FROM {schema}.ledger_usage WHERE tenant = %s "
        "ORDER BY feature, period_start"
    ),
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_RETRIES = 5  # attempts of a transaction the server aborted as a deadlock/serialization victim
_PRUNE_EVERY = 1024  # batch ids recorded by one store between prunes of old ones
_KEEP_BATCHES = 86_400.0  # seconds a batch id is remembered (retries take seconds)
assert MAX_COUNTER == 9223372036854775807  # the literal in the statements above


def _import_psycopg() -> tuple[Any, Any]:
    """``(psycopg, psycopg_pool)``, or an ImportError that names the extra to install."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise ImportError(
            f"PostgresStore needs psycopg 3 and psycopg_pool: {EXTRA_HINT} ({exc})"
        ) from exc
    return psycopg, psycopg_pool


def check_schema_name(schema: object) -> str:
    """Return ``schema`` if it is a plain SQL identifier (letters, digits, ``_``; <= 63)."""
    if not isinstance(schema, str):
        raise InvalidArgumentType(f"schema must be a str, not {type(schema).__name__}")
    if not _IDENTIFIER.fullmatch(schema):
        raise InvalidArgument(
            f"schema must be an identifier (a letter or _, then letters, digits, _; "
            f"at most 63): {schema!r}"
        )
    return schema


def advisory_key(schema: str) -> int:
    """The advisory lock key that serializes migrations of ``schema`` (a signed int64)."""
    digest = hashlib.blake2b(f"authsome.ledger:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresStore:
    """A :class:`~authsome.ledger.stores.LedgerStore` in a PostgreSQL schema.

    Give a ``dsn`` (libpq connection string or URL) and the store opens its own
    :class:`psycopg_pool.ConnectionPool` (``min_size``..``max_size`` autocommit
    connections, closed by :meth:`close`), or give a ``pool`` you own (it is used,
    never closed). All tables live in ``schema`` (created if missing, default
    ``authsome_ledger``), so one database can hold several independent ledgers.
    ``timeout`` bounds the wait for a connection, in seconds.

    With a ``dsn`` the store first connects once, directly, waiting at most
    ``connect_timeout`` seconds (unless the DSN sets its own ``connect_timeout``):
    an unreachable server, an unknown database or a refused login fails right away
    with one :class:`~authsome.ledger.errors.LedgerStoreError` that names the cause.

    Safe to share between threads and, through the database, between processes:
    every write is one transaction. A store opened with a ``dsn`` before
    ``os.fork()`` opens a pool of its own in the child on first use (the parent's
    connections are left alone); a ``pool`` you gave cannot be reopened, so using
    the store in a child raises :class:`~authsome.ledger.errors.LedgerStoreError`.

    Event ids are forgotten ``event_id_retention`` after they were recorded (default:
    the longest period of the stored plans plus 35 days; see
    :meth:`prune_event_ids`), by the clock ``clock`` (default: the system's).

    Database errors surface as :class:`~authsome.ledger.errors.LedgerStoreError`
    with the psycopg error chained; nothing of a failed operation is committed.
    """

    accepts_event_ids = True  # apply_usage takes UsageBatch.events

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: psycopg_pool.ConnectionPool[Any] | None = None,
        schema: str = "authsome_ledger",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        event_id_retention: timedelta | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.schema = check_schema_name(schema)
        if (dsn is None) == (pool is None):
            raise InvalidArgument("give PostgresStore a dsn or a pool (exactly one)")
        if dsn is not None and not isinstance(dsn, str):
            raise InvalidArgumentType(f"dsn must be a str, not {type(dsn).__name__}")
        for value, name in ((min_size, "min_size"), (max_size, "max_size")):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgumentType(f"{name} must be an int")
        if not 0 <= min_size <= max_size or max_size < 1:
            raise InvalidArgument("need 0 <= min_size <= max_size and max_size >= 1")
        _check_seconds(timeout, "timeout")
        _check_seconds(connect_timeout, "connect_timeout")
        self._pruning = PruneSchedule(event_id_retention, clock)
        self._psycopg, self._pool_module = _import_psycopg()
        errors = self._psycopg.errors
        self._retryable: tuple[type[BaseException], ...] = (
            errors.DeadlockDetected,
            errors.SerializationFailure,
        )
        self._pool_errors: tuple[type[BaseException], ...] = (
            self._pool_module.PoolTimeout,
            self._pool_module.PoolClosed,
            self._pool_module.TooManyRequests,
        )
        # Refused data, raised by the server (SQLSTATE classes 22 and 23) or while
        # adapting a parameter (a NUL in a str, an unencodable str...).
        self._data_errors: tuple[type[BaseException], ...] = (
            self._psycopg.DataError,
            self._psycopg.IntegrityError,
        )
        self._batch_ids = itertools.count(1)  # batch ids recorded here, to prune now and then
        self._closed = False
        self._close_lock = threading.Lock()
        self._inherited = False  # True in a forked child until it has a pool of its own
        self._owns_pool = pool is None
        self._sizes = (min_size, max_size, timeout)
        self._conninfo = ""
        if pool is None:
            assert dsn is not None
            self._conninfo = self._with_connect_timeout(dsn, connect_timeout)
            self._open_directly()
            pool = self._new_pool()
            try:
                pool.open(wait=True, timeout=max(timeout, connect_timeout))
            except self._pool_errors as exc:
                pool.close()
                raise LedgerStoreError(f"cannot open the PostgreSQL ledger: {exc}") from exc
            self._pool: psycopg_pool.ConnectionPool[Any] = pool
        else:
            self._pool = pool
            try:
                with pool.connection(timeout=timeout) as conn:
                    self._prepare(conn)
            except self._psycopg.Error as exc:
                raise LedgerStoreError(f"cannot open the PostgreSQL ledger: {exc}") from exc
        track(self)

    def _with_connect_timeout(self, dsn: str, seconds: float) -> str:
        """``dsn`` as a libpq connection string, with ``connect_timeout`` unless it has one.

        A DSN that does not parse is refused without quoting it (it may hold a password).
        """
        conninfo = self._psycopg.conninfo
        try:
            params = conninfo.conninfo_to_dict(dsn)
        except self._psycopg.Error:
            raise InvalidArgument("the PostgreSQL connection string is invalid") from None
        # libpq takes whole seconds and treats 1 as 2; round up so the bound is kept.
        params.setdefault("connect_timeout", max(2, math.ceil(seconds)))
        return str(conninfo.make_conninfo(**params))

    def _open_directly(self) -> None:
        """Connect once without the pool, so that a server that cannot be used fails
        now with its own reason (a pool would retry in the background until its
        timeout and report only that it timed out), and migrate on that connection."""
        try:
            conn = self._psycopg.connect(self._conninfo, autocommit=True)
        except self._psycopg.Error as exc:
            raise LedgerStoreError(
                f"cannot connect to the PostgreSQL ledger ({self._where()}): {self._reason(exc)}"
            ) from exc
        try:
            with conn:
                self._prepare(conn)
        except self._psycopg.Error as exc:
            raise LedgerStoreError(f"cannot open the PostgreSQL ledger: {exc}") from exc

    def _where(self) -> str:
        """Where the store connects, for messages: the DSN without its password."""
        params = self._psycopg.conninfo.conninfo_to_dict(self._conninfo)
        shown = {k: v for k, v in params.items() if k in ("host", "port", "dbname", "user")}
        return str(self._psycopg.conninfo.make_conninfo(**shown)) or "libpq defaults"

    def _reason(self, exc: BaseException) -> str:
        """The first line of a connection error (refused, unknown database, failed
        authentication...), without the password should the server quote it."""
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        password = self._psycopg.conninfo.conninfo_to_dict(self._conninfo).get("password")
        return reason.replace(str(password), "***") if password else reason

    def _new_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        min_size, max_size, timeout = self._sizes
        pool: psycopg_pool.ConnectionPool[Any] = self._pool_module.ConnectionPool(
            self._conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            timeout=timeout,
            name=f"authsome-ledger-{self.schema}",
            open=False,
        )
        return pool

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        """Render the statements and migrate the schema, on ``conn``."""
        self._q = self._render(conn)
        self._migrate(conn)

    def after_fork_in_child(self) -> None:
        """In a forked child: fresh locks, and a pool of its own on first use."""
        self._close_lock = threading.Lock()
        self._inherited = True

    def _pool_here(self) -> psycopg_pool.ConnectionPool[Any]:
        """This process's pool (a forked child opens its own the first time)."""
        if not self._inherited:
            return self._pool
        with self._close_lock:
            if self._inherited:
                if not self._owns_pool:
                    raise LedgerStoreError(
                        "the pool given to the ledger PostgresStore was opened in another "
                        "process: open it after fork, or give the store a dsn"
                    )
                park_inherited(self._pool)  # the parent's: never used nor closed here
                pool = self._new_pool()
                pool.open(wait=False)
                self._pool = pool
                self._inherited = False
        return self._pool

    # --- plumbing ---

    def _render(self, conn: psycopg.Connection[Any]) -> dict[str, bytes]:
        """Every statement with the quoted schema name, rendered once."""
        sql = self._psycopg.sql
        ident = sql.Identifier(self.schema)
        return {
            name: sql.SQL(text).format(schema=ident).as_bytes(conn)
            for name, text in _QUERIES.items()
        }

    def _run(self, fn: Callable[[psycopg.Connection[Any]], _T], *, read_only: bool = False) -> _T:
        """Run ``fn`` on a pooled connection and wrap every error.

        A transaction the server aborted as a deadlock or serialization victim is
        retried (nothing of it was committed). A read-only ``fn`` is also retried when
        its connection turned out dead (a restarted server, a terminated backend): the
        pool drops that connection and hands out another. A write on a dead connection
        is not retried here, since its commit may have landed; the engine retries
        failed flushes, and event ids make those retries exact.
        """
        for attempt in range(1, _RETRIES + 1):
            if self._closed:
                raise LedgerStoreError("the ledger store is closed")
            try:
                with self._pool_here().connection() as conn:
                    return fn(conn)
            except self._retryable as exc:
                if attempt == _RETRIES:
                    raise LedgerStoreError(f"ledger database error: {exc}") from exc
                time.sleep(0.005 * attempt)
            except self._psycopg.Error as exc:
                if self._refused_data(exc):
                    raise LedgerDataError(f"ledger database refused the data: {exc}") from exc
                if read_only and attempt < _RETRIES and self._connection_lost(exc):
                    continue
                raise LedgerStoreError(f"ledger database error: {exc}") from exc
            except (UnicodeError, OverflowError) as exc:  # raised adapting a parameter
                raise LedgerDataError(f"ledger database refused the data: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _refused_data(self, exc: BaseException) -> bool:
        """Will the same data always fail the same way (not a transient failure)?"""
        if isinstance(exc, self._data_errors):
            return True
        state = getattr(exc, "sqlstate", None)
        return state is not None and state.startswith(("22", "23"))

    def _connection_lost(self, exc: BaseException) -> bool:
        """Did ``exc`` come from a connection that died (not from the pool or the SQL)?"""
        if not isinstance(exc, self._psycopg.OperationalError) or isinstance(
            exc, self._pool_errors
        ):
            return False
        state = getattr(exc, "sqlstate", None)
        return state is None or state.startswith(("08", "57P"))

    def _rows(self, name: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement."""
        query = self._q[name]

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            return conn.execute(query, params).fetchall()

        return self._run(run, read_only=True)

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Bring the schema to the newest version, once, whoever else is migrating."""
        sql = self._psycopg.sql
        ident = sql.Identifier(self.schema)
        q = self._q

        with conn.transaction():
            # Held until this transaction ends: concurrent migrators wait, then see
            # the version this one recorded and have nothing left to do.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(self.schema),))
            for text in _BOOTSTRAP:
                conn.execute(sql.SQL(text).format(schema=ident))
            row = conn.execute(q["version"]).fetchone()
            version = int(row[0]) if row else 0
            if version > len(MIGRATIONS):
                raise LedgerStoreError(
                    f"ledger schema {self.schema!r} is at version {version}, newer than "
                    f"this library ({len(MIGRATIONS)})"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number]:
                    conn.execute(sql.SQL(statement).format(schema=ident))
                conn.execute(q["mark_version"], (number + 1,))

    @property
    def schema_version(self) -> int:
        """The version the schema was migrated to."""
        return int(self._rows("version", ())[0][0])

    # --- plans and subscriptions ---

    def put_plan(self, plan: Plan) -> Plan:
        """Store ``plan`` as the newest version of its key."""
        body = dump_plan(plan)
        unique_violation = self._psycopg.errors.UniqueViolation

        def run(conn: psycopg.Connection[Any]) -> Plan:
            for _ in range(_RETRIES):
                try:
                    with conn.transaction():
                        row = conn.execute(self._q["put_plan"], (plan.key, body, plan.key))
                        version = row.fetchone()
                        assert version is not None
                        return plan.with_version(int(version[0]))
                except unique_violation:
                    continue  # another process took this version number first: next one
            raise LedgerStoreError(f"could not store a new version of plan {plan.key!r}")

        return self._run(run)

    def get_plan(self, key: str, version: int | None = None) -> Plan | None:
        """The newest (or the given) version of plan ``key``."""
        if version is None:
            rows = self._rows("plan_latest", (key,))
        else:
            rows = self._rows("plan_version", (key, version))
        return load_plan(str(rows[0][0]), int(rows[0][1])) if rows else None

    def plan_keys(self) -> list[str]:
        """The keys of every plan ever defined."""
        return [str(r[0]) for r in self._rows("plan_keys", ())]

    def plan_versions(self, key: str) -> list[Plan]:
        """Every version of plan ``key``, oldest first."""
        return [load_plan(str(body), int(v)) for body, v in self._rows("plan_versions", (key,))]

    def put_subscription(self, sub: Subscription) -> None:
        """Create or replace the tenant's subscription."""
        self._rows_written("put_sub", (sub.tenant, dump_subscription(sub)))

    def _rows_written(self, name: str, params: tuple[object, ...]) -> None:
        query = self._q[name]

        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(query, params)

        self._run(run)

    def get_subscription(self, tenant: str) -> Subscription | None:
        """The tenant's subscription, or ``None``."""
        rows = self._rows("get_sub", (tenant,))
        return load_subscription(str(rows[0][0])) if rows else None

    # --- usage ---

    def apply_usage(self, batch: UsageBatch) -> None:
        """Apply ``batch`` in one transaction; event ids and users count once.

        The batch id (if any) is inserted first: if it is already recorded the batch
        was applied before and nothing else happens. Per counter, its event ids are
        inserted next (``ON CONFLICT DO NOTHING RETURNING``) and only the quantities of
        the rows the database reports as new are added; then its users, the same way.
        Last, every touched counter is upserted once with its net total, clamped to
        ``0..2**63 - 1``. Row locks are taken in sorted order.
        """
        plain: dict[_Counter, int] = {}
        events: dict[_Counter, dict[str, int]] = {}
        users: dict[_Counter, set[str]] = {}
        for d in batch.deltas:
            counter = (d.tenant, d.feature, d.period_start)
            if d.event_id is None:
                plain[counter] = plain.get(counter, 0) + d.quantity
            else:  # the first occurrence of an id in a batch is the one that counts
                events.setdefault(counter, {}).setdefault(d.event_id, d.quantity)
        for g in batch.events:
            quantities = events.setdefault((g.tenant, g.feature, g.period_start), {})
            for event_id in g.event_ids:
                quantities.setdefault(event_id, g.quantity)
        for u in batch.uniques:
            users.setdefault((u.tenant, u.feature, u.period_start), set()).add(u.user_id)
        if not plain and not events and not users:
            return
        # Sorted once, outside the transaction: every writer locks rows in one order.
        event_groups = [(counter, sorted(ids)) for counter, ids in sorted(events.items())]
        user_groups = [(counter, sorted(names)) for counter, names in sorted(users.items())]
        q = self._q
        batch_id = batch.batch_id
        prune = batch_id is not None and next(self._batch_ids) % _PRUNE_EVERY == 0
        recorded_at = int(self._pruning.now())
        prune_ids = self._pruning.due(recorded_at)

        def run(conn: psycopg.Connection[Any]) -> None:
            increments = dict(plain)
            if prune:  # its own transaction: a concurrent prune never holds up the batch
                with conn.transaction():
                    conn.execute(q["prune_batches"], (_KEEP_BATCHES,))
            if prune_ids:  # likewise
                self._prune(conn, recorded_at, chunk_for(len(batch)))
            with conn.transaction():
                if (
                    batch_id is not None
                    and conn.execute(q["claim_batch"], (batch_id,)).fetchone() is None
                ):
                    return  # applied before; its acknowledgement was lost
                for counter, ids in event_groups:
                    quantities = events[counter]
                    row = conn.execute(
                        q["insert_events"],
                        (*counter, recorded_at, ids, [quantities[e] for e in ids]),
                    ).fetchone()
                    added = int(row[0]) if row else 0
                    if added:
                        increments[counter] = increments.get(counter, 0) + added
                for counter, names in user_groups:
                    row = conn.execute(q["insert_users"], (*counter, names)).fetchone()
                    added = int(row[0]) if row else 0
                    if added:
                        increments[counter] = increments.get(counter, 0) + added
                if not increments:
                    return  # every event id and user was known already
                keys = sorted(increments)
                below_zero = conn.execute(
                    q["upsert_usage"],
                    (
                        [k[0] for k in keys],
                        [k[1] for k in keys],
                        [k[2] for k in keys],
                        [_saturate(increments[k]) for k in keys],
                    ),
                ).fetchall()
                if below_zero:  # new counters a release created: they start at 0
                    conn.execute(
                        q["clamp_new"],
                        tuple([row[i] for row in below_zero] for i in range(3)),
                    )

        self._run(run)

    def get_usage(self, tenant: str, feature: str, period_start: int) -> int:
        """The persisted usage of one period."""
        rows = self._rows("get_usage", (tenant, feature, period_start))
        return int(rows[0][0]) if rows else 0

    def known_events(self, tenant: str, feature: str, event_ids: Collection[str]) -> set[str]:
        """The ``event_ids`` already recorded."""
        if not event_ids:
            return set()
        rows = self._rows("known_events", (tenant, feature, list(event_ids)))
        return {str(r[0]) for r in rows}

    def known_users(
        self, tenant: str, feature: str, period_start: int, user_ids: Collection[str]
    ) -> set[str]:
        """The ``user_ids`` already counted in the period."""
        if not user_ids:
            return set()
        rows = self._rows("known_users", (tenant, feature, period_start, list(user_ids)))
        return {str(r[0]) for r in rows}

    def consume(self, request: ConsumeRequest) -> ConsumeResult:
        """Record one use if it fits under ``request.ceiling``, atomically across processes.

        In one transaction: claim the event id (a known id is accepted without
        counting), claim the user of a ``unique`` feature (a known user likewise),
        then the conditional upsert of the counter. A refused upsert rolls the claims
        back, so a refused use leaves no trace.
        """
        r = request
        q = self._q
        counter = (r.tenant, r.feature, r.period_start)
        rollback = self._psycopg.Rollback
        recorded_at = int(self._pruning.now())

        def run(conn: psycopg.Connection[Any]) -> ConsumeResult:
            result: ConsumeResult | None = None
            with conn.transaction() as tx:
                delta = 1 if r.unique else r.quantity
                if r.unique and r.user_id is None:
                    result = ConsumeResult(False, self._used(conn, counter))
                    raise rollback(tx)
                if r.event_id is not None:
                    claimed = conn.execute(
                        q["claim_event"],
                        (r.tenant, r.feature, r.event_id, r.period_start, delta, recorded_at),
                    ).fetchone()
                    if claimed is None:  # recorded before (maybe by another process)
                        result = ConsumeResult(True, self._used(conn, counter))
                        raise rollback(tx)
                if r.unique:
                    claimed = conn.execute(q["claim_user"], (*counter, r.user_id)).fetchone()
                    if claimed is None:  # already counted this period: accepted, not counted
                        result = ConsumeResult(True, self._used(conn, counter))
                        raise rollback(tx)
                row = conn.execute(
                    q["consume"],
                    {
                        "t": r.tenant,
                        "f": r.feature,
                        "p": r.period_start,
                        "q": delta,
                        "ceiling": r.ceiling,
                    },
                ).fetchone()
                if row is None:  # over the ceiling: undo the claims
                    result = ConsumeResult(False, self._used(conn, counter))
                    raise rollback(tx)
                result = ConsumeResult(True, int(row[0]))
            assert result is not None
            return result

        return self._run(run)

    # --- event-id retention ---

    def prune_event_ids(self, limit: int | None = None) -> int:
        """Forget event ids recorded longer ago than the retention (at most ``limit``);
        return how many.

        The store also does this by itself while it applies batches (see
        :mod:`authsome.ledger.stores._retention`).
        """
        limit = check_limit(limit)
        now = int(self._pruning.now())
        return self._run(lambda conn: self._prune(conn, now, limit))

    def _prune(self, conn: psycopg.Connection[Any], now: int, limit: int | None) -> int:
        """Delete at most ``limit`` (``None``: all) expired ids, in a transaction of
        its own. Another process pruning or inserting the same rows at once is
        harmless: a deleted row is deleted once, and an id inserted after its old row
        is gone counts again, as it would after retention anyway."""
        retention = self._pruning.retention
        if retention is None:
            rows = conn.execute(self._q["plan_bodies"]).fetchall()
            retention = default_retention(load_plan(str(b), int(v)) for b, v in rows)
        with conn.transaction():
            cur = conn.execute(self._q["prune_events"], (now - int(retention), limit))
        deleted = int(cur.rowcount)
        self._pruning.done(now, deleted, limit if limit is not None else deleted + 1)
        return deleted

    def _used(self, conn: psycopg.Connection[Any], counter: _Counter) -> int:
        row = conn.execute(self._q["get_usage"], counter).fetchone()
        return int(row[0]) if row else 0

    def usage_records(self, tenant: str) -> list[UsageRecord]:
        """Every counter of ``tenant``."""
        rows = self._rows("usage_records", (tenant,))
        return [UsageRecord(str(f), int(p), int(n)) for f, p, n in rows]

    def close(self) -> None:
        """Stop using the database; closes the pool if the store opened it. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._owns_pool and not self._inherited:
            self._pool.close()  # (an inherited pool is the parent's to close)

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"


def _check_seconds(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentType(f"{name} must be a number of seconds")
    if not 0 < value < math.inf:
        raise InvalidArgument(f"{name} must be a positive number of seconds")


def _saturate(n: int) -> int:
    """A batch's net change of one counter, within BIGINT (the sum is clamped anyway)."""
    return max(-MAX_COUNTER, min(n, MAX_COUNTER))
