"""Users: registration and lookup, per tenant, and the account journeys."""

from __future__ import annotations

from authsome import _validation as v
from authsome._billing import Billing
from authsome._time import Clock
from authsome.bridge import LedgerContext
from authsome.crypto import PasswordHasher, new_ordered_id
from authsome.errors import AlreadyExists, NotFound
from authsome.features import UsageEvent
from authsome.journeys import AccountJourneys
from authsome.models import User
from authsome.stores import Store

__all__ = ["Users"]


class Users:
    """``auth.users``: register and look up users; verify their address and reset
    their password by e-mail."""

    def __init__(
        self,
        store: Store,
        billing: Billing,
        hasher: PasswordHasher,
        clock: Clock,
        journeys: AccountJourneys,
    ):
        self._store = store
        self._billing = billing
        self._hasher = hasher
        self._clock = clock
        self._journeys = journeys

    def register(
        self, email: str, password: str, *, tenant: str = "default", name: str | None = None
    ) -> User:
        """Create a user; records ``authsome.users.created`` once it is stored.

        Raises :class:`~authsome.errors.AlreadyExists` when the (normalized) e-mail is
        taken in ``tenant``, :class:`~authsome.errors.ValidationError` on bad input.
        """
        tenant = v.check_tenant(tenant)
        email = v.normalize_email(email)
        password = v.normalize_password(password)
        name = v.check_name(name)
        v.check_new_password(password, email)
        if self._store.find_user_by_email(tenant, email) is not None:
            raise AlreadyExists("a user with this e-mail exists in this tenant")
        user = User(new_ordered_id("usr"), tenant, email, name, self._clock())
        self._store.create_user(user, self._hasher.hash(password))
        ctx = LedgerContext(tenant=tenant, user_id=user.id, event_id=user.id)
        self._billing.record(UsageEvent.USERS_CREATED, ctx)
        return user

    def get(self, user_id: str) -> User:
        """The user with this id; :class:`~authsome.errors.NotFound` otherwise."""
        user = self._store.get_user(v.require_str("user_id", user_id))
        if user is None:
            raise NotFound("no such user")
        return user

    def find_by_email(self, email: str, *, tenant: str = "default") -> User | None:
        """The user with this e-mail (normalized first) in ``tenant``, or ``None``."""
        return self._store.find_user_by_email(v.check_tenant(tenant), v.normalize_email(email))

    def send_verification(self, user_id: str) -> None:
        """E-mail the user a link (``<link_base_url>/verify-email?token=...``) that
        proves the address is theirs; the link's token works once, for
        ``JourneyPolicy.verification_ttl`` (24 h by default), and a new one replaces
        it. Raises :class:`~authsome.errors.MailNotSent` (the token withdrawn) when
        the mailer fails, :class:`~authsome.errors.NotFound` for an unknown user.
        Records no usage."""
        self._journeys.send_verification(user_id)

    def verify_email(self, token: str, *, tenant: str = "default") -> User:
        """Use the token of a verification link; returns the user with
        ``email_verified_at`` set. :class:`~authsome.errors.InvalidToken` for a
        token that is unknown, used, expired, of another purpose or tenant, or whose
        address is no longer the user's."""
        return self._journeys.verify_email(token, tenant=tenant)

    def request_password_reset(
        self, email: str, *, tenant: str = "default", ip: str | None = None
    ) -> None:
        """Send a reset link (``<link_base_url>/reset-password?token=...``, valid for
        ``JourneyPolicy.reset_ttl``, 30 minutes by default) if ``email`` has an
        account in ``tenant``.

        Returns ``None`` either way, after the same work, so the answer tells nobody
        whether the address exists. The message is sent from the background: a mail
        server's delay or failure cannot tell either (a failed message's token is
        withdrawn and the failure logged on ``authsome.mail``).
        """
        self._journeys.request_password_reset(email, tenant=tenant, ip=ip)

    def reset_password(self, token: str, new_password: str, *, tenant: str = "default") -> User:
        """Set ``new_password`` (NIST rules, as at registration) with a reset token.

        Every session of the user is revoked, their pending MFA sign-ins are
        dropped and their other one-time tokens withdrawn; when the reset is the
        first proof of the address, the passkeys and API keys set up before end too
        (whoever registered an unverified address may not own it). The user is not
        signed in: they sign in with the new password (and their second factor, if
        any).
        :class:`~authsome.errors.InvalidToken` for a bad token,
        :class:`~authsome.errors.ValidationError` for a refused password (the token
        then still works). Records no usage.
        """
        return self._journeys.reset_password(token, new_password, tenant=tenant)

    def change_password(
        self,
        user_id: str,
        current_password: str,
        new_password: str,
        *,
        keep_session_id: str | None = None,
        ip: str | None = None,
    ) -> User:
        """Change a signed-in user's password: ``current_password`` must be right
        (a wrong one is :class:`~authsome.errors.InvalidCredentials`, counted by the
        sign-in throttle, so :class:`~authsome.errors.RateLimited` comes after too
        many), ``new_password`` follows the registration rules.

        Every other session of the user is signed out: pass the session the request
        came with as ``keep_session_id`` to keep it (without it, all of them end).
        Pending MFA sign-ins and one-time links end too. Records no usage.
        """
        return self._journeys.change_password(
            user_id, current_password, new_password, keep_session_id=keep_session_id, ip=ip
        )

    def request_email_change(
        self,
        user_id: str,
        new_email: str,
        *,
        current_password: str,
        ip: str | None = None,
    ) -> None:
        """Ask to change a signed-in user's address to ``new_email``: a link
        (``<link_base_url>/confirm-email-change?token=...``, valid for
        ``JourneyPolicy.email_change_ttl``, 24 hours by default) goes to the new
        address, and nothing changes until it is followed
        (:meth:`confirm_email_change`). A new request replaces the previous link.

        ``current_password`` must be right: a session alone (perhaps left open on a
        shared computer) cannot move the account to another mailbox. A wrong one is
        :class:`~authsome.errors.InvalidCredentials`, counted by the sign-in
        throttle (:class:`~authsome.errors.RateLimited` after too many).

        An address another user of the tenant has gets no message, and the call
        answers as for a free one: it does not tell whether an address has an
        account. :class:`~authsome.errors.MailNotSent` (the link withdrawn) when the
        mailer fails; :class:`~authsome.errors.ValidationError` for a malformed
        address or the current one. Records no usage.
        """
        self._journeys.request_email_change(
            user_id, new_email, current_password=current_password, ip=ip
        )

    def confirm_email_change(self, token: str, *, tenant: str = "default") -> User:
        """Apply the change with the token of the link sent to the new address;
        returns the user with the new address, verified (following the link proved
        it). The replaced address gets a notice saying what changed (no link), and
        the user's other one-time links end (a reset link sent to the old address
        must not work any more). Sessions stay signed in: see the e-mail change page
        of the docs for why, and :meth:`Sessions.revoke_all
        <authsome.sessions.Sessions.revoke_all>` to end them.

        :class:`~authsome.errors.InvalidToken` for a token that is unknown, used,
        expired, of another purpose or tenant; :class:`~authsome.errors.AlreadyExists`
        when another user took the address meanwhile (nothing changes, the link
        stays usable). Records no usage.
        """
        return self._journeys.confirm_email_change(token, tenant=tenant)
