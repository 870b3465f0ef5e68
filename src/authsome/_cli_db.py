"""Where the command line's ``--db`` points, and opening the stores there.

A database URL is a SQLite path (``app.db``), a SQLite URL (``sqlite:///app.db``,
``sqlite:////abs/app.db``) or a PostgreSQL DSN (``postgresql://user@host/db``).

With PostgreSQL both stores live in the one database (their tables do not overlap).
A SQLite file holds one schema only, so the ledger gets a sibling file: ``app.db`` for
the auth store, ``app.ledger.db`` for the ledger (``--ledger-db`` overrides it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authsome import ledger
from authsome.errors import NotFound, StoreError, ValidationError
from authsome.ledger import LedgerStore
from authsome.stores import SQLiteStore, Store

__all__ = ["Location", "migrate", "open_auth_store", "open_ledger_store", "parse_db", "redact"]

_POSTGRES_SCHEMES = ("postgresql", "postgres")
_SQLITE_PREFIX = "sqlite:///"
_SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")
_INSTALL_HINT = (
    "PostgreSQL support needs the postgres extra: pip install 'authsome-engine[postgres]'"
)


@dataclass(frozen=True, slots=True)
class Location:
    """One store's database: a SQLite file or a PostgreSQL DSN."""

    kind: Literal["sqlite", "postgres"]
    target: str

    def __str__(self) -> str:
        return redact(self.target) if self.kind == "postgres" else self.target


def redact(dsn: str) -> str:
    """``dsn`` with its password (if any, in the user info or as a ``password=`` query
    parameter) replaced, safe to print."""
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is None and all(k != "password" for k, _ in query):
        return dsn
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    hidden = urlencode([(k, "***" if k == "password" else v) for k, v in query], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=hidden))


def parse_db(url: str) -> Location:
    """The :class:`Location` a ``--db`` value names; :class:`ValidationError` if it names none."""
    if not url or url.isspace():
        raise ValidationError("the database URL is empty")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _POSTGRES_SCHEMES:
        return Location("postgres", url)
    if url.startswith(_SQLITE_PREFIX):
        path = url[len(_SQLITE_PREFIX) :]
        if not path:
            raise ValidationError(f"no file in the SQLite URL {url!r}")
        return Location("sqlite", path)
    if scheme:
        raise ValidationError(
            f"unsupported database URL scheme {scheme!r}: use a SQLite path, "
            "sqlite:///path or postgresql://..."
        )
    return Location("sqlite", url)


def ledger_location(auth: Location) -> Location:
    """Where the ledger lives by default, given the auth store's location."""
    if auth.kind == "postgres":
        return auth
    path = Path(auth.target)
    if path.is_dir():  # else "app/" would send the ledger to "app.ledger.db" beside it
        raise ValidationError(f"{auth.target}: is a directory, not a database file")
    if not path.name or path.name in (".", ".."):
        raise ValidationError(f"{auth.target}: not a database file name")
    return Location("sqlite", str(path.with_name(f"{path.stem}.ledger{path.suffix or '.db'}")))


def _check_sqlite(path: str, *, create: bool) -> None:
    """Explain a path SQLite cannot use before SQLite fails with a vaguer message."""
    if path == ":memory:":
        raise ValidationError("an in-memory database would be lost when the command ends")
    target = Path(path)
    if target.is_dir():
        raise ValidationError(f"{path}: is a directory, not a database file")
    if not create and not target.exists():
        raise NotFound(f"no database at {path} (create it first: authsome migrate --db ...)")
    parent = target.parent
    if parent.exists() and not parent.is_dir():
        raise StoreError(f"cannot create {path}: {parent} is not a directory")
    if not parent.exists():
        raise StoreError(f"cannot create {path}: directory {parent} does not exist")


def _postgres_class(module: str) -> Callable[[str], Any]:
    try:
        cls = getattr(importlib.import_module(module), "PostgresStore", None)
    except ImportError:
        raise StoreError(_INSTALL_HINT) from None
    if cls is None:
        raise StoreError(f"this authsome has no PostgreSQL store ({module}.PostgresStore)")
    return cls  # type: ignore[no-any-return]


def _open_postgres(module: str, dsn: str) -> Any:
    cls = _postgres_class(module)
    try:
        return cls(dsn)
    except ImportError:
        raise StoreError(_INSTALL_HINT) from None
    except Exception as exc:
        # The driver's own errors (connection refused, bad password...) are not ours:
        # say what failed in one line, without the DSN's password.
        if not type(exc).__module__.startswith("psycopg"):  # psycopg, psycopg_pool
            raise
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreError(f"cannot connect to {redact(dsn)}: {first_line}") from None


def open_auth_store(where: Location, *, create: bool = False) -> Store:
    """Open (and migrate) the auth store at ``where``. Without ``create`` a missing
    SQLite file is :class:`NotFound` rather than silently created."""
    if where.kind == "postgres":
        store: Store = _open_postgres("authsome.stores", where.target)
        return store
    _check_sqlite(where.target, create=create)
    try:
        return SQLiteStore(where.target)
    except StoreError as exc:
        raise StoreError(f"cannot use {where.target} as the auth database: {exc}") from None


def open_ledger_store(where: Location, *, create: bool = False) -> LedgerStore:
    """Open (and migrate) the ledger store at ``where``; ``create`` as for the auth store."""
    if where.kind == "postgres":
        store: LedgerStore = _open_postgres("authsome.ledger", where.target)
        return store
    _check_sqlite(where.target, create=create)
    try:
        return ledger.SQLiteStore(where.target)
    except ledger.LedgerStoreError as exc:
        raise StoreError(f"cannot use {where.target} as the ledger database: {exc}") from None


@dataclass(frozen=True, slots=True)
class Migrated:
    """One store brought to the current schema by :func:`migrate`."""

    store: str
    location: Location
    schema_version: int | None


def _close(store: object) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()


def migrate(auth: Location, ledger_at: Location) -> list[Migrated]:
    """Create or upgrade the schemas of the auth store and the ledger store.

    Both places are checked before either is touched, and a SQLite file this call
    created is removed again if the other store fails: a failed migrate leaves no
    half-made database behind for the next command to trip over.
    """
    steps = (("auth", open_auth_store, auth), ("ledger", open_ledger_store, ledger_at))
    for _, _, where in steps:
        if where.kind == "sqlite":
            _check_sqlite(where.target, create=True)
    created = [
        Path(where.target)
        for _, _, where in steps
        if where.kind == "sqlite" and not Path(where.target).exists()
    ]
    done: list[Migrated] = []
    try:
        for name, opener, where in steps:
            store = opener(where, create=True)
            try:
                version = getattr(store, "schema_version", None)
                done.append(Migrated(name, where, version if isinstance(version, int) else None))
            finally:
                _close(store)
    except BaseException:
        for path in created:
            _remove_sqlite_files(path)
        raise
    return done


def _remove_sqlite_files(path: Path) -> None:
    """Remove a SQLite database and the journal files SQLite keeps beside it."""
    for leftover in (path, *(path.with_name(path.name + end) for end in _SQLITE_SIDE_FILES)):
        leftover.unlink(missing_ok=True)
