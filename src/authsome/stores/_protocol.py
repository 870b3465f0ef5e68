"""The Store Protocol: everything the auth engine persists.

Every method is atomic on its own: it either fully happens or raises and leaves
nothing behind. Stores hold only hashes of secrets. Datetimes are timezone-aware
UTC on the way in and out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from authsome.models import (
    Membership,
    Org,
    OrgRole,
    RefreshOutcome,
    Session,
    SSOConnectionInfo,
    StoredSecret,
    User,
)

__all__ = ["Counter", "Store"]


Counter = tuple[int, datetime]
"""A throttle counter: (hits, expires_at)."""


@runtime_checkable
class Store(Protocol):
    """Persistence of the auth engine. Implementations must be thread-safe."""

    # -- users -----------------------------------------------------------------
    def create_user(self, user: User, password_hash: str) -> None:
        """Insert ``user``; raise :class:`~authsome.errors.AlreadyExists` when
        ``(user.tenant, user.email)`` or ``user.id`` is taken."""
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

    # -- sessions --------------------------------------------------------------
    def create_session(self, session: Session, access_hash: str, refresh_hash: str) -> None:
        """Insert a session with the hashes of its first access and refresh tokens.

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
    ) -> RefreshOutcome:
        """Exchange a refresh token, atomically.

        * unknown hash, or its session revoked or past ``expires_at`` → ``INVALID``;
        * a hash already rotated before → revoke the session (``revoked_at=now``)
          and return ``REUSED`` with the revoked session;
        * otherwise mark it used, make ``new_refresh_hash`` the live refresh token and
          ``new_access_hash`` the current access token (the old access token stops
          working), set ``access_expires_at``, return ``ROTATED`` with the session.

        Of two concurrent calls with the same hash exactly one can rotate.
        """
        ...

    def revoke_session(self, session_id: str, now: datetime) -> bool:
        """Revoke one live session; ``False`` if it does not exist, was revoked
        already or is past its ``expires_at`` (it ended by itself)."""
        ...

    def revoke_user_sessions(self, user_id: str, now: datetime) -> int:
        """Revoke every live session (not revoked, not expired) of the user; return
        how many were revoked."""
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

    def remove_membership(self, org_id: str, user_id: str) -> bool:
        """Delete the membership; ``False`` if there is none.

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

    # -- sso -------------------------------------------------------------------
    def create_sso_connection(
        self, connection: SSOConnectionInfo, client_secret: StoredSecret | None
    ) -> None:
        """Insert an SSO connection with its (already sealed or clear) client secret.

        ``connection.has_client_secret`` must say whether ``client_secret`` is given
        and ``connection.domains`` must not repeat a domain, else ``ValueError`` (a
        caller's bug). Raise :class:`~authsome.errors.AlreadyExists` when the id is
        taken or any of the domains belongs to a connection already (one owner per
        e-mail domain across the whole store), :class:`~authsome.errors.StoreError`
        when the org does not exist. Either way nothing is written.
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
        and change nothing when a domain belongs to another connection.
        """
        ...

    def get_sso_connection(self, connection_id: str) -> SSOConnectionInfo | None:
        """The connection with this id, or ``None``."""
        ...

    def list_sso_connections(self, org_id: str) -> list[SSOConnectionInfo]:
        """The org's connections, oldest first (ties by id); ``[]`` for an unknown org."""
        ...

    def find_sso_connection_by_domain(self, domain: str) -> SSOConnectionInfo | None:
        """The connection owning this (already normalized) e-mail domain, or ``None``.

        Exact match only: ``example.com`` does not route ``sub.example.com``.
        """
        ...

    def get_sso_client_secret(self, connection_id: str) -> StoredSecret | None:
        """The stored client secret of the connection, exactly as it was given to
        the store; ``None`` for an unknown connection or one without a secret."""
        ...

    def delete_sso_connection(self, connection_id: str) -> bool:
        """Delete the connection, its domains and its secret; ``False`` if unknown."""
        ...

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        """Release connections and files; the store is unusable afterwards."""
        ...
