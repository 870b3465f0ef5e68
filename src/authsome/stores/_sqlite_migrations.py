"""Schema migrations of :class:`~authsome.stores.sqlite.SQLiteStore`.

``MIGRATIONS[i]`` brings a database from version ``i`` to ``i + 1``; the version is
kept in ``PRAGMA user_version``. A step is applied in one transaction together with
its version bump, so a database is always at exactly one version.

To change the schema, append a new script to ``MIGRATIONS``. Never edit or reorder a
released step: databases in the field have already run it.

Conventions: datetimes are ``INTEGER`` microseconds since the Unix epoch, UTC; secrets
are stored only as their hashes (``*_hash`` columns).
"""

from __future__ import annotations

import sqlite3

__all__ = ["MIGRATIONS", "split_statements"]

_V1_SESSIONS_AND_USERS = """
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    email         TEXT NOT NULL,
    name          TEXT,
    created_at    INTEGER NOT NULL,
    password_hash TEXT NOT NULL,
    UNIQUE (tenant, email)
);

CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant            TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    access_expires_at INTEGER NOT NULL,
    revoked_at        INTEGER,
    -- The hash of the session's current access token: one per session, so a
    -- rotation overwrites it and the previous access token stops working.
    access_hash       TEXT NOT NULL UNIQUE
);

CREATE INDEX sessions_by_user ON sessions (user_id);

-- Every refresh token a session ever had: rotated ones stay (used = 1) so that
-- their reuse can be detected and the session revoked.
CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    used       INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1))
) WITHOUT ROWID;

CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE counters (
    key        TEXT PRIMARY KEY,
    hits       INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
"""

_V2_ORGS = """
CREATE TABLE orgs (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    slug       TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (tenant, slug)
);

CREATE TABLE org_members (
    org_id     TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
) WITHOUT ROWID;

-- orgs_of(user): the primary key only serves lookups by org.
CREATE INDEX org_members_by_user ON org_members (user_id);
"""

_V3_SSO = """
-- One row per SSO connection; OIDC rows fill issuer/client_id/scopes, SAML rows
-- entity_id/sso_url/x509_certificate. client_secret holds what the service gave
-- the store: a sealed (encrypted) token when secret_sealed = 1, else clear text.
CREATE TABLE sso_connections (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    protocol         TEXT NOT NULL CHECK (protocol IN ('oidc', 'saml')),
    issuer           TEXT,
    client_id        TEXT,
    scopes           TEXT NOT NULL DEFAULT '',
    entity_id        TEXT,
    sso_url          TEXT,
    x509_certificate TEXT,
    client_secret    TEXT,
    secret_sealed    INTEGER NOT NULL DEFAULT 0 CHECK (secret_sealed IN (0, 1)),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE INDEX sso_connections_by_org ON sso_connections (org_id);

-- The primary key is the rule "one owner per e-mail domain" across the whole store.
-- org_id repeats the connection's org so a domain also dies with its org.
CREATE TABLE sso_domains (
    domain        TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES sso_connections (id) ON DELETE CASCADE,
    org_id        TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sso_domains_by_connection ON sso_domains (connection_id);
"""

MIGRATIONS: tuple[str, ...] = (_V1_SESSIONS_AND_USERS, _V2_ORGS, _V3_SSO)
"""Migration scripts, oldest first; the schema version is the number applied."""


def split_statements(script: str) -> list[str]:
    """Cut ``script`` into single SQL statements.

    Needed because :meth:`sqlite3.Cursor.executescript` commits any open transaction
    first, which would let a migration step and its version bump land separately.
    :func:`sqlite3.complete_statement` decides where a statement ends, so semicolons
    inside string literals or trigger bodies do not cut it.
    """
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if _has_sql(pending):
                statements.append(pending.strip())
            pending = ""
    # The loop appended one ";" too many after the last piece.
    if _has_sql(pending[:-1]):
        raise ValueError("migration script ends with an incomplete statement")
    return statements


def _has_sql(text: str) -> bool:
    """Whether ``text`` holds more than whitespace, semicolons and ``--`` comments."""
    for line in text.splitlines():
        code = line.split("--", 1)[0].strip(" \t;")
        if code:
            return True
    return False
