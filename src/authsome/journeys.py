"""Account journeys: verifying an address and resetting a forgotten password by
e-mail, changing a password, and changing the address. The e-mail journeys use the
one-time tokens of :mod:`authsome.onetime` and send through the engine's mailer.
None of them is a sign-in, so none records usage."""

from __future__ import annotations

import unicodedata
from datetime import datetime

from authsome import _validation as v
from authsome._keys import PurposeKeys
from authsome._time import Clock
from authsome._units import one_commit
from authsome.crypto import PasswordHasher, keyed_digest, new_token
from authsome.errors import (
    AlreadyExists,
    InvalidCredentials,
    InvalidToken,
    MailNotSent,
    NotFound,
    ValidationError,
)
from authsome.mail import MailDispatcher, MailMessage, MailSettings
from authsome.models import User
from authsome.onetime import OneTimeTokens, TokenPurpose
from authsome.sessions import Sessions
from authsome.stores import Store
from authsome.throttle import Throttle

__all__ = ["AccountJourneys"]

_MAIL_KEY_PURPOSE = "authsome.journeys.mail"

# The path added to MailSettings.link_base_url for each journey's link.
LINK_PATHS = {
    TokenPurpose.VERIFY_EMAIL: "verify-email",
    TokenPurpose.RESET_PASSWORD: "reset-password",
    TokenPurpose.MAGIC_LINK: "sign-in",
    TokenPurpose.CHANGE_EMAIL: "confirm-email-change",
}
# The notice sent to the address an e-mail change replaced.
_EMAIL_CHANGED = "email_changed"


class AccountJourneys:
    """The journeys behind ``auth.users.send_verification`` and friends."""

    def __init__(
        self,
        store: Store,
        hasher: PasswordHasher,
        clock: Clock,
        tokens: OneTimeTokens,
        mail: MailDispatcher,
        settings: MailSettings,
        sessions: Sessions,
        throttle: Throttle,
        purpose_keys: PurposeKeys,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self.tokens = tokens
        self._mail = mail
        self._settings = settings
        self._sessions = sessions
        self._throttle = throttle
        self._purpose_keys = purpose_keys

    # -- e-mail verification ----------------------------------------------------
    def send_verification(self, user_id: str) -> None:
        """Send the user a link that proves the address is theirs.

        :class:`~authsome.errors.MailNotSent` when the mailer fails: the link's
        token is withdrawn then, so nothing usable is left behind.
        """
        user = self._store.get_user(v.require_str("user_id", user_id))
        if user is None:
            raise NotFound("no such user")
        self._send(user, TokenPurpose.VERIFY_EMAIL)

    def _send(self, user: User, purpose: TokenPurpose) -> None:
        """Issue a token of ``purpose`` and mail its link; withdraw it if not sent."""
        token = self.tokens.issue(user, purpose)
        try:
            self._mail.send_now(self._message(user, purpose, token))
        except MailNotSent:
            self.tokens.withdraw(
                token, code_of=user if purpose is TokenPurpose.EMAIL_CODE else None
            )
            raise

    def verify_email(self, token: str, *, tenant: str) -> User:
        """Use a verification token; the user, with ``email_verified_at`` set."""
        bound = self.tokens.consume(token, TokenPurpose.VERIFY_EMAIL, tenant=tenant)
        # Linked provider accounts stay as they are: none was linked or provisioned
        # by an address its provider did not vouch for (authsome._identities).
        user = self._store.mark_email_verified(bound.user_id, bound.email, self._clock())
        if user is None:  # the address changed since the link was sent
            raise InvalidToken()
        return user

    def check_verified(self, user: User) -> None:
        """Refuse a sign-in of a user whose address is unverified, with the answer of
        a wrong password; the owner gets a new verification link by mail (from the
        background: the answer must not wait for, or depend on, the mail server)."""
        if user.email_verified_at is None:
            self._mail.later(lambda: self._send(user, TokenPurpose.VERIFY_EMAIL))
            raise InvalidCredentials()

    # -- password reset ---------------------------------------------------------
    def request_password_reset(self, email: str, *, tenant: str, ip: str | None) -> None:
        """Send a reset link if the address has an account; the same answer, after
        the same work, either way."""
        self.send_link_if_known(email, TokenPurpose.RESET_PASSWORD, tenant=tenant, ip=ip)

    def send_link_if_known(
        self,
        email: str,
        purpose: TokenPurpose,
        *,
        tenant: str,
        ip: str | None,
        sign_up: bool = False,
    ) -> None:
        """Mail a link (or code) of ``purpose`` to the account with this address, if
        there is one, or with ``sign_up`` a sign-up token to an address without
        one; the caller cannot tell whether there was."""
        tenant = v.check_tenant(tenant)
        email = v.normalize_email(email)
        client = v.check_ip(ip)
        # The caller's thread only checks the input and queues the request: the
        # lookup, the token and the message happen in the background, so neither the
        # store nor the mail server's delay or failure can tell the caller whether
        # this address has an account.
        self._mail.later(lambda: self._link_requested(tenant, email, purpose, sign_up, client))

    def _link_requested(
        self, tenant: str, email: str, purpose: TokenPurpose, sign_up: bool, ip: str | None
    ) -> None:
        user = self._store.find_user_by_email(tenant, email)
        if user is None and sign_up:
            user = User("", tenant, email, None, self._clock())  # no account yet
        # Counted for unknown addresses too: the same work either way.
        if not self._may_mail(tenant, email, ip) or user is None:
            self._decoy(tenant, email, purpose)
        else:
            self._send(user, purpose)

    def _may_mail(self, tenant: str, email: str, ip: str | None) -> bool:
        """Count one unproven request to mail this address for this client; whether it
        is within ``JourneyPolicy.mails_per_address`` and ``mails_per_ip`` for the
        window. Both counters are hit, so a refused request still counts."""
        policy = self.tokens.policy
        key = self._purpose_keys.key(_MAIL_KEY_PURPOSE)
        # Keyed, so the counter names do not reveal the addresses.
        name = keyed_digest(key, f"{tenant}\x00{email}")
        window = int(policy.mail_window.total_seconds())
        hits, _ = self._store.hit_counter(f"mail:{name}", self._clock(), window)
        within = hits <= policy.mails_per_address
        if ip is not None:
            client = keyed_digest(key, f"ip\x00{ip}")
            client_hits, _ = self._store.hit_counter(f"mail-ip:{client}", self._clock(), window)
            within = within and client_hits <= policy.mails_per_ip
        return within

    def _decoy(self, tenant: str, email: str, purpose: TokenPurpose) -> None:
        # What _send does, for nobody: a token made and hashed, a store write, a
        # message rendered; nothing is sent.
        self.tokens.decoy()
        nobody = User("", tenant, email, None, self._clock())
        self._message(nobody, purpose, new_token())

    def end_unproven_keys(self, user_id: str, now: datetime) -> None:
        """The account's address was just proven for the first time: the passkeys and
        API keys set up before were set up by whoever registered the address without
        proof, perhaps not its owner (account pre-hijacking), and end here. Second
        factors stay: they guard the sign-in that follows."""
        for passkey in self._store.list_user_passkeys(user_id):
            self._store.delete_passkey(user_id, passkey.credential_id)
        for key in self._store.list_api_keys("user", user_id):
            self._store.revoke_api_key(key.id, now)

    def reset_password(self, token: str, new_password: str, *, tenant: str) -> User:
        """Set a new password with a reset token, sign out every session of the
        user and drop their pending MFA sign-ins. Does not sign in. When the reset
        is the first proof of the address, the passkeys and API keys set up before
        end too (:meth:`end_unproven_keys`).

        A new password that is refused leaves the link usable: it is checked
        against the token's user before the token is used up. Every write is one
        commit, so no crash leaves the new password with the old sessions alive."""
        tenant = v.check_tenant(tenant)
        password = v.normalize_password(new_password)
        v.check_new_password(password, email="")  # the common ones, before any lookup
        bound = self.tokens.peek(token, TokenPurpose.RESET_PASSWORD, tenant=tenant)
        user = self._store.get_user(bound.user_id)
        if user is None:
            raise InvalidToken()
        v.check_new_password(password, user.email)
        new_hash = self._hasher.hash(password)  # slow: outside the commit's write lock
        with one_commit(self._store):
            bound = self.tokens.consume(token, TokenPurpose.RESET_PASSWORD, tenant=tenant)
            self._store.set_password_hash(bound.user_id, new_hash)
            self._sessions.revoke_all(bound.user_id)  # pending MFA sign-ins included
            self.tokens.withdraw_all(bound.user_id)
            if user.email_verified_at is None:
                self.end_unproven_keys(bound.user_id, self._clock())
            # Following the link proved the address, as a verification link would have.
            # Linked provider accounts stay as they are: none was linked or provisioned
            # by an address its provider did not vouch for (authsome._identities).
            verified = self._store.mark_email_verified(bound.user_id, bound.email, self._clock())
        return verified or user

    # -- password change --------------------------------------------------------
    def change_password(
        self,
        user_id: str,
        current_password: str,
        new_password: str,
        *,
        keep_session_id: str | None,
        ip: str | None,
    ) -> User:
        """Replace a signed-in user's password after checking the current one."""
        user_id = v.require_str("user_id", user_id)
        current = _current_password(current_password)
        password = v.normalize_password(new_password)
        ip = v.check_ip(ip)
        if keep_session_id is not None:
            v.require_str("keep_session_id", keep_session_id)
        user = self._store.get_user(user_id)
        if user is None:
            raise NotFound("no such user")
        v.check_new_password(password, user.email)
        now = self._check_current_password(user, current, ip)
        new_hash = self._hasher.hash(password)  # slow: outside the commit's write lock
        with one_commit(self._store):
            self._throttle.succeeded(user.tenant, user.email, ip, now)
            self._store.set_password_hash(user.id, new_hash)
            if keep_session_id is None:
                self._sessions.revoke_all(user.id)
            else:
                self._store.delete_user_mfa_tickets(user.id)
                self._store.revoke_other_user_sessions(user.id, keep_session_id, now)
            # Links sent for the old password (a reset) must not outlive it.
            self.tokens.withdraw_all(user.id)
        return user

    def _check_current_password(self, user: User, current: str, ip: str | None) -> datetime:
        """Re-authenticate a signed-in user by their password; the moment it was
        checked. Counted like a sign-in attempt (a stolen session cannot guess the
        password), and committed before the slow hash check, as at sign-in; the
        caller gives the hit back (``Throttle.succeeded``) once its change is made."""
        now = self._clock()
        self._throttle.prune_now_and_then(now)
        with one_commit(self._store):
            self._throttle.reserve(user.tenant, user.email, ip, now)
        if not self._hasher.verify(self._store.get_password_hash(user.id), current):
            raise InvalidCredentials()
        return now

    # -- e-mail change ----------------------------------------------------------
    def request_email_change(
        self, user_id: str, new_email: str, *, current_password: str, ip: str | None
    ) -> None:
        """Mail a confirmation link to ``new_email``, after checking the user's
        password; nothing changes until the link is followed."""
        user_id = v.require_str("user_id", user_id)
        current = _current_password(current_password)
        new_email = v.normalize_email(new_email)
        ip = v.check_ip(ip)
        user = self._store.get_user(user_id)
        if user is None:
            raise NotFound("no such user")
        if new_email == user.email:
            raise ValidationError("new_email is the current address")
        now = self._check_current_password(user, current, ip)
        with one_commit(self._store):
            self._throttle.succeeded(user.tenant, user.email, ip, now)
        if self._store.find_user_by_email(user.tenant, new_email) is not None:
            # Taken: nothing is sent, and the answer is the same as when it is free,
            # so a signed-in user cannot probe which addresses have accounts.
            return
        token = self.tokens.issue(user, TokenPurpose.CHANGE_EMAIL, email=new_email)
        try:
            self._mail.send_now(self._message(user, TokenPurpose.CHANGE_EMAIL, token, to=new_email))
        except MailNotSent:
            self.tokens.withdraw(token)
            raise

    def confirm_email_change(self, token: str, *, tenant: str) -> User:
        """Make the token's new address the user's (verified), in one commit with
        the used token and the user's other one-time tokens withdrawn; then notify
        the replaced address from the background."""
        tenant = v.check_tenant(tenant)
        now = self._clock()
        with one_commit(self._store):
            # Looked at before it is used: a refused change leaves the link usable
            # on every store (a durable one also rolls the block back).
            bound = self.tokens.peek(token, TokenPurpose.CHANGE_EMAIL, tenant=tenant)
            user = self._store.get_user(bound.user_id)
            if user is None:
                raise InvalidToken()
            holder = self._store.find_user_by_email(tenant, bound.email)
            # The user themself: a racing use of this link has just won (the token
            # is gone, and consuming it below says so).
            if holder is not None and holder.id != user.id:
                raise AlreadyExists("a user with this e-mail exists in this tenant")
            bound = self.tokens.consume(token, TokenPurpose.CHANGE_EMAIL, tenant=tenant)
            # A racing change to the same address fails here on the unique address
            # (AlreadyExists, rolled back); one of the user's own, with None.
            changed = self._store.change_user_email(user.id, user.email, bound.email, now)
            if changed is None:
                raise InvalidToken()
            # Linked provider accounts stay as they are: none was linked or provisioned
            # by an address its provider did not vouch for (authsome._identities).
            # Links sent to the old address (a reset) must not outlive it.
            self.tokens.withdraw_all(user.id)
        notice = self._notice_of_change(user.email, changed)
        self._mail.later(lambda: self._mail.send_now(notice))
        return changed

    # -- messages ---------------------------------------------------------------
    def _message(
        self, user: User, purpose: TokenPurpose, token: str, *, to: str | None = None
    ) -> MailMessage:
        """The message with the link (or, for an e-mail code, the code: it is typed
        in, not followed) of ``purpose``, to ``to`` (by default the user's address)."""
        address = user.email if to is None else to
        path = LINK_PATHS.get(purpose)
        minutes = int(self.tokens.policy.ttl(purpose).total_seconds() // 60)
        return self._settings.template(purpose.value).render(
            to=address,
            kind=purpose.value,
            sender=self._settings.sender,
            link="" if path is None else self._settings.link(path, token),
            code=token if path is None else "",
            email=address,
            minutes=str(minutes),
        )

    def _notice_of_change(self, old_email: str, user: User) -> MailMessage:
        """The notice to ``old_email`` that the address changed: no link, no token."""
        return self._settings.template(_EMAIL_CHANGED).render(
            to=old_email,
            kind=_EMAIL_CHANGED,
            sender=self._settings.sender,
            email=old_email,
            new_email=user.email,
        )


def _current_password(current_password: object) -> str:
    """The current password as given to a re-authentication: bounded before NFKC
    (which can grow a text many times), as at sign-in."""
    current = v.require_str("current_password", current_password)
    if not current or len(current) > v.MAX_PASSWORD:
        raise ValidationError(f"current_password must be 1..{v.MAX_PASSWORD} characters")
    return unicodedata.normalize("NFKC", current)
