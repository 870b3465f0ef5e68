"""One-time tokens: the one mechanism every account journey uses.

A token is 256 bits from the CSPRNG; the store keeps only its SHA-256, bound to a
purpose, a user, the user's tenant and an address. It is short-lived, consumed
atomically (of racing uses exactly one succeeds) and a new token of a purpose
replaces the user's older ones. Validation always names the tenant it serves: a
token of another tenant is as unknown as a made-up one.

A sign-in at an identity provider has no user yet: its state is a *user-less*
token (:meth:`OneTimeTokens.issue_state`) that carries a small payload instead. The
payload is sealed (AES-256-GCM) under a key derived from the token, which only its
holder has: the store keeps the token's hash and a ciphertext it cannot open.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from authsome import _validation as v
from authsome._keys import PurposeKeys
from authsome._time import Clock
from authsome.crypto import SecretBox, derive_key, keyed_digest, new_token, sha256_hex
from authsome.errors import AlreadyExists, DecryptionError, InvalidToken, ValidationError
from authsome.models import OneTimeState, OneTimeToken, User
from authsome.stores import Store

__all__ = ["JourneyPolicy", "OneTimeTokens", "TokenPurpose", "check_code"]

# A token is new_token()'s 43 URL-safe characters; anything far longer is not one of
# ours, and refusing it before hashing keeps the cost of bad input bounded.
MAX_TOKEN = 128
# One fixed counter that only decoy writes touch; it lives a second.
_DECOY_COUNTER = "one-time-token-decoy"
# E-mail codes: their digits, the attempts one code survives, and the key of their
# stored hashes (a code has only 10**6 values: an unkeyed hash of it, read from a
# dump of the database, would give it away at once).
CODE_LENGTHS = range(6, 9)
MAX_CODE_ATTEMPTS = 5
_CODE_KEY_PURPOSE = "authsome.onetime.email-code"


class TokenPurpose(StrEnum):
    """What a one-time token may be used for (and nothing else)."""

    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"  # noqa: S105 (a purpose, not a password)
    MAGIC_LINK = "magic_link"
    EMAIL_CODE = "email_code"
    CHANGE_EMAIL = "change_email"
    SSO_STATE = "sso_state"
    SOCIAL_STATE = "social_state"
    SAML_STATE = "saml_state"


@dataclass(frozen=True, slots=True)
class JourneyPolicy:
    """Lifetimes of the journeys' tokens, and whether password sign-in needs a
    verified address.

    With ``require_verified_email=True`` a correct password of a user whose address
    is not verified is refused with the same :class:`~authsome.errors.InvalidCredentials`
    as a wrong one (only the owner, who can read the mail, can tell); a new
    verification message is sent to them instead.

    Requests that mail an address without proof of its owner (password reset, sign-in
    links) send at most ``mails_per_address`` messages per ``mail_window`` to one
    address, and at most ``mails_per_ip`` per ``mail_window`` for one client address
    (the ``ip`` the request names), whichever addresses it asks for; further requests
    get the same answer and send nothing, so nobody can flood a mailbox, or mail many
    addresses, through the application.

    An e-mail sign-in code has ``email_code_length`` digits (6 to 8) and survives
    5 attempts. Failed code attempts at one address are also counted across codes:
    after ``email_code_failure_limit`` in a row (100 by default, within NIST SP
    800-63B's limit on consecutive failures), codes for the address are refused until
    a sign-in of the account succeeds some other way (a link, a password); any
    successful sign-in ends the run. With
    ``sign_up_by_email=True`` a passwordless sign-in begun for an
    address without an account mails a link or code that creates the account
    (its address verified) when it is used; off by default.
    """

    verification_ttl: timedelta = timedelta(hours=24)
    reset_ttl: timedelta = timedelta(minutes=30)
    magic_link_ttl: timedelta = timedelta(minutes=15)
    email_code_ttl: timedelta = timedelta(minutes=15)
    email_change_ttl: timedelta = timedelta(hours=24)
    sso_state_ttl: timedelta = timedelta(minutes=10)
    require_verified_email: bool = False
    mails_per_address: int = 5
    mail_window: timedelta = timedelta(hours=1)
    mails_per_ip: int = 50
    email_code_length: int = 6
    email_code_failure_limit: int = 100
    sign_up_by_email: bool = False

    def __post_init__(self) -> None:
        for name in (
            "verification_ttl",
            "reset_ttl",
            "magic_link_ttl",
            "email_code_ttl",
            "email_change_ttl",
            "sso_state_ttl",
        ):
            ttl = getattr(self, name)
            if not isinstance(ttl, timedelta) or not timedelta(0) < ttl <= timedelta(days=7):
                raise ValidationError(f"{name} must be a timedelta above 0 and at most 7 days")
        for name in ("mails_per_address", "mails_per_ip", "email_code_failure_limit"):
            count: object = getattr(self, name)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValidationError(f"{name} must be a positive int")
        window: object = self.mail_window
        if not isinstance(window, timedelta) or window < timedelta(seconds=1):
            raise ValidationError("mail_window must be a timedelta of at least one second")
        length: object = self.email_code_length
        if isinstance(length, bool) or not isinstance(length, int) or length not in CODE_LENGTHS:
            raise ValidationError("email_code_length must be 6, 7 or 8")
        if not isinstance(self.sign_up_by_email, bool):
            raise ValidationError("sign_up_by_email must be a bool")

    def ttl(self, purpose: TokenPurpose) -> timedelta:
        """How long a token of ``purpose`` lives."""
        return {
            TokenPurpose.VERIFY_EMAIL: self.verification_ttl,
            TokenPurpose.RESET_PASSWORD: self.reset_ttl,
            TokenPurpose.MAGIC_LINK: self.magic_link_ttl,
            TokenPurpose.EMAIL_CODE: self.email_code_ttl,
            TokenPurpose.CHANGE_EMAIL: self.email_change_ttl,
            TokenPurpose.SSO_STATE: self.sso_state_ttl,
            TokenPurpose.SOCIAL_STATE: self.sso_state_ttl,  # the same journey, the same life
            TokenPurpose.SAML_STATE: self.sso_state_ttl,
        }[purpose]


class OneTimeTokens:
    """Issues and consumes one-time tokens (used by the journeys, not by apps)."""

    def __init__(
        self, store: Store, policy: JourneyPolicy, clock: Clock, keys: PurposeKeys
    ) -> None:
        self._store = store
        self.policy = policy
        self._clock = clock
        self._keys = keys

    def issue(self, user: User, purpose: TokenPurpose, *, email: str | None = None) -> str:
        """A new token of ``purpose`` for ``user`` (bound to ``email``, by default
        the user's address); the user's older tokens of ``purpose`` stop working.

        For :attr:`TokenPurpose.EMAIL_CODE` the token is a code of
        ``policy.email_code_length`` digits. A ``user`` whose ``id`` is ``""``
        stands for an address without an account (a sign-up token)."""
        now = self._clock()
        bound = OneTimeToken(
            purpose=purpose.value,
            user_id=user.id,
            tenant=user.tenant,
            email=user.email if email is None else email,
            created_at=now,
            expires_at=now + self.policy.ttl(purpose),
        )
        if purpose is not TokenPurpose.EMAIL_CODE:
            token = new_token()
            self._store.create_one_time_token(sha256_hex(token), bound, now)
            return token
        for _ in range(3):  # a code equal to a live one of this address: draw again
            code = self._new_code()
            try:
                code_hash = self._code_hash(bound.tenant, bound.email, code)
                self._store.create_one_time_token(code_hash, bound, now)
            except AlreadyExists:
                continue
            return code
        raise AlreadyExists("no fresh e-mail code")  # one in 10**18 with 6 digits

    def consume_code(self, code: str, *, tenant: str, email: str) -> OneTimeToken:
        """Count one attempt at the e-mail code sent to ``email`` in ``tenant``
        (normalized both) and, if ``code`` is it, use it up and return what it is
        bound to. :class:`~authsome.errors.InvalidToken` for a wrong, expired or
        used code, a code past its attempts, or an address with no code: the same
        work and answer for each."""
        now = self._clock()
        consumed = self._store.attempt_one_time_code(
            self._code_hash(tenant, email, code),
            TokenPurpose.EMAIL_CODE.value,
            tenant,
            email,
            now,
            MAX_CODE_ATTEMPTS,
        )
        if consumed is None:
            # A wrong code wrote its count, an address without a code wrote nothing
            # (and its commit would be the quicker): one more write for both.
            self._store.hit_counter(_DECOY_COUNTER, now, 1)
            raise InvalidToken()
        return consumed

    def consume(self, token: str, purpose: TokenPurpose, *, tenant: str) -> OneTimeToken:
        """Use ``token`` up and return what it is bound to.

        :class:`~authsome.errors.InvalidToken` for a token that is unknown, expired,
        used, of another purpose or of another tenant (one message for all);
        :class:`~authsome.errors.ValidationError` for input no token can be.
        """
        consumed = self._store.consume_one_time_token(
            _token_hash(token), purpose.value, v.check_tenant(tenant), self._clock()
        )
        if consumed is None:
            raise InvalidToken()
        return consumed

    def peek(self, token: str, purpose: TokenPurpose, *, tenant: str) -> OneTimeToken:
        """What ``token`` is bound to, leaving it usable: a journey checks its input
        against the token's user first, so a refused input costs no token. The same
        errors as :meth:`consume`."""
        found = self._store.find_one_time_token(
            _token_hash(token), purpose.value, v.check_tenant(tenant), self._clock()
        )
        if found is None:
            raise InvalidToken()
        return found

    def issue_state(self, purpose: TokenPurpose, *, tenant: str, payload: str) -> str:
        """A new user-less token of ``purpose`` in ``tenant`` carrying ``payload``
        (sealed under a key derived from the token; see the module docstring)."""
        now = self._clock()
        token = new_token()
        sealed = _state_box(token).seal(payload, aad=f"{purpose.value}:{tenant}")
        state = OneTimeState(
            purpose=purpose.value,
            tenant=tenant,
            payload=sealed,
            created_at=now,
            expires_at=now + self.policy.ttl(purpose),
        )
        self._store.create_one_time_state(sha256_hex(token), state, now)
        return token

    def consume_state(self, token: str, purpose: TokenPurpose, *, tenant: str) -> str:
        """Use a token of :meth:`issue_state` up and return its payload; the same
        errors as :meth:`consume`."""
        tenant = v.check_tenant(tenant)
        consumed = self._store.consume_one_time_state(
            _token_hash(token), purpose.value, tenant, self._clock()
        )
        if consumed is None:
            raise InvalidToken()
        try:
            return _state_box(token).open(consumed.payload, aad=f"{purpose.value}:{tenant}")
        except DecryptionError:
            raise InvalidToken() from None

    def withdraw(self, token: str, *, code_of: User | None = None) -> None:
        """Make an issued token unusable (its message could not be sent); an e-mail
        code is named with ``code_of``, the user it was issued to (its hash is
        keyed by their address)."""
        if code_of is not None:
            token_hash = self._code_hash(code_of.tenant, code_of.email, token)
        else:
            token_hash = sha256_hex(token)
        self._store.delete_one_time_token(token_hash)

    def withdraw_all(self, user_id: str) -> None:
        """Make every token of the user unusable (its password was reset)."""
        self._store.delete_user_one_time_tokens(user_id)

    def decoy(self) -> None:
        """The work of :meth:`issue` for an address nobody has: a token made and
        hashed, and a committed store write, so both answers take as long.

        The write is one counter's upsert: a transaction that changes a row, as
        storing a token is (a delete of nothing would commit nothing and be faster).
        """
        sha256_hex(new_token())
        self._store.hit_counter(_DECOY_COUNTER, self._clock(), 1)

    def _new_code(self) -> str:
        length = self.policy.email_code_length
        return f"{secrets.randbelow(10**length):0{length}d}"  # uniform over all codes

    def _code_hash(self, tenant: str, email: str, code: str) -> str:
        """A code's stored hash: keyed, and bound to its tenant and address (a code
        is short; other addresses may hold the same digits)."""
        key = self._keys.key(_CODE_KEY_PURPOSE)
        return keyed_digest(key, f"{tenant}\x00{email}\x00{code}")


def check_code(code: object) -> str:
    """An e-mail code as typed: surrounding spaces dropped, then 6 to 8 ASCII
    digits, or :class:`~authsome.errors.ValidationError` (its length checked first)."""
    text = v.require_str("code", code)
    if len(text) > 32:
        raise ValidationError("code must be 6 to 8 digits")
    text = text.strip()
    if len(text) not in CODE_LENGTHS or not (text.isascii() and text.isdigit()):
        raise ValidationError("code must be 6 to 8 digits")
    return text


def _token_hash(token: str) -> str:
    """The stored hash of ``token``; its length is checked before it is hashed."""
    text = v.require_str("token", token)
    if not text or len(text) > MAX_TOKEN:
        raise ValidationError(f"token must be 1..{MAX_TOKEN} characters")
    return sha256_hex(text)


def _state_box(token: str) -> SecretBox:
    """The box that seals a user-less token's payload: keyed by the token itself."""
    return SecretBox(derive_key(token.encode("utf-8"), "authsome.onetime.state"))
