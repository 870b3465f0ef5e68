"""Sessions: opaque bearer tokens, stored only as SHA-256 digests.

Each session has an access token (short-lived) and a refresh token. Refreshing
rotates both; presenting a refresh token that was already rotated is taken as
theft and revokes the whole session (the token family).

A session ends at its absolute lifetime (``SessionPolicy.ttl``) or after
``SessionPolicy.idle_timeout`` without use, whichever comes first. Use is written
down at sign-in and at every refresh, and by :meth:`Sessions.validate` at most once
per hundredth of the idle timeout, so a busy session does not turn every request
into a write (and may end up to 1 % of the timeout early, never late).

Every validating call takes ``tenant=``: bound to the tenant it serves, a token of
another tenant gets the answer an unknown token gets, and nothing changes.

A session keeps what the application said about the client at sign-in (its address
and User-Agent), so :meth:`Sessions.list` can show a user their signed-in devices
and :meth:`Sessions.revoke_by_id` sign one of them out.

That is personal data, so a session that has ended (revoked, past its absolute
lifetime, or idle past ``idle_timeout``) is deleted ``SessionPolicy.retention``
after it ended, with its refresh tokens: the engine prunes a bounded batch now and
then (:meth:`Sessions.prune_now_and_then`, before a sign-in's transaction and at a
refresh), and :meth:`Sessions.prune` prunes on demand. A refresh token of an ended
session is refused whether its row is kept or not, so reuse detection, which only
matters while the session lives, loses nothing.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from authsome import _validation as v
from authsome._billing import Billing
from authsome._time import Clock
from authsome.bridge import LedgerContext
from authsome.crypto import new_ordered_id, new_token, sha256_hex
from authsome.errors import (
    FeatureNotEntitled,
    InvalidToken,
    LedgerUnavailable,
    StoreError,
    ValidationError,
)
from authsome.features import UsageEvent
from authsome.models import DeviceSession, RefreshStatus, Session, SessionTokens, User
from authsome.stores import Store

__all__ = ["Client", "SessionPolicy", "Sessions"]

logger = logging.getLogger("authsome.sessions")

_ACTIVITY_STEPS = 100  # validate() writes last activity once per 1/100 of the idle timeout
PRUNE_INTERVAL = timedelta(minutes=10)
"""How often an engine prunes ended sessions on its own (sooner while behind)."""
PRUNE_BATCH = 500
"""Most sessions one amortised prune deletes: a bounded statement, never a long one."""


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """Lifetimes: ``ttl`` bounds the whole session, ``access_ttl`` each access token,
    ``idle_timeout`` the time a session may go unused (``None``: no idle timeout).

    The defaults (30 days, 1 hour, 7 days) suit a "stay signed in" session; an
    application at NIST SP 800-63B-4 AAL2 would choose ``ttl=timedelta(hours=24)``
    and ``idle_timeout=timedelta(hours=1)``.

    ``retention``: how long an ended session (with the address and User-Agent it
    holds) is kept before it is deleted; 30 days by default, ``timedelta(0)`` to
    delete at the next prune.
    """

    ttl: timedelta = timedelta(days=30)
    access_ttl: timedelta = timedelta(hours=1)
    idle_timeout: timedelta | None = timedelta(days=7)
    retention: timedelta = timedelta(days=30)

    def __post_init__(self) -> None:
        if self.access_ttl <= timedelta(0) or self.ttl <= timedelta(0):
            raise ValueError("SessionPolicy lifetimes must be positive")
        if self.idle_timeout is not None:
            if not isinstance(self.idle_timeout, timedelta):
                raise TypeError("SessionPolicy.idle_timeout must be a timedelta or None")
            if self.idle_timeout <= timedelta(0):
                raise ValueError("SessionPolicy.idle_timeout must be positive")
        if not isinstance(self.retention, timedelta):
            raise TypeError("SessionPolicy.retention must be a timedelta")
        if self.retention < timedelta(0):
            raise ValueError("SessionPolicy.retention must not be negative")


@dataclass(frozen=True, slots=True)
class Client:
    """What the application says about the client signing in (its address and
    User-Agent), checked once at the API edge and kept with the new session."""

    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def of(cls, ip: object, user_agent: object) -> Client:
        """Checked: ``ip`` as :func:`~authsome._validation.check_client_ip`,
        ``user_agent`` as :func:`~authsome._validation.check_user_agent`."""
        return cls(ip=v.check_client_ip(ip), user_agent=v.check_user_agent(user_agent))


UNKNOWN_CLIENT = Client()


class Sessions:
    """``auth.sessions``: validate, refresh and revoke sessions; list a user's
    signed-in devices and sign one out."""

    def __init__(self, store: Store, billing: Billing, policy: SessionPolicy, clock: Clock):
        self._store = store
        self._billing = billing
        self.policy = policy
        self._clock = clock
        idle = policy.idle_timeout
        self._activity_step = None if idle is None else idle / _ACTIVITY_STEPS
        self._next_prune: datetime | None = None

    def create(self, user: User, client: Client = UNKNOWN_CLIENT) -> SessionTokens:
        """Start a session for ``user``; records ``authsome.sessions.created``."""
        self.prune_now_and_then(self._clock())
        tokens = self.store_new(user, client)
        self.record_created(tokens)
        return tokens

    def store_new(
        self, user: User, client: Client = UNKNOWN_CLIENT, *, session_id: str | None = None
    ) -> SessionTokens:
        """The store half of :meth:`create`: write a new session, record nothing.
        A sign-in calls it inside its one transaction, then :meth:`record_created`
        once that has committed (usage is never recorded for a session rolled back).
        ``session_id``: one the sign-in already counted its active user under."""
        now = self._clock()
        access, refresh = new_token(), new_token()
        session = Session(
            id=new_ordered_id("ses") if session_id is None else session_id,
            user_id=user.id,
            tenant=user.tenant,
            created_at=now,
            expires_at=now + self.policy.ttl,
            access_expires_at=min(now + self.policy.access_ttl, now + self.policy.ttl),
            last_seen_at=now,
            ip=client.ip,
            user_agent=client.user_agent,
        )
        self._store.create_session(session, sha256_hex(access), sha256_hex(refresh))
        return SessionTokens(access_token=access, refresh_token=refresh, session=session)

    def record_created(self, tokens: SessionTokens) -> None:
        """Record ``authsome.sessions.created`` for a session :meth:`store_new` wrote."""
        session = tokens.session
        ctx = LedgerContext(tenant=session.tenant, user_id=session.user_id, event_id=session.id)
        self._billing.record(UsageEvent.SESSIONS_CREATED, ctx)

    def validate(self, token: str, *, tenant: str | None = None) -> Session:
        """The live session of an access token; :class:`InvalidToken` otherwise.

        Expired, revoked, idle for ``idle_timeout``, or (given ``tenant``) of another
        tenant: all answered alike, and such a token changes nothing.
        """
        digest = sha256_hex(v.check_token("token", token))
        expected = _expected_tenant(tenant)
        session = self._store.find_session_by_access_hash(digest)
        now = self._clock()
        usable = session is not None and session.usable(
            now, tenant=expected, idle_since=self._idle_since(now)
        )
        if session is None or not usable or now >= session.access_expires_at:
            raise InvalidToken()
        return self._seen(session, now)

    def refresh(self, refresh_token: str, *, tenant: str | None = None) -> SessionTokens:
        """Rotate: a new access and refresh token for the same session.

        The old refresh token stops working; presenting it again revokes the session.
        Not a new session, so ``authsome.sessions.created`` is not recorded; the user
        counts as active (``authsome.users.active``, once a day). A session idle for
        ``idle_timeout``, or (given ``tenant``) of another tenant, raises
        :class:`InvalidToken` and nothing rotates or is revoked.
        """
        digest = sha256_hex(v.check_token("refresh_token", refresh_token))
        expected = _expected_tenant(tenant)
        now = self._clock()
        self.prune_now_and_then(now)
        access, refresh = new_token(), new_token()
        current = self._store.rotate_refresh_token(
            digest,
            sha256_hex(refresh),
            sha256_hex(access),
            now + self.policy.access_ttl,
            now,
            tenant=expected,
            idle_since=self._idle_since(now),
        )
        if current.status is not RefreshStatus.ROTATED or current.session is None:
            raise InvalidToken()
        self._count_activity(current.session, now)
        # validate() also checks the session's absolute end, so an access expiry past
        # it grants nothing.
        return SessionTokens(access_token=access, refresh_token=refresh, session=current.session)

    def _count_activity(self, session: Session, now: datetime) -> None:
        """The refreshed session's user is active: ``authsome.users.active`` keyed by
        user and UTC day, so a ``unique`` count has the user in every period they
        refresh in and a ``sum`` gets at most one record a day however many refreshes.
        Enforced, a user not yet counted this period beyond the limit is signed out
        (:class:`~authsome.errors.FeatureNotEntitled`); a failing check never fails
        the refresh, the activity is recorded instead."""
        ctx = LedgerContext(
            tenant=session.tenant,
            user_id=session.user_id,
            event_id=f"{session.user_id}:active:{now.astimezone(UTC):%Y-%m-%d}",
        )
        if self._billing.enforces(UsageEvent.USERS_ACTIVE):
            try:
                if self._billing.consume(UsageEvent.USERS_ACTIVE, ctx):
                    return
            except FeatureNotEntitled:
                self._store.revoke_session(session.id, now)
                raise
            except LedgerUnavailable:
                pass  # logged and counted by billing; the refresh stands
        self._billing.record(UsageEvent.USERS_ACTIVE, ctx)

    def revoke(self, token: str, *, tenant: str | None = None) -> bool:
        """Sign out the session of an access token; ``False`` if already ended or
        unknown, or (given ``tenant``) of another tenant, which is left signed in."""
        digest = sha256_hex(v.check_token("token", token))
        expected = _expected_tenant(tenant)
        session = self._store.find_session_by_access_hash(digest)
        if session is None or (expected is not None and session.tenant != expected):
            return False
        return self._store.revoke_session(session.id, self._clock())

    def list(self, user_id: str) -> builtins.list[DeviceSession]:
        """The user's signed-in devices, newest first: every session that can still
        be used (not revoked, expired or idle past ``idle_timeout``), with when it
        started and was last used, and the address and User-Agent given at sign-in.

        An unknown user has none. Nothing secret is in the list: a session's ``id``
        only names it, for :meth:`revoke_by_id`.
        """
        user_id = v.require_str("user_id", user_id)
        now = self._clock()
        idle_since = self._idle_since(now)
        return [
            DeviceSession.of(session)
            for session in self._store.list_user_sessions(user_id, now)
            if session.usable(now, idle_since=idle_since)
        ]

    def revoke_by_id(self, session_id: str, *, user_id: str) -> bool:
        """Sign out one of the user's devices: the session with this id, if it is
        ``user_id``'s ("sign out that device" in a device list).

        ``False``, and nothing changes, when there is no such live session of this
        user: unknown, ended already, or another user's (a user names only their own
        sessions; the answer does not say whether another user's id exists). The
        session's access and refresh tokens stop working at once.
        """
        session_id = v.check_token("session_id", session_id)
        user_id = v.require_str("user_id", user_id)
        return self._store.revoke_user_session(session_id, user_id, self._clock())

    def revoke_all(self, user_id: str) -> int:
        """Sign out every session of the user, and end the sign-ins still waiting for
        their second factor; returns how many sessions were live."""
        user_id = v.require_str("user_id", user_id)
        # Tickets first: a sign-in completing meanwhile then fails to consume its ticket.
        with self._store.atomic():
            self._store.delete_user_mfa_tickets(user_id)
            return self._store.revoke_user_sessions(user_id, self._clock())

    def prune(self, *, limit: int | None = None) -> int:
        """Delete sessions that ended more than ``SessionPolicy.retention`` ago
        (revoked, expired or idle past ``idle_timeout``), with their refresh tokens;
        return how many. ``limit``: at most that many (a positive int); ``None``: all,
        in batches of :data:`PRUNE_BATCH`. Live sessions are never touched."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")
        if limit is not None and limit < 1:
            raise ValidationError("limit must be positive")
        now = self._clock()
        deleted = 0
        while limit is None or deleted < limit:
            batch = PRUNE_BATCH if limit is None else min(PRUNE_BATCH, limit - deleted)
            pruned = self._prune_batch(now, batch)
            deleted += pruned
            if pruned < batch:
                break
        return deleted

    def prune_now_and_then(self, now: datetime) -> None:
        """Prune one batch of ended sessions, at most once per :data:`PRUNE_INTERVAL`
        (at once again while a batch came back full). Called outside any
        transaction; a failing prune is logged and never fails the caller."""
        # Two threads may both prune at the boundary, which is harmless.
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + PRUNE_INTERVAL
        try:
            if self._prune_batch(now, PRUNE_BATCH) >= PRUNE_BATCH:
                self._next_prune = None  # behind: the next call prunes again
        except StoreError as exc:
            logger.warning("ended sessions not pruned: error=%s", exc)

    def _prune_batch(self, now: datetime, limit: int) -> int:
        ended_before = now - self.policy.retention
        return self._store.prune_sessions(ended_before, self._idle_since(ended_before), limit)

    def _idle_since(self, now: datetime) -> datetime | None:
        """Sessions last used at or before this moment are idle; ``None``: no timeout."""
        idle = self.policy.idle_timeout
        return None if idle is None else now - idle

    def _seen(self, session: Session, now: datetime) -> Session:
        """Write the session's last activity down, if it is stale enough to matter."""
        step = self._activity_step
        if step is None or now - session.last_activity < step:
            return session
        try:
            self._store.touch_session(session.id, now)
        except StoreError as exc:
            # The request is valid; an unwritten activity only ends the session sooner.
            logger.warning("last activity not written: session_id=%s error=%s", session.id, exc)
            return session
        return dataclasses.replace(session, last_seen_at=now)


def _expected_tenant(tenant: str | None) -> str | None:
    return None if tenant is None else v.check_tenant(tenant)
