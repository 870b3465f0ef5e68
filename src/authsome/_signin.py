"""Password sign-in: generic failures, equal work, throttling, rehash on login, and
the hand-over to the second factor when the user has one."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from authsome import _validation as v
from authsome._billing import Billing
from authsome._time import Clock
from authsome._units import one_commit
from authsome.bridge import LedgerContext
from authsome.crypto import PasswordHasher, new_ordered_id
from authsome.errors import InvalidCredentials, ValidationError
from authsome.features import UsageEvent
from authsome.models import SessionTokens, SignIn, User
from authsome.sessions import UNKNOWN_CLIENT, Client, Sessions
from authsome.stores import Store
from authsome.throttle import Throttle

__all__ = ["SignInFlow"]

security_log = logging.getLogger("authsome.security")


class SignInFlow:
    """Verifies a password and completes the sign-in with a new session.

    ``mfa_ticket`` returns a ticket for a user who has a second factor (``None``
    otherwise); such a sign-in stops there and is completed by the MFA service.
    ``before_completion`` may refuse a user whose password was right (it raises
    :class:`InvalidCredentials`), e.g. one whose address must be verified first.
    """

    def __init__(
        self,
        store: Store,
        billing: Billing,
        hasher: PasswordHasher,
        throttle: Throttle,
        sessions: Sessions,
        clock: Clock,
        mfa_ticket: Callable[[User], str | None] | None = None,
        before_completion: Callable[[User], None] | None = None,
    ) -> None:
        self._store = store
        self._billing = billing
        self._hasher = hasher
        self._throttle = throttle
        self._sessions = sessions
        self._clock = clock
        self._mfa_ticket = mfa_ticket
        self._before_completion = before_completion
        self._warned_without_ip = False
        self._warn_lock = threading.Lock()
        self._unconsumed: set[str] = set()  # sessions whose active user is still to record
        self._unconsumed_lock = threading.Lock()

    def sign_in(
        self,
        email: str,
        password: str,
        *,
        tenant: str,
        ip: str | None,
        user_agent: str | None = None,
    ) -> SignIn:
        """Check the password; raise one generic :class:`InvalidCredentials` on failure."""
        tenant = v.check_tenant(tenant)
        email = v.normalize_email(email)
        password = _sign_in_password(password)
        client = Client.of(ip, user_agent)
        ip = v.check_ip(ip)
        if ip is None:
            self._warn_once_without_ip()
        now = self._clock()
        # Counted as a failure up front, and committed before the (slow) hash is
        # checked: racing guesses cannot all pass a check before any of them is
        # counted, and no write lock is held across the hash. Success gives the hit
        # back, in the sign-in's second and last commit.
        self._throttle.prune_now_and_then(now)
        self._sessions.prune_now_and_then(now)
        with one_commit(self._store):
            self._throttle.reserve(tenant, email, ip, now)
            user = self._store.find_user_by_email(tenant, email)
            stored_hash = None if user is None else self._store.get_password_hash(user.id)
        # verify() runs against a dummy hash when there is no user: the same work either way.
        if not self._hasher.verify(stored_hash, password) or user is None or stored_hash is None:
            raise InvalidCredentials()
        if self._before_completion is not None:
            # May refuse (a required verification), still counted as a failure.
            self._before_completion(user)
        new_hash = self._hasher.hash(password) if self._hasher.needs_rehash(stored_hash) else None
        with one_commit(self._store):
            self._throttle.succeeded(tenant, email, ip, now)
            if new_hash is not None:
                self._store.set_password_hash(user.id, new_hash)
            ticket, tokens = self._second_factor_or_session(user, client)
        return self._signed_in(user, ticket, tokens)

    def first_factor_passed(
        self,
        proof: Callable[[], User],
        client: Client = UNKNOWN_CLIENT,
        *,
        second_factor_passed: bool = False,
    ) -> SignIn:
        """Go on with the user ``proof`` answers (it checks a first factor, such as a
        magic link, and may write: a used token): to the second factor if they have
        one, else to a new session. The proof's writes and these are one commit; a
        refusal it raises is committed too (a used link stays used).

        ``second_factor_passed`` is for a proof that covered both factors (an
        identity provider trusted to have done MFA): a session then, never a ticket."""
        with one_commit(self._store):
            user = proof()
            ticket, tokens = (
                (None, self.open_session(user, client))
                if second_factor_passed
                else self._second_factor_or_session(user, client)
            )
        return self._signed_in(user, ticket, tokens)

    def _second_factor_or_session(
        self, user: User, client: Client
    ) -> tuple[str | None, SessionTokens | None]:
        """Call inside the operation's commit: an MFA ticket, or else a new session."""
        ticket = None if self._mfa_ticket is None else self._mfa_ticket(user)
        return ticket, None if ticket is not None else self.open_session(user, client)

    def _signed_in(self, user: User, ticket: str | None, tokens: SessionTokens | None) -> SignIn:
        if tokens is None:
            # No session and no usage yet: the sign-in completes after the second factor.
            return SignIn(user=user, mfa_required=True, ticket=ticket)
        return self.finish(user, tokens)

    def _warn_once_without_ip(self) -> None:
        # Once per engine: an application that never passes ip would otherwise flood
        # its log, and one line is enough to point at the missing argument.
        with self._warn_lock:
            if self._warned_without_ip:
                return
            self._warned_without_ip = True
        security_log.warning(
            "sign_in was called without ip: failed sign-ins from every client then share"
            " one lock-out counter per account, so whoever guesses wrong can keep the"
            " real user locked out; pass the client's address as ip"
        )

    def complete(self, user: User, client: Client = UNKNOWN_CLIENT) -> SignIn:
        """Create the session of a verified user and record the active user."""
        return self.finish(user, self.open_session(user, client))

    def open_session(self, user: User, client: Client = UNKNOWN_CLIENT) -> SessionTokens:
        """The store half of :meth:`complete`, for a sign-in that writes in one
        transaction: call it inside the block, and :meth:`finish` after it. The
        session keeps ``client`` (address and User-Agent) for the device list.

        With ``authsome.users.active`` enforced, the active user is counted first,
        keyed by the session's id: a user not yet active this period beyond the limit
        gets :class:`~authsome.errors.FeatureNotEntitled` and no session is written."""
        session_id = new_ordered_id("ses")
        # Every completed sign-in passes here: it ends a run of failed code attempts.
        self._throttle.signed_in(user.tenant, user.email)
        if self._billing.enforces(UsageEvent.USERS_ACTIVE):
            ctx = LedgerContext(tenant=user.tenant, user_id=user.id, event_id=session_id)
            if not self._billing.consume(UsageEvent.USERS_ACTIVE, ctx):
                with self._unconsumed_lock:  # let through by policy: recorded by finish()
                    self._unconsumed.add(session_id)
        return self._sessions.store_new(user, client, session_id=session_id)

    def finish(self, user: User, tokens: SessionTokens) -> SignIn:
        """The usage half of :meth:`complete`, once the session is committed."""
        self._sessions.record_created(tokens)
        if self._needs_record(tokens.session.id):
            ctx = LedgerContext(tenant=user.tenant, user_id=user.id, event_id=tokens.session.id)
            self._billing.record(UsageEvent.USERS_ACTIVE, ctx)
        return SignIn(user=user, tokens=tokens)

    def _needs_record(self, session_id: str) -> bool:
        """Whether the active user is still to be recorded: always when not enforced;
        enforced, only when the count was let through uncounted by policy."""
        if not self._billing.enforces(UsageEvent.USERS_ACTIVE):
            return True
        with self._unconsumed_lock:
            if session_id in self._unconsumed:
                self._unconsumed.discard(session_id)
                return True
        return False


def _sign_in_password(password: object) -> str:
    # Only emptiness and size are input errors here; a short password is just wrong,
    # and saying so would reveal the registration rules were different.
    text = v.nfkc("password", v.require_text("password", password, v.MAX_PASSWORD))
    if not text:
        raise ValidationError("password must not be empty")
    if len(text) > v.MAX_PASSWORD:
        raise ValidationError(f"password must be at most {v.MAX_PASSWORD} characters")
    return text
