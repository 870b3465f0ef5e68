"""Sign-in by a link or a code sent by e-mail.

The link and the code are one-time tokens of :mod:`authsome.onetime`; using one is a
first factor like a password, so the sign-in goes on through the one completion
point (:class:`~authsome._signin.SignInFlow`): a user with a second factor gets an MFA
ticket, and only a completed sign-in records ``authsome.sessions.created`` and
``authsome.users.active``, once.

A code is short, so it is looked up by the address it was sent to, counts its
attempts in the store (5, then it is dead) and is throttled like a password. Failed
attempts are also counted per address across codes: past
``JourneyPolicy.email_code_failure_limit`` in a row, codes for the address are
refused until a sign-in of the account succeeds (a link or a password still works).
With ``JourneyPolicy(sign_up_by_email=True)`` a link or code sent to an address
without an account creates the account when it is used.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from authsome import _validation as v
from authsome._billing import Billing
from authsome._signin import SignInFlow
from authsome._time import Clock
from authsome._units import one_commit
from authsome.bridge import LedgerContext
from authsome.crypto import new_ordered_id
from authsome.errors import InvalidToken, ValidationError
from authsome.features import UsageEvent
from authsome.journeys import AccountJourneys
from authsome.models import OneTimeToken, SignIn, User
from authsome.onetime import TokenPurpose, check_code
from authsome.sessions import Client
from authsome.stores import Store
from authsome.throttle import Throttle

__all__ = ["Passwordless"]

# The password hash of an account made by e-mail sign-up: not an argon2 hash, so no
# password matches it (the check still does the dummy hashing work). The user can
# set a password with a reset link.
NO_PASSWORD_HASH = "!no-password"  # noqa: S105 (the hash no password has)

_PURPOSES = {"link": TokenPurpose.MAGIC_LINK, "code": TokenPurpose.EMAIL_CODE}


class Passwordless:
    """``auth.passwordless``: sign-in links and codes by e-mail."""

    def __init__(
        self,
        store: Store,
        journeys: AccountJourneys,
        sign_in: SignInFlow,
        clock: Clock,
        billing: Billing,
        throttle: Throttle,
    ) -> None:
        self._store = store
        self._journeys = journeys
        self._sign_in = sign_in
        self._clock = clock
        self._billing = billing
        self._throttle = throttle

    def begin(
        self,
        email: str,
        *,
        tenant: str = "default",
        ip: str | None = None,
        method: Literal["link", "code"] = "link",
    ) -> None:
        """Mail a sign-in link (``method="link"``: ``<link_base_url>/sign-in?token=...``,
        valid for ``JourneyPolicy.magic_link_ttl``, 15 minutes by default) or a code
        (``method="code"``: ``JourneyPolicy.email_code_length`` digits, valid for
        ``JourneyPolicy.email_code_ttl``, 15 minutes by default) to the account with
        this address in ``tenant``.

        Returns ``None`` whether or not the account exists, in the same time: like a
        password reset, the lookup and the message happen in the background. A new
        link or code replaces the previous one of its kind. With
        ``JourneyPolicy(sign_up_by_email=True)`` an address without an account gets
        one too, which creates the account when used.
        """
        if v.require_str("method", method) not in _PURPOSES:
            raise ValidationError('method must be "link" or "code"')
        purpose = _PURPOSES[method]
        sign_up = self._journeys.tokens.policy.sign_up_by_email
        self._journeys.send_link_if_known(email, purpose, tenant=tenant, ip=ip, sign_up=sign_up)

    def complete(
        self,
        token_or_code: str,
        *,
        tenant: str = "default",
        email: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> SignIn:
        """Sign in with the token of a link, or with a code and the ``email`` it was
        sent to: a :class:`~authsome.models.SignIn` with a session, or
        ``mfa_required`` and a ticket for a user with a second factor.

        :class:`~authsome.errors.InvalidToken` for a link or code that is unknown,
        used, expired, of another purpose or tenant, or whose address is no longer
        the user's, for a code after 5 attempts at it, and for any code of an
        address after ``JourneyPolicy.email_code_failure_limit`` failed code attempts
        in a row (until a sign-in of the account succeeds). Codes are throttled like
        passwords (per account and per ``ip``):
        :class:`~authsome.errors.RateLimited` after too many failures. Using either
        proves the address: ``email_verified_at`` is set; when it was not set
        before, the account's password stops working, and its other sessions,
        passkeys and API keys end (whoever registered the address may not own it).
        A sign-up link or code creates the user and records
        ``authsome.users.created`` too.
        ``ip`` and ``user_agent`` describe the client for the device list
        (:meth:`auth.sessions.list <authsome.sessions.Sessions.list>`).
        """
        client = Client.of(ip, user_agent)
        if email is None:
            return self._complete_link(token_or_code, tenant=tenant, client=client)
        return self._complete_code(token_or_code, email=email, tenant=tenant, ip=ip, client=client)

    def _complete_link(self, token: str, *, tenant: str, client: Client) -> SignIn:
        tenant = v.check_tenant(tenant)
        created: list[User] = []

        def link_followed() -> User:
            # Inside the sign-in's commit: the used link, the verified address and
            # the session (or MFA ticket) are written together.
            bound = self._journeys.tokens.consume(token, TokenPurpose.MAGIC_LINK, tenant=tenant)
            return self._owner(bound, created)

        return self._signed_in(self._sign_in.first_factor_passed(link_followed, client), created)

    def _complete_code(
        self, code: str, *, email: str, tenant: str, ip: str | None, client: Client
    ) -> SignIn:
        tenant = v.check_tenant(tenant)
        email = v.normalize_email(email)
        code = check_code(code)
        ip = v.check_ip(ip)
        now = self._clock()
        # Counted as a failure first, and committed, as a password attempt is.
        with one_commit(self._store):
            self._throttle.reserve(tenant, email, ip, now)
            failures = self._throttle.count_code_attempt(tenant, email, now)
        if failures > self._journeys.tokens.policy.email_code_failure_limit:
            raise InvalidToken()  # the code is not even looked at: the answer says nothing
        created: list[User] = []

        def code_entered() -> User:
            bound = self._journeys.tokens.consume_code(code, tenant=tenant, email=email)
            user = self._owner(bound, created)
            self._throttle.succeeded(tenant, email, ip, now)
            return user

        return self._signed_in(self._sign_in.first_factor_passed(code_entered, client), created)

    def _owner(self, bound: OneTimeToken, created: list[User]) -> User:
        """The user a used token signs in, with the address verified: its user, or
        for a sign-up token the account it creates (appended to ``created``)."""
        user_id = bound.user_id
        if not user_id:
            if not self._journeys.tokens.policy.sign_up_by_email:
                raise InvalidToken()  # sent before sign-up was turned off
            existing = self._store.find_user_by_email(bound.tenant, bound.email)
            if existing is None:
                existing = User(
                    new_ordered_id("usr"), bound.tenant, bound.email, None, self._clock()
                )
                self._store.create_user(existing, NO_PASSWORD_HASH)
                created.append(existing)
            # Registered meanwhile: the token still proves this address is theirs.
            user_id = existing.id
        before = self._store.get_user(user_id)
        now = self._clock()
        user = self._store.mark_email_verified(user_id, bound.email, now)
        if user is None:  # the address changed since the link was sent
            raise InvalidToken()
        if before is not None and before.email_verified_at is None and not created:
            self._end_registrants_access(user_id, now)
        return user

    def _end_registrants_access(self, user_id: str, now: datetime) -> None:
        """The address was proven just now, by whoever reads its mail; the account's
        password, sessions, passkeys and API keys were set up by whoever registered
        it without proof, perhaps someone else waiting for the owner to sign in
        (account pre-hijacking). They end here; the owner sets a password by a reset
        link. Second factors stay: they still guard this very sign-in."""
        self._store.set_password_hash(user_id, NO_PASSWORD_HASH)
        self._store.delete_user_mfa_tickets(user_id)
        self._store.revoke_user_sessions(user_id, now)
        self._journeys.end_unproven_keys(user_id, now)

    def _signed_in(self, result: SignIn, created: list[User]) -> SignIn:
        # After the commit: the new user is stored, with its session.
        for user in created:
            ctx = LedgerContext(tenant=user.tenant, user_id=user.id, event_id=user.id)
            self._billing.record(UsageEvent.USERS_CREATED, ctx)
        return result
