"""Sign-in by a link sent by e-mail (a "magic link").

The link is a one-time token of :mod:`authsome.onetime`; following it is a first
factor like a password, so the sign-in goes on through the one completion point
(:class:`~authsome._signin.SignInFlow`): a user with a second factor gets an MFA
ticket, and only a completed sign-in records ``authsome.sessions.created`` and
``authsome.users.active``, once.
"""

from __future__ import annotations

from typing import Literal

from authsome import _validation as v
from authsome._signin import SignInFlow
from authsome._time import Clock
from authsome.errors import InvalidToken, ValidationError
from authsome.journeys import AccountJourneys
from authsome.models import SignIn, User
from authsome.onetime import TokenPurpose
from authsome.sessions import Client
from authsome.stores import Store

__all__ = ["Passwordless"]


class Passwordless:
    """``auth.passwordless``: sign-in links by e-mail."""

    def __init__(
        self, store: Store, journeys: AccountJourneys, sign_in: SignInFlow, clock: Clock
    ) -> None:
        self._store = store
        self._journeys = journeys
        self._sign_in = sign_in
        self._clock = clock

    def begin(
        self,
        email: str,
        *,
        tenant: str = "default",
        ip: str | None = None,
        method: Literal["link"] = "link",
    ) -> None:
        """Mail a sign-in link (``<link_base_url>/sign-in?token=...``, valid for
        ``JourneyPolicy.magic_link_ttl``, 15 minutes by default) to the account with
        this address in ``tenant``.

        Returns ``None`` whether or not the account exists, in the same time: like a
        password reset, the lookup and the message happen in the background. A new
        link replaces the previous one.
        """
        if method != "link":
            raise ValidationError('method must be "link"')
        self._journeys.send_link_if_known(email, TokenPurpose.MAGIC_LINK, tenant=tenant, ip=ip)

    def complete(
        self,
        token: str,
        *,
        tenant: str = "default",
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> SignIn:
        """Sign in with the token of a link: a :class:`~authsome.models.SignIn` with
        a session, or ``mfa_required`` and a ticket for a user with a second factor.

        :class:`~authsome.errors.InvalidToken` for a token that is unknown, used,
        expired, of another purpose or tenant, or whose address is no longer the
        user's. Following the link proves the address: ``email_verified_at`` is set.
        ``ip`` and ``user_agent`` describe the client for the device list
        (:meth:`auth.sessions.list <authsome.sessions.Sessions.list>`).
        """
        tenant = v.check_tenant(tenant)
        client = Client.of(ip, user_agent)

        def link_followed() -> User:
            # Inside the sign-in's commit: the used link, the verified address and
            # the session (or MFA ticket) are written together.
            bound = self._journeys.tokens.consume(token, TokenPurpose.MAGIC_LINK, tenant=tenant)
            user = self._store.mark_email_verified(bound.user_id, bound.email, self._clock())
            if user is None:  # the address changed since the link was sent
                raise InvalidToken()
            return user

        return self._sign_in.first_factor_passed(link_followed, client)
