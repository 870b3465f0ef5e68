"""Password sign-in: generic failures, equal work, throttling, rehash on login, and
the hand-over to the second factor when the user has one."""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections.abc import Callable

from authsome import _validation as v
from authsome._time import Clock
from authsome.billing import Billing
from authsome.bridge import LedgerContext
from authsome.crypto import PasswordHasher
from authsome.errors import InvalidCredentials, ValidationError
from authsome.features import UsageEvent
from authsome.models import SignIn, User
from authsome.sessions import Sessions
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

    def sign_in(self, email: str, password: str, *, tenant: str, ip: str | None) -> SignIn:
        """Check the password; raise one generic :class:`InvalidCredentials` on failure."""
        tenant = v.check_tenant(tenant)
        email = v.normalize_email(email)
        password = _sign_in_password(password)
        ip = v.check_ip(ip)
        if ip is None:
            self._warn_once_without_ip()
        now = self._clock()
        # Counted as a failure up front: racing guesses cannot all pass a check
        # before any of them is counted. Success gives the hit back.
        self._throttle.reserve(tenant, email, ip, now)
        user = self._store.find_user_by_email(tenant, email)
        stored_hash = None if user is None else self._store.get_password_hash(user.id)
        # verify() runs against a dummy hash when there is no user: the same work either way.
        if not self._hasher.verify(stored_hash, password) or user is None or stored_hash is None:
            raise InvalidCredentials()
        if self._before_completion is not None:
            # May refuse (a required verification), still counted as a failure.
            self._before_completion(user)
        self._throttle.succeeded(tenant, email, ip, now)
        if self._hasher.needs_rehash(stored_hash):
            self._store.set_password_hash(user.id, self._hasher.hash(password))
        return self.first_factor_passed(user)

    def first_factor_passed(self, user: User) -> SignIn:
        """Go on with a user who passed a first factor (a password, a magic link): to
        the second factor if they have one, else to :meth:`complete`."""
        ticket = None if self._mfa_ticket is None else self._mfa_ticket(user)
        if ticket is not None:
            # No session and no usage yet: the sign-in completes after the second factor.
            return SignIn(user=user, mfa_required=True, ticket=ticket)
        return self.complete(user)

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

    def complete(self, user: User) -> SignIn:
        """Create the session of a verified user and record the active user."""
        tokens = self._sessions.create(user)
        ctx = LedgerContext(tenant=user.tenant, user_id=user.id, event_id=tokens.session.id)
        self._billing.record(UsageEvent.USERS_ACTIVE, ctx)
        return SignIn(user=user, tokens=tokens)


def _sign_in_password(password: object) -> str:
    # Only emptiness and size are input errors here; a short password is just wrong,
    # and saying so would reveal the registration rules were different.
    text = unicodedata.normalize("NFKC", v.require_str("password", password))
    if not text:
        raise ValidationError("password must not be empty")
    if len(text) > v.MAX_PASSWORD:
        raise ValidationError(f"password must be at most {v.MAX_PASSWORD} characters")
    return text
