"""The Store Protocol: everything the auth engine persists.

Every method is atomic on its own: it either fully happens or raises and leaves
nothing behind. Stores hold only hashes of secrets. Datetimes are timezone-aware
UTC on the way in and out.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol, runtime_checkable

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
    PasskeyChallenge,
    RefreshOutcome,
    Session,
    SocialProviderInfo,
    SSOConnectionInfo,
    StoredApiKey,
    StoredSecret,
    User,
)

__all__ = ["Counter", "Store"]


Counter = tuple[int, datetime]
"""A throttle counter: (hits, expires_at)."""


@runtime_checkable
class Store(Protocol):
    """Persistence of the auth engine. Implementations must be thread-safe."""

    # -- units of work -----------------------------------------------------------
    def atomic(self) -> AbstractContextManager[None]:
        """A block whose calls (by this thread) are one transaction: one durable
        commit when it ends, so an operation that writes several rows pays for one.

        The write locks the calls take are held until the block ends, so racing
        blocks touching one row run one after the other. If the block raises, a
        durable store rolls back everything it wrote (the memory store keeps it: it
        has nothing to undo from); a call that raises inside it must end the block,
        since PostgreSQL refuses a transaction's later statements after a failed one.
        Blocks nest: an inner one joins the outer. Keep slow work (password hashing,
        network calls) outside: the block holds SQLite's one write lock.
        """
        ...

    # -- users -----------------------------------------------------------------
    def create_user(self, user: User, password_hash: str) -> None:
        """Insert ``user``; raise :class:`~authsome.errors.AlreadyExists` when
        ``(user.tenant, user.email)`` or ``user.id`` is taken. A new user's address
        is unverified (``email_verified_at`` is not stored: see
        :meth:`mark_email_verified`)."""
        ...

    def get_user(self, user_id: str) -> User | None:
        """The user with this id, or ``None``."""
        ...

    def find_user_by_email(self, tenant: str, email: str) -> User | None:
        """The user with this (already normalized) e-mail in ``tenant``, or ``None``."""
        ...

    def get_password_hash(self, user_id: str) -> str | None:
        """The stored password hash of the user, or ``None``."""
        ...

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        """Replace the stored password hash (rehash on login)."""
        ...

    def mark_email_verified(self, user_id: str, email: str, now: datetime) -> User | None:
        """Record that the user proved ``email`` is theirs and return the user as
        stored: ``email_verified_at`` is set to ``now`` unless it is set already (the
        first time is kept). ``None`` and no change when the user is unknown or their
        address is no longer ``email``."""
        ...

    def change_user_email(
        self, user_id: str, old_email: str, new_email: str, now: datetime
    ) -> User | None:
        """Replace the user's address ``old_email`` by ``new_email`` (already
        normalized), verified at ``now``, and return the user as stored. ``None`` and
        no change when the user is unknown or their address is no longer
        ``old_email``; :class:`~authsome.errors.AlreadyExists` and no change when
        another user of the tenant has ``new_email``. One atomic step."""
        ...

    # -- one-time tokens -------------------------------------------------------
    def create_one_time_token(self, token_hash: str, token: OneTimeToken, now: datetime) -> None:
        """Store a one-time token by its hash, in one transaction with the deletion of
        every other token of the same user and purpose (a new token invalidates the
        older ones) and of every expired token (``expires_at <= now``) of anyone.

        A token whose ``user_id`` is ``""`` (sign-up: the address has no account
        yet) replaces instead the other user-less tokens of its purpose, tenant and
        address.

        ``token.tenant`` must be the user's tenant. Raise
        :class:`~authsome.errors.StoreError` when the user is unknown,
        :class:`~authsome.errors.AlreadyExists` when the hash is taken; nothing is
        written then.
        """
        ...

    def consume_one_time_token(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeToken | None:
        """Delete the live token with this hash, ``purpose`` and ``tenant`` and
        return what it was bound to.

        ``None`` and no change when there is none: unknown hash, another purpose or
        tenant, or expired (``expires_at <= now``). One atomic step: of concurrent
        calls with one hash, across processes, exactly one gets the token.
        """
        ...

    def attempt_one_time_code(
        self,
        code_hash: str,
        purpose: str,
        tenant: str,
        email: str,
        now: datetime,
        max_attempts: int,
    ) -> OneTimeToken | None:
        """One attempt at the live tokens of ``purpose`` sent to ``email`` in
        ``tenant`` (an e-mail code: short, so found by its address, not its hash).

        In one transaction: each such token with fewer than ``max_attempts``
        attempts counts one more; if the one with hash ``code_hash`` was counted, it
        is deleted and returned. ``None`` otherwise (the writes of the count stay).
        Atomic across processes: racing attempts never count past
        ``max_attempts``, and of racing right attempts exactly one gets the token.
        """
        ...

    def find_one_time_token(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeToken | None:
        """What the live token with this hash, ``purpose`` and ``tenant`` is bound
        to, leaving it in place; ``None`` as :meth:`consume_one_time_token` would
        answer it. A read only: a journey checks its input against the token's user
        before it uses the token up."""
        ...

    def delete_one_time_token(self, token_hash: str) -> bool:
        """Delete the token (a message that could not be sent); whether it existed."""
        ...

    def delete_user_one_time_tokens(self, user_id: str) -> int:
        """Delete every one-time token of the user, of every purpose; how many."""
        ...

    def create_one_time_state(self, token_hash: str, state: OneTimeState, now: datetime) -> None:
        """Store a user-less one-time token by its hash, in one transaction with the
        deletion of every expired one (``expires_at <= now``).
        :class:`~authsome.errors.AlreadyExists` when the hash is taken."""
        ...

    def consume_one_time_state(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeState | None:
        """Delete the live user-less token with this hash, ``purpose`` and ``tenant``
        and return it; ``None`` and no change otherwise (unknown, another purpose or
        tenant, expired). Atomic: of concurrent calls exactly one gets it."""
        ...

    # -- identities at external providers --------------------------------------
    def create_identity(self, identity: Identity) -> None:
        """Link an account at a provider to a user.
        :class:`~authsome.errors.AlreadyExists` when ``(tenant, provider, subject)``
        is linked already; :class:`~authsome.errors.StoreError` for an unknown user."""
        ...

    def find_identity(self, tenant: str, provider: str, subject: str) -> Identity | None:
        """The link of this provider account in ``tenant``, or ``None``."""
        ...

    def list_identities(self, user_id: str) -> list[Identity]:
        """The user's links, oldest first."""
        ...

    def delete_identity(self, user_id: str, provider: str, subject: str) -> bool:
        """Unlink the user's account at a provider; whether it was linked."""
        ...

    # -- sessions --------------------------------------------------------------
    def create_session(self, session: Session, access_hash: str, refresh_hash: str) -> None:
        """Insert a session with the hashes of its first access and refresh tokens
        (a ``last_seen_at`` of ``None`` is stored as ``created_at``).

        The user must exist (:class:`~authsome.errors.StoreError` otherwise)."""
        ...

    def get_session(self, session_id: str) -> Session | None:
        """The session with this id (revoked or not), or ``None``."""
        ...

    def find_session_by_access_hash(self, access_hash: str) -> Session | None:
        """The session whose *current* access token hashes to ``access_hash``."""
        ...

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
        """Exchange a refresh token, atomically.

        * unknown hash, or its session revoked or past ``expires_at``, or of another
          tenant than ``tenant`` (when given), or last active at or before
          ``idle_since`` (when given) → ``INVALID``, and nothing changes;
        * a hash already rotated before → revoke the session (``revoked_at=now``)
          and return ``REUSED`` with the revoked session;
        * otherwise mark it used, make ``new_refresh_hash`` the live refresh token and
          ``new_access_hash`` the current access token (the old access token stops
          working), set ``access_expires_at``, set ``last_seen_at=now``, return
          ``ROTATED`` with the session.

        Of two concurrent calls with the same hash exactly one can rotate.
        """
        ...

    def touch_session(self, session_id: str, at: datetime) -> None:
        """Set the session's ``last_seen_at`` to ``at`` unless it is later already (it
        never moves back, whatever order concurrent writers arrive in). No error for
        an unknown session."""
        ...

    def revoke_session(self, session_id: str, now: datetime) -> bool:
        """Revoke one live session; ``False`` if it does not exist, was revoked
        already or is past its ``expires_at`` (it ended by itself)."""
        ...

    def revoke_user_session(self, session_id: str, user_id: str, now: datetime) -> bool:
        """:meth:`revoke_session` for a session of ``user_id`` only: ``False`` and no
        change for another user's session. One atomic step."""
        ...

    def list_user_sessions(self, user_id: str, now: datetime) -> list[Session]:
        """The user's live sessions (not revoked, before ``expires_at``), newest
        first (by ``created_at``, then ``id``)."""
        ...

    def revoke_user_sessions(self, user_id: str, now: datetime) -> int:
        """Revoke every live session (not revoked, not expired) of the user; return
        how many were revoked."""
        ...

    def revoke_other_user_sessions(self, user_id: str, keep_session_id: str, now: datetime) -> int:
        """Revoke every live session of the user except ``keep_session_id`` (a
        password change signs out the other devices); return how many. One atomic
        step."""
        ...

    def prune_sessions(
        self, ended_before: datetime, idle_since: datetime | None, limit: int
    ) -> int:
        """Delete at most ``limit`` sessions (with their refresh tokens) that ended at
        or before ``ended_before``: revoked then, past ``expires_at`` then, or (when
        ``idle_since`` is given) last active at or before ``idle_since``. Return how
        many. Live sessions and ones that ended later stay."""
        ...

    # -- throttle counters -----------------------------------------------------
    def hit_counter(self, key: str, now: datetime, ttl_seconds: int) -> Counter:
        """Count one hit on ``key`` and return ``(hits, expires_at)``.

        A missing or expired counter starts anew at 1, expiring ``ttl_seconds`` after
        ``now``; a live one is incremented and keeps its expiry. Atomic.
        """
        ...

    def get_counter(self, key: str, now: datetime) -> Counter | None:
        """The live counter under ``key``, or ``None`` if absent or expired."""
        ...

    def delete_counter(self, key: str) -> None:
        """Forget ``key`` (no error when absent)."""
        ...

    def release_counter(self, key: str, now: datetime) -> None:
        """Take back one hit from the live counter under ``key``, never below 0;
        its expiry is kept. No effect on an absent or expired counter. Atomic.

        Lets a caller count an attempt *before* it is tried (so racing attempts
        cannot all slip under the limit) and give the hit back when it succeeded.
        """
        ...

    def prune_counters(self, now: datetime) -> int:
        """Delete every counter expired at ``now``; return how many. Live ones stay."""
        ...

    # -- keys kept in the store ------------------------------------------------
    def keep_store_key(self, name: str, candidate: bytes) -> bytes:
        """The random key kept under ``name``: the first call stores ``candidate``,
        every later one returns the stored key and ignores its own candidate.

        Atomic across threads and processes: callers racing on a new store all get
        the one key that was stored first.
        """
        ...

    # -- orgs ------------------------------------------------------------------
    def create_org(self, org: Org, owner: Membership) -> None:
        """Insert ``org`` together with its first membership, in one transaction.

        ``owner`` must be a membership of ``org`` (``owner.org_id == org.id``) with
        role ``OWNER``, else ``ValueError`` and nothing is written. Raise
        :class:`~authsome.errors.AlreadyExists` when ``org.id`` or
        ``(org.tenant, org.slug)`` is taken, :class:`~authsome.errors.StoreError`
        when the owner user does not exist; either way no org row remains.
        """
        ...

    def get_org(self, org_id: str) -> Org | None:
        """The org with this id, or ``None``."""
        ...

    def find_org_by_slug(self, tenant: str, slug: str) -> Org | None:
        """The org with this slug in ``tenant``, or ``None``."""
        ...

    def add_membership(self, membership: Membership) -> None:
        """Insert a membership; :class:`~authsome.errors.AlreadyExists` when the user
        is a member of that org already (whatever the role),
        :class:`~authsome.errors.StoreError` when the org or the user does not exist."""
        ...

    def get_membership(self, org_id: str, user_id: str) -> Membership | None:
        """The user's membership of the org, or ``None``."""
        ...

    def list_memberships(self, org_id: str) -> list[Membership]:
        """The org's memberships, oldest first (ties by ``user_id``); ``[]`` for an
        unknown org."""
        ...

    def list_user_orgs(self, user_id: str) -> list[Org]:
        """The orgs the user is a member of, oldest org first (ties by id)."""
        ...

    def remove_membership(self, org_id: str, user_id: str) -> Membership | None:
        """Delete the membership and return it as it was; ``None`` if there is none.

        Raise :class:`~authsome.errors.Conflict` and delete nothing when it is the
        org's last owner. The check and the delete are one atomic step: of two
        concurrent calls removing the last two owners, at most one succeeds.
        """
        ...

    def set_membership_role(self, org_id: str, user_id: str, role: OrgRole) -> Membership | None:
        """Change the member's role and return the updated membership; ``None`` if
        the user is not a member.

        Raise :class:`~authsome.errors.Conflict` and change nothing when this would
        demote the org's last owner; atomic like :meth:`remove_membership`.
        """
        ...

    # -- custom domains --------------------------------------------------------
    def create_domain(self, domain: Domain, token: str) -> None:
        """Insert ``domain`` (a pending claim) with its DNS challenge ``token``.

        Several tenants may claim one hostname while none has verified it, so a
        claim nobody can prove never blocks the real owner. Raise
        :class:`~authsome.errors.AlreadyExists` and write nothing when
        ``domain.tenant`` holds a domain with this hostname already (pending or
        verified), when a domain of another tenant with this hostname is verified,
        or when ``domain.id`` is taken."""
        ...

    def get_domain(self, domain_id: str) -> Domain | None:
        """The domain with this id, or ``None``."""
        ...

    def get_domain_token(self, domain_id: str) -> str | None:
        """The challenge token stored with the domain, or ``None`` if it is unknown."""
        ...

    def find_domain_by_hostname(self, hostname: str) -> Domain | None:
        """The VERIFIED domain (any tenant) whose stored hostname equals
        ``hostname`` exactly, or ``None``; pending claims are never returned.
        At most one domain per hostname is verified, so the answer is unique."""
        ...

    def list_domains(self, tenant: str) -> list[Domain]:
        """Every domain of ``tenant``, ordered by hostname."""
        ...

    def mark_domain_verified(self, domain_id: str, now: datetime) -> Domain | None:
        """Set ``verified_at = now`` unless it is set already (the first verification
        time is kept); return the stored domain, or ``None`` if it is unknown.

        The first claim of a hostname to be verified wins: raise
        :class:`~authsome.errors.AlreadyExists` and change nothing when another
        domain with this hostname is verified already (atomically, also between
        processes). Other pending claims of the hostname are kept, unverifiable."""
        ...

    def delete_domain(self, domain_id: str) -> bool:
        """Delete the domain and its token; ``False`` if it did not exist."""
        ...

    def delete_pending_domains(self, created_before: datetime) -> int:
        """Delete every pending (unverified) claim, of any tenant, created at or
        before ``created_before``; return how many. Verified domains stay."""
        ...

    # -- mfa -------------------------------------------------------------------
    def create_mfa_factor(self, factor: MfaFactor, secret: str) -> None:
        """Insert an unconfirmed ``factor`` with its ``secret`` (as the engine keeps it
        at rest: sealed when it has a key), atomically replacing (deleting) the user's
        pending factor of the same method.

        A user has at most one factor per method: raise
        :class:`~authsome.errors.AlreadyExists` when a *confirmed* one exists (nothing
        changes then), :class:`~authsome.errors.StoreError` when the user is unknown.
        """
        ...

    def get_mfa_factor(self, factor_id: str) -> MfaFactor | None:
        """The factor with this id (pending or confirmed), or ``None``."""
        ...

    def get_mfa_secret(self, factor_id: str) -> str | None:
        """The secret stored with the factor, exactly as given, or ``None``."""
        ...

    def list_mfa_secrets(self, after: str, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` ``(factor id, stored secret)`` pairs whose ids sort after
        ``after`` (bytewise; ``""`` starts at the first), in that order: a walk over
        every secret in pages, for re-sealing them."""
        ...

    def replace_mfa_secret(self, factor_id: str, expected: str, secret: str) -> bool:
        """Compare-and-set the factor's stored secret: replace it with ``secret`` only
        if it still is ``expected``; whether it was replaced."""
        ...

    def list_mfa_factors(self, user_id: str) -> list[MfaFactor]:
        """The user's factors, pending ones included, oldest first."""
        ...

    def confirm_mfa_factor(
        self, factor_id: str, step: int, recovery_hashes: Sequence[str], now: datetime
    ) -> bool:
        """Confirm a pending factor, atomically: set ``confirmed_at=now``, make
        ``step`` its last used time-step and store ``recovery_hashes`` as its
        recovery codes (replacing any).

        ``False`` (and no change) if the factor is unknown, confirmed already or
        ``step`` is not greater than its last used step. Of concurrent calls at most
        one returns ``True``.
        """
        ...

    def use_totp_step(self, factor_id: str, step: int) -> bool:
        """Record ``step`` as the factor's last used time-step if none is stored or
        the stored one is smaller; ``True`` if recorded.

        One conditional update: of concurrent calls with the same step exactly one
        returns ``True``, so a one-time code is accepted at most once.
        """
        ...

    def consume_recovery_code(self, factor_id: str, code_hash: str) -> bool:
        """Delete the factor's recovery code with this hash; ``True`` if it was there.
        Of concurrent calls with one hash exactly one returns ``True``."""
        ...

    def count_recovery_codes(self, factor_id: str) -> int:
        """How many unused recovery codes the factor has."""
        ...

    def delete_mfa_factor(self, factor_id: str) -> bool:
        """Delete the factor and its recovery codes; ``False`` if it did not exist."""
        ...

    def create_mfa_ticket(
        self, ticket_hash: str, user_id: str, expires_at: datetime, now: datetime
    ) -> None:
        """Store a sign-in ticket (by hash) with no attempts used; expired tickets of
        any user may be purged in the same call. The user must exist
        (:class:`~authsome.errors.StoreError` otherwise)."""
        ...

    def attempt_mfa_ticket(
        self, ticket_hash: str, now: datetime, max_attempts: int, *, tenant: str | None = None
    ) -> str | None:
        """Count one attempt on a live ticket and return its user id.

        ``None`` (and no change) if the ticket is unknown, consumed, expired
        (``expires_at <= now``), has ``max_attempts`` attempts counted already, or
        (when ``tenant`` is given) belongs to a user of another tenant.
        Atomic: however many calls race, at most ``max_attempts`` ever get the user id.
        """
        ...

    def consume_mfa_ticket(self, ticket_hash: str) -> bool:
        """Delete the ticket; ``True`` if it existed. Of concurrent calls exactly one
        returns ``True``."""
        ...

    def delete_user_mfa_tickets(self, user_id: str) -> int:
        """Delete every sign-in ticket of the user; return how many there were."""
        ...

    def count_mfa_failure(self, factor_id: str) -> int:
        """Add one to the factor's ``failed_codes`` and return the new count (0 for an
        unknown factor). One atomic increment: of N concurrent calls, across
        processes, each gets a different count and the last one N more."""
        ...

    def reset_mfa_failures(self, factor_id: str) -> bool:
        """Set the factor's ``failed_codes`` to 0; ``True`` if it was above 0."""
        ...

    # -- api keys --------------------------------------------------------------
    def create_api_key(self, key: ApiKey, secret_hash: str) -> None:
        """Insert ``key`` with the SHA-256 of its secret; raise
        :class:`~authsome.errors.AlreadyExists` when ``key.id`` or ``key.lookup_id``
        is taken (nothing written). The owner is not checked here: the service
        resolves it first."""
        ...

    def get_api_key(self, key_id: str) -> ApiKey | None:
        """The key with this id (revoked or expired included), or ``None``."""
        ...

    def find_api_key_by_lookup_id(self, lookup_id: str) -> StoredApiKey | None:
        """The key whose ``lookup_id`` is this one, with its secret hash, or ``None``.

        The one lookup on the validation path: it must be served by an index."""
        ...

    def list_api_keys(self, owner_kind: ApiKeyOwnerKind, owner_id: str) -> list[ApiKey]:
        """Every key of this owner (revoked and expired included), oldest first;
        ties are broken by id."""
        ...

    def revoke_api_key(self, key_id: str, now: datetime) -> bool:
        """Set ``revoked_at=now``; ``False`` if the key is unknown or revoked already."""
        ...

    def touch_api_key(self, key_id: str, at: datetime) -> None:
        """Set ``last_used_at`` to ``at`` unless it is later already (it never moves
        back, whatever order concurrent writers arrive in). No error for an unknown key."""
        ...

    # -- passkeys --------------------------------------------------------------
    def create_passkey_challenge(self, challenge: PasskeyChallenge, now: datetime) -> None:
        """Insert a pending challenge; challenges expired at ``now`` are purged first
        (so pending rows stay bounded). :class:`~authsome.errors.AlreadyExists` when
        ``challenge_hash`` is pending already, :class:`~authsome.errors.StoreError`
        when ``user_id`` is set and names no user."""
        ...

    def consume_passkey_challenge(
        self, challenge_hash: str, now: datetime
    ) -> PasskeyChallenge | None:
        """Delete the challenge and return it if it was live at ``now``.

        Returns ``None`` for an unknown, already consumed or expired challenge (an
        expired one is deleted too). Atomic: of two concurrent calls with one hash
        at most one gets the challenge.
        """
        ...

    def create_passkey(self, passkey: Passkey) -> None:
        """Insert a passkey; :class:`~authsome.errors.AlreadyExists` when its
        ``credential_id`` is registered already (to anyone),
        :class:`~authsome.errors.StoreError` when the user does not exist."""
        ...

    def get_passkey(self, credential_id: str) -> Passkey | None:
        """The passkey with this credential id, or ``None``."""
        ...

    def list_user_passkeys(self, user_id: str) -> list[Passkey]:
        """The user's passkeys, oldest first (ties by credential id)."""
        ...

    def sample_passkey(self, tenant: str, rp_id: str, point: str) -> Passkey | None:
        """A passkey of ``tenant`` for ``rp_id`` picked by ``point``: the one with the
        smallest credential id not below ``point`` (bytewise), else the smallest of
        all; ``None`` when there is none. An index lookup, not a scan."""
        ...

    def update_passkey_sign_count(
        self, credential_id: str, expected: int, new: int, now: datetime
    ) -> bool:
        """Compare-and-set the sign count and set ``last_used_at = now``.

        Changes the row only if its sign count is still ``expected``; returns whether
        it did. So of two concurrent sign-ins that verified against one count, only
        one is accepted.
        """
        ...

    def delete_passkey(self, user_id: str, credential_id: str) -> bool:
        """Delete the user's passkey; ``False`` if the user has none with this id."""
        ...

    # -- sso -------------------------------------------------------------------
    def create_sso_connection(
        self, connection: SSOConnectionInfo, client_secret: StoredSecret | None
    ) -> None:
        """Insert an SSO connection with its (already sealed or clear) client secret.

        ``connection.has_client_secret`` must say whether ``client_secret`` is given
        and ``connection.domains`` must not repeat a domain, else ``ValueError`` (a
        caller's bug). Raise :class:`~authsome.errors.AlreadyExists` when the id is
        taken or any of the domains belongs to another connection in the org's
        tenant (one owner per e-mail domain and tenant; other tenants may list the
        same domain), :class:`~authsome.errors.StoreError` when the org does not
        exist. Either way nothing is written.
        """
        ...

    def update_sso_connection(
        self, connection: SSOConnectionInfo, client_secret: StoredSecret | None
    ) -> SSOConnectionInfo | None:
        """Replace the settings, domains and secret of the connection with
        ``connection.id`` and return it as stored; ``None`` when there is none.

        ``org_id`` and ``created_at`` are kept from the stored connection; the rest,
        ``updated_at`` included, comes from ``connection``. Same ``ValueError`` rules
        as :meth:`create_sso_connection`; raise :class:`~authsome.errors.AlreadyExists`
        and change nothing when a domain belongs to another connection of the
        same tenant.
        """
        ...

    def get_sso_connection(self, connection_id: str) -> SSOConnectionInfo | None:
        """The connection with this id, or ``None``."""
        ...

    def list_sso_connections(self, org_id: str) -> list[SSOConnectionInfo]:
        """The org's connections, oldest first (ties by id); ``[]`` for an unknown org."""
        ...

    def find_sso_connection_by_domain(self, tenant: str, domain: str) -> SSOConnectionInfo | None:
        """The connection of an org of ``tenant`` that lists this (already
        normalized) e-mail domain, or ``None``; connections of other tenants are
        never returned. Whether the domain is proven is the caller's concern.

        Exact match only: ``example.com`` does not route ``sub.example.com``.
        """
        ...

    def get_sso_client_secret(self, connection_id: str) -> StoredSecret | None:
        """The stored client secret of the connection, exactly as it was given to
        the store; ``None`` for an unknown connection or one without a secret."""
        ...

    def list_sso_client_secrets(self, after: str, limit: int) -> list[tuple[str, StoredSecret]]:
        """Up to ``limit`` ``(connection id, stored secret)`` pairs of the connections
        that have a secret, with ids after ``after`` (bytewise), in that order."""
        ...

    def replace_sso_client_secret(
        self, connection_id: str, expected: StoredSecret, secret: StoredSecret
    ) -> bool:
        """Compare-and-set the connection's stored secret (value and ``sealed``): replace
        it only if it still is ``expected``; whether it was replaced."""
        ...

    def use_saml_assertion_id(
        self, connection_id: str, assertion_id: str, keep_until: datetime, now: datetime
    ) -> bool:
        """Record that a SAML assertion of this connection was used, atomically: ``True``
        for the first use (also across processes), ``False`` while the id is kept.

        The id is kept until ``keep_until`` (the assertion's expiry plus the allowed
        skew, after which the assertion is refused anyway); expired ids may be
        forgotten at any call and are reusable. Ids are per connection.
        """
        ...

    def delete_sso_connection(self, connection_id: str) -> bool:
        """Delete the connection, its domains and its secret; ``False`` if unknown."""
        ...

    # -- social sign-in providers ------------------------------------------------
    def put_social_provider(
        self, provider: SocialProviderInfo, client_secret: StoredSecret
    ) -> SocialProviderInfo:
        """Store the tenant's configuration of ``provider.provider`` with its (sealed
        or clear) secret, replacing the one it had, and return it as stored.

        A replaced configuration keeps its ``created_at``; everything else, the
        id included (a secret is sealed to its record's id), comes from
        ``provider``. One statement, so concurrent calls leave one whole
        configuration. ``ValueError`` unless ``provider.has_client_secret``.
        """
        ...

    def get_social_provider(self, tenant: str, provider: str) -> SocialProviderInfo | None:
        """The tenant's configuration of ``provider``, or ``None``."""
        ...

    def list_social_providers(self, tenant: str) -> list[SocialProviderInfo]:
        """The tenant's configured providers, by provider name."""
        ...

    def get_social_client_secret(self, provider_id: str) -> StoredSecret | None:
        """The stored secret of the configuration with this id, as it was given."""
        ...

    def list_social_client_secrets(self, after: str, limit: int) -> list[tuple[str, StoredSecret]]:
        """Up to ``limit`` ``(configuration id, stored secret)`` pairs with ids after
        ``after`` (bytewise), in that order."""
        ...

    def replace_social_client_secret(
        self, provider_id: str, expected: StoredSecret, secret: StoredSecret
    ) -> bool:
        """Compare-and-set the stored secret (value and ``sealed``) of the
        configuration with this id; whether it was replaced."""
        ...

    def delete_social_provider(self, tenant: str, provider: str) -> bool:
        """Delete the tenant's configuration of ``provider``; ``False`` if none."""
        ...

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        """Release connections and files; the store is unusable afterwards."""
        ...
