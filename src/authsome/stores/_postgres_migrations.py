"""Schema migrations of :class:`~authsome.stores.postgres.PostgresStore`.

``MIGRATIONS[i]`` brings a schema from version ``i`` to ``i + 1``. The version lives
in the ``schema_version`` table of the store's schema, one row per component (this
store's is :data:`COMPONENT`), so other components may keep their tables in the same
schema. Every missing step is applied in one transaction together with its version
bump, under an advisory lock: processes opening one new schema at once apply each
step exactly once, and a schema is always at exactly one version.

The scripts are unqualified: they run with ``search_path`` set to the store's schema
for the length of the migration transaction only.

To change the schema, append a new script to ``MIGRATIONS``. Never edit or reorder a
released step: databases in the field have already run it.

Conventions: datetimes are ``timestamptz``; secrets are stored only as their hashes
(``*_hash`` columns). Constraints are named, because the store maps a violated
unique constraint's name to its :class:`~authsome.errors.AlreadyExists` message.
"""

from __future__ import annotations

__all__ = ["COMPONENT", "MIGRATIONS", "VERSION_TABLE"]

COMPONENT = "auth"
"""This store's row in the ``schema_version`` table."""

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    component TEXT PRIMARY KEY,
    version   INTEGER NOT NULL CHECK (version >= 0)
)
"""
"""Created before the first step; shared by every component using the schema."""

_V1_SESSIONS_AND_USERS = """
CREATE TABLE users (
    id            TEXT NOT NULL,
    tenant        TEXT NOT NULL,
    email         TEXT NOT NULL,
    name          TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    password_hash TEXT NOT NULL,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_tenant_email_key UNIQUE (tenant, email)
);

CREATE TABLE sessions (
    id                TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    tenant            TEXT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    access_expires_at TIMESTAMPTZ NOT NULL,
    revoked_at        TIMESTAMPTZ,
    -- The hash of the session's current access token: one per session, so a
    -- rotation overwrites it and the previous access token stops working.
    access_hash       TEXT NOT NULL,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_access_hash_key UNIQUE (access_hash),
    CONSTRAINT sessions_user_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX sessions_by_user ON sessions (user_id);

-- Every refresh token a session ever had: rotated ones stay (used) so that their
-- reuse can be detected and the session revoked.
CREATE TABLE refresh_tokens (
    hash       TEXT NOT NULL,
    session_id TEXT NOT NULL,
    used       BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT refresh_tokens_pkey PRIMARY KEY (hash),
    CONSTRAINT refresh_tokens_session_fkey FOREIGN KEY (session_id)
        REFERENCES sessions (id) ON DELETE CASCADE
);

CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE counters (
    key        TEXT NOT NULL,
    hits       BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT counters_pkey PRIMARY KEY (key)
);
"""

_V2_ORGS = """
CREATE TABLE orgs (
    id         TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    slug       TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT orgs_pkey PRIMARY KEY (id),
    CONSTRAINT orgs_tenant_slug_key UNIQUE (tenant, slug)
);

CREATE TABLE org_members (
    org_id     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT org_members_pkey PRIMARY KEY (org_id, user_id),
    CONSTRAINT org_members_org_fkey FOREIGN KEY (org_id)
        REFERENCES orgs (id) ON DELETE CASCADE,
    CONSTRAINT org_members_user_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

-- orgs_of(user): the primary key only serves lookups by org.
CREATE INDEX org_members_by_user ON org_members (user_id);
"""

_V3_CUSTOM_DOMAINS = """
-- A hostname belongs to at most one tenant, verified or not: the unique constraint
-- is what makes a claim exclusive across tenants, also between processes.
CREATE TABLE domains (
    id          TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    hostname    TEXT NOT NULL,
    token       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    verified_at TIMESTAMPTZ,
    CONSTRAINT domains_pkey PRIMARY KEY (id),
    CONSTRAINT domains_hostname_key UNIQUE (hostname)
);

CREATE INDEX domains_by_tenant ON domains (tenant, hostname);
"""

_V4_MFA = """
-- One factor per user and method; a pending (unconfirmed) enrolment is replaced by
-- the next one. ``secret`` is the TOTP seed: it must be read back to check codes, so
-- it cannot be hashed; it is AES-GCM sealed when the engine has a secret_key.
-- ``last_step`` is the last accepted TOTP time-step: a code is accepted only for a
-- greater step, which is what makes each code single-use.
CREATE TABLE mfa_factors (
    id           TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    method       TEXT NOT NULL,
    secret       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    confirmed_at TIMESTAMPTZ,
    last_step    BIGINT,
    CONSTRAINT mfa_factors_pkey PRIMARY KEY (id),
    CONSTRAINT mfa_factors_user_method_key UNIQUE (user_id, method),
    CONSTRAINT mfa_factors_user_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

CREATE TABLE mfa_recovery_codes (
    factor_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    CONSTRAINT mfa_recovery_codes_pkey PRIMARY KEY (factor_id, code_hash),
    CONSTRAINT mfa_recovery_codes_factor_fkey FOREIGN KEY (factor_id)
        REFERENCES mfa_factors (id) ON DELETE CASCADE
);

-- Sign-in tickets between the password and the second factor.
CREATE TABLE mfa_tickets (
    hash       TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT mfa_tickets_pkey PRIMARY KEY (hash),
    CONSTRAINT mfa_tickets_user_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX mfa_tickets_by_expiry ON mfa_tickets (expires_at);
"""

_V5_API_KEYS = """
-- owner_id is a user or an org id (owner_kind says which), so there is no foreign
-- key: the service checks the owner before it inserts. tenant is the owner's, copied
-- so that validating a key needs this one row.
CREATE TABLE api_keys (
    id           TEXT NOT NULL,
    lookup_id    TEXT NOT NULL,
    owner_kind   TEXT NOT NULL CHECK (owner_kind IN ('user', 'org')),
    owner_id     TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    name         TEXT NOT NULL,
    scopes       TEXT[] NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    secret_hash  TEXT NOT NULL,
    CONSTRAINT api_keys_pkey PRIMARY KEY (id),
    -- Validation looks keys up by the id part of the secret.
    CONSTRAINT api_keys_lookup_id_key UNIQUE (lookup_id)
);

CREATE INDEX api_keys_by_owner ON api_keys (owner_kind, owner_id, created_at);
"""

_V6_PASSKEYS = """
-- WebAuthn credentials; credential_id is base64url as browsers send it, unique
-- across tenants so that a sign-in finds exactly one credential.
CREATE TABLE passkeys (
    credential_id TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    tenant        TEXT NOT NULL,
    rp_id         TEXT NOT NULL,
    public_key    BYTEA NOT NULL,
    -- The authenticator's counter is an unsigned 32-bit number.
    sign_count    BIGINT NOT NULL,
    transports    TEXT[] NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ,
    CONSTRAINT passkeys_pkey PRIMARY KEY (credential_id),
    CONSTRAINT passkeys_sign_count_check CHECK (sign_count >= 0),
    CONSTRAINT passkeys_user_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX passkeys_by_user ON passkeys (user_id, created_at);

-- Pending single-use challenges, only as their SHA-256.
CREATE TABLE passkey_challenges (
    challenge_hash TEXT NOT NULL,
    ceremony       TEXT NOT NULL,
    user_id        TEXT,
    tenant         TEXT NOT NULL,
    rp_id          TEXT NOT NULL,
    origin         TEXT NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT passkey_challenges_pkey PRIMARY KEY (challenge_hash),
    CONSTRAINT passkey_challenges_ceremony_check
        CHECK (ceremony IN ('registration', 'authentication')),
    CONSTRAINT passkey_challenges_user_fkey FOREIGN KEY (user_id)
        REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX passkey_challenges_by_expiry ON passkey_challenges (expires_at);
"""

_V7_SSO = """
-- One row per SSO connection; OIDC rows fill issuer/client_id/scopes, SAML rows
-- entity_id/sso_url/x509_certificate. client_secret holds what the service gave
-- the store: a sealed (encrypted) token when secret_sealed, else clear text.
CREATE TABLE sso_connections (
    id               TEXT NOT NULL,
    org_id           TEXT NOT NULL,
    protocol         TEXT NOT NULL,
    issuer           TEXT,
    client_id        TEXT,
    scopes           TEXT[] NOT NULL,
    entity_id        TEXT,
    sso_url          TEXT,
    x509_certificate TEXT,
    client_secret    TEXT,
    secret_sealed    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT sso_connections_pkey PRIMARY KEY (id),
    CONSTRAINT sso_connections_protocol_check CHECK (protocol IN ('oidc', 'saml')),
    CONSTRAINT sso_connections_secret_check
        CHECK (client_secret IS NOT NULL OR NOT secret_sealed),
    CONSTRAINT sso_connections_org_fkey FOREIGN KEY (org_id)
        REFERENCES orgs (id) ON DELETE CASCADE
);

CREATE INDEX sso_connections_by_org ON sso_connections (org_id, created_at);

-- The primary key is the rule "one owner per e-mail domain" across the whole store:
-- of concurrent claims of one domain, in any process, exactly one insert succeeds.
CREATE TABLE sso_domains (
    domain        TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    position      INTEGER NOT NULL,
    CONSTRAINT sso_domains_pkey PRIMARY KEY (domain),
    CONSTRAINT sso_domains_connection_fkey FOREIGN KEY (connection_id)
        REFERENCES sso_connections (id) ON DELETE CASCADE
);

CREATE INDEX sso_domains_by_connection ON sso_domains (connection_id, position);
"""

_V8_PENDING_DOMAIN_CLAIMS = """
-- A claim nobody has proven must not block the real owner: several tenants may
-- claim one hostname, one claim per tenant and hostname, and only a VERIFIED
-- hostname is unique (the partial index makes the first verification win, also
-- between processes).
ALTER TABLE domains DROP CONSTRAINT domains_hostname_key;

ALTER TABLE domains ADD CONSTRAINT domains_tenant_hostname_key UNIQUE (tenant, hostname);

-- The unique constraint's index serves lookups by tenant now.
DROP INDEX domains_by_tenant;

CREATE UNIQUE INDEX domains_verified_hostname_key ON domains (hostname)
    WHERE verified_at IS NOT NULL;
"""

_V9_SSO_DOMAINS_PER_TENANT = """
-- An e-mail domain has one owner per tenant, not per schema: a connection in one
-- tenant listing a domain must not lock every other tenant out of it. The tenant
-- (the org's, which never changes) is copied so that (tenant, domain) is the key.
ALTER TABLE sso_domains ADD COLUMN tenant TEXT;

UPDATE sso_domains AS d SET tenant = o.tenant
    FROM sso_connections AS c JOIN orgs AS o ON o.id = c.org_id
    WHERE c.id = d.connection_id;

ALTER TABLE sso_domains ALTER COLUMN tenant SET NOT NULL;

ALTER TABLE sso_domains DROP CONSTRAINT sso_domains_pkey;

ALTER TABLE sso_domains ADD CONSTRAINT sso_domains_pkey PRIMARY KEY (tenant, domain);
"""

_V10_STORE_KEYS = """
-- Random keys the store keeps for itself (HMAC keys of throttle counters and
-- passkey decoys when the engine has no secret_key): one row per name, the first
-- insert wins, so every process sharing the schema derives the same keys.
CREATE TABLE store_keys (
    name TEXT NOT NULL,
    key  BYTEA NOT NULL,
    CONSTRAINT store_keys_pkey PRIMARY KEY (name)
);

-- Decoy allow-lists sample a real passkey of the tenant and relying party.
CREATE INDEX passkeys_by_tenant_rp ON passkeys (tenant, rp_id, credential_id COLLATE "C");
"""

_V11_IDLE_SESSIONS_AND_MFA_LOCKOUT = """
-- The idle timeout is measured from a session's last activity (sign-in, refresh,
-- and validations now and then). Sessions from before this step start their idle
-- time at the upgrade instead of all ending with it.
ALTER TABLE sessions ADD COLUMN last_seen_at TIMESTAMPTZ;

UPDATE sessions SET last_seen_at = GREATEST(created_at, now());

-- Wrong codes since the last right one, counted in the store so that every process
-- adds to one count: 100 lock the factor until a recovery code or an unlock.
ALTER TABLE mfa_factors ADD COLUMN failed_codes INTEGER NOT NULL DEFAULT 0;
"""

_V12_ONE_TIME_TOKENS = """
-- One-time tokens of the account journeys (e-mail verification, password reset,
-- ...): only the SHA-256 of a token is stored, bound to its purpose, user, tenant
-- and the address it was sent to. Consuming one is a single DELETE ... RETURNING.
CREATE TABLE one_time_tokens (
    hash       TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant     TEXT NOT NULL,
    email      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT one_time_tokens_pkey PRIMARY KEY (hash)
);

-- A new token of a purpose replaces the user's older ones of that purpose.
CREATE INDEX one_time_tokens_by_user ON one_time_tokens (user_id, purpose);

CREATE INDEX one_time_tokens_by_expiry ON one_time_tokens (expires_at);

-- When the user proved they read mail at their address (NULL: not yet).
ALTER TABLE users ADD COLUMN email_verified_at TIMESTAMPTZ;
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
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT identities_pkey PRIMARY KEY (tenant, provider, subject)
);

CREATE INDEX identities_by_user ON identities (user_id);

-- One-time tokens that belong to no user yet: the state of a sign-in at an identity
-- provider. Only the SHA-256 of a token is stored; its payload is sealed under a
-- key derived from the token itself, so the table alone opens nothing.
CREATE TABLE one_time_states (
    hash       TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT one_time_states_pkey PRIMARY KEY (hash)
);

CREATE INDEX one_time_states_by_expiry ON one_time_states (expires_at);

-- How a connection signs users in (client authentication, provisioning, MFA), as
-- JSON: settings with defaults, read and written by the stores' shared helpers.
ALTER TABLE sso_connections ADD COLUMN sign_in TEXT NOT NULL DEFAULT '{}';
"""

_V15_SOCIAL_PROVIDERS = """
-- A tenant's social sign-in providers (GitHub, Google, ...): one row per tenant and
-- provider. scopes is a JSON array, settings a JSON object of the non-secret options.
-- client_secret holds what the service gave the store (a client secret, or Apple's
-- private key): a sealed token when secret_sealed, else clear text.
CREATE TABLE social_providers (
    id            TEXT NOT NULL,
    tenant        TEXT NOT NULL,
    provider      TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    settings      TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    secret_sealed BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT social_providers_pkey PRIMARY KEY (id),
    CONSTRAINT social_providers_tenant_provider_key UNIQUE (tenant, provider)
);
"""

_V16_EMAIL_CODES_AND_SIGN_UP = """
-- E-mail codes and sign-up on first use. A code is short, so it is looked up by
-- the address it was sent to (tenant, email, purpose) and counts the attempts made
-- at it; a sign-up token has no user yet (user_id NULL) until it is used.
ALTER TABLE one_time_tokens ALTER COLUMN user_id DROP NOT NULL;

ALTER TABLE one_time_tokens ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;

CREATE INDEX one_time_tokens_by_address ON one_time_tokens (tenant, email, purpose);
"""

_V17_SAML_SIGN_IN = """
-- The ids of SAML assertions already used, per SSO connection, kept until the
-- assertion expires (plus the allowed clock skew) so a replayed one is refused. No
-- foreign key: an id outlives its connection by minutes at most.
CREATE TABLE saml_assertion_ids (
    connection_id TEXT NOT NULL,
    assertion_id  TEXT NOT NULL,
    keep_until    TIMESTAMPTZ NOT NULL,
    CONSTRAINT saml_assertion_ids_pkey PRIMARY KEY (connection_id, assertion_id)
);

CREATE INDEX saml_assertion_ids_by_expiry ON saml_assertion_ids (keep_until);

-- SAML: a second IdP signing certificate accepted during a rollover, and whether
-- responses the IdP sends unasked (IdP-initiated sign-in) are accepted.
ALTER TABLE sso_connections ADD COLUMN rollover_x509_certificate TEXT;

ALTER TABLE sso_connections ADD COLUMN allow_idp_initiated BOOLEAN NOT NULL DEFAULT false;
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
