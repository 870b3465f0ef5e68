"""Sessions: opaque bearer tokens, stored only as SHA-256 digests.

Each session has an access token (short-lived) and a refresh token. Refreshing
rotates both; presenting a refresh token that was already rotated is taken as
theft and revokes the whole session (the token family).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from authsome import _validation as v
from authsome._time import Clock
from authsome.billing import Billing
from authsome.bridge import LedgerContext
from authsome.crypto import new_id, new_token, sha256_hex
from authsome.errors import InvalidToken
from authsome.features import UsageEvent
from authsome.models import RefreshStatus, Session, SessionTokens, User
from authsome.stores import Store

__all__ = ["SessionPolicy", "Sessions"]


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """Lifetimes: ``ttl`` bounds the whole session, ``access_ttl`` each access token."""

    ttl: timedelta = timedelta(days=30)
    access_ttl: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.access_ttl <= timedelta(0) or self.ttl <= timedelta(0):
            raise ValueError("SessionPolicy lifetimes must be positive")


class Sessions:
    """``auth.sessions``: validate, refresh and revoke sessions."""

    def __init__(self, store: Store, billing: Billing, policy: SessionPolicy, clock: Clock):
        self._store = store
        self._billing = billing
        self.policy = policy
        self._clock = clock

    def create(self, user: User) -> SessionTokens:
        """Start a session for ``user``; records ``authsome.sessions.created``."""
        now = self._clock()
        access, refresh = new_token(), new_token()
        session = Session(
            id=new_id("ses"),
            user_id=user.id,
            tenant=user.tenant,
            created_at=now,
            expires_at=now + self.policy.ttl,
            access_expires_at=min(now + self.policy.access_ttl, now + self.policy.ttl),
        )
        self._store.create_session(session, sha256_hex(access), sha256_hex(refresh))
        ctx = LedgerContext(tenant=user.tenant, user_id=user.id, event_id=session.id)
        self._billing.record(UsageEvent.SESSIONS_CREATED, ctx)
        return SessionTokens(access_token=access, refresh_token=refresh, session=session)

    def validate(self, token: str) -> Session:
        """The live session of an access token; :class:`InvalidToken` otherwise."""
        digest = sha256_hex(v.check_token("token", token))
        session = self._store.find_session_by_access_hash(digest)
        now = self._clock()
        if session is None or not session.is_active(now) or now >= session.access_expires_at:
            raise InvalidToken()
        return session

    def refresh(self, refresh_token: str) -> SessionTokens:
        """Rotate: a new access and refresh token for the same session.

        The old refresh token stops working; presenting it again revokes the session.
        Not a new session, so no usage is recorded.
        """
        digest = sha256_hex(v.check_token("refresh_token", refresh_token))
        now = self._clock()
        access, refresh = new_token(), new_token()
        current = self._store.rotate_refresh_token(
            digest, sha256_hex(refresh), sha256_hex(access), now + self.policy.access_ttl, now
        )
        if current.status is not RefreshStatus.ROTATED or current.session is None:
            raise InvalidToken()
        # validate() also checks the session's absolute end, so an access expiry past
        # it grants nothing.
        return SessionTokens(access_token=access, refresh_token=refresh, session=current.session)

    def revoke(self, token: str) -> bool:
        """Sign out the session of an access token; ``False`` if already ended or unknown."""
        digest = sha256_hex(v.check_token("token", token))
        session = self._store.find_session_by_access_hash(digest)
        if session is None:
            return False
        return self._store.revoke_session(session.id, self._clock())

    def revoke_all(self, user_id: str) -> int:
        """Sign out every session of the user; returns how many were live."""
        return self._store.revoke_user_sessions(v.require_str("user_id", user_id), self._clock())
