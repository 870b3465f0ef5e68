"""A :class:`~authsome.stores.Store` in one SQLite file, shared by threads and processes.

Connection model: each thread gets its own connection (WAL lets readers run while one
writer writes), so a thread waiting for another process's write lock blocks nobody
else. Read-modify-write methods open their transaction with ``BEGIN IMMEDIATE``: the
write lock is taken before anything is read, so two threads or processes can never
both act on the same snapshot (e.g. both rotate one refresh token).

``":memory:"`` is accepted too, for tests: a private in-memory database lives in one
connection, so it is shared by all threads behind a lock.

Fork safety: a store may be opened before ``os.fork()`` (``gunicorn --preload``). SQLite
forbids using, or even closing, a connection in a child of the process that opened it
(its file locks are the parent's), so at fork time the forking thread's connection is
closed in the parent, and the child starts with no connection and opens its own on
first use. See :class:`SQLiteStore` for the one case a child refuses.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from authsome.errors import AlreadyExists, StoreError
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
from authsome.stores._sqlite_migrations import MIGRATIONS, split_statements

__all__ = ["SQLiteStore"]

_MEMORY = ":memory:"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


# Queries are plain literals: values are always bound parameters.
_INSERT_SESSION = (
    "INSERT INTO sessions (id, user_id, tenant, created_at, expires_at, access_expires_at,"
    " revoked_at, last_seen_at, ip, user_agent, access_hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SESSION_COLUMNS = (
    "id, user_id, tenant, created_at, expires_at, access_expires_at, revoked_at, last_seen_at,"
    " ip, user_agent"
)
_SELECT_SESSION_BY_ID = f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?"  # noqa: S608
_SELECT_SESSION_BY_ACCESS_HASH = f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE access_hash = ?"  # noqa: S608
_SELECT_SESSION_BY_REFRESH_HASH = (
    "SELECT r.used, s.id, s.user_id, s.tenant, s.created_at, s.expires_at,"
    " s.access_expires_at, s.revoked_at, s.last_seen_at, s.ip, s.user_agent"
    " FROM refresh_tokens AS r JOIN sessions AS s ON s.id = r.session_id"
    " WHERE r.hash = ?"
)
_INSERT_ORG = "INSERT INTO orgs (id, tenant, slug, name, created_at) VALUES (?, ?, ?, ?, ?)"
_SELECT_ORG = "SELECT id, tenant, slug, name, created_at FROM orgs"
_SELECT_MEMBERSHIP = (
    "SELECT org_id, user_id, role, created_at FROM org_members WHERE org_id = ? AND user_id = ?"
)
_COUNT_OWNERS = "SELECT count(*) FROM org_members WHERE org_id = ? AND role = 'owner'"
_SELECT_PASSKEY = (
    "SELECT credential_id, user_id, tenant, rp_id, public_key, sign_count, transports,"
    " created_at, last_used_at FROM passkeys"
)

_SELECT_FACTORS = (
    "SELECT id, user_id, method, created_at, confirmed_at, failed_codes FROM mfa_factors"
)
_SELECT_FACTOR = _SELECT_FACTORS + " WHERE id = ?"
_INSERT_API_KEY = (
    "INSERT INTO api_keys (id, lookup_id, owner_kind, owner_id, tenant, name, scopes,"
    " created_at, expires_at, revoked_at, last_used_at, secret_hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_API_KEY_BY_ID = (
    "SELECT id, lookup_id, owner_kind, owner_id, tenant, name, scopes,"
    " created_at, expires_at, revoked_at, last_used_at"
    " FROM api_keys WHERE id = ?"
)
_SELECT_API_KEY_BY_LOOKUP_ID = (
    "SELECT id, lookup_id, owner_kind, owner_id, tenant, name, scopes,"
    " created_at, expires_at, revoked_at, last_used_at, secret_hash"
    " FROM api_keys WHERE lookup_id = ?"
)
_SELECT_API_KEYS_BY_OWNER = (
    "SELECT id, lookup_id, owner_kind, owner_id, tenant, name, scopes,"
    " created_at, expires_at, revoked_at, last_used_at"
    " FROM api_keys WHERE owner_kind = ? AND owner_id = ? ORDER BY created_at, id"
)

_SSO_COLUMNS = (
    "id, org_id, protocol, issuer, client_id, scopes, entity_id, sso_url, x509_certificate,"
    " client_secret IS NOT NULL AS has_client_secret, created_at, updated_at,"
    " rollover_x509_certificate, allow_idp_initiated, sign_in"
)
_SELECT_SSO = f"SELECT {_SSO_COLUMNS} FROM sso_connections"  # noqa: S608 - constant text
_INSERT_SSO = (
    "INSERT INTO sso_connections (id, org_id, protocol, issuer, client_id, scopes, entity_id,"
    " sso_url, x509_certificate, client_secret, secret_sealed, rollover_x509_certificate,"
    " allow_idp_initiated, sign_in, updated_at, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SOCIAL_COLUMNS = "id, tenant, provider, client_id, scopes, settings, created_at, updated_at"
_SELECT_SOCIAL = f"SELECT {_SOCIAL_COLUMNS} FROM social_providers"  # noqa: S608 - constant text
# One statement: concurrent writers leave one whole configuration, the first one's
# created_at kept.
_PUT_SOCIAL = (
    "INSERT INTO social_providers (id, tenant, provider, client_id, scopes, settings,"
    " client_secret, secret_sealed, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (tenant, provider) DO UPDATE SET id = excluded.id,"
    " client_id = excluded.client_id, scopes = excluded.scopes, settings = excluded.settings,"
    " client_secret = excluded.client_secret, secret_sealed = excluded.secret_sealed,"
    " updated_at = excluded.updated_at"
    " RETURNING id, tenant, provider, client_id, scopes, settings, created_at, updated_at"
)
_UPDATE_SSO = (
    "UPDATE sso_connections SET protocol = ?, issuer = ?, client_id = ?, scopes = ?,"
    " entity_id = ?, sso_url = ?, x509_certificate = ?, client_secret = ?, secret_sealed = ?,"
    " rollover_x509_certificate = ?, allow_idp_initiated = ?, sign_in = ?, updated_at = ?"
    " WHERE id = ?"
)

# Which unique constraint failed → which of the messages every store shares.
_DUPLICATE_MESSAGES = {
    "users.tenant, users.email": Duplicate.USER_EMAIL,
    "users.id": Duplicate.USER_ID,
    "sessions.id": Duplicate.SESSION_ID,
    "sessions.access_hash": Duplicate.ACCESS_HASH,
    "refresh_tokens.hash": Duplicate.REFRESH_HASH,
    "orgs.tenant, orgs.slug": Duplicate.ORG_SLUG,
    "orgs.id": Duplicate.ORG_ID,
    "org_members.org_id, org_members.user_id": Duplicate.MEMBERSHIP,
    # Longest first: the tenant's claim also ends in "domains.hostname".
    "domains.tenant, domains.hostname": Duplicate.DOMAIN_CLAIM,
    "domains.hostname": Duplicate.HOSTNAME_VERIFIED,
    "domains.id": Duplicate.DOMAIN_ID,
    "mfa_factors.id": Duplicate.FACTOR_ID,
    "mfa_factors.user_id, mfa_factors.method": Duplicate.FACTOR_METHOD,
    "mfa_tickets.hash": Duplicate.TICKET_HASH,
    "one_time_tokens.hash": Duplicate.ONE_TIME_TOKEN,
    "one_time_states.hash": Duplicate.ONE_TIME_TOKEN,
    "identities.tenant, identities.provider, identities.subject": Duplicate.IDENTITY,
    "api_keys.id": Duplicate.API_KEY_ID,
    "api_keys.lookup_id": Duplicate.API_KEY_LOOKUP_ID,
    "passkeys.credential_id": Duplicate.PASSKEY,
    "passkey_challenges.challenge_hash": Duplicate.CHALLENGE,
    "sso_connections.id": Duplicate.SSO_ID,
    "sso_domains.tenant, sso_domains.domain": Duplicate.SSO_DOMAIN,
}
_UNIQUE_CODES = frozenset({sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY})


_SELECT_USER = "SELECT id, tenant, email, name, created_at, email_verified_at FROM users"
_SELECT_IDENTITY = "SELECT tenant, provider, subject, user_id, created_at FROM identities"


# -- datetimes -----------------------------------------------------------------------


def _to_micros(moment: datetime) -> int:
    """Encode an aware datetime as integer microseconds since the epoch (UTC).

    Integers compare correctly in SQL whatever offset the caller used and round-trip
    exactly, which ISO text with mixed offsets would not.
    """
    return (aware(moment) - _EPOCH) // _MICROSECOND


def _from_micros(micros: int) -> datetime:
    """Decode :func:`_to_micros`: an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=micros)


# Lists of strings are stored as JSON text (SSO scopes as one space-joined string).
_READ = RecordReader(moment=_from_micros, strings=json.loads)


_SELECT_DOMAIN = "SELECT id, tenant, hostname, created_at, verified_at FROM domains"


def _optional_micros(moment: datetime | None) -> int | None:
    return None if moment is None else _to_micros(moment)


def _sso_settings(connection: SSOConnectionInfo, secret: StoredSecret | None) -> tuple[Any, ...]:
    """The columns an update replaces, in :data:`_UPDATE_SSO` order (without the id)."""
    return (
        SSOProtocol(connection.protocol).value,
        connection.issuer,
        connection.client_id,
        # Scope tokens never contain spaces (RFC 6749, 3.3), so a space joins them.
        " ".join(connection.scopes),
        connection.entity_id,
        connection.sso_url,
        connection.x509_certificate,
        None if secret is None else secret.value,
        int(secret is not None and secret.sealed),
        connection.rollover_x509_certificate,
        int(connection.allow_idp_initiated),
        sign_in_settings(connection),
        _to_micros(connection.updated_at),
    )


# -- errors --------------------------------------------------------------------------


@contextlib.contextmanager
def _translated_errors(operation: str) -> Iterator[None]:
    """Turn :mod:`sqlite3` errors into the library's errors.

    Messages name the operation and SQLite's error code only. Values are always bound
    parameters, so SQLite's own text (kept in ``__cause__``) never holds a hash either.
    """
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorcode in _UNIQUE_CODES:
            raise AlreadyExists(_duplicate_message(str(exc))) from exc
        raise StoreError(f"sqlite store: {operation} violates a constraint") from exc
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        raise StoreError(f"sqlite store: {operation} failed ({code})") from exc


def _duplicate_message(sqlite_message: str) -> str:
    for columns, message in _DUPLICATE_MESSAGES.items():
        if sqlite_message.endswith(columns):
            return message
    return Duplicate.RECORD


# -- connections ---------------------------------------------------------------------


class _Holder:
    """Owns one thread's connection; when the thread ends, dropping it closes the
    connection (see :meth:`SQLiteStore._thread_connection`)."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


def _release(
    conn: sqlite3.Connection,
    registry: set[sqlite3.Connection],
    lock: threading.RLock,
    opener_pid: int,
) -> None:
    """Close ``conn`` and forget it. Safe to call twice and from any thread.

    In a forked child (a finalizer of a thread that did not survive the fork) the
    connection is the parent's: it is kept, unused, instead of being closed.
    """
    if os.getpid() != opener_pid:
        _INHERITED.append(conn)
        return
    with lock:
        registry.discard(conn)
    conn.close()


# -- fork safety ---------------------------------------------------------------------

# Every open store, so the fork hooks can reach them; the lock keeps the set still
# while a fork is under way (held from before the fork until after it).
_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
_STORES_LOCK = threading.Lock()
# Connections a child inherited: never used and never closed there, since SQLite's
# locks on them belong to the parent. Kept referenced so garbage collection does
# not close them either.
_INHERITED: list[sqlite3.Connection] = []


def _before_fork() -> None:
    _STORES_LOCK.acquire()
    for store in _STORES:
        store._before_fork()


def _after_fork_in_parent() -> None:
    for store in _STORES:
        store._after_fork_in_parent()
    _STORES_LOCK.release()


def _after_fork_in_child() -> None:
    global _STORES_LOCK
    for store in _STORES:
        store._after_fork_in_child()
    _STORES_LOCK = threading.Lock()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


class SQLiteStore:
    """A :class:`~authsome.stores.Store` backed by the SQLite database at ``path``.

    The file (and its schema) is created or migrated on open. ``timeout`` is how many
    seconds an operation waits for another connection's write lock before it fails
    with :class:`~authsome.errors.StoreError`.

    The store may be opened before ``os.fork()`` (``gunicorn --preload``, or
    :mod:`multiprocessing` in fork mode): each process then uses connections of its
    own, opened on first use. One case is refused, with
    :class:`~authsome.errors.StoreError` in the child rather than a risk to the file:
    a fork while *other* threads of the parent held connections to a file (SQLite's
    locks of those connections would be missing in the child); open a new store in
    the child then. An in-memory store (``":memory:"``) is copied into the child, like
    :class:`~authsome.stores.MemoryStore`: each process has its own database.

    Call :meth:`close` once no operation is running.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self._path = os.fspath(path)
        self._timeout = timeout
        self._in_memory = self._path == _MEMORY
        # Guards the registry; in memory mode also serializes every use of the one
        # connection, since a Python sqlite3 connection is not safe to share.
        self._lock = threading.RLock()
        self._registry: set[sqlite3.Connection] = set()
        self._local = threading.local()
        self._closed = False
        self._pid = os.getpid()
        self._forked_while_busy = False
        self._shared: sqlite3.Connection | None = None
        with _translated_errors("open"):
            try:
                conn = self._open_connection()
                if self._in_memory:
                    self._shared = conn
                else:
                    self._local.holder = self._hold(conn)
                    # Persistent in the file. synchronous stays FULL (the default):
                    # a revocation must survive a power cut.
                    _use_wal(conn, self._timeout)
                self._migrate(conn)
            except BaseException:
                self.close()
                raise
        with _STORES_LOCK:
            _STORES.add(self)

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"

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
        with self._connection("create_user") as conn:
            conn.execute(
                "INSERT INTO users (id, tenant, email, name, created_at, password_hash)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    user.id,
                    user.tenant,
                    user.email,
                    user.name,
                    _to_micros(user.created_at),
                    password_hash,
                ),
            )

    def get_user(self, user_id: str) -> User | None:
        """The user with this id, or ``None``."""
        row = self._fetch_one(
            "get_user",
            _SELECT_USER + " WHERE id = ?",
            (user_id,),
        )
        return None if row is None else _READ.user(row)

    def find_user_by_email(self, tenant: str, email: str) -> User | None:
        """The user with this normalized e-mail in ``tenant``, or ``None``."""
        row = self._fetch_one(
            "find_user_by_email",
            _SELECT_USER + " WHERE tenant = ? AND email = ?",
            (tenant, email),
        )
        return None if row is None else _READ.user(row)

    def get_password_hash(self, user_id: str) -> str | None:
        """The user's stored password hash, or ``None``."""
        row = self._fetch_one(
            "get_password_hash", "SELECT password_hash FROM users WHERE id = ?", (user_id,)
        )
        return None if row is None else str(row["password_hash"])

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Replace the user's password hash; no effect for an unknown user."""
        with self._connection("set_password_hash") as conn:
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
            )

    def mark_email_verified(self, user_id: str, email: str, now: datetime) -> User | None:
        """Set ``email_verified_at`` (kept when set) if the address is still ``email``;
        one UPDATE ... RETURNING."""
        row = self._fetch_one(
            "mark_email_verified",
            "UPDATE users SET email_verified_at = COALESCE(email_verified_at, ?)"
            " WHERE id = ? AND email = ?"
            " RETURNING id, tenant, email, name, created_at, email_verified_at",
            (_to_micros(now), user_id, email),
        )
        return None if row is None else _READ.user(row)

    def change_user_email(
        self, user_id: str, old_email: str, new_email: str, now: datetime
    ) -> User | None:
        """Replace the address if it is still ``old_email``; one UPDATE ... RETURNING
        (the unique (tenant, email) index refuses a taken address)."""
        row = self._fetch_one(
            "change_user_email",
            "UPDATE users SET email = ?, email_verified_at = ?"
            " WHERE id = ? AND email = ?"
            " RETURNING id, tenant, email, name, created_at, email_verified_at",
            (new_email, _to_micros(now), user_id, old_email),
        )
        return None if row is None else _READ.user(row)

    # -- one-time tokens -------------------------------------------------------
    def create_one_time_token(self, token_hash: str, token: OneTimeToken, now: datetime) -> None:
        """Replace the user's tokens of this purpose (and purge expired ones) by this
        one, in one ``BEGIN IMMEDIATE`` transaction."""
        with self._transaction("create_one_time_token") as conn:
            if token.user_id:
                known = conn.execute("SELECT 1 FROM users WHERE id = ?", (token.user_id,))
                if known.fetchone() is None:
                    raise StoreError("one-time token refers to an unknown user")
            conn.execute(
                "DELETE FROM one_time_tokens WHERE expires_at <= ?"
                " OR (user_id = ? AND purpose = ?)"
                " OR (? AND user_id IS NULL AND purpose = ? AND tenant = ? AND email = ?)",
                (
                    _to_micros(now),
                    token.user_id,
                    token.purpose,
                    not token.user_id,
                    token.purpose,
                    token.tenant,
                    token.email,
                ),
            )
            conn.execute(
                "INSERT INTO one_time_tokens"
                " (hash, purpose, user_id, tenant, email, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    token_hash,
                    token.purpose,
                    token.user_id or None,
                    token.tenant,
                    token.email,
                    _to_micros(token.created_at),
                    _to_micros(token.expires_at),
                ),
            )

    def consume_one_time_token(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeToken | None:
        """Delete the live token and return it: one DELETE ... RETURNING, so of
        racing callers exactly one gets it."""
        row = self._fetch_one(
            "consume_one_time_token",
            "DELETE FROM one_time_tokens"
            " WHERE hash = ? AND purpose = ? AND tenant = ? AND expires_at > ?"
            " RETURNING purpose, user_id, tenant, email, created_at, expires_at",
            (token_hash, purpose, tenant, _to_micros(now)),
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
        ``BEGIN IMMEDIATE`` transaction (writers queue, so counts never race)."""
        with self._transaction("attempt_one_time_code") as conn:
            counted = conn.execute(
                "UPDATE one_time_tokens SET attempts = attempts + 1"
                " WHERE tenant = ? AND email = ? AND purpose = ? AND expires_at > ?"
                " AND attempts < ? RETURNING hash",
                (tenant, email, purpose, _to_micros(now), max_attempts),
            ).fetchall()
            if not any(hmac.compare_digest(row[0], code_hash) for row in counted):
                return None
            row = conn.execute(
                "DELETE FROM one_time_tokens WHERE hash = ?"
                " RETURNING purpose, user_id, tenant, email, created_at, expires_at",
                (code_hash,),
            ).fetchone()
        return None if row is None else _READ.one_time_token(row)

    def find_one_time_token(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeToken | None:
        """The live token, left in place."""
        row = self._fetch_one(
            "find_one_time_token",
            "SELECT purpose, user_id, tenant, email, created_at, expires_at"
            " FROM one_time_tokens"
            " WHERE hash = ? AND purpose = ? AND tenant = ? AND expires_at > ?",
            (token_hash, purpose, tenant, _to_micros(now)),
        )
        return None if row is None else _READ.one_time_token(row)

    def delete_one_time_token(self, token_hash: str) -> bool:
        """Withdraw a token; whether it existed."""
        with self._connection("delete_one_time_token") as conn:
            cursor = conn.execute("DELETE FROM one_time_tokens WHERE hash = ?", (token_hash,))
            return cursor.rowcount == 1

    def delete_user_one_time_tokens(self, user_id: str) -> int:
        """Delete every one-time token of the user; how many."""
        with self._connection("delete_user_one_time_tokens") as conn:
            cursor = conn.execute("DELETE FROM one_time_tokens WHERE user_id = ?", (user_id,))
            return cursor.rowcount

    def create_one_time_state(self, token_hash: str, state: OneTimeState, now: datetime) -> None:
        """Purge expired states and store this one, in one transaction."""
        with self._transaction("create_one_time_state") as conn:
            conn.execute("DELETE FROM one_time_states WHERE expires_at <= ?", (_to_micros(now),))
            conn.execute(
                "INSERT INTO one_time_states"
                " (hash, purpose, tenant, payload, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    token_hash,
                    state.purpose,
                    state.tenant,
                    state.payload,
                    _to_micros(state.created_at),
                    _to_micros(state.expires_at),
                ),
            )

    def consume_one_time_state(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeState | None:
        """One DELETE ... RETURNING: of racing callers exactly one gets it."""
        row = self._fetch_one(
            "consume_one_time_state",
            "DELETE FROM one_time_states"
            " WHERE hash = ? AND purpose = ? AND tenant = ? AND expires_at > ?"
            " RETURNING purpose, tenant, payload, created_at, expires_at",
            (token_hash, purpose, tenant, _to_micros(now)),
        )
        return None if row is None else _READ.one_time_state(row)

    # -- identities at external providers --------------------------------------
    def create_identity(self, identity: Identity) -> None:
        """Insert the link; the primary key refuses a linked account, the foreign
        key an unknown user."""
        with self._connection("create_identity") as conn:
            conn.execute(
                "INSERT INTO identities (tenant, provider, subject, user_id, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    identity.tenant,
                    identity.provider,
                    identity.subject,
                    identity.user_id,
                    _to_micros(identity.created_at),
                ),
            )

    def find_identity(self, tenant: str, provider: str, subject: str) -> Identity | None:
        """The link, or ``None``."""
        row = self._fetch_one(
            "find_identity",
            _SELECT_IDENTITY + " WHERE tenant = ? AND provider = ? AND subject = ?",
            (tenant, provider, subject),
        )
        return None if row is None else _READ.identity(row)

    def list_identities(self, user_id: str) -> list[Identity]:
        """The user's links, oldest first."""
        with self._connection("list_identities") as conn:
            rows = conn.execute(
                _SELECT_IDENTITY + " WHERE user_id = ? ORDER BY created_at, provider, subject",
                (user_id,),
            ).fetchall()
        return [_READ.identity(row) for row in rows]

    def delete_identity(self, user_id: str, provider: str, subject: str) -> bool:
        """Unlink; whether it was linked."""
        with self._connection("delete_identity") as conn:
            cursor = conn.execute(
                "DELETE FROM identities WHERE user_id = ? AND provider = ? AND subject = ?",
                (user_id, provider, subject),
            )
            return cursor.rowcount == 1

    # -- sessions --------------------------------------------------------------
    def create_session(self, session: Session, access_hash: str, refresh_hash: str) -> None:
        """Insert ``session`` with its first access and refresh token hashes."""
        with self._transaction("create_session") as conn:
            conn.execute(
                _INSERT_SESSION,
                (
                    session.id,
                    session.user_id,
                    session.tenant,
                    _to_micros(session.created_at),
                    _to_micros(session.expires_at),
                    _to_micros(session.access_expires_at),
                    None if session.revoked_at is None else _to_micros(session.revoked_at),
                    _to_micros(session.last_activity),
                    session.ip,
                    session.user_agent,
                    access_hash,
                ),
            )
            conn.execute(
                "INSERT INTO refresh_tokens (hash, session_id) VALUES (?, ?)",
                (refresh_hash, session.id),
            )

    def get_session(self, session_id: str) -> Session | None:
        """The session with this id (revoked or not), or ``None``."""
        row = self._fetch_one("get_session", _SELECT_SESSION_BY_ID, (session_id,))
        return None if row is None else _READ.session(row)

    def find_session_by_access_hash(self, access_hash: str) -> Session | None:
        """The session whose current access token hashes to ``access_hash``."""
        row = self._fetch_one(
            "find_session_by_access_hash", _SELECT_SESSION_BY_ACCESS_HASH, (access_hash,)
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
        """Exchange a refresh token in one ``BEGIN IMMEDIATE`` transaction.

        See :meth:`authsome.stores.Store.rotate_refresh_token` for the outcomes.
        """
        with self._transaction("rotate_refresh_token") as conn:
            row = conn.execute(_SELECT_SESSION_BY_REFRESH_HASH, (refresh_hash,)).fetchone()
            if row is None or not _READ.session(row[1:]).usable(
                now, tenant=tenant, idle_since=idle_since
            ):
                return RefreshOutcome(RefreshStatus.INVALID)
            session_id: str = row["id"]
            if row["used"]:
                # A rotated token came back: someone holds a stolen copy, so the
                # whole session ends.
                self._set_revoked(conn, session_id, now)
                status = RefreshStatus.REUSED
            else:
                self._replace_refresh_token(conn, refresh_hash, new_refresh_hash, session_id)
                conn.execute(
                    "UPDATE sessions SET access_hash = ?, access_expires_at = ?,"
                    " last_seen_at = MAX(COALESCE(last_seen_at, created_at), ?) WHERE id = ?",
                    (new_access_hash, _to_micros(access_expires_at), _to_micros(now), session_id),
                )
                status = RefreshStatus.ROTATED
            # Re-read inside the transaction: the caller gets exactly what is stored.
            return RefreshOutcome(status, self._load_session(conn, session_id))

    @staticmethod
    def _replace_refresh_token(
        conn: sqlite3.Connection, refresh_hash: str, new_refresh_hash: str, session_id: str
    ) -> None:
        # The old row stays, marked used, so that its reuse is recognized later.
        conn.execute("UPDATE refresh_tokens SET used = 1 WHERE hash = ?", (refresh_hash,))
        conn.execute(
            "INSERT INTO refresh_tokens (hash, session_id) VALUES (?, ?)",
            (new_refresh_hash, session_id),
        )

    @staticmethod
    def _load_session(conn: sqlite3.Connection, session_id: str) -> Session:
        row = conn.execute(_SELECT_SESSION_BY_ID, (session_id,)).fetchone()
        return _READ.session(row)

    def touch_session(self, session_id: str, at: datetime) -> None:
        """Move ``last_seen_at`` forward to ``at``; one UPDATE, never backwards."""
        at_us = _to_micros(at)
        with self._connection("touch_session") as conn:
            conn.execute(
                "UPDATE sessions SET last_seen_at = ?"
                " WHERE id = ? AND COALESCE(last_seen_at, created_at) < ?",
                (at_us, session_id, at_us),
            )

    def revoke_session(self, session_id: str, now: datetime) -> bool:
        """Revoke one live session; ``False`` if unknown, revoked already or expired."""
        with self._connection("revoke_session") as conn:
            return self._set_revoked(conn, session_id, now) == 1

    def revoke_user_session(self, session_id: str, user_id: str, now: datetime) -> bool:
        """Revoke one live session of the user; one UPDATE."""
        with self._connection("revoke_user_session") as conn:
            cursor = conn.execute(
                "UPDATE sessions SET revoked_at = ?"
                " WHERE id = ? AND user_id = ? AND revoked_at IS NULL AND expires_at > ?",
                (_to_micros(now), session_id, user_id, _to_micros(now)),
            )
            return cursor.rowcount == 1

    def list_user_sessions(self, user_id: str, now: datetime) -> list[Session]:
        """The user's live sessions, newest first; one SELECT."""
        with self._connection("list_user_sessions") as conn:
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions"  # noqa: S608 (constant columns)
                " WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?"
                " ORDER BY created_at DESC, id DESC",
                (user_id, _to_micros(now)),
            ).fetchall()
        return [_READ.session(row) for row in rows]

    def revoke_user_sessions(self, user_id: str, now: datetime) -> int:
        """Revoke every live session of the user; return how many."""
        with self._connection("revoke_user_sessions") as conn:
            cursor = conn.execute(
                "UPDATE sessions SET revoked_at = ? "
                "WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?",
                (_to_micros(now), user_id, _to_micros(now)),
            )
            return cursor.rowcount

    def revoke_other_user_sessions(self, user_id: str, keep_session_id: str, now: datetime) -> int:
        """Revoke every live session of the user but one in one UPDATE; how many."""
        with self._connection("revoke_other_user_sessions") as conn:
            cursor = conn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND id <> ?"
                " AND revoked_at IS NULL AND expires_at > ?",
                (_to_micros(now), user_id, keep_session_id, _to_micros(now)),
            )
            return cursor.rowcount

    def prune_sessions(
        self, ended_before: datetime, idle_since: datetime | None, limit: int
    ) -> int:
        """Delete up to ``limit`` ended sessions in one statement (their refresh
        tokens go with them, by cascade)."""
        idle_us = None if idle_since is None else _to_micros(idle_since)
        with self._connection("prune_sessions") as conn:
            cursor = conn.execute(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions"
                " WHERE revoked_at <= :ended OR expires_at <= :ended"
                " OR (:idle IS NOT NULL AND COALESCE(last_seen_at, created_at) <= :idle)"
                " LIMIT :limit)",
                {"ended": _to_micros(ended_before), "idle": idle_us, "limit": limit},
            )
            return cursor.rowcount

    @staticmethod
    def _set_revoked(conn: sqlite3.Connection, session_id: str, now: datetime) -> int:
        # Only live sessions: one past expires_at already ended by itself.
        cursor = conn.execute(
            "UPDATE sessions SET revoked_at = ? "
            "WHERE id = ? AND revoked_at IS NULL AND expires_at > ?",
            (_to_micros(now), session_id, _to_micros(now)),
        )
        return cursor.rowcount

    # -- throttle counters -----------------------------------------------------
    def hit_counter(self, key: str, now: datetime, ttl_seconds: int) -> Counter:
        """Count one hit on ``key``; see :meth:`authsome.stores.Store.hit_counter`."""
        now_us = _to_micros(now)
        with self._transaction("hit_counter") as conn:
            row = conn.execute(
                "SELECT hits, expires_at FROM counters WHERE key = ? AND expires_at > ?",
                (key, now_us),
            ).fetchone()
            if row is None:
                hits, expires_us = 1, _to_micros(now + timedelta(seconds=ttl_seconds))
            else:
                hits, expires_us = row["hits"] + 1, row["expires_at"]
            conn.execute(
                "INSERT INTO counters (key, hits, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET"
                " hits = excluded.hits, expires_at = excluded.expires_at",
                (key, hits, expires_us),
            )
        return hits, _from_micros(expires_us)

    def keep_store_key(self, name: str, candidate: bytes) -> bytes:
        """The key kept under ``name``; the first caller's ``candidate`` is stored.
        ``INSERT OR IGNORE`` and a read under one write lock: every process agrees."""
        with self._transaction("keep_store_key") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO store_keys (name, key) VALUES (?, ?)",
                (name, bytes(candidate)),
            )
            row = conn.execute("SELECT key FROM store_keys WHERE name = ?", (name,)).fetchone()
        return bytes(row["key"])

    def get_counter(self, key: str, now: datetime) -> Counter | None:
        """The live counter under ``key``, or ``None`` if absent or expired."""
        row = self._fetch_one(
            "get_counter",
            "SELECT hits, expires_at FROM counters WHERE key = ? AND expires_at > ?",
            (key, _to_micros(now)),
        )
        return None if row is None else (row["hits"], _from_micros(row["expires_at"]))

    def delete_counter(self, key: str) -> None:
        """Forget ``key``; no error when it is absent."""
        with self._connection("delete_counter") as conn:
            conn.execute("DELETE FROM counters WHERE key = ?", (key,))

    def release_counter(self, key: str, now: datetime) -> None:
        """Take one hit back from a live counter, never below 0; one statement."""
        with self._connection("release_counter") as conn:
            conn.execute(
                "UPDATE counters SET hits = MAX(hits - 1, 0) WHERE key = ? AND expires_at > ?",
                (key, _to_micros(now)),
            )

    def prune_counters(self, now: datetime) -> int:
        """Delete the expired counters; one statement."""
        with self._connection("prune_counters") as conn:
            cursor = conn.execute("DELETE FROM counters WHERE expires_at <= ?", (_to_micros(now),))
            return cursor.rowcount

    # -- orgs ------------------------------------------------------------------
    def create_org(self, org: Org, owner: Membership) -> None:
        """Insert ``org`` and its owner's membership in one transaction; a failed
        membership insert (e.g. unknown user) rolls the org back too."""
        check_owner_membership(org, owner)
        with self._transaction("create_org") as conn:
            conn.execute(
                _INSERT_ORG,
                (org.id, org.tenant, org.slug, org.name, _to_micros(org.created_at)),
            )
            self._insert_membership(conn, owner)

    def get_org(self, org_id: str) -> Org | None:
        """The org with this id, or ``None``."""
        row = self._fetch_one(
            "get_org",
            _SELECT_ORG + " WHERE id = ?",
            (org_id,),
        )
        return None if row is None else _READ.org(row)

    def find_org_by_slug(self, tenant: str, slug: str) -> Org | None:
        """The org with this slug in ``tenant``, or ``None``."""
        row = self._fetch_one(
            "find_org_by_slug",
            _SELECT_ORG + " WHERE tenant = ? AND slug = ?",
            (tenant, slug),
        )
        return None if row is None else _READ.org(row)

    def add_membership(self, membership: Membership) -> None:
        """Insert a membership; the foreign keys refuse an unknown org or user."""
        with self._connection("add_membership") as conn:
            self._insert_membership(conn, membership)

    @staticmethod
    def _insert_membership(conn: sqlite3.Connection, membership: Membership) -> None:
        conn.execute(
            "INSERT INTO org_members (org_id, user_id, role, created_at) VALUES (?, ?, ?, ?)",
            (
                membership.org_id,
                membership.user_id,
                OrgRole(membership.role).value,
                _to_micros(membership.created_at),
            ),
        )

    def get_membership(self, org_id: str, user_id: str) -> Membership | None:
        """The user's membership of the org, or ``None``."""
        row = self._fetch_one("get_membership", _SELECT_MEMBERSHIP, (org_id, user_id))
        return None if row is None else _READ.membership(row)

    def list_memberships(self, org_id: str) -> list[Membership]:
        """The org's memberships, oldest first."""
        with self._connection("list_memberships") as conn:
            rows = conn.execute(
                "SELECT org_id, user_id, role, created_at FROM org_members"
                " WHERE org_id = ? ORDER BY created_at, user_id",
                (org_id,),
            ).fetchall()
        return [_READ.membership(row) for row in rows]

    def list_user_orgs(self, user_id: str) -> list[Org]:
        """The orgs the user belongs to, oldest first."""
        with self._connection("list_user_orgs") as conn:
            rows = conn.execute(
                "SELECT o.id, o.tenant, o.slug, o.name, o.created_at"
                " FROM org_members AS m JOIN orgs AS o ON o.id = m.org_id"
                " WHERE m.user_id = ? ORDER BY o.created_at, o.id",
                (user_id,),
            ).fetchall()
        return [_READ.org(row) for row in rows]

    def remove_membership(self, org_id: str, user_id: str) -> Membership | None:
        """Delete a membership unless it is the last owner's and return it; check and
        delete run under one ``BEGIN IMMEDIATE`` write lock."""
        with self._transaction("remove_membership") as conn:
            current = conn.execute(_SELECT_MEMBERSHIP, (org_id, user_id)).fetchone()
            if current is None:
                return None
            if current["role"] == OrgRole.OWNER and self._owner_count(conn, org_id) == 1:
                raise last_owner_conflict("removed")
            conn.execute(
                "DELETE FROM org_members WHERE org_id = ? AND user_id = ?", (org_id, user_id)
            )
            return _READ.membership(current)

    def set_membership_role(self, org_id: str, user_id: str, role: OrgRole) -> Membership | None:
        """Change a member's role unless that demotes the last owner; atomic."""
        role = OrgRole(role)
        with self._transaction("set_membership_role") as conn:
            current = conn.execute(_SELECT_MEMBERSHIP, (org_id, user_id)).fetchone()
            if current is None:
                return None
            demotes_owner = current["role"] == OrgRole.OWNER and role is not OrgRole.OWNER
            if demotes_owner and self._owner_count(conn, org_id) == 1:
                raise last_owner_conflict("demoted")
            conn.execute(
                "UPDATE org_members SET role = ? WHERE org_id = ? AND user_id = ?",
                (role.value, org_id, user_id),
            )
            return _READ.membership(conn.execute(_SELECT_MEMBERSHIP, (org_id, user_id)).fetchone())

    @staticmethod
    def _owner_count(conn: sqlite3.Connection, org_id: str) -> int:
        return int(conn.execute(_COUNT_OWNERS, (org_id,)).fetchone()[0])

    # -- custom domains --------------------------------------------------------
    def create_domain(self, domain: Domain, token: str) -> None:
        """Insert a claim; :class:`~authsome.errors.AlreadyExists` if the tenant
        claimed the hostname already, another tenant verified it, or the id is
        taken. Check and insert share one write lock."""
        with self._transaction("create_domain") as conn:
            taken = conn.execute(
                "SELECT 1 FROM domains WHERE hostname = ? AND verified_at IS NOT NULL"
                " AND tenant <> ?",
                (domain.hostname, domain.tenant),
            ).fetchone()
            if taken is not None:
                raise AlreadyExists(Duplicate.HOSTNAME_VERIFIED)
            conn.execute(
                "INSERT INTO domains (id, tenant, hostname, token, created_at, verified_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    domain.id,
                    domain.tenant,
                    domain.hostname,
                    token,
                    _to_micros(domain.created_at),
                    None if domain.verified_at is None else _to_micros(domain.verified_at),
                ),
            )

    def get_domain(self, domain_id: str) -> Domain | None:
        """The domain with this id, or ``None``."""
        row = self._fetch_one("get_domain", _SELECT_DOMAIN + " WHERE id = ?", (domain_id,))
        return None if row is None else _READ.domain(row)

    def get_domain_token(self, domain_id: str) -> str | None:
        """The domain's challenge token, or ``None`` if the domain is unknown."""
        row = self._fetch_one(
            "get_domain_token", "SELECT token FROM domains WHERE id = ?", (domain_id,)
        )
        return None if row is None else str(row["token"])

    def find_domain_by_hostname(self, hostname: str) -> Domain | None:
        """The verified domain whose hostname is exactly ``hostname``, or ``None``."""
        row = self._fetch_one(
            "find_domain_by_hostname",
            _SELECT_DOMAIN + " WHERE hostname = ? AND verified_at IS NOT NULL",
            (hostname,),
        )
        return None if row is None else _READ.domain(row)

    def list_domains(self, tenant: str) -> list[Domain]:
        """Every domain of ``tenant``, ordered by hostname."""
        with self._connection("list_domains") as conn:
            rows = conn.execute(
                _SELECT_DOMAIN + " WHERE tenant = ? ORDER BY hostname", (tenant,)
            ).fetchall()
        return [_READ.domain(row) for row in rows]

    def mark_domain_verified(self, domain_id: str, now: datetime) -> Domain | None:
        """Set ``verified_at`` once (the first time is kept); return the stored domain.
        The partial unique index refuses a hostname another domain verified first."""
        with self._transaction("mark_domain_verified") as conn:
            conn.execute(
                "UPDATE domains SET verified_at = ? WHERE id = ? AND verified_at IS NULL",
                (_to_micros(now), domain_id),
            )
            row = conn.execute(_SELECT_DOMAIN + " WHERE id = ?", (domain_id,)).fetchone()
        return None if row is None else _READ.domain(row)

    def delete_pending_domains(self, created_before: datetime) -> int:
        """Delete the unverified claims created at or before ``created_before``."""
        with self._connection("delete_pending_domains") as conn:
            cursor = conn.execute(
                "DELETE FROM domains WHERE verified_at IS NULL AND created_at <= ?",
                (_to_micros(created_before),),
            )
            return cursor.rowcount

    def delete_domain(self, domain_id: str) -> bool:
        """Delete the domain; ``False`` if it did not exist."""
        with self._connection("delete_domain") as conn:
            return conn.execute("DELETE FROM domains WHERE id = ?", (domain_id,)).rowcount == 1

    # -- mfa -------------------------------------------------------------------
    def create_mfa_factor(self, factor: MfaFactor, secret: str) -> None:
        """Insert a pending factor, replacing the user's pending one of its method;
        see :meth:`authsome.stores.Store.create_mfa_factor`."""
        with self._transaction("create_mfa_factor") as conn:
            confirmed = conn.execute(
                "SELECT 1 FROM mfa_factors"
                " WHERE user_id = ? AND method = ? AND confirmed_at IS NOT NULL",
                (factor.user_id, factor.method.value),
            ).fetchone()
            if confirmed is not None:
                raise AlreadyExists(Duplicate.CONFIRMED_FACTOR)
            conn.execute(
                "DELETE FROM mfa_factors WHERE user_id = ? AND method = ?",
                (factor.user_id, factor.method.value),
            )
            conn.execute(
                "INSERT INTO mfa_factors"
                " (id, user_id, method, secret, created_at, confirmed_at, last_step)"
                " VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (
                    factor.id,
                    factor.user_id,
                    factor.method.value,
                    secret,
                    _to_micros(factor.created_at),
                    None if factor.confirmed_at is None else _to_micros(factor.confirmed_at),
                ),
            )

    def get_mfa_factor(self, factor_id: str) -> MfaFactor | None:
        """The factor with this id, or ``None``."""
        row = self._fetch_one("get_mfa_factor", _SELECT_FACTOR, (factor_id,))
        return None if row is None else _READ.factor(row)

    def get_mfa_secret(self, factor_id: str) -> str | None:
        """The factor's stored secret, or ``None``."""
        row = self._fetch_one(
            "get_mfa_secret", "SELECT secret FROM mfa_factors WHERE id = ?", (factor_id,)
        )
        return None if row is None else str(row["secret"])

    def list_mfa_secrets(self, after: str, limit: int) -> list[tuple[str, str]]:
        """A page of ``(factor id, stored secret)`` after ``after``, by id."""
        with self._connection("list_mfa_secrets") as conn:
            rows = conn.execute(
                "SELECT id, secret FROM mfa_factors WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [(str(row["id"]), str(row["secret"])) for row in rows]

    def replace_mfa_secret(self, factor_id: str, expected: str, secret: str) -> bool:
        """Compare-and-set the stored secret in one UPDATE."""
        with self._connection("replace_mfa_secret") as conn:
            cursor = conn.execute(
                "UPDATE mfa_factors SET secret = ? WHERE id = ? AND secret = ?",
                (secret, factor_id, expected),
            )
            return cursor.rowcount == 1

    def list_mfa_factors(self, user_id: str) -> list[MfaFactor]:
        """The user's factors, oldest first."""
        with self._connection("list_mfa_factors") as conn:
            rows = conn.execute(
                _SELECT_FACTORS + " WHERE user_id = ? ORDER BY created_at, id",
                (user_id,),
            ).fetchall()
        return [_READ.factor(row) for row in rows]

    def confirm_mfa_factor(
        self, factor_id: str, step: int, recovery_hashes: Sequence[str], now: datetime
    ) -> bool:
        """Confirm a pending factor with its first step and recovery codes, in one
        transaction; ``False`` and no change if it is not pending or the step is used."""
        with self._transaction("confirm_mfa_factor") as conn:
            cursor = conn.execute(
                "UPDATE mfa_factors SET confirmed_at = ?, last_step = ?"
                " WHERE id = ? AND confirmed_at IS NULL"
                " AND (last_step IS NULL OR last_step < ?)",
                (_to_micros(now), step, factor_id, step),
            )
            if cursor.rowcount != 1:
                return False
            conn.execute("DELETE FROM mfa_recovery_codes WHERE factor_id = ?", (factor_id,))
            conn.executemany(
                "INSERT OR IGNORE INTO mfa_recovery_codes (factor_id, code_hash) VALUES (?, ?)",
                [(factor_id, code_hash) for code_hash in recovery_hashes],
            )
            return True

    def use_totp_step(self, factor_id: str, step: int) -> bool:
        """Accept ``step`` once: one conditional UPDATE, atomic across processes."""
        with self._connection("use_totp_step") as conn:
            cursor = conn.execute(
                "UPDATE mfa_factors SET last_step = ?"
                " WHERE id = ? AND (last_step IS NULL OR last_step < ?)",
                (step, factor_id, step),
            )
            return cursor.rowcount == 1

    def consume_recovery_code(self, factor_id: str, code_hash: str) -> bool:
        """Delete one recovery code; ``True`` for the one caller that deleted it."""
        with self._connection("consume_recovery_code") as conn:
            cursor = conn.execute(
                "DELETE FROM mfa_recovery_codes WHERE factor_id = ? AND code_hash = ?",
                (factor_id, code_hash),
            )
            return cursor.rowcount == 1

    def count_recovery_codes(self, factor_id: str) -> int:
        """How many unused recovery codes the factor has."""
        row = self._fetch_one(
            "count_recovery_codes",
            "SELECT COUNT(*) AS n FROM mfa_recovery_codes WHERE factor_id = ?",
            (factor_id,),
        )
        return 0 if row is None else int(row["n"])

    def delete_mfa_factor(self, factor_id: str) -> bool:
        """Delete the factor; its recovery codes go with it (ON DELETE CASCADE)."""
        with self._connection("delete_mfa_factor") as conn:
            cursor = conn.execute("DELETE FROM mfa_factors WHERE id = ?", (factor_id,))
            return cursor.rowcount == 1

    def create_mfa_ticket(
        self, ticket_hash: str, user_id: str, expires_at: datetime, now: datetime
    ) -> None:
        """Store a ticket and purge expired ones, in one transaction."""
        with self._transaction("create_mfa_ticket") as conn:
            conn.execute("DELETE FROM mfa_tickets WHERE expires_at <= ?", (_to_micros(now),))
            conn.execute(
                "INSERT INTO mfa_tickets (hash, user_id, expires_at, attempts) VALUES (?, ?, ?, 0)",
                (ticket_hash, user_id, _to_micros(expires_at)),
            )

    def attempt_mfa_ticket(
        self, ticket_hash: str, now: datetime, max_attempts: int, *, tenant: str | None = None
    ) -> str | None:
        """Count one attempt on a live ticket (of a user of ``tenant``, when given) and
        return its user id, atomically."""
        with self._transaction("attempt_mfa_ticket") as conn:
            cursor = conn.execute(
                "UPDATE mfa_tickets SET attempts = attempts + 1"
                " WHERE hash = ? AND expires_at > ? AND attempts < ?"
                " AND (? IS NULL OR user_id IN (SELECT id FROM users WHERE tenant = ?))",
                (ticket_hash, _to_micros(now), max_attempts, tenant, tenant),
            )
            if cursor.rowcount != 1:
                return None
            row = conn.execute(
                "SELECT user_id FROM mfa_tickets WHERE hash = ?", (ticket_hash,)
            ).fetchone()
            return str(row["user_id"])

    def consume_mfa_ticket(self, ticket_hash: str) -> bool:
        """Delete the ticket; ``True`` for the one caller that deleted it."""
        with self._connection("consume_mfa_ticket") as conn:
            cursor = conn.execute("DELETE FROM mfa_tickets WHERE hash = ?", (ticket_hash,))
            return cursor.rowcount == 1

    def delete_user_mfa_tickets(self, user_id: str) -> int:
        """Delete the user's sign-in tickets; return how many."""
        with self._connection("delete_user_mfa_tickets") as conn:
            return conn.execute("DELETE FROM mfa_tickets WHERE user_id = ?", (user_id,)).rowcount

    def count_mfa_failure(self, factor_id: str) -> int:
        """One more wrong code for the factor: a single UPDATE ... RETURNING."""
        row = self._fetch_one(
            "count_mfa_failure",
            "UPDATE mfa_factors SET failed_codes = failed_codes + 1 WHERE id = ?"
            " RETURNING failed_codes",
            (factor_id,),
        )
        return 0 if row is None else int(row["failed_codes"])

    def reset_mfa_failures(self, factor_id: str) -> bool:
        """Clear the factor's wrong-code count; ``True`` if there was one."""
        with self._connection("reset_mfa_failures") as conn:
            cursor = conn.execute(
                "UPDATE mfa_factors SET failed_codes = 0 WHERE id = ? AND failed_codes > 0",
                (factor_id,),
            )
            return cursor.rowcount == 1

    # -- api keys --------------------------------------------------------------
    def create_api_key(self, key: ApiKey, secret_hash: str) -> None:
        """Insert ``key`` and its secret hash; one INSERT, so nothing is half-written."""
        with self._connection("create_api_key") as conn:
            conn.execute(
                _INSERT_API_KEY,
                (
                    key.id,
                    key.lookup_id,
                    key.owner_kind,
                    key.owner_id,
                    key.tenant,
                    key.name,
                    json.dumps(list(key.scopes)),
                    _to_micros(key.created_at),
                    _optional_micros(key.expires_at),
                    _optional_micros(key.revoked_at),
                    _optional_micros(key.last_used_at),
                    secret_hash,
                ),
            )

    def get_api_key(self, key_id: str) -> ApiKey | None:
        """The key with this id, or ``None``."""
        row = self._fetch_one("get_api_key", _SELECT_API_KEY_BY_ID, (key_id,))
        return None if row is None else _READ.api_key(row)

    def find_api_key_by_lookup_id(self, lookup_id: str) -> StoredApiKey | None:
        """The key with this lookup id and its secret hash (unique index), or ``None``."""
        row = self._fetch_one(
            "find_api_key_by_lookup_id", _SELECT_API_KEY_BY_LOOKUP_ID, (lookup_id,)
        )
        return None if row is None else StoredApiKey(_READ.api_key(row), str(row["secret_hash"]))

    def list_api_keys(self, owner_kind: ApiKeyOwnerKind, owner_id: str) -> list[ApiKey]:
        """Every key of this owner, oldest first."""
        with self._connection("list_api_keys") as conn:
            rows = conn.execute(_SELECT_API_KEYS_BY_OWNER, (owner_kind, owner_id)).fetchall()
        return [_READ.api_key(row) for row in rows]

    def revoke_api_key(self, key_id: str, now: datetime) -> bool:
        """Revoke the key; ``False`` if unknown or revoked already."""
        with self._connection("revoke_api_key") as conn:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (_to_micros(now), key_id),
            )
            return cursor.rowcount == 1

    def touch_api_key(self, key_id: str, at: datetime) -> None:
        """Move ``last_used_at`` forward to ``at``; one UPDATE, never backwards."""
        at_us = _to_micros(at)
        with self._connection("touch_api_key") as conn:
            conn.execute(
                "UPDATE api_keys SET last_used_at = ?"
                " WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                (at_us, key_id, at_us),
            )

    # -- passkeys --------------------------------------------------------------
    def create_passkey_challenge(self, challenge: PasskeyChallenge, now: datetime) -> None:
        """Purge expired challenges and insert this one, in one transaction."""
        with self._transaction("create_passkey_challenge") as conn:
            conn.execute("DELETE FROM passkey_challenges WHERE expires_at <= ?", (_to_micros(now),))
            conn.execute(
                "INSERT INTO passkey_challenges"
                " (challenge_hash, ceremony, user_id, tenant, rp_id, origin, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    challenge.challenge_hash,
                    PasskeyCeremony(challenge.ceremony).value,
                    challenge.user_id,
                    challenge.tenant,
                    challenge.rp_id,
                    challenge.origin,
                    _to_micros(challenge.expires_at),
                ),
            )

    def consume_passkey_challenge(
        self, challenge_hash: str, now: datetime
    ) -> PasskeyChallenge | None:
        """Delete and return a live challenge; read and delete share one write lock."""
        with self._transaction("consume_passkey_challenge") as conn:
            row = conn.execute(
                "SELECT challenge_hash, ceremony, user_id, tenant, rp_id, origin, expires_at"
                " FROM passkey_challenges WHERE challenge_hash = ?",
                (challenge_hash,),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "DELETE FROM passkey_challenges WHERE challenge_hash = ?", (challenge_hash,)
            )
        challenge = _READ.passkey_challenge(row)
        return None if challenge.expires_at <= now else challenge

    def create_passkey(self, passkey: Passkey) -> None:
        """Insert a passkey; the primary key refuses a registered credential id."""
        with self._connection("create_passkey") as conn:
            conn.execute(
                "INSERT INTO passkeys (credential_id, user_id, tenant, rp_id, public_key,"
                " sign_count, transports, created_at, last_used_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    passkey.credential_id,
                    passkey.user_id,
                    passkey.tenant,
                    passkey.rp_id,
                    passkey.public_key,
                    passkey.sign_count,
                    json.dumps(list(passkey.transports)),
                    _to_micros(passkey.created_at),
                    None if passkey.last_used_at is None else _to_micros(passkey.last_used_at),
                ),
            )

    def get_passkey(self, credential_id: str) -> Passkey | None:
        """The passkey with this credential id, or ``None``."""
        row = self._fetch_one(
            "get_passkey", _SELECT_PASSKEY + " WHERE credential_id = ?", (credential_id,)
        )
        return None if row is None else _READ.passkey(row)

    def sample_passkey(self, tenant: str, rp_id: str, point: str) -> Passkey | None:
        """The first passkey of ``tenant`` and ``rp_id`` from ``point`` on, wrapping
        around; two index lookups at most."""
        with self._snapshot("sample_passkey") as conn:
            row = conn.execute(
                _SELECT_PASSKEY + " WHERE tenant = ? AND rp_id = ? AND credential_id >= ?"
                " ORDER BY credential_id LIMIT 1",
                (tenant, rp_id, point),
            ).fetchone()
            if row is None:
                row = conn.execute(
                    _SELECT_PASSKEY + " WHERE tenant = ? AND rp_id = ?"
                    " ORDER BY credential_id LIMIT 1",
                    (tenant, rp_id),
                ).fetchone()
        return None if row is None else _READ.passkey(row)

    def list_user_passkeys(self, user_id: str) -> list[Passkey]:
        """The user's passkeys, oldest first."""
        with self._connection("list_user_passkeys") as conn:
            rows = conn.execute(
                _SELECT_PASSKEY + " WHERE user_id = ? ORDER BY created_at, credential_id",
                (user_id,),
            ).fetchall()
        return [_READ.passkey(row) for row in rows]

    def update_passkey_sign_count(
        self, credential_id: str, expected: int, new: int, now: datetime
    ) -> bool:
        """Compare-and-set the sign count in one UPDATE."""
        with self._connection("update_passkey_sign_count") as conn:
            cursor = conn.execute(
                "UPDATE passkeys SET sign_count = ?, last_used_at = ?"
                " WHERE credential_id = ? AND sign_count = ?",
                (new, _to_micros(now), credential_id, expected),
            )
            return cursor.rowcount == 1

    def delete_passkey(self, user_id: str, credential_id: str) -> bool:
        """Delete the user's passkey; ``False`` if the user has none with this id."""
        with self._connection("delete_passkey") as conn:
            cursor = conn.execute(
                "DELETE FROM passkeys WHERE credential_id = ? AND user_id = ?",
                (credential_id, user_id),
            )
            return cursor.rowcount == 1

    # -- sso -------------------------------------------------------------------
    def create_sso_connection(
        self, connection: SSOConnectionInfo, client_secret: StoredSecret | None
    ) -> None:
        """Insert the connection and its domains in one transaction; a taken domain
        or an unknown org (foreign key) rolls everything back."""
        check_sso_record(connection, client_secret)
        settings = _sso_settings(connection, client_secret)
        with self._transaction("create_sso_connection") as conn:
            conn.execute(
                _INSERT_SSO,
                (
                    connection.id,
                    connection.org_id,
                    *settings,
                    _to_micros(connection.created_at),
                ),
            )
            self._insert_sso_domains(conn, connection.id, connection.org_id, connection.domains)

    def update_sso_connection(
        self, connection: SSOConnectionInfo, client_secret: StoredSecret | None
    ) -> SSOConnectionInfo | None:
        """Replace settings and domains under one write lock; all or nothing."""
        check_sso_record(connection, client_secret)
        settings = _sso_settings(connection, client_secret)
        with self._transaction("update_sso_connection") as conn:
            current = conn.execute(
                "SELECT org_id FROM sso_connections WHERE id = ?", (connection.id,)
            ).fetchone()
            if current is None:
                return None
            conn.execute(_UPDATE_SSO, (*settings, connection.id))
            conn.execute("DELETE FROM sso_domains WHERE connection_id = ?", (connection.id,))
            self._insert_sso_domains(conn, connection.id, current["org_id"], connection.domains)
            return self._load_sso(conn, " WHERE id = ?", (connection.id,))[0]

    def get_sso_connection(self, connection_id: str) -> SSOConnectionInfo | None:
        """The connection with this id, or ``None``."""
        with self._snapshot("get_sso_connection") as conn:
            found = self._load_sso(conn, " WHERE id = ?", (connection_id,))
        return found[0] if found else None

    def list_sso_connections(self, org_id: str) -> list[SSOConnectionInfo]:
        """The org's connections, oldest first."""
        with self._snapshot("list_sso_connections") as conn:
            return self._load_sso(conn, " WHERE org_id = ? ORDER BY created_at, id", (org_id,))

    def find_sso_connection_by_domain(self, tenant: str, domain: str) -> SSOConnectionInfo | None:
        """The tenant's connection listing ``domain`` (exact match), or ``None``."""
        with self._snapshot("find_sso_connection_by_domain") as conn:
            found = self._load_sso(
                conn,
                " WHERE id = (SELECT connection_id FROM sso_domains"
                " WHERE tenant = ? AND domain = ?)",
                (tenant, domain),
            )
        return found[0] if found else None

    def get_sso_client_secret(self, connection_id: str) -> StoredSecret | None:
        """The stored secret as given, or ``None``."""
        row = self._fetch_one(
            "get_sso_client_secret",
            "SELECT client_secret, secret_sealed FROM sso_connections WHERE id = ?",
            (connection_id,),
        )
        if row is None or row["client_secret"] is None:
            return None
        return StoredSecret(row["client_secret"], sealed=bool(row["secret_sealed"]))

    def list_sso_client_secrets(self, after: str, limit: int) -> list[tuple[str, StoredSecret]]:
        """A page of ``(connection id, stored secret)`` after ``after``, by id."""
        with self._connection("list_sso_client_secrets") as conn:
            rows = conn.execute(
                "SELECT id, client_secret, secret_sealed FROM sso_connections"
                " WHERE id > ? AND client_secret IS NOT NULL ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            (str(row["id"]), StoredSecret(row["client_secret"], sealed=bool(row["secret_sealed"])))
            for row in rows
        ]

    def replace_sso_client_secret(
        self, connection_id: str, expected: StoredSecret, secret: StoredSecret
    ) -> bool:
        """Compare-and-set the stored secret and its flag in one UPDATE."""
        with self._connection("replace_sso_client_secret") as conn:
            cursor = conn.execute(
                "UPDATE sso_connections SET client_secret = ?, secret_sealed = ?"
                " WHERE id = ? AND client_secret = ? AND secret_sealed = ?",
                (
                    secret.value,
                    int(secret.sealed),
                    connection_id,
                    expected.value,
                    int(expected.sealed),
                ),
            )
            return cursor.rowcount == 1

    def use_saml_assertion_id(
        self, connection_id: str, assertion_id: str, keep_until: datetime, now: datetime
    ) -> bool:
        """Forget expired ids, then insert this one unless kept: one write
        transaction, so of racing processes exactly one inserts it."""
        with self._transaction("use_saml_assertion_id") as conn:
            conn.execute("DELETE FROM saml_assertion_ids WHERE keep_until <= ?", (_to_micros(now),))
            cursor = conn.execute(
                "INSERT INTO saml_assertion_ids (connection_id, assertion_id, keep_until)"
                " VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (connection_id, assertion_id, _to_micros(keep_until)),
            )
            return cursor.rowcount == 1

    def delete_sso_connection(self, connection_id: str) -> bool:
        """Delete the connection; its domains go with it (foreign key cascade)."""
        with self._connection("delete_sso_connection") as conn:
            cursor = conn.execute("DELETE FROM sso_connections WHERE id = ?", (connection_id,))
            return cursor.rowcount > 0

    # -- social sign-in providers ------------------------------------------------
    def put_social_provider(
        self, provider: SocialProviderInfo, client_secret: StoredSecret
    ) -> SocialProviderInfo:
        """Insert or replace the tenant's configuration in one upsert."""
        check_social_record(provider, client_secret)
        with self._transaction("put_social_provider") as conn:
            row = conn.execute(
                _PUT_SOCIAL,
                (
                    provider.id,
                    provider.tenant,
                    provider.provider,
                    provider.client_id,
                    json.dumps(list(provider.scopes)),
                    json.dumps(dict(provider.settings), sort_keys=True),
                    client_secret.value,
                    int(client_secret.sealed),
                    _to_micros(provider.created_at),
                    _to_micros(provider.updated_at),
                ),
            ).fetchone()
        return _READ.social_provider(row)

    def get_social_provider(self, tenant: str, provider: str) -> SocialProviderInfo | None:
        """The tenant's configuration of ``provider``, or ``None``."""
        row = self._fetch_one(
            "get_social_provider",
            _SELECT_SOCIAL + " WHERE tenant = ? AND provider = ?",
            (tenant, provider),
        )
        return None if row is None else _READ.social_provider(row)

    def list_social_providers(self, tenant: str) -> list[SocialProviderInfo]:
        """The tenant's configurations, by provider name."""
        with self._connection("list_social_providers") as conn:
            rows = conn.execute(
                _SELECT_SOCIAL + " WHERE tenant = ? ORDER BY provider", (tenant,)
            ).fetchall()
        return [_READ.social_provider(row) for row in rows]

    def get_social_client_secret(self, provider_id: str) -> StoredSecret | None:
        """The stored secret as given, or ``None``."""
        row = self._fetch_one(
            "get_social_client_secret",
            "SELECT client_secret, secret_sealed FROM social_providers WHERE id = ?",
            (provider_id,),
        )
        if row is None:
            return None
        return StoredSecret(row["client_secret"], sealed=bool(row["secret_sealed"]))

    def list_social_client_secrets(self, after: str, limit: int) -> list[tuple[str, StoredSecret]]:
        """A page of ``(configuration id, stored secret)`` after ``after``, by id."""
        with self._connection("list_social_client_secrets") as conn:
            rows = conn.execute(
                "SELECT id, client_secret, secret_sealed FROM social_providers"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            (str(row["id"]), StoredSecret(row["client_secret"], sealed=bool(row["secret_sealed"])))
            for row in rows
        ]

    def replace_social_client_secret(
        self, provider_id: str, expected: StoredSecret, secret: StoredSecret
    ) -> bool:
        """Compare-and-set the stored secret and its flag in one UPDATE."""
        with self._connection("replace_social_client_secret") as conn:
            cursor = conn.execute(
                "UPDATE social_providers SET client_secret = ?, secret_sealed = ?"
                " WHERE id = ? AND client_secret = ? AND secret_sealed = ?",
                (
                    secret.value,
                    int(secret.sealed),
                    provider_id,
                    expected.value,
                    int(expected.sealed),
                ),
            )
            return cursor.rowcount == 1

    def delete_social_provider(self, tenant: str, provider: str) -> bool:
        """Delete the tenant's configuration of ``provider``."""
        with self._connection("delete_social_provider") as conn:
            cursor = conn.execute(
                "DELETE FROM social_providers WHERE tenant = ? AND provider = ?",
                (tenant, provider),
            )
            return cursor.rowcount > 0

    @staticmethod
    def _insert_sso_domains(
        conn: sqlite3.Connection, connection_id: str, org_id: str, domains: tuple[str, ...]
    ) -> None:
        # The tenant is the org's, copied so the key (tenant, domain) is one index.
        conn.executemany(
            "INSERT INTO sso_domains (tenant, domain, connection_id, org_id, position)"
            " SELECT tenant, ?, ?, id, ? FROM orgs WHERE id = ?",
            [(domain, connection_id, i, org_id) for i, domain in enumerate(domains)],
        )

    @staticmethod
    def _load_sso(
        conn: sqlite3.Connection, where: str, params: tuple[Any, ...]
    ) -> list[SSOConnectionInfo]:
        """Connections matching ``where`` (a constant SQL tail), with their domains."""
        rows = conn.execute(_SELECT_SSO + where, params).fetchall()
        found: list[SSOConnectionInfo] = []
        for row in rows:
            domains = conn.execute(
                "SELECT domain FROM sso_domains WHERE connection_id = ? ORDER BY position",
                (row["id"],),
            ).fetchall()
            found.append(
                _READ.sso_connection(
                    row,
                    domains=[d["domain"] for d in domains],
                    scopes=row["scopes"].split(),
                    sign_in=row["sign_in"],
                )
            )
        return found

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        """Close every connection this store opened, in any thread. Idempotent."""
        with self._lock:
            self._closed = True
            connections = list(self._registry)
            self._registry.clear()
        with _STORES_LOCK:
            _STORES.discard(self)
        for conn in connections:
            conn.close()

    # -- plumbing ----------------------------------------------------------------
    def _open_connection(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; this class issues BEGIN
        # itself. check_same_thread=False only so close() may close connections of
        # other threads; otherwise each connection stays in its thread (or behind
        # the lock in memory mode).
        conn = sqlite3.connect(
            self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        with self._lock:
            if self._closed:
                conn.close()
                raise StoreError("sqlite store: the store is closed")
            self._registry.add(conn)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _hold(self, conn: sqlite3.Connection) -> _Holder:
        holder = _Holder(conn)
        # The thread-local dies with its thread; the finalizer then closes the
        # connection, so a pool of short-lived threads does not leak file handles.
        # It references the registry and lock, not self, so it never keeps the store alive.
        weakref.finalize(holder, _release, conn, self._registry, self._lock, self._pid)
        return holder

    def _thread_connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("sqlite store: the store is closed")
        if os.getpid() != self._pid:
            raise self._inherited_error()
        if self._shared is not None:
            return self._shared
        holder: _Holder | None = getattr(self._local, "holder", None)
        if holder is None:
            holder = self._hold(self._open_connection())
            self._local.holder = holder
        return holder.conn

    def _inherited_error(self) -> StoreError:
        if self._forked_while_busy:
            return StoreError(
                "sqlite store: other threads had connections open when this process"
                " forked; open a new store in this process"
            )
        # os.fork() runs the hooks below; a raw fork() from C code does not.
        return StoreError("sqlite store: opened in another process; open it after fork")

    def _before_fork(self) -> None:
        """In the parent, just before a fork: no operation of this store is half done
        (in memory mode, the lock serializes them), and the forking thread, being
        between operations, has an idle connection, closed here so that the child
        inherits none. This thread opens a new one on its next use."""
        self._lock.acquire()
        holder: _Holder | None = getattr(self._local, "holder", None)
        if holder is not None:
            del self._local.holder
            _release(holder.conn, self._registry, self._lock, self._pid)

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        """In the child: the only thread left starts from nothing it shares with the
        parent (a fresh lock, registry and thread-local slot)."""
        inherited = [conn for conn in self._registry if conn is not self._shared]
        _INHERITED.extend(inherited)
        self._lock = threading.RLock()
        self._registry = set() if self._shared is None else {self._shared}
        self._local = threading.local()
        if inherited:
            self._forked_while_busy = True  # and _pid stays the parent's: refused
        else:
            self._pid = os.getpid()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction around every call this thread makes
        in the block: one commit, holding the write lock from the start."""
        if getattr(self._local, "unit_depth", 0):
            self._local.unit_depth += 1
            try:
                yield
            finally:
                self._local.unit_depth -= 1
            return
        with self._transaction("atomic"):
            self._local.unit_depth = 1
            try:
                yield
            finally:
                self._local.unit_depth = 0

    def _in_unit(self) -> bool:
        return bool(getattr(self._local, "unit_depth", 0))

    @contextlib.contextmanager
    def _connection(self, operation: str) -> Iterator[sqlite3.Connection]:
        """This thread's connection, in autocommit mode (each statement atomic),
        unless an :meth:`atomic` block holds it in its transaction."""
        guard = self._lock if self._in_memory else contextlib.nullcontext()
        with guard, _translated_errors(operation):
            yield self._thread_connection()

    @contextlib.contextmanager
    def _transaction(self, operation: str) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database's write lock from its start;
        inside an :meth:`atomic` block, a savepoint of its transaction (undone alone
        when it raises, committed with the block)."""
        with self._connection(operation) as conn:
            nested = self._in_unit()
            conn.execute("SAVEPOINT method" if nested else "BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("RELEASE method" if nested else "COMMIT")
            except BaseException:
                if nested:
                    conn.execute("ROLLBACK TO method")
                    conn.execute("RELEASE method")
                elif conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _snapshot(self, operation: str) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state."""
        with self._connection(operation) as conn:
            if self._in_unit():
                yield conn  # the block's transaction is the snapshot
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _fetch_one(self, operation: str, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        with self._connection(operation) as conn:
            row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
            return row

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Apply the missing :data:`MIGRATIONS` in order, one transaction per step."""
        version = _user_version(conn)
        if version > len(MIGRATIONS):
            raise StoreError("sqlite store: the database schema is newer than this authsome")
        for target in range(version + 1, len(MIGRATIONS) + 1):
            self._apply_migration(conn, target)

    @staticmethod
    def _apply_migration(conn: sqlite3.Connection, target: int) -> None:
        """Bring the schema to version ``target`` unless another process already did.

        The version is re-read under the write lock, so processes opening one new file
        at once apply each step exactly once; the bump commits with the step.
        """
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _user_version(conn) < target:
                for statement in split_statements(MIGRATIONS[target - 1]):
                    conn.execute(statement)
                # PRAGMA takes no bound parameters; target is an int we computed.
                conn.execute(f"PRAGMA user_version = {int(target)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _use_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the file in WAL mode. Switching needs the file to itself, and SQLite answers
    SQLITE_BUSY at once (its busy handler does not wait for it) while another process
    is creating or migrating the same new file, so that wait is done here."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
