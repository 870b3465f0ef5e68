"""A :class:`~authsome.stores.Store` on PostgreSQL, shared by many processes and machines.

Connections come from a :class:`psycopg_pool.ConnectionPool`: one the store creates
from a DSN (autocommit connections in the UTC time zone, closed by :meth:`close`), or
one the application passes in (left open). Every statement names the store's schema
explicitly (quoted by :class:`psycopg.sql.Identifier`), so a shared pool needs no
``search_path`` of its own.

Atomicity: a single-statement method is atomic by itself; a method of several
statements runs in one transaction. Where a read decides a write, the row that
decides is locked first (``SELECT ... FOR UPDATE``) or the decision is the ``WHERE``
of one conditional ``UPDATE``: under READ COMMITTED, a writer that waited for a row
lock re-checks its condition against the row as the winner left it, so two processes
can never both act on the same state (rotate one refresh token, accept one TOTP step).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple, Self

from authsome.errors import AlreadyExists, StoreError, ValidationError
from authsome.models import (
    ApiKey,
    ApiKeyOwnerKind,
    Domain,
    Identity,
    Membership,
    MfaFactor,
    OneTimeState,
    OneTimeToken,
    Org,
    OrgRole,
    Passkey,
    PasskeyCeremony,
    PasskeyChallenge,
    RefreshOutcome,
    RefreshStatus,
    Session,
    SocialProviderInfo,
    SSOConnectionInfo,
    SSOProtocol,
    StoredApiKey,
    StoredSecret,
    User,
)
from authsome.stores._postgres_migrations import COMPONENT, MIGRATIONS, VERSION_TABLE
from authsome.stores._protocol import Counter
from authsome.stores._records import RecordReader, sign_in_settings
from authsome.stores._rules import (
    Duplicate,
    aware,
    check_owner_membership,
    check_social_record,
    check_sso_record,
    last_owner_conflict,
)

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from psycopg.rows import TupleRow, tuple_row
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "authsome.stores.PostgresStore needs psycopg 3 and psycopg_pool:"
        " pip install 'authsome-engine[postgres]'"
    ) from exc

__all__ = ["PostgresStore"]

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DEFAULT_CONNECT_TIMEOUT = 10
_Row = tuple[Any, ...]

# Which unique constraint failed → which of the messages every store shares;
# constraint names are set in the migrations.
_DUPLICATE_MESSAGES = {
    "users_tenant_email_key": Duplicate.USER_EMAIL,
    "users_pkey": Duplicate.USER_ID,
    "sessions_pkey": Duplicate.SESSION_ID,
    "sessions_access_hash_key": Duplicate.ACCESS_HASH,
    "refresh_tokens_pkey": Duplicate.REFRESH_HASH,
    "orgs_tenant_slug_key": Duplicate.ORG_SLUG,
    "orgs_pkey": Duplicate.ORG_ID,
    "org_members_pkey": Duplicate.MEMBERSHIP,
    "domains_tenant_hostname_key": Duplicate.DOMAIN_CLAIM,
    "domains_verified_hostname_key": Duplicate.HOSTNAME_VERIFIED,
    "domains_pkey": Duplicate.DOMAIN_ID,
    "mfa_factors_pkey": Duplicate.FACTOR_ID,
    "mfa_factors_user_method_key": Duplicate.FACTOR_METHOD,
    "mfa_tickets_pkey": Duplicate.TICKET_HASH,
    "one_time_tokens_pkey": Duplicate.ONE_TIME_TOKEN,
    "one_time_states_pkey": Duplicate.ONE_TIME_TOKEN,
    "identities_pkey": Duplicate.IDENTITY,
    "api_keys_pkey": Duplicate.API_KEY_ID,
    "api_keys_lookup_id_key": Duplicate.API_KEY_LOOKUP_ID,
    "passkeys_pkey": Duplicate.PASSKEY,
    "passkey_challenges_pkey": Duplicate.CHALLENGE,
    "sso_connections_pkey": Duplicate.SSO_ID,
    "sso_domains_pkey": Duplicate.SSO_DOMAIN,
}

# Queries are plain literals; "{s}" becomes the quoted schema name once per store and
# values are always bound parameters.
_SELECT_SESSION = (
    "SELECT id, user_id, tenant, created_at, expires_at, access_expires_at, revoked_at,"
    " last_seen_at, ip, user_agent FROM {s}.sessions"
)
_SELECT_USER = "SELECT id, tenant, email, name, created_at, email_verified_at FROM {s}.users"
_SELECT_ORG = "SELECT id, tenant, slug, name, created_at FROM {s}.orgs"
_SELECT_MEMBERSHIP = (
    "SELECT org_id, user_id, role, created_at FROM {s}.org_members"
    " WHERE org_id = %s AND user_id = %s"
)
_SELECT_DOMAIN = "SELECT id, tenant, hostname, created_at, verified_at FROM {s}.domains"
_SELECT_FACTOR = (
    "SELECT id, user_id, method, created_at, confirmed_at, failed_codes FROM {s}.mfa_factors"
)
_SELECT_API_KEY = (
    "SELECT id, lookup_id, owner_kind, owner_id, tenant, name, scopes,"
    " created_at, expires_at, revoked_at, last_used_at FROM {s}.api_keys"
)
_SELECT_PASSKEY = (
    "SELECT credential_id, user_id, tenant, rp_id, public_key, sign_count, transports,"
    " created_at, last_used_at FROM {s}.passkeys"
)
# One statement: the row is deleted whether or not it is still live (an expired
# challenge is useless), and the caller learns which. A racing consumer waits for
# the row lock, then finds the row gone and deletes nothing.
_CONSUME_CHALLENGE = (
    "DELETE FROM {s}.passkey_challenges WHERE challenge_hash = %(hash)s"
    " RETURNING challenge_hash, ceremony, user_id, tenant, rp_id, origin, expires_at,"
    " expires_at > %(now)s"
)
_SELECT_IDENTITY = "SELECT tenant, provider, subject, user_id, created_at FROM {s}.identities"
_SOCIAL_COLUMNS = "id, tenant, provider, client_id, scopes, settings, created_at, updated_at"
_SELECT_SOCIAL = "SELECT " + _SOCIAL_COLUMNS + " FROM {s}.social_providers"  # noqa: S608
# One statement: concurrent writers leave one whole configuration, the first one's
# created_at kept.
_PUT_SOCIAL = (
    "INSERT INTO {s}.social_providers (id, tenant, provider, client_id, scopes, settings,"
    " client_secret, secret_sealed, created_at, updated_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (tenant, provider) DO UPDATE SET id = excluded.id,"
    " client_id = excluded.client_id, scopes = excluded.scopes, settings = excluded.settings,"
    " client_secret = excluded.client_secret, secret_sealed = excluded.secret_sealed,"
    " updated_at = excluded.updated_at"
    " RETURNING id, tenant, provider, client_id, scopes, settings, created_at, updated_at"
)
# A connection with its domains in one statement, so one snapshot serves both.
_SELECT_SSO = (
    "SELECT c.id, c.org_id, c.protocol, c.issuer, c.client_id, c.scopes, c.entity_id,"
    " c.sso_url, c.x509_certificate, c.client_secret IS NOT NULL, c.created_at, c.updated_at,"
    " c.rollover_x509_certificate, c.allow_idp_initiated,"
    " ARRAY(SELECT d.domain FROM {s}.sso_domains AS d"
    " WHERE d.connection_id = c.id ORDER BY d.position), c.sign_in"
    " FROM {s}.sso_connections AS c"
)
# The tenant is the connection's org's, copied so the key (tenant, domain) is one index.
_INSERT_SSO_DOMAINS = (
    "INSERT INTO {s}.sso_domains (tenant, domain, connection_id, position)"
    " SELECT o.tenant, d.domain, c.id, d.n - 1"
    " FROM {s}.sso_connections AS c JOIN {s}.orgs AS o ON o.id = c.org_id,"
    " unnest(%s::text[]) WITH ORDINALITY AS d(domain, n) WHERE c.id = %s"
)

# Locks the token and its session: concurrent rotations of one token queue here, and
# each one that waited sees the rows as the previous one left them.
_LOCK_ROTATION_ROWS = (
    "SELECT r.used, s.id, s.user_id, s.tenant, s.created_at, s.expires_at,"
    " s.access_expires_at, s.revoked_at, s.last_seen_at, s.ip, s.user_agent"
    " FROM {s}.refresh_tokens AS r JOIN {s}.sessions AS s ON s.id = r.session_id"
    " WHERE r.hash = %s FOR UPDATE"
)
_ROTATE = (
    "WITH spent AS (UPDATE {s}.refresh_tokens SET used = TRUE WHERE hash = %(old)s),"
    " fresh AS (INSERT INTO {s}.refresh_tokens (hash, session_id)"
    " VALUES (%(new)s, %(session)s))"
    " UPDATE {s}.sessions SET access_hash = %(access)s, access_expires_at = %(access_exp)s,"
    " last_seen_at = GREATEST(COALESCE(last_seen_at, created_at), %(now)s)"
    " WHERE id = %(session)s"
    " RETURNING id, user_id, tenant, created_at, expires_at, access_expires_at, revoked_at,"
    " last_seen_at, ip, user_agent"
)
_REVOKE_LIVE_SESSION = (
    "UPDATE {s}.sessions SET revoked_at = %(now)s"
    " WHERE id = %(id)s AND revoked_at IS NULL AND expires_at > %(now)s"
    " RETURNING id, user_id, tenant, created_at, expires_at, access_expires_at, revoked_at,"
    " last_seen_at, ip, user_agent"
)
# A missing or expired counter restarts at 1 with a fresh expiry; a live one counts
# up and keeps its expiry. One statement: the conflicting row is locked while updated.
_HIT_COUNTER = (
    "INSERT INTO {s}.counters AS c (key, hits, expires_at) VALUES (%(key)s, 1, %(fresh)s)"
    " ON CONFLICT (key) DO UPDATE SET"
    " hits = CASE WHEN c.expires_at > %(now)s THEN c.hits + 1 ELSE 1 END,"
    " expires_at = CASE WHEN c.expires_at > %(now)s THEN c.expires_at"
    " ELSE EXCLUDED.expires_at END"
    " RETURNING hits, expires_at"
)


# -- values ----------------------------------------------------------------------------


def _optional_aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else aware(moment)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


# Lists of strings are arrays; psycopg returns them as lists.
_READ = RecordReader(moment=_utc, strings=iter)


def _sso_connection(row: _Row) -> SSOConnectionInfo:
    """A row of :data:`_SELECT_SSO`: the connection's columns, then its domains."""
    return _READ.sso_connection(row, domains=row[14], scopes=row[5], sign_in=row[15])


def _sso_settings(connection: SSOConnectionInfo, secret: StoredSecret | None) -> dict[str, Any]:
    """The columns an update replaces, as named parameters."""
    return {
        "protocol": SSOProtocol(connection.protocol).value,
        "issuer": connection.issuer,
        "client_id": connection.client_id,
        "scopes": list(connection.scopes),
        "entity_id": connection.entity_id,
        "sso_url": connection.sso_url,
        "x509_certificate": connection.x509_certificate,
        "client_secret": None if secret is None else secret.value,
        "secret_sealed": secret is not None and secret.sealed,
        "rollover_x509_certificate": connection.rollover_x509_certificate,
        "allow_idp_initiated": connection.allow_idp_initiated,
        "sign_in": sign_in_settings(connection),
        "updated_at": aware(connection.updated_at),
    }


# -- errors and connection strings ---------------------------------------------------


@contextlib.contextmanager
def _translated_errors(operation: str) -> Iterator[None]:
    """Turn psycopg errors into the library's errors.

    A unique violation becomes :class:`AlreadyExists` with a fixed message chosen by
    the constraint's name; it is raised ``from None`` because the server's detail
    line quotes the duplicate value (a token hash, say). Every other error keeps its
    cause for debugging; our message names only the operation and the SQLSTATE.
    """
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        message = _DUPLICATE_MESSAGES.get(exc.diag.constraint_name or "", Duplicate.RECORD)
        raise AlreadyExists(message) from None
    except psycopg.errors.ForeignKeyViolation as exc:
        raise StoreError(f"postgres store: {operation} refers to a missing record") from exc
    except psycopg.errors.IntegrityError as exc:
        raise StoreError(f"postgres store: {operation} violates a constraint") from exc
    except psycopg.Error as exc:
        code = exc.sqlstate or type(exc).__name__
        raise StoreError(f"postgres store: {operation} failed ({code})") from exc


def _parse_dsn(dsn: str) -> dict[str, Any]:
    """The DSN's parameters; its own parse error is not shown, as it may quote the
    password."""
    try:
        return conninfo_to_dict(dsn)
    except psycopg.Error:
        raise ValidationError("postgres store: the connection string is invalid") from None


def _without_password(params: dict[str, Any]) -> str:
    """A connection string for messages and ``repr``: the password left out."""
    return make_conninfo(**{k: v for k, v in params.items() if k != "password"})


def _advisory_key(schema: str) -> int:
    """A 64-bit advisory lock id, one per schema and component."""
    digest = hashlib.sha256(f"authsome:{COMPONENT}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Set up each new connection of a pool the store owns: datetimes arrive in UTC
    (any instant of year 1 to 9999 fits a Python datetime then)."""
    conn.execute("SET TIME ZONE 'UTC'")
    if not conn.autocommit:
        conn.commit()


class _PoolSettings(NamedTuple):
    """What the store's own pool is made of, so a forked child can make its own."""

    conninfo: str
    min_size: int
    max_size: int
    timeout: float


# Pools a forked child inherited: kept referenced, never closed there (their
# connections' sockets are the parent's). The lock serializes a child's threads
# reopening a store; a fresh one in every child, since a thread may have held it at fork.
_INHERITED_POOLS: list[ConnectionPool[Any]] = []
_after_fork_lock = threading.Lock()


def _new_after_fork_lock() -> None:
    global _after_fork_lock
    _after_fork_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_after_fork_lock)


class PostgresStore:
    """A :class:`~authsome.stores.Store` backed by PostgreSQL (psycopg 3).

    Give either ``dsn`` (a libpq connection string or URL; ``None`` uses the ``PG*``
    environment variables) or ``pool`` (your own :class:`psycopg_pool.ConnectionPool`,
    which :meth:`close` leaves open). The tables live in ``schema``, created and
    migrated on open; several processes may open one schema at once. ``min_size`` and
    ``max_size`` size the pool the store creates; ``timeout`` is how many seconds an
    operation waits for a free connection before it fails with
    :class:`~authsome.errors.StoreError`.

    The store may be opened before ``os.fork()`` (``gunicorn --preload``, or
    :mod:`multiprocessing` in fork mode): a child opens a pool of its own on first
    use and never touches the parent's connections (closing them would end the
    parent's sessions on the server). A pool passed in is yours to recreate: in a
    child, such a store raises :class:`~authsome.errors.StoreError`; open the pool and
    the store after the fork then.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: ConnectionPool[Any] | None = None,
        schema: str = "authsome",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
    ) -> None:
        _check_arguments(dsn, pool, schema, min_size, max_size)
        self._schema = schema
        self._closed = False
        self._close_lock = threading.Lock()
        self._pid = os.getpid()
        self._rendered: dict[str, bytes] = {}
        self._units = threading.local()  # the cursor of this thread's atomic() block
        self._quoted_schema = b""
        if pool is not None:
            self._pool, self._owns_pool = pool, False
            self._label = f"pool={pool.name!r}"
            with _translated_errors("open"), pool.connection(timeout=timeout) as conn:
                self._prepare(conn)
            return
        params = _parse_dsn(dsn or "")
        params.setdefault("connect_timeout", _DEFAULT_CONNECT_TIMEOUT)
        self._label = repr(_without_password(params))
        self._owns_pool = True
        self._open_and_migrate(params)
        self._pool_settings = _PoolSettings(make_conninfo(**params), min_size, max_size, timeout)
        self._pool = self._open_pool()

    def _open_pool(self) -> ConnectionPool[Any]:
        """A pool of this process's own connections, opened (the store's own pool)."""
        settings = self._pool_settings
        pool: ConnectionPool[Any] = ConnectionPool(
            settings.conninfo,
            kwargs={"autocommit": True},
            min_size=settings.min_size,
            max_size=settings.max_size,
            configure=_configure,
            timeout=settings.timeout,
            open=False,
            name="authsome-auth",
        )
        with _translated_errors("open"):
            pool.open()
        return pool

    def _open_and_migrate(self, params: dict[str, Any]) -> None:
        """Connect once, directly, so that an unreachable server fails now with the
        server's own reason, and migrate the schema on that connection."""
        try:
            conn = psycopg.connect(**params, autocommit=True)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            password = params.get("password")
            if password:
                reason = reason.replace(str(password), "***")
            raise StoreError(f"postgres store: cannot connect to {self._label}: {reason}") from exc
        with conn, _translated_errors("open"):
            _configure(conn)
            self._prepare(conn)

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        self._quoted_schema = sql.Identifier(self._schema).as_bytes(conn)
        self._migrate(conn)

    def __repr__(self) -> str:
        return f"PostgresStore({self._label}, schema={self._schema!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- users -----------------------------------------------------------------
    def create_user(self, user: User, password_hash: str) -> None:
        """Insert ``user``; :class:`~authsome.errors.AlreadyExists` if its id or
        (tenant, e-mail) is taken. One INSERT, so nothing is half-written."""
        self._write(
            "create_user",
            "INSERT INTO {s}.users (id, tenant, email, name, created_at, password_hash)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (user.id, user.tenant, user.email, user.name, aware(user.created_at), password_hash),
        )

    def get_user(self, user_id: str) -> User | None:
        """The user with this id, or ``None``."""
        row = self._one("get_user", _SELECT_USER + " WHERE id = %s", (user_id,))
        return None if row is None else _READ.user(row)

    def find_user_by_email(self, tenant: str, email: str) -> User | None:
        """The user with this normalized e-mail in ``tenant``, or ``None``."""
        row = self._one(
            "find_user_by_email",
            _SELECT_USER + " WHERE tenant = %s AND email = %s",
            (tenant, email),
        )
        return None if row is None else _READ.user(row)

    def get_password_hash(self, user_id: str) -> str | None:
        """The user's stored password hash, or ``None``."""
        row = self._one(
            "get_password_hash", "SELECT password_hash FROM {s}.users WHERE id = %s", (user_id,)
        )
        return None if row is None else str(row[0])

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Replace the user's password hash; no effect for an unknown user."""
        self._write(
            "set_password_hash",
            "UPDATE {s}.users SET password_hash = %s WHERE id = %s",
            (password_hash, user_id),
        )

    def mark_email_verified(self, user_id: str, email: str, now: datetime) -> User | None:
        """Set ``email_verified_at`` (kept when set) if the address is still ``email``;
        one UPDATE ... RETURNING."""
        row = self._one(
            "mark_email_verified",
            "UPDATE {s}.users SET email_verified_at = COALESCE(email_verified_at, %s)"
            " WHERE id = %s AND email = %s"
            " RETURNING id, tenant, email, name, created_at, email_verified_at",
            (aware(now), user_id, email),
        )
        return None if row is None else _READ.user(row)

    def change_user_email(
        self, user_id: str, old_email: str, new_email: str, now: datetime
    ) -> User | None:
        """Replace the address if it is still ``old_email``; one UPDATE ... RETURNING
        (the unique (tenant, email) constraint refuses a taken address)."""
        row = self._one(
            "change_user_email",
            "UPDATE {s}.users SET email = %s, email_verified_at = %s"
            " WHERE id = %s AND email = %s"
            " RETURNING id, tenant, email, name, created_at, email_verified_at",
            (new_email, aware(now), user_id, old_email),
        )
        return None if row is None else _READ.user(row)

    # -- one-time tokens -------------------------------------------------------
    def create_one_time_token(self, token_hash: str, token: OneTimeToken, now: datetime) -> None:
        """Replace the user's tokens of this purpose (and purge expired ones) by this
        one, in one transaction. The user's row is locked first, so two concurrent
        requests of one user and purpose leave only the later token."""
        with self._transaction("create_one_time_token") as cur:
            if token.user_id:
                locked = cur.execute(
                    self._sql("SELECT 1 FROM {s}.users WHERE id = %s FOR NO KEY UPDATE"),
                    (token.user_id,),
                ).fetchone()
                if locked is None:
                    raise StoreError("one-time token refers to an unknown user")
            cur.execute(
                self._sql(
                    "DELETE FROM {s}.one_time_tokens WHERE expires_at <= %s"
                    " OR (user_id = %s AND purpose = %s)"
                    " OR (%s AND user_id IS NULL AND purpose = %s AND tenant = %s"
                    " AND email = %s)"
                ),
                (
                    aware(now),
                    token.user_id,
                    token.purpose,
                    not token.user_id,
                    token.purpose,
                    token.tenant,
                    token.email,
                ),
            )
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.one_time_tokens"
                    " (hash, purpose, user_id, tenant, email, created_at, expires_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                ),
                (
                    token_hash,
                    token.purpose,
                    token.user_id or None,
                    token.tenant,
                    token.email,
                    aware(token.created_at),
                    aware(token.expires_at),
                ),
            )

    def consume_one_time_token(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeToken | None:
        """Delete the live token and return it: one DELETE ... RETURNING, so of
        racing callers (any process) exactly one gets it."""
        row = self._one(
            "consume_one_time_token",
            "DELETE FROM {s}.one_time_tokens"
            " WHERE hash = %s AND purpose = %s AND tenant = %s AND expires_at > %s"
            " RETURNING purpose, user_id, tenant, email, created_at, expires_at",
            (token_hash, purpose, tenant, aware(now)),
        )
        return None if row is None else _READ.one_time_token(row)

    def attempt_one_time_code(
        self,
        code_hash: str,
        purpose: str,
        tenant: str,
        email: str,
        now: datetime,
        max_attempts: int,
    ) -> OneTimeToken | None:
        """Count the attempt and take the token if it is the right one, in one
        transaction. A racing UPDATE waits for the row's lock and then checks
        ``attempts < max_attempts`` on the row as committed, so counts never race;
        a row deleted meanwhile is skipped."""
        with self._transaction("attempt_one_time_code") as cur:
            counted = cur.execute(
                self._sql(
                    "UPDATE {s}.one_time_tokens SET attempts = attempts + 1"
                    " WHERE tenant = %s AND email = %s AND purpose = %s AND expires_at > %s"
                    " AND attempts < %s RETURNING hash"
                ),
                (tenant, email, purpose, aware(now), max_attempts),
            ).fetchall()
            if not any(hmac.compare_digest(row[0], code_hash) for row in counted):
                return None
            row = cur.execute(
                self._sql(
                    "DELETE FROM {s}.one_time_tokens WHERE hash = %s"
                    " RETURNING purpose, user_id, tenant, email, created_at, expires_at"
                ),
                (code_hash,),
            ).fetchone()
        return None if row is None else _READ.one_time_token(row)

    def find_one_time_token(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeToken | None:
        """The live token, left in place."""
        row = self._one(
            "find_one_time_token",
            "SELECT purpose, user_id, tenant, email, created_at, expires_at"
            " FROM {s}.one_time_tokens"
            " WHERE hash = %s AND purpose = %s AND tenant = %s AND expires_at > %s",
            (token_hash, purpose, tenant, aware(now)),
        )
        return None if row is None else _READ.one_time_token(row)

    def delete_one_time_token(self, token_hash: str) -> bool:
        """Withdraw a token; whether it existed."""
        deleted = self._write(
            "delete_one_time_token",
            "DELETE FROM {s}.one_time_tokens WHERE hash = %s",
            (token_hash,),
        )
        return deleted == 1

    def delete_user_one_time_tokens(self, user_id: str) -> int:
        """Delete every one-time token of the user; how many."""
        return self._write(
            "delete_user_one_time_tokens",
            "DELETE FROM {s}.one_time_tokens WHERE user_id = %s",
            (user_id,),
        )

    def create_one_time_state(self, token_hash: str, state: OneTimeState, now: datetime) -> None:
        """Purge expired states and store this one, in one transaction."""
        with self._transaction("create_one_time_state") as cur:
            cur.execute(
                self._sql("DELETE FROM {s}.one_time_states WHERE expires_at <= %s"), (aware(now),)
            )
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.one_time_states"
                    " (hash, purpose, tenant, payload, created_at, expires_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s)"
                ),
                (
                    token_hash,
                    state.purpose,
                    state.tenant,
                    state.payload,
                    aware(state.created_at),
                    aware(state.expires_at),
                ),
            )

    def consume_one_time_state(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeState | None:
        """One DELETE ... RETURNING: of racing callers (any process) exactly one gets it."""
        row = self._one(
            "consume_one_time_state",
            "DELETE FROM {s}.one_time_states"
            " WHERE hash = %s AND purpose = %s AND tenant = %s AND expires_at > %s"
            " RETURNING purpose, tenant, payload, created_at, expires_at",
            (token_hash, purpose, tenant, aware(now)),
        )
        return None if row is None else _READ.one_time_state(row)

    # -- identities at external providers --------------------------------------
    def create_identity(self, identity: Identity) -> None:
        """Insert the link; the primary key refuses a linked account, the foreign
        key an unknown user."""
        self._write(
            "create_identity",
            "INSERT INTO {s}.identities (tenant, provider, subject, user_id, created_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (
                identity.tenant,
                identity.provider,
                identity.subject,
                identity.user_id,
                aware(identity.created_at),
            ),
        )

    def find_identity(self, tenant: str, provider: str, subject: str) -> Identity | None:
        """The link, or ``None``."""
        row = self._one(
            "find_identity",
            _SELECT_IDENTITY + " WHERE tenant = %s AND provider = %s AND subject = %s",
            (tenant, provider, subject),
        )
        return None if row is None else _READ.identity(row)

    def list_identities(self, user_id: str) -> list[Identity]:
        """The user's links, oldest first."""
        rows = self._all(
            "list_identities",
            _SELECT_IDENTITY + " WHERE user_id = %s ORDER BY created_at, provider, subject",
            (user_id,),
        )
        return [_READ.identity(row) for row in rows]

    def delete_identity(self, user_id: str, provider: str, subject: str) -> bool:
        """Unlink; whether it was linked."""
        deleted = self._write(
            "delete_identity",
            "DELETE FROM {s}.identities WHERE user_id = %s AND provider = %s AND subject = %s",
            (user_id, provider, subject),
        )
        return deleted == 1

    # -- sessions --------------------------------------------------------------
    def create_session(self, session: Session, access_hash: str, refresh_hash: str) -> None:
        """Insert ``session`` and its first refresh token in one statement (both or
        neither); an unknown user is a :class:`~authsome.errors.StoreError`."""
        self._write(
            "create_session",
            "WITH created AS (INSERT INTO {s}.sessions (id, user_id, tenant, created_at,"
            " expires_at, access_expires_at, revoked_at, last_seen_at, ip, user_agent,"
            " access_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id)"
            " INSERT INTO {s}.refresh_tokens (hash, session_id) SELECT %s, id FROM created",
            (
                session.id,
                session.user_id,
                session.tenant,
                aware(session.created_at),
                aware(session.expires_at),
                aware(session.access_expires_at),
                _optional_aware(session.revoked_at),
                aware(session.last_activity),
                session.ip,
                session.user_agent,
                access_hash,
                refresh_hash,
            ),
        )

    def get_session(self, session_id: str) -> Session | None:
        """The session with this id (revoked or not), or ``None``."""
        row = self._one("get_session", _SELECT_SESSION + " WHERE id = %s", (session_id,))
        return None if row is None else _READ.session(row)

    def find_session_by_access_hash(self, access_hash: str) -> Session | None:
        """The session whose current access token hashes to ``access_hash``."""
        row = self._one(
            "find_session_by_access_hash",
            _SELECT_SESSION + " WHERE access_hash = %s",
            (access_hash,),
        )
        return None if row is None else _READ.session(row)

    def rotate_refresh_token(
        self,
        refresh_hash: str,
        new_refresh_hash: str,
        new_access_hash: str,
        access_expires_at: datetime,
        now: datetime,
        *,
        tenant: str | None = None,
        idle_since: datetime | None = None,
    ) -> RefreshOutcome:
        """Exchange a refresh token in one transaction that first locks the token's
        row and its session's (``FOR UPDATE``): of racing callers, across processes,
        exactly one sees the token unused.

        See :meth:`authsome.stores.Store.rotate_refresh_token` for the outcomes.
        """
        aware(access_expires_at)
        aware(now)
        with self._transaction("rotate_refresh_token") as cur:
            row = cur.execute(self._sql(_LOCK_ROTATION_ROWS), (refresh_hash,)).fetchone()
            if row is None or not _READ.session(row[1:]).usable(
                now, tenant=tenant, idle_since=idle_since
            ):
                return RefreshOutcome(RefreshStatus.INVALID)
            used: bool = row[0]
            session_id: str = row[1]
            if used:
                # A rotated token came back: someone holds a stolen copy, so the
                # whole session ends.
                cur.execute(self._sql(_REVOKE_LIVE_SESSION), {"now": now, "id": session_id})
                status = RefreshStatus.REUSED
            else:
                # The old token stays, marked used, so that its reuse is recognized.
                cur.execute(
                    self._sql(_ROTATE),
                    {
                        "old": refresh_hash,
                        "new": new_refresh_hash,
                        "session": session_id,
                        "access": new_access_hash,
                        "access_exp": access_expires_at,
                        "now": now,
                    },
                )
                status = RefreshStatus.ROTATED
            stored = cur.fetchone()
            assert stored is not None  # the session row is locked by this transaction
            return RefreshOutcome(status, _READ.session(stored))

    def touch_session(self, session_id: str, at: datetime) -> None:
        """Move ``last_seen_at`` forward to ``at``; one UPDATE, never backwards."""
        self._write(
            "touch_session",
            "UPDATE {s}.sessions SET last_seen_at = %(at)s"
            " WHERE id = %(id)s AND COALESCE(last_seen_at, created_at) < %(at)s",
            {"at": aware(at), "id": session_id},
        )

    def revoke_session(self, session_id: str, now: datetime) -> bool:
        """Revoke one live session; ``False`` if unknown, revoked already or expired."""
        row = self._one(
            "revoke_session", _REVOKE_LIVE_SESSION, {"now": aware(now), "id": session_id}
        )
        return row is not None

    def revoke_user_session(self, session_id: str, user_id: str, now: datetime) -> bool:
        """Revoke one live session of the user; one UPDATE."""
        revoked = self._write(
            "revoke_user_session",
            "UPDATE {s}.sessions SET revoked_at = %(now)s WHERE id = %(id)s"
            " AND user_id = %(user)s AND revoked_at IS NULL AND expires_at > %(now)s",
            {"now": aware(now), "id": session_id, "user": user_id},
        )
        return revoked == 1

    def list_user_sessions(self, user_id: str, now: datetime) -> list[Session]:
        """The user's live sessions, newest first; one SELECT."""
        rows = self._all(
            "list_user_sessions",
            _SELECT_SESSION + " WHERE user_id = %(user)s AND revoked_at IS NULL"
            " AND expires_at > %(now)s ORDER BY created_at DESC, id DESC",
            {"user": user_id, "now": aware(now)},
        )
        return [_READ.session(row) for row in rows]

    def revoke_user_sessions(self, user_id: str, now: datetime) -> int:
        """Revoke every live session of the user in one UPDATE; return how many."""
        return self._write(
            "revoke_user_sessions",
            "UPDATE {s}.sessions SET revoked_at = %(now)s"
            " WHERE user_id = %(user)s AND revoked_at IS NULL AND expires_at > %(now)s",
            {"now": aware(now), "user": user_id},
        )

    def revoke_other_user_sessions(self, user_id: str, keep_session_id: str, now: datetime) -> int:
        """Revoke every live session of the user but one in one UPDATE; how many."""
        return self._write(
            "revoke_other_user_sessions",
            "UPDATE {s}.sessions SET revoked_at = %(now)s WHERE user_id = %(user)s"
            " AND id <> %(keep)s AND revoked_at IS NULL AND expires_at > %(now)s",
            {"now": aware(now), "user": user_id, "keep": keep_session_id},
        )

    def prune_sessions(
        self, ended_before: datetime, idle_since: datetime | None, limit: int
    ) -> int:
        """Delete up to ``limit`` ended sessions in one statement (their refresh
        tokens go with them, by cascade); rows another transaction holds are skipped,
        so a prune never waits for a sign-in."""
        return self._write(
            "prune_sessions",
            "DELETE FROM {s}.sessions WHERE id IN (SELECT id FROM {s}.sessions"
            " WHERE revoked_at <= %(ended)s OR expires_at <= %(ended)s"
            " OR (%(idle)s::timestamptz IS NOT NULL"
            " AND COALESCE(last_seen_at, created_at) <= %(idle)s::timestamptz)"
            " LIMIT %(limit)s FOR UPDATE SKIP LOCKED)",
            {
                "ended": aware(ended_before),
                "idle": None if idle_since is None else aware(idle_since),
                "limit": limit,
            },
        )

    # -- throttle counters -----------------------------------------------------
    def hit_counter(self, key: str, now: datetime, ttl_seconds: int) -> Counter:
        """Count one hit on ``key`` with one upsert whose expiry logic is in SQL;
        see :meth:`authsome.stores.Store.hit_counter`."""
        fresh = aware(now) + timedelta(seconds=ttl_seconds)
        row = self._one("hit_counter", _HIT_COUNTER, {"key": key, "now": now, "fresh": fresh})
        assert row is not None  # an upsert with RETURNING always returns its row
        return int(row[0]), _utc(row[1])

    def keep_store_key(self, name: str, candidate: bytes) -> bytes:
        """The key kept under ``name``; the first caller's ``candidate`` is stored.

        Two statements on purpose: the INSERT waits for a racing insert to commit and
        then does nothing, and the SELECT, with a snapshot of its own under READ
        COMMITTED, sees whichever row won."""
        with self._connection("keep_store_key") as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.store_keys (name, key) VALUES (%s, %s)"
                    " ON CONFLICT (name) DO NOTHING"
                ),
                (name, bytes(candidate)),
            )
            row = cur.execute(
                self._sql("SELECT key FROM {s}.store_keys WHERE name = %s"), (name,)
            ).fetchone()
        assert row is not None  # inserted above or by the racing winner
        return bytes(row[0])

    def get_counter(self, key: str, now: datetime) -> Counter | None:
        """The live counter under ``key``, or ``None`` if absent or expired."""
        row = self._one(
            "get_counter",
            "SELECT hits, expires_at FROM {s}.counters WHERE key = %s AND expires_at > %s",
            (key, aware(now)),
        )
        return None if row is None else (int(row[0]), _utc(row[1]))

    def delete_counter(self, key: str) -> None:
        """Forget ``key``; no error when it is absent."""
        self._write("delete_counter", "DELETE FROM {s}.counters WHERE key = %s", (key,))

    def release_counter(self, key: str, now: datetime) -> None:
        """Take one hit back from a live counter, never below 0; one statement."""
        self._write(
            "release_counter",
            "UPDATE {s}.counters SET hits = GREATEST(hits - 1, 0)"
            " WHERE key = %s AND expires_at > %s",
            (key, aware(now)),
        )

    def prune_counters(self, now: datetime) -> int:
        """Delete the expired counters; one statement."""
        return self._write(
            "prune_counters", "DELETE FROM {s}.counters WHERE expires_at <= %s", (aware(now),)
        )

    # -- orgs ------------------------------------------------------------------
    def create_org(self, org: Org, owner: Membership) -> None:
        """Insert ``org`` and its owner's membership in one transaction; a failed
        membership insert (e.g. unknown user) rolls the org back too."""
        check_owner_membership(org, owner)
        with self._transaction("create_org") as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.orgs (id, tenant, slug, name, created_at)"
                    " VALUES (%s, %s, %s, %s, %s)"
                ),
                (org.id, org.tenant, org.slug, org.name, aware(org.created_at)),
            )
            self._insert_membership(cur, owner)

    def get_org(self, org_id: str) -> Org | None:
        """The org with this id, or ``None``."""
        row = self._one("get_org", _SELECT_ORG + " WHERE id = %s", (org_id,))
        return None if row is None else _READ.org(row)

    def find_org_by_slug(self, tenant: str, slug: str) -> Org | None:
        """The org with this slug in ``tenant``, or ``None``."""
        row = self._one(
            "find_org_by_slug", _SELECT_ORG + " WHERE tenant = %s AND slug = %s", (tenant, slug)
        )
        return None if row is None else _READ.org(row)

    def add_membership(self, membership: Membership) -> None:
        """Insert a membership; the foreign keys refuse an unknown org or user."""
        with self._connection("add_membership") as cur:
            self._insert_membership(cur, membership)

    def _insert_membership(self, cur: psycopg.Cursor[TupleRow], membership: Membership) -> None:
        cur.execute(
            self._sql(
                "INSERT INTO {s}.org_members (org_id, user_id, role, created_at)"
                " VALUES (%s, %s, %s, %s)"
            ),
            (
                membership.org_id,
                membership.user_id,
                OrgRole(membership.role).value,
                aware(membership.created_at),
            ),
        )

    def get_membership(self, org_id: str, user_id: str) -> Membership | None:
        """The user's membership of the org, or ``None``."""
        row = self._one("get_membership", _SELECT_MEMBERSHIP, (org_id, user_id))
        return None if row is None else _READ.membership(row)

    def list_memberships(self, org_id: str) -> list[Membership]:
        """The org's memberships, oldest first (ties by user id, bytewise)."""
        rows = self._all(
            "list_memberships",
            "SELECT org_id, user_id, role, created_at FROM {s}.org_members"
            ' WHERE org_id = %s ORDER BY created_at, user_id COLLATE "C"',
            (org_id,),
        )
        return [_READ.membership(row) for row in rows]

    def list_user_orgs(self, user_id: str) -> list[Org]:
        """The orgs the user belongs to, oldest first (ties by id, bytewise)."""
        rows = self._all(
            "list_user_orgs",
            "SELECT o.id, o.tenant, o.slug, o.name, o.created_at"
            " FROM {s}.org_members AS m JOIN {s}.orgs AS o ON o.id = m.org_id"
            ' WHERE m.user_id = %s ORDER BY o.created_at, o.id COLLATE "C"',
            (user_id,),
        )
        return [_READ.org(row) for row in rows]

    def remove_membership(self, org_id: str, user_id: str) -> Membership | None:
        """Delete a membership unless it is the last owner's and return it. The org's
        row is locked first, so owner changes of one org run one after another."""
        with self._transaction("remove_membership") as cur:
            role = self._lock_org_and_read_role(cur, org_id, user_id)
            if role is None:
                return None
            if role is OrgRole.OWNER and self._owner_count(cur, org_id) == 1:
                raise last_owner_conflict("removed")
            cur.execute(
                self._sql(
                    "DELETE FROM {s}.org_members WHERE org_id = %s AND user_id = %s"
                    " RETURNING org_id, user_id, role, created_at"
                ),
                (org_id, user_id),
            )
            row = cur.fetchone()
            assert row is not None  # the row is locked and was just read
            return _READ.membership(row)

    def set_membership_role(self, org_id: str, user_id: str, role: OrgRole) -> Membership | None:
        """Change a member's role unless that demotes the last owner; atomic like
        :meth:`remove_membership`."""
        role = OrgRole(role)
        with self._transaction("set_membership_role") as cur:
            current = self._lock_org_and_read_role(cur, org_id, user_id)
            if current is None:
                return None
            demotes_owner = current is OrgRole.OWNER and role is not OrgRole.OWNER
            if demotes_owner and self._owner_count(cur, org_id) == 1:
                raise last_owner_conflict("demoted")
            row = cur.execute(
                self._sql(
                    "UPDATE {s}.org_members SET role = %s WHERE org_id = %s AND user_id = %s"
                    " RETURNING org_id, user_id, role, created_at"
                ),
                (role.value, org_id, user_id),
            ).fetchone()
            assert row is not None  # the org is locked, so the membership is still there
            return _READ.membership(row)

    def _lock_org_and_read_role(
        self, cur: psycopg.Cursor[TupleRow], org_id: str, user_id: str
    ) -> OrgRole | None:
        # FOR NO KEY UPDATE serializes owner changes of the org without blocking the
        # key-share locks that inserting other memberships takes.
        cur.execute(self._sql("SELECT 1 FROM {s}.orgs WHERE id = %s FOR NO KEY UPDATE"), (org_id,))
        row = cur.execute(self._sql(_SELECT_MEMBERSHIP), (org_id, user_id)).fetchone()
        return None if row is None else OrgRole(row[2])

    def _owner_count(self, cur: psycopg.Cursor[TupleRow], org_id: str) -> int:
        row = cur.execute(
            self._sql("SELECT count(*) FROM {s}.org_members WHERE org_id = %s AND role = 'owner'"),
            (org_id,),
        ).fetchone()
        return 0 if row is None else int(row[0])

    # -- custom domains --------------------------------------------------------
    def create_domain(self, domain: Domain, token: str) -> None:
        """Insert a claim; :class:`~authsome.errors.AlreadyExists` if the tenant
        claimed the hostname already, another tenant verified it, or the id is
        taken. One INSERT, so nothing is half-written."""
        inserted = self._write(
            "create_domain",
            "INSERT INTO {s}.domains (id, tenant, hostname, token, created_at, verified_at)"
            " SELECT %(id)s, %(tenant)s, %(hostname)s, %(token)s, %(created_at)s, %(verified_at)s"
            " WHERE NOT EXISTS (SELECT 1 FROM {s}.domains WHERE hostname = %(hostname)s"
            " AND verified_at IS NOT NULL AND tenant <> %(tenant)s)",
            {
                "id": domain.id,
                "tenant": domain.tenant,
                "hostname": domain.hostname,
                "token": token,
                "created_at": aware(domain.created_at),
                "verified_at": _optional_aware(domain.verified_at),
            },
        )
        if inserted == 0:
            raise AlreadyExists(Duplicate.HOSTNAME_VERIFIED)

    def get_domain(self, domain_id: str) -> Domain | None:
        """The domain with this id, or ``None``."""
        row = self._one("get_domain", _SELECT_DOMAIN + " WHERE id = %s", (domain_id,))
        return None if row is None else _READ.domain(row)

    def get_domain_token(self, domain_id: str) -> str | None:
        """The domain's challenge token, or ``None`` if the domain is unknown."""
        row = self._one(
            "get_domain_token", "SELECT token FROM {s}.domains WHERE id = %s", (domain_id,)
        )
        return None if row is None else str(row[0])

    def find_domain_by_hostname(self, hostname: str) -> Domain | None:
        """The verified domain whose hostname is exactly ``hostname``, or ``None``."""
        row = self._one(
            "find_domain_by_hostname",
            _SELECT_DOMAIN + " WHERE hostname = %s AND verified_at IS NOT NULL",
            (hostname,),
        )
        return None if row is None else _READ.domain(row)

    def list_domains(self, tenant: str) -> list[Domain]:
        """Every domain of ``tenant``, ordered by hostname (bytewise, as in SQLite)."""
        rows = self._all(
            "list_domains",
            _SELECT_DOMAIN + ' WHERE tenant = %s ORDER BY hostname COLLATE "C"',
            (tenant,),
        )
        return [_READ.domain(row) for row in rows]

    def mark_domain_verified(self, domain_id: str, now: datetime) -> Domain | None:
        """Set ``verified_at`` once (the first time is kept) and return the stored
        domain, in one UPDATE; the partial unique index refuses a hostname another
        domain verified first (a concurrent verification waits for this one)."""
        row = self._one(
            "mark_domain_verified",
            "UPDATE {s}.domains SET verified_at = COALESCE(verified_at, %s) WHERE id = %s"
            " RETURNING id, tenant, hostname, created_at, verified_at",
            (aware(now), domain_id),
        )
        return None if row is None else _READ.domain(row)

    def delete_pending_domains(self, created_before: datetime) -> int:
        """Delete the unverified claims created at or before ``created_before``."""
        return self._write(
            "delete_pending_domains",
            "DELETE FROM {s}.domains WHERE verified_at IS NULL AND created_at <= %s",
            (aware(created_before),),
        )

    def delete_domain(self, domain_id: str) -> bool:
        """Delete the domain; ``False`` if it did not exist."""
        deleted = self._write(
            "delete_domain", "DELETE FROM {s}.domains WHERE id = %s", (domain_id,)
        )
        return deleted == 1

    # -- mfa -------------------------------------------------------------------
    def create_mfa_factor(self, factor: MfaFactor, secret: str) -> None:
        """Insert a pending factor, replacing the user's pending one of its method;
        see :meth:`authsome.stores.Store.create_mfa_factor`.

        The user's row is locked first, so enrolments of one user run one after
        another; a factor confirmed meanwhile is never deleted (the DELETE re-checks
        ``confirmed_at``), and the insert then fails on the unique (user, method).
        """
        method = factor.method.value
        with self._transaction("create_mfa_factor") as cur:
            cur.execute(
                self._sql("SELECT 1 FROM {s}.users WHERE id = %s FOR NO KEY UPDATE"),
                (factor.user_id,),
            )
            confirmed = cur.execute(
                self._sql(
                    "SELECT 1 FROM {s}.mfa_factors"
                    " WHERE user_id = %s AND method = %s AND confirmed_at IS NOT NULL"
                ),
                (factor.user_id, method),
            ).fetchone()
            if confirmed is not None:
                raise AlreadyExists(Duplicate.CONFIRMED_FACTOR)
            cur.execute(
                self._sql(
                    "DELETE FROM {s}.mfa_factors"
                    " WHERE user_id = %s AND method = %s AND confirmed_at IS NULL"
                ),
                (factor.user_id, method),
            )
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.mfa_factors"
                    " (id, user_id, method, secret, created_at, confirmed_at, last_step)"
                    " VALUES (%s, %s, %s, %s, %s, %s, NULL)"
                ),
                (
                    factor.id,
                    factor.user_id,
                    method,
                    secret,
                    aware(factor.created_at),
                    _optional_aware(factor.confirmed_at),
                ),
            )

    def get_mfa_factor(self, factor_id: str) -> MfaFactor | None:
        """The factor with this id, or ``None``."""
        row = self._one("get_mfa_factor", _SELECT_FACTOR + " WHERE id = %s", (factor_id,))
        return None if row is None else _READ.factor(row)

    def get_mfa_secret(self, factor_id: str) -> str | None:
        """The factor's stored secret, or ``None``."""
        row = self._one(
            "get_mfa_secret", "SELECT secret FROM {s}.mfa_factors WHERE id = %s", (factor_id,)
        )
        return None if row is None else str(row[0])

    def list_mfa_secrets(self, after: str, limit: int) -> list[tuple[str, str]]:
        """A page of ``(factor id, stored secret)`` after ``after``, by id (bytewise)."""
        rows = self._all(
            "list_mfa_secrets",
            'SELECT id, secret FROM {s}.mfa_factors WHERE id COLLATE "C" > %s'
            ' ORDER BY id COLLATE "C" LIMIT %s',
            (after, limit),
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    def replace_mfa_secret(self, factor_id: str, expected: str, secret: str) -> bool:
        """Compare-and-set the stored secret in one UPDATE."""
        updated = self._write(
            "replace_mfa_secret",
            "UPDATE {s}.mfa_factors SET secret = %s WHERE id = %s AND secret = %s",
            (secret, factor_id, expected),
        )
        return updated == 1

    def list_mfa_factors(self, user_id: str) -> list[MfaFactor]:
        """The user's factors, oldest first."""
        rows = self._all(
            "list_mfa_factors",
            _SELECT_FACTOR + ' WHERE user_id = %s ORDER BY created_at, id COLLATE "C"',
            (user_id,),
        )
        return [_READ.factor(row) for row in rows]

    def confirm_mfa_factor(
        self, factor_id: str, step: int, recovery_hashes: Sequence[str], now: datetime
    ) -> bool:
        """Confirm a pending factor with its first step and recovery codes, in one
        transaction. The conditional UPDATE decides: of racing callers, the ones that
        waited for its row lock find the factor confirmed and change nothing."""
        with self._transaction("confirm_mfa_factor") as cur:
            cur.execute(
                self._sql(
                    "UPDATE {s}.mfa_factors SET confirmed_at = %(now)s, last_step = %(step)s"
                    " WHERE id = %(id)s AND confirmed_at IS NULL"
                    " AND (last_step IS NULL OR last_step < %(step)s)"
                ),
                {"now": aware(now), "step": step, "id": factor_id},
            )
            if cur.rowcount != 1:
                return False
            cur.execute(
                self._sql("DELETE FROM {s}.mfa_recovery_codes WHERE factor_id = %s"),
                (factor_id,),
            )
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.mfa_recovery_codes (factor_id, code_hash)"
                    " SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING"
                ),
                (factor_id, list(recovery_hashes)),
            )
            return True

    def use_totp_step(self, factor_id: str, step: int) -> bool:
        """Accept ``step`` once: one conditional UPDATE. A racing caller waits for the
        row lock, re-checks ``last_step < step`` on the updated row and matches
        nothing, so exactly one caller, in any process, gets ``True``."""
        updated = self._write(
            "use_totp_step",
            "UPDATE {s}.mfa_factors SET last_step = %(step)s"
            " WHERE id = %(id)s AND (last_step IS NULL OR last_step < %(step)s)",
            {"step": step, "id": factor_id},
        )
        return updated == 1

    def consume_recovery_code(self, factor_id: str, code_hash: str) -> bool:
        """Delete one recovery code; ``True`` for the one caller that deleted it."""
        deleted = self._write(
            "consume_recovery_code",
            "DELETE FROM {s}.mfa_recovery_codes WHERE factor_id = %s AND code_hash = %s",
            (factor_id, code_hash),
        )
        return deleted == 1

    def count_recovery_codes(self, factor_id: str) -> int:
        """How many unused recovery codes the factor has."""
        row = self._one(
            "count_recovery_codes",
            "SELECT count(*) FROM {s}.mfa_recovery_codes WHERE factor_id = %s",
            (factor_id,),
        )
        return 0 if row is None else int(row[0])

    def delete_mfa_factor(self, factor_id: str) -> bool:
        """Delete the factor; its recovery codes go with it (ON DELETE CASCADE)."""
        deleted = self._write(
            "delete_mfa_factor", "DELETE FROM {s}.mfa_factors WHERE id = %s", (factor_id,)
        )
        return deleted == 1

    def create_mfa_ticket(
        self, ticket_hash: str, user_id: str, expires_at: datetime, now: datetime
    ) -> None:
        """Store a ticket and purge expired ones, in one transaction."""
        with self._transaction("create_mfa_ticket") as cur:
            cur.execute(
                self._sql("DELETE FROM {s}.mfa_tickets WHERE expires_at <= %s"), (aware(now),)
            )
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.mfa_tickets (hash, user_id, expires_at, attempts)"
                    " VALUES (%s, %s, %s, 0)"
                ),
                (ticket_hash, user_id, aware(expires_at)),
            )

    def attempt_mfa_ticket(
        self, ticket_hash: str, now: datetime, max_attempts: int, *, tenant: str | None = None
    ) -> str | None:
        """Count one attempt on a live ticket (of a user of ``tenant``, when given) and
        return its user id: one conditional UPDATE, so racing callers never exceed
        ``max_attempts``."""
        row = self._one(
            "attempt_mfa_ticket",
            "UPDATE {s}.mfa_tickets SET attempts = attempts + 1"
            " WHERE hash = %(hash)s AND expires_at > %(now)s AND attempts < %(max)s"
            " AND (%(tenant)s::text IS NULL"
            " OR user_id IN (SELECT id FROM {s}.users WHERE tenant = %(tenant)s))"
            " RETURNING user_id",
            {"hash": ticket_hash, "now": aware(now), "max": max_attempts, "tenant": tenant},
        )
        return None if row is None else str(row[0])

    def consume_mfa_ticket(self, ticket_hash: str) -> bool:
        """Delete the ticket; ``True`` for the one caller that deleted it."""
        deleted = self._write(
            "consume_mfa_ticket", "DELETE FROM {s}.mfa_tickets WHERE hash = %s", (ticket_hash,)
        )
        return deleted == 1

    def delete_user_mfa_tickets(self, user_id: str) -> int:
        """Delete the user's sign-in tickets; return how many."""
        return self._write(
            "delete_user_mfa_tickets", "DELETE FROM {s}.mfa_tickets WHERE user_id = %s", (user_id,)
        )

    def count_mfa_failure(self, factor_id: str) -> int:
        """One more wrong code for the factor: a single UPDATE ... RETURNING, so
        concurrent callers in any process each see their own count."""
        row = self._one(
            "count_mfa_failure",
            "UPDATE {s}.mfa_factors SET failed_codes = failed_codes + 1 WHERE id = %s"
            " RETURNING failed_codes",
            (factor_id,),
        )
        return 0 if row is None else int(row[0])

    def reset_mfa_failures(self, factor_id: str) -> bool:
        """Clear the factor's wrong-code count; ``True`` if there was one."""
        updated = self._write(
            "reset_mfa_failures",
            "UPDATE {s}.mfa_factors SET failed_codes = 0 WHERE id = %s AND failed_codes > 0",
            (factor_id,),
        )
        return updated == 1

    # -- api keys --------------------------------------------------------------
    def create_api_key(self, key: ApiKey, secret_hash: str) -> None:
        """Insert ``key`` and its secret hash; one INSERT, so nothing is half-written."""
        self._write(
            "create_api_key",
            "INSERT INTO {s}.api_keys (id, lookup_id, owner_kind, owner_id, tenant, name,"
            " scopes, created_at, expires_at, revoked_at, last_used_at, secret_hash)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s::text[], %s, %s, %s, %s, %s)",
            (
                key.id,
                key.lookup_id,
                key.owner_kind,
                key.owner_id,
                key.tenant,
                key.name,
                list(key.scopes),
                aware(key.created_at),
                _optional_aware(key.expires_at),
                _optional_aware(key.revoked_at),
                _optional_aware(key.last_used_at),
                secret_hash,
            ),
        )

    def get_api_key(self, key_id: str) -> ApiKey | None:
        """The key with this id, or ``None``."""
        row = self._one("get_api_key", _SELECT_API_KEY + " WHERE id = %s", (key_id,))
        return None if row is None else _READ.api_key(row)

    def find_api_key_by_lookup_id(self, lookup_id: str) -> StoredApiKey | None:
        """The key with this lookup id and its secret hash (unique index), or ``None``."""
        row = self._one(
            "find_api_key_by_lookup_id",
            "SELECT id, lookup_id, owner_kind, owner_id, tenant, name, scopes, created_at,"
            " expires_at, revoked_at, last_used_at, secret_hash"
            " FROM {s}.api_keys WHERE lookup_id = %s",
            (lookup_id,),
        )
        return None if row is None else StoredApiKey(_READ.api_key(row), str(row[11]))

    def list_api_keys(self, owner_kind: ApiKeyOwnerKind, owner_id: str) -> list[ApiKey]:
        """Every key of this owner, oldest first (ties by id, bytewise)."""
        rows = self._all(
            "list_api_keys",
            _SELECT_API_KEY + " WHERE owner_kind = %s AND owner_id = %s"
            ' ORDER BY created_at, id COLLATE "C"',
            (owner_kind, owner_id),
        )
        return [_READ.api_key(row) for row in rows]

    def revoke_api_key(self, key_id: str, now: datetime) -> bool:
        """Revoke the key; ``False`` if unknown or revoked already."""
        revoked = self._write(
            "revoke_api_key",
            "UPDATE {s}.api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
            (aware(now), key_id),
        )
        return revoked == 1

    def touch_api_key(self, key_id: str, at: datetime) -> None:
        """Move ``last_used_at`` forward to ``at``; one UPDATE, never backwards (a
        writer that waited re-checks the condition against the newer time)."""
        self._write(
            "touch_api_key",
            "UPDATE {s}.api_keys SET last_used_at = GREATEST(last_used_at, %(at)s)"
            " WHERE id = %(id)s AND (last_used_at IS NULL OR last_used_at < %(at)s)",
            {"at": aware(at), "id": key_id},
        )

    # -- passkeys --------------------------------------------------------------
    def create_passkey_challenge(self, challenge: PasskeyChallenge, now: datetime) -> None:
        """Purge expired challenges and insert this one, in one transaction; the
        primary key refuses a pending hash, the foreign key an unknown user."""
        with self._transaction("create_passkey_challenge") as cur:
            cur.execute(
                self._sql("DELETE FROM {s}.passkey_challenges WHERE expires_at <= %s"),
                (aware(now),),
            )
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.passkey_challenges"
                    " (challenge_hash, ceremony, user_id, tenant, rp_id, origin, expires_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                ),
                (
                    challenge.challenge_hash,
                    PasskeyCeremony(challenge.ceremony).value,
                    challenge.user_id,
                    challenge.tenant,
                    challenge.rp_id,
                    challenge.origin,
                    aware(challenge.expires_at),
                ),
            )

    def consume_passkey_challenge(
        self, challenge_hash: str, now: datetime
    ) -> PasskeyChallenge | None:
        """Delete the challenge and return it if it was live: one DELETE ... RETURNING,
        so of racing consumers, in any process, at most one gets it."""
        row = self._one(
            "consume_passkey_challenge",
            _CONSUME_CHALLENGE,
            {"hash": challenge_hash, "now": aware(now)},
        )
        if row is None or not row[7]:
            return None
        return _READ.passkey_challenge(row)

    def create_passkey(self, passkey: Passkey) -> None:
        """Insert a passkey; the primary key refuses a registered credential id, the
        foreign key an unknown user. One INSERT, so nothing is half-written."""
        self._write(
            "create_passkey",
            "INSERT INTO {s}.passkeys (credential_id, user_id, tenant, rp_id, public_key,"
            " sign_count, transports, created_at, last_used_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s::text[], %s, %s)",
            (
                passkey.credential_id,
                passkey.user_id,
                passkey.tenant,
                passkey.rp_id,
                bytes(passkey.public_key),
                passkey.sign_count,
                list(passkey.transports),
                aware(passkey.created_at),
                _optional_aware(passkey.last_used_at),
            ),
        )

    def get_passkey(self, credential_id: str) -> Passkey | None:
        """The passkey with this credential id, or ``None``."""
        row = self._one(
            "get_passkey", _SELECT_PASSKEY + " WHERE credential_id = %s", (credential_id,)
        )
        return None if row is None else _READ.passkey(row)

    def sample_passkey(self, tenant: str, rp_id: str, point: str) -> Passkey | None:
        """The first passkey of ``tenant`` and ``rp_id`` from ``point`` on (bytewise),
        wrapping around; two index lookups at most."""
        row = self._one(
            "sample_passkey",
            _SELECT_PASSKEY + " WHERE tenant = %s AND rp_id = %s"
            ' AND credential_id COLLATE "C" >= %s ORDER BY credential_id COLLATE "C" LIMIT 1',
            (tenant, rp_id, point),
        ) or self._one(
            "sample_passkey",
            _SELECT_PASSKEY + " WHERE tenant = %s AND rp_id = %s"
            ' ORDER BY credential_id COLLATE "C" LIMIT 1',
            (tenant, rp_id),
        )
        return None if row is None else _READ.passkey(row)

    def list_user_passkeys(self, user_id: str) -> list[Passkey]:
        """The user's passkeys, oldest first (ties by credential id, bytewise)."""
        rows = self._all(
            "list_user_passkeys",
            _SELECT_PASSKEY + ' WHERE user_id = %s ORDER BY created_at, credential_id COLLATE "C"',
            (user_id,),
        )
        return [_READ.passkey(row) for row in rows]

    def update_passkey_sign_count(
        self, credential_id: str, expected: int, new: int, now: datetime
    ) -> bool:
        """Compare-and-set the sign count in one UPDATE: a racing writer waits for the
        row lock, re-checks ``sign_count = expected`` on the updated row and matches
        nothing, so exactly one of them is accepted."""
        updated = self._write(
            "update_passkey_sign_count",
            "UPDATE {s}.passkeys SET sign_count = %s, last_used_at = %s"
            " WHERE credential_id = %s AND sign_count = %s",
            (new, aware(now), credential_id, expected),
        )
        return updated == 1

    def delete_passkey(self, user_id: str, credential_id: str) -> bool:
        """Delete the user's passkey; ``False`` if the user has none with this id."""
        deleted = self._write(
            "delete_passkey",
            "DELETE FROM {s}.passkeys WHERE credential_id = %s AND user_id = %s",
            (credential_id, user_id),
        )
        return deleted == 1

    # -- sso -------------------------------------------------------------------
    def create_sso_connection(
        self, connection: SSOConnectionInfo, client_secret: StoredSecret | None
    ) -> None:
        """Insert the connection and its domains in one transaction. The primary key
        (tenant, domain) refuses a domain another connection of the tenant owns (also one being
        inserted concurrently: that insert waits and then fails); the foreign key
        refuses an unknown org. Either way everything is rolled back."""
        check_sso_record(connection, client_secret)
        settings = _sso_settings(connection, client_secret)
        with self._transaction("create_sso_connection") as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO {s}.sso_connections (id, org_id, protocol, issuer, client_id,"
                    " scopes, entity_id, sso_url, x509_certificate, client_secret, secret_sealed,"
                    " rollover_x509_certificate, allow_idp_initiated,"
                    " sign_in, created_at, updated_at) VALUES (%(id)s, %(org_id)s, %(protocol)s,"
                    " %(issuer)s, %(client_id)s, %(scopes)s::text[], %(entity_id)s, %(sso_url)s,"
                    " %(x509_certificate)s, %(client_secret)s, %(secret_sealed)s,"
                    " %(rollover_x509_certificate)s, %(allow_idp_initiated)s,"
                    " %(sign_in)s, %(created_at)s, %(updated_at)s)"
                ),
                {
                    **settings,
                    "id": connection.id,
                    "org_id": connection.org_id,
                    "created_at": aware(connection.created_at),
                },
            )
            self._insert_sso_domains(cur, connection.id, connection.domains)

    def update_sso_connection(
        self, connection: SSOConnectionInfo, client_secret: StoredSecret | None
    ) -> SSOConnectionInfo | None:
        """Replace settings and domains in one transaction; the UPDATE locks the
        connection's row first, so updates of one connection run one after another.
        A taken domain rolls everything back."""
        check_sso_record(connection, client_secret)
        settings = _sso_settings(connection, client_secret)
        with self._transaction("update_sso_connection") as cur:
            cur.execute(
                self._sql(
                    "UPDATE {s}.sso_connections SET protocol = %(protocol)s,"
                    " issuer = %(issuer)s, client_id = %(client_id)s,"
                    " scopes = %(scopes)s::text[], entity_id = %(entity_id)s,"
                    " sso_url = %(sso_url)s, x509_certificate = %(x509_certificate)s,"
                    " client_secret = %(client_secret)s, secret_sealed = %(secret_sealed)s,"
                    " rollover_x509_certificate = %(rollover_x509_certificate)s,"
                    " allow_idp_initiated = %(allow_idp_initiated)s,"
                    " sign_in = %(sign_in)s, updated_at = %(updated_at)s WHERE id = %(id)s"
                ),
                {**settings, "id": connection.id},
            )
            if cur.rowcount != 1:
                return None
            cur.execute(
                self._sql("DELETE FROM {s}.sso_domains WHERE connection_id = %s"),
                (connection.id,),
            )
            self._insert_sso_domains(cur, connection.id, connection.domains)
            row = cur.execute(
                self._sql(_SELECT_SSO + " WHERE c.id = %s"), (connection.id,)
            ).fetchone()
            assert row is not None  # the row is locked by this transaction
            return _sso_connection(row)

    def _insert_sso_domains(
        self, cur: psycopg.Cursor[TupleRow], connection_id: str, domains: tuple[str, ...]
    ) -> None:
        if domains:
            cur.execute(self._sql(_INSERT_SSO_DOMAINS), (list(domains), connection_id))

    def get_sso_connection(self, connection_id: str) -> SSOConnectionInfo | None:
        """The connection with this id, or ``None``."""
        row = self._one("get_sso_connection", _SELECT_SSO + " WHERE c.id = %s", (connection_id,))
        return None if row is None else _sso_connection(row)

    def list_sso_connections(self, org_id: str) -> list[SSOConnectionInfo]:
        """The org's connections, oldest first (ties by id, bytewise)."""
        rows = self._all(
            "list_sso_connections",
            _SELECT_SSO + ' WHERE c.org_id = %s ORDER BY c.created_at, c.id COLLATE "C"',
            (org_id,),
        )
        return [_sso_connection(row) for row in rows]

    def find_sso_connection_by_domain(self, tenant: str, domain: str) -> SSOConnectionInfo | None:
        """The tenant's connection listing ``domain`` (exact match, by primary key),
        or ``None``."""
        row = self._one(
            "find_sso_connection_by_domain",
            _SELECT_SSO + " JOIN {s}.sso_domains AS owner ON owner.connection_id = c.id"
            " WHERE owner.tenant = %s AND owner.domain = %s",
            (tenant, domain),
        )
        return None if row is None else _sso_connection(row)

    def get_sso_client_secret(self, connection_id: str) -> StoredSecret | None:
        """The stored secret as given, or ``None``."""
        row = self._one(
            "get_sso_client_secret",
            "SELECT client_secret, secret_sealed FROM {s}.sso_connections WHERE id = %s",
            (connection_id,),
        )
        if row is None or row[0] is None:
            return None
        return StoredSecret(str(row[0]), sealed=bool(row[1]))

    def list_sso_client_secrets(self, after: str, limit: int) -> list[tuple[str, StoredSecret]]:
        """A page of ``(connection id, stored secret)`` after ``after``, by id (bytewise)."""
        rows = self._all(
            "list_sso_client_secrets",
            "SELECT id, client_secret, secret_sealed FROM {s}.sso_connections"
            ' WHERE id COLLATE "C" > %s AND client_secret IS NOT NULL'
            ' ORDER BY id COLLATE "C" LIMIT %s',
            (after, limit),
        )
        return [(str(row[0]), StoredSecret(str(row[1]), sealed=bool(row[2]))) for row in rows]

    def replace_sso_client_secret(
        self, connection_id: str, expected: StoredSecret, secret: StoredSecret
    ) -> bool:
        """Compare-and-set the stored secret and its flag in one UPDATE."""
        updated = self._write(
            "replace_sso_client_secret",
            "UPDATE {s}.sso_connections SET client_secret = %s, secret_sealed = %s"
            " WHERE id = %s AND client_secret = %s AND secret_sealed = %s",
            (secret.value, secret.sealed, connection_id, expected.value, expected.sealed),
        )
        return updated == 1

    def use_saml_assertion_id(
        self, connection_id: str, assertion_id: str, keep_until: datetime, now: datetime
    ) -> bool:
        """Forget expired ids, then insert this one unless kept. The primary key makes
        a racing insert wait for the first one's commit and then do nothing, so
        exactly one caller, in any process, gets ``True``."""
        with self._transaction("use_saml_assertion_id") as cur:
            cur.execute(
                self._sql("DELETE FROM {s}.saml_assertion_ids WHERE keep_until <= %s"),
                (aware(now),),
            )
            inserted = cur.execute(
                self._sql(
                    "INSERT INTO {s}.saml_assertion_ids (connection_id, assertion_id, keep_until)"
                    " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
                ),
                (connection_id, assertion_id, aware(keep_until)),
            ).rowcount
        return inserted == 1

    def delete_sso_connection(self, connection_id: str) -> bool:
        """Delete the connection; its domains go with it (ON DELETE CASCADE)."""
        deleted = self._write(
            "delete_sso_connection",
            "DELETE FROM {s}.sso_connections WHERE id = %s",
            (connection_id,),
        )
        return deleted == 1

    # -- social sign-in providers ------------------------------------------------
    def put_social_provider(
        self, provider: SocialProviderInfo, client_secret: StoredSecret
    ) -> SocialProviderInfo:
        """Insert or replace the tenant's configuration in one upsert."""
        check_social_record(provider, client_secret)
        row = self._one(
            "put_social_provider",
            _PUT_SOCIAL,
            (
                provider.id,
                provider.tenant,
                provider.provider,
                provider.client_id,
                json.dumps(list(provider.scopes)),
                json.dumps(dict(provider.settings), sort_keys=True),
                client_secret.value,
                client_secret.sealed,
                provider.created_at,
                provider.updated_at,
            ),
        )
        assert row is not None  # RETURNING always gives the row
        return _READ.social_provider(row)

    def get_social_provider(self, tenant: str, provider: str) -> SocialProviderInfo | None:
        """The tenant's configuration of ``provider``, or ``None``."""
        row = self._one(
            "get_social_provider",
            _SELECT_SOCIAL + " WHERE tenant = %s AND provider = %s",
            (tenant, provider),
        )
        return None if row is None else _READ.social_provider(row)

    def list_social_providers(self, tenant: str) -> list[SocialProviderInfo]:
        """The tenant's configurations, by provider name (bytewise)."""
        rows = self._all(
            "list_social_providers",
            _SELECT_SOCIAL + ' WHERE tenant = %s ORDER BY provider COLLATE "C"',
            (tenant,),
        )
        return [_READ.social_provider(row) for row in rows]

    def get_social_client_secret(self, provider_id: str) -> StoredSecret | None:
        """The stored secret as given, or ``None``."""
        row = self._one(
            "get_social_client_secret",
            "SELECT client_secret, secret_sealed FROM {s}.social_providers WHERE id = %s",
            (provider_id,),
        )
        return None if row is None else StoredSecret(str(row[0]), sealed=bool(row[1]))

    def list_social_client_secrets(self, after: str, limit: int) -> list[tuple[str, StoredSecret]]:
        """A page of ``(configuration id, stored secret)`` after ``after``, by id."""
        rows = self._all(
            "list_social_client_secrets",
            "SELECT id, client_secret, secret_sealed FROM {s}.social_providers"
            ' WHERE id COLLATE "C" > %s ORDER BY id COLLATE "C" LIMIT %s',
            (after, limit),
        )
        return [(str(row[0]), StoredSecret(str(row[1]), sealed=bool(row[2]))) for row in rows]

    def replace_social_client_secret(
        self, provider_id: str, expected: StoredSecret, secret: StoredSecret
    ) -> bool:
        """Compare-and-set the stored secret and its flag in one UPDATE."""
        updated = self._write(
            "replace_social_client_secret",
            "UPDATE {s}.social_providers SET client_secret = %s, secret_sealed = %s"
            " WHERE id = %s AND client_secret = %s AND secret_sealed = %s",
            (secret.value, secret.sealed, provider_id, expected.value, expected.sealed),
        )
        return updated == 1

    def delete_social_provider(self, tenant: str, provider: str) -> bool:
        """Delete the tenant's configuration of ``provider``."""
        deleted = self._write(
            "delete_social_provider",
            "DELETE FROM {s}.social_providers WHERE tenant = %s AND provider = %s",
            (tenant, provider),
        )
        return deleted == 1

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        """Close the pool if the store created it (a pool passed in stays open).
        Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        # A pool inherited through fork() is the parent's: left alone.
        if self._owns_pool and self._pid == os.getpid():
            self._pool.close()

    # -- plumbing ----------------------------------------------------------------
    def _sql(self, template: str) -> bytes:
        """``template`` with ``{s}`` replaced by the quoted schema, rendered once."""
        rendered = self._rendered.get(template)
        if rendered is None:
            rendered = template.encode().replace(b"{s}", self._quoted_schema)
            self._rendered[template] = rendered
        return rendered

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction on one pooled connection for every call this thread makes
        in the block; a method's own transaction is part of it (no savepoint: after
        a failed statement PostgreSQL refuses the rest, so the block rolls back)."""
        if getattr(self._units, "cursor", None) is not None:
            yield  # joins the enclosing block
            return
        with self._transaction("atomic") as cur:
            self._units.cursor = cur
            try:
                yield
            finally:
                self._units.cursor = None

    @contextlib.contextmanager
    def _connection(self, operation: str) -> Iterator[psycopg.Cursor[TupleRow]]:
        """A cursor on a pooled connection. On the store's own (autocommit) pool each
        statement commits by itself; a passed-in pool's connection is committed
        when the pool takes it back. Inside an :meth:`atomic` block, its cursor."""
        held: psycopg.Cursor[TupleRow] | None = getattr(self._units, "cursor", None)
        if held is not None:
            with _translated_errors(operation):
                yield held
            return
        if self._closed:
            raise StoreError("postgres store: the store is closed")
        if os.getpid() != self._pid:
            self._reopen_after_fork()
        with (
            _translated_errors(operation),
            self._pool.connection() as conn,
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            yield cur

    def _reopen_after_fork(self) -> None:
        """First use in a forked child: a pool of the child's own. The inherited pool
        is kept aside, never used or closed here: its sockets are the parent's."""
        with _after_fork_lock:
            if self._pid == os.getpid():
                return  # another thread of this child got here first
            if not self._owns_pool:
                raise StoreError(
                    "postgres store: its pool was opened in another process;"
                    " open the pool and the store after fork"
                )
            _INHERITED_POOLS.append(self._pool)
            self._pool = self._open_pool()
            self._close_lock = threading.Lock()
            self._pid = os.getpid()

    @contextlib.contextmanager
    def _transaction(self, operation: str) -> Iterator[psycopg.Cursor[TupleRow]]:
        """A cursor inside one transaction: committed at the end of the block,
        rolled back if it raises. Inside an :meth:`atomic` block, that block's."""
        if getattr(self._units, "cursor", None) is not None:
            with self._connection(operation) as cur:
                yield cur
            return
        with self._connection(operation) as cur, cur.connection.transaction():
            yield cur

    def _one(self, operation: str, template: str, params: Any) -> _Row | None:
        with self._connection(operation) as cur:
            return cur.execute(self._sql(template), params).fetchone()

    def _all(self, operation: str, template: str, params: Any) -> list[_Row]:
        with self._connection(operation) as cur:
            return cur.execute(self._sql(template), params).fetchall()

    def _write(self, operation: str, template: str, params: Any) -> int:
        """Run one statement; return how many rows it changed."""
        with self._connection(operation) as cur:
            return cur.execute(self._sql(template), params).rowcount

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Apply the missing :data:`MIGRATIONS` in one transaction.

        A transaction-scoped advisory lock (one per schema) makes processes that open
        a new schema at once wait for each other; each then re-reads the version, so
        every step runs exactly once and the version bump commits with it.
        """
        schema = sql.Identifier(self._schema)
        with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_advisory_key(self._schema),))
            exists = cur.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self._schema,)
            ).fetchone()
            if exists is None:
                cur.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
            # Local to this transaction: the scripts are unqualified, pooled
            # connections keep their own search_path.
            cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
            cur.execute(VERSION_TABLE)
            row = cur.execute(
                "SELECT version FROM schema_version WHERE component = %s", (COMPONENT,)
            ).fetchone()
            version = 0 if row is None else int(row[0])
            if version > len(MIGRATIONS):
                raise StoreError("postgres store: the database schema is newer than this authsome")
            if version == len(MIGRATIONS):
                return
            for script in MIGRATIONS[version:]:
                cur.execute(script)
            cur.execute(
                "INSERT INTO schema_version (component, version) VALUES (%s, %s)"
                " ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
                (COMPONENT, len(MIGRATIONS)),
            )


def _check_arguments(
    dsn: str | None, pool: object, schema: object, min_size: object, max_size: object
) -> None:
    """Refuse wrong types (``TypeError``) and bad values (``ValidationError``) early."""
    if dsn is not None and not isinstance(dsn, str):
        raise TypeError("dsn must be a str or None")
    if dsn is not None and pool is not None:
        raise TypeError("give a dsn or a pool, not both")
    if pool is not None and not isinstance(pool, ConnectionPool):
        raise TypeError("pool must be a psycopg_pool.ConnectionPool")
    if not isinstance(schema, str):
        raise TypeError("schema must be a str")
    if _SCHEMA_NAME.fullmatch(schema) is None:
        raise ValidationError(
            "schema must be 1 to 63 letters, digits or underscores, not starting with a digit"
        )
    for name, value in (("min_size", min_size), ("max_size", max_size)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int")
    assert isinstance(min_size, int)
    assert isinstance(max_size, int)
    if not 0 <= min_size <= max_size or max_size < 1:
        raise ValidationError("pool sizes need 0 <= min_size <= max_size and max_size >= 1")
