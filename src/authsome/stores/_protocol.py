"""The Store Protocol: everything the auth engine persists.

Every method is atomic on its own: it either fully happens or raises and leaves
nothing behind. Stores hold only hashes of secrets. Datetimes are timezone-aware
UTC on the way in and out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from authsome.models import ApiKey, ApiKeyOwnerKind, RefreshOutcome, Session, StoredApiKey, User

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

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        """Release connections and files; the store is unusable afterwards."""
        ...
