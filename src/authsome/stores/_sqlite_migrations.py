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

_V3_CUSTOM_DOMAINS = """
-- A hostname belongs to at most one tenant, verified or not: the UNIQUE constraint
-- is what makes a claim exclusive across tenants, also between processes.
CREATE TABLE domains (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    hostname    TEXT NOT NULL UNIQUE,
    token       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    verified_at INTEGER
);

CREATE INDEX domains_by_tenant ON domains (tenant, hostname);
"""


_V4_MFA = """
-- One factor per user and method; a pending (unconfirmed) enrolment is replaced
-- by the next one. ``secret`` is the TOTP seed: it must be read back to check
-- codes, so it cannot be hashed; it is AES-GCM sealed when the engine has a
-- secret_key. ``last_step`` is the last accepted TOTP time-step: a code is
-- accepted only for a greater step, which is what makes each code single-use.
CREATE TABLE mfa_factors (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    method       TEXT NOT NULL,
    secret       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER,
    last_step    INTEGER,
    UNIQUE (user_id, method)
);

CREATE TABLE mfa_recovery_codes (
    factor_id TEXT NOT NULL REFERENCES mfa_factors (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    PRIMARY KEY (factor_id, code_hash)
) WITHOUT ROWID;

-- Sign-in tickets between the password and the second factor.
CREATE TABLE mfa_tickets (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE INDEX mfa_tickets_by_expiry ON mfa_tickets (expires_at);
"""


_V5_API_KEYS = """
-- owner_id is a user or an org id (owner_kind says which), so there is no foreign
-- key: the service checks the owner before it inserts. tenant is the owner's, copied
-- so that validating a key needs this one row. scopes is a JSON array of strings.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    lookup_id    TEXT NOT NULL,
    owner_kind   TEXT NOT NULL CHECK (owner_kind IN ('user', 'org')),
    owner_id     TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    secret_hash  TEXT NOT NULL
);

-- Validation looks keys up by the id part of the secret.
CREATE UNIQUE INDEX api_keys_by_lookup_id ON api_keys (lookup_id);

CREATE INDEX api_keys_by_owner ON api_keys (owner_kind, owner_id, created_at);
"""

_V6_PASSKEYS = """
-- WebAuthn credentials; credential_id is base64url as browsers send it, unique
-- across tenants so that a sign-in finds exactly one credential.
CREATE TABLE passkeys (
    credential_id TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant        TEXT NOT NULL,
    rp_id         TEXT NOT NULL,
    public_key    BLOB NOT NULL,
    sign_count    INTEGER NOT NULL CHECK (sign_count >= 0),
    transports    TEXT NOT NULL, -- JSON array of strings
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
) WITHOUT ROWID;

CREATE INDEX passkeys_by_user ON passkeys (user_id);

-- Pending single-use challenges, only as their SHA-256.
CREATE TABLE passkey_challenges (
    challenge_hash TEXT PRIMARY KEY,
    ceremony       TEXT NOT NULL CHECK (ceremony IN ('registration', 'authentication')),
    user_id        TEXT REFERENCES users (id) ON DELETE CASCADE,
    tenant         TEXT NOT NULL,
    rp_id          TEXT NOT NULL,
    origin         TEXT NOT NULL,
    expires_at     INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX passkey_challenges_by_expiry ON passkey_challenges (expires_at);
"""

_V7_SSO = """
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

_V8_PENDING_DOMAIN_CLAIMS = """
-- A claim nobody has proven must not block the real owner: several tenants may
-- claim one hostname, one claim per tenant and hostname, and only a VERIFIED
-- hostname is unique (the partial index makes the first verification win, also
-- between processes). SQLite cannot drop a column's UNIQUE, so the table is rebuilt.
CREATE TABLE domains_v8 (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    hostname    TEXT NOT NULL,
    token       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    verified_at INTEGER
);

INSERT INTO domains_v8 (id, tenant, hostname, token, created_at, verified_at)
    SELECT id, tenant, hostname, token, created_at, verified_at FROM domains;

DROP TABLE domains;

ALTER TABLE domains_v8 RENAME TO domains;

CREATE UNIQUE INDEX domains_by_tenant_hostname ON domains (tenant, hostname);

CREATE UNIQUE INDEX domains_verified_hostname ON domains (hostname)
    WHERE verified_at IS NOT NULL;
"""

_V9_SSO_DOMAINS_PER_TENANT = """
-- An e-mail domain has one owner per tenant, not per store: a connection in one
-- tenant listing a domain must not lock every other tenant out of it. The tenant
-- (the org's, which never changes) is copied so that (tenant, domain) is the key.
CREATE TABLE sso_domains_v9 (
    tenant        TEXT NOT NULL,
    domain        TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES sso_connections (id) ON DELETE CASCADE,
    org_id        TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    PRIMARY KEY (tenant, domain)
) WITHOUT ROWID;

INSERT INTO sso_domains_v9 (tenant, domain, connection_id, org_id, position)
    SELECT orgs.tenant, d.domain, d.connection_id, d.org_id, d.position
    FROM sso_domains AS d JOIN orgs ON orgs.id = d.org_id;

DROP TABLE sso_domains;

ALTER TABLE sso_domains_v9 RENAME TO sso_domains;

CREATE INDEX sso_domains_by_connection ON sso_domains (connection_id);
"""

_V10_STORE_KEYS = """
-- Random keys the store keeps for itself (HMAC keys of throttle counters and
-- passkey decoys when the engine has no secret_key): one row per name, the first
-- insert wins, so every process sharing the file derives the same keys.
CREATE TABLE store_keys (
    name TEXT PRIMARY KEY,
    key  BLOB NOT NULL
) WITHOUT ROWID;

-- Decoy allow-lists sample a real passkey of the tenant and relying party.
CREATE INDEX passkeys_by_tenant_rp ON passkeys (tenant, rp_id, credential_id);
"""

_V11_IDLE_SESSIONS_AND_MFA_LOCKOUT = """
-- The idle timeout is measured from a session's last activity (sign-in, refresh,
-- and validations now and then). Sessions from before this step start their idle
-- time at the upgrade instead of all ending with it.
ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;

UPDATE sessions
    SET last_seen_at = MAX(created_at, CAST(strftime('%s', 'now') AS INTEGER) * 1000000);

-- Wrong codes since the last right one, counted in the store so that every process
-- adds to one count: 100 lock the factor until a recovery code or an unlock.
ALTER TABLE mfa_factors ADD COLUMN failed_codes INTEGER NOT NULL DEFAULT 0;
"""

_V12_ONE_TIME_TOKENS = """
-- One-time tokens of the account journeys (e-mail verification, password reset,
-- ...): only the SHA-256 of a token is stored, bound to its purpose, user, tenant
-- and the address it was sent to. Consuming one is a single DELETE ... RETURNING.
CREATE TABLE one_time_tokens (
    hash       TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant     TEXT NOT NULL,
    email      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- A new token of a purpose replaces the user's older ones of that purpose.
CREATE INDEX one_time_tokens_by_user ON one_time_tokens (user_id, purpose);

CREATE INDEX one_time_tokens_by_expiry ON one_time_tokens (expires_at);

-- When the user proved they read mail at their address (NULL: not yet).
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;
"""

_V13_SESSION_DEVICES = """
-- What the application said about the client at sign-in, for the device list
-- (sessions.list): its address and User-Agent, untrusted text. NULL: not given.
ALTER TABLE sessions ADD COLUMN ip TEXT;

ALTER TABLE sessions ADD COLUMN user_agent TEXT;
"""

_V14_SSO_SIGN_IN = """
-- Accounts at external identity providers: the provider's subject (an SSO
-- connection's id, or a social provider's name, with the IdP's "sub") is the stable
-- link to a user of the tenant, never the e-mail address.
CREATE TABLE identities (
    tenant     TEXT NOT NULL,
    provider   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, provider, subject)
) WITHOUT ROWID;

CREATE INDEX identities_by_user ON identities (user_id);

-- One-time tokens that belong to no user yet: the state of a sign-in at an identity
-- provider. Only the SHA-256 of a token is stored; its payload is sealed under a
-- key derived from the token itself, so the table alone opens nothing.
CREATE TABLE one_time_states (
    hash       TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX one_time_states_by_expiry ON one_time_states (expires_at);

-- How a connection signs users in (client authentication, provisioning, MFA), as
-- JSON: settings with defaults, read and written by the stores' shared helpers.
ALTER TABLE sso_connections ADD COLUMN sign_in TEXT NOT NULL DEFAULT '{}';
"""

_V15_SOCIAL_PROVIDERS = """
-- A tenant's social sign-in providers (GitHub, Google, ...): one row per tenant and
-- provider. scopes is a JSON array, settings a JSON object of the non-secret options.
-- client_secret holds what the service gave the store (a client secret, or Apple's
-- private key): a sealed token when secret_sealed = 1, else clear text.
CREATE TABLE social_providers (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    provider      TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    settings      TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    secret_sealed INTEGER NOT NULL DEFAULT 0 CHECK (secret_sealed IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (tenant, provider)
);
"""

_V16_EMAIL_CODES_AND_SIGN_UP = """
-- E-mail codes and sign-up on first use. A code is short, so it is looked up by
-- the address it was sent to (tenant, email, purpose) and counts the attempts made
-- at it; a sign-up token has no user yet (user_id NULL) until it is used. SQLite
-- cannot drop a NOT NULL, so the table is rebuilt with its indexes.
CREATE TABLE one_time_tokens_v13 (
    hash       TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    user_id    TEXT REFERENCES users (id) ON DELETE CASCADE,
    tenant     TEXT NOT NULL,
    email      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

INSERT INTO one_time_tokens_v13
    (hash, purpose, user_id, tenant, email, created_at, expires_at)
    SELECT hash, purpose, user_id, tenant, email, created_at, expires_at
    FROM one_time_tokens;

DROP TABLE one_time_tokens;

ALTER TABLE one_time_tokens_v13 RENAME TO one_time_tokens;

CREATE INDEX one_time_tokens_by_user ON one_time_tokens (user_id, purpose);

CREATE INDEX one_time_tokens_by_expiry ON one_time_tokens (expires_at);

CREATE INDEX one_time_tokens_by_address ON one_time_tokens (tenant, email, purpose);
"""

_V17_SAML_SIGN_IN = """
-- The ids of SAML assertions already used, per SSO connection, kept until the
-- assertion expires (plus the allowed clock skew) so a replayed one is refused. No
-- foreign key: an id outlives its connection by minutes at most.
CREATE TABLE saml_assertion_ids (
    connection_id TEXT NOT NULL,
    assertion_id  TEXT NOT NULL,
    keep_until    INTEGER NOT NULL,
    PRIMARY KEY (connection_id, assertion_id)
) WITHOUT ROWID;

CREATE INDEX saml_assertion_ids_by_expiry ON saml_assertion_ids (keep_until);

-- SAML: a second IdP signing certificate accepted during a rollover, and whether
-- responses the IdP sends unasked (IdP-initiated sign-in) are accepted.
ALTER TABLE sso_connections ADD COLUMN rollover_x509_certificate TEXT;

ALTER TABLE sso_connections ADD COLUMN allow_idp_initiated INTEGER NOT NULL DEFAULT 0;
"""

MIGRATIONS: tuple[str, ...] = (
    _V1_SESSIONS_AND_USERS,
    _V2_ORGS,
    _V3_CUSTOM_DOMAINS,
    _V4_MFA,
    _V5_API_KEYS,
    _V6_PASSKEYS,
    _V7_SSO,
    _V8_PENDING_DOMAIN_CLAIMS,
    _V9_SSO_DOMAINS_PER_TENANT,
    _V10_STORE_KEYS,
    _V11_IDLE_SESSIONS_AND_MFA_LOCKOUT,
    _V12_ONE_TIME_TOKENS,
    _V13_SESSION_DEVICES,
    _V14_SSO_SIGN_IN,
    _V15_SOCIAL_PROVIDERS,
    _V16_EMAIL_CODES_AND_SIGN_UP,
    _V17_SAML_SIGN_IN,
)
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
