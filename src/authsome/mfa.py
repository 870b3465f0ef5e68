"""Multi-factor authentication: TOTP (RFC 6238) and single-use recovery codes.

* Enrolment is two steps, both gated by ``authsome.feature.mfa``:
  :meth:`Mfa.begin_totp` hands out the secret, :meth:`Mfa.confirm_totp` proves the
  authenticator app has it and returns the recovery codes (shown once). Only the
  confirmation records ``authsome.mfa.enrollments``.
* Codes are SHA-1, 6 digits, 30-second steps (what authenticator apps implement),
  accepted one step either side of the engine's clock. Each factor stores the last
  time-step it accepted and takes only a later one, in one conditional store
  update, so a code is accepted at most once, even by racing threads or processes.
* Recovery codes are 80 random bits each, stored as SHA-256 digests (their entropy
  makes a slow hash unnecessary) and deleted when used.
* A password sign-in of a user with a confirmed factor returns a ticket (256 random
  bits, stored hashed, 5 minutes, 5 attempts, single use) that :meth:`Mfa.verify`
  exchanges, with a code, for the session.
* Wrong codes are also counted per user (:data:`MAX_FAILURES` within
  :data:`FAILURE_WINDOW`), so fresh tickets do not buy an attacker more guesses.
* Windows pass, so the factor also counts consecutive wrong codes in the store (one
  atomic increment, shared by every process): after :data:`LOCKOUT_THRESHOLD` (100,
  NIST SP 800-63B) it refuses every TOTP code, right ones too, with
  :class:`~authsome.errors.MfaLocked`, until a recovery code is used or an
  administrator calls :meth:`Mfa.unlock`. A right code starts the count again.
* :meth:`Mfa.verify` takes ``tenant=``: a ticket of another tenant's user is
  answered like an unknown one and uses up none of its attempts.

TOTP secrets must be read back to check codes, so they cannot be hashed. Given a
``secret_key``, the engine seals them with AES-256-GCM bound to the factor's id;
without one they are stored as they are (a warning is logged once), and anyone who
can read the store can generate codes. A secret stored in clear or sealed under one
of ``previous_secret_keys`` still opens, and is sealed under the current key the
first time it is read. Secrets never appear in a ``repr``, a log line or an error
message.

Only enrolment is gated: a tenant that loses the feature keeps the second factor of
users who enrolled (verification and disabling still work), since silently dropping
it would weaken their accounts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

import pyotp

from authsome import _validation as v
from authsome._billing import Billing
from authsome._time import Clock
from authsome._units import one_commit
from authsome.bridge import LedgerContext
from authsome.crypto import (
    SEALED_PREFIX,
    Keyring,
    Resealed,
    new_id,
    new_token,
    reseal_all,
    sha256_hex,
)
from authsome.errors import (
    AlreadyExists,
    InvalidCredentials,
    InvalidToken,
    MfaLocked,
    NotFound,
    RateLimited,
    ValidationError,
)
from authsome.features import Feature, UsageEvent
from authsome.models import MfaFactor, MfaMethod, SignIn, StoredSecret, TOTPSetup, User
from authsome.sessions import Client
from authsome.stores import Store

if TYPE_CHECKING:  # signin imports nothing from here; this keeps it that way at run time
    from authsome._signin import SignInFlow

__all__ = [
    "FAILURE_WINDOW",
    "LOCKOUT_THRESHOLD",
    "MAX_FAILURES",
    "RECOVERY_CODES",
    "TICKET_ATTEMPTS",
    "TICKET_TTL",
    "Mfa",
    "SignInChallenge",
]

TOTP_DIGITS = 6
TOTP_PERIOD = 30  # seconds per time-step
TOTP_VALID_WINDOW = 1  # steps accepted either side of now (RFC 6238 §5.2 clock drift)
TOTP_SECRET_BYTES = 20  # 160 bits, RFC 4226's recommended length
RECOVERY_CODES = 10
RECOVERY_CODE_CHARS = 16  # base32, 5 bits each: 80 bits
TICKET_TTL = timedelta(minutes=5)
TICKET_ATTEMPTS = 5
MAX_FAILURES = 10
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT_THRESHOLD = 100  # consecutive wrong codes, NIST SP 800-63B-4 §3.2.2
MAX_ISSUER = 100
_MAX_CODE = 64
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# 0 and 1 are not base32: a user who reads them from a printed code meant O and I.
_LOOKALIKES = str.maketrans({"0": "O", "1": "I"})

security_log = logging.getLogger("authsome.security")


class _CodeKind(Enum):
    TOTP = "totp"
    RECOVERY = "recovery"
    MALFORMED = "malformed"  # cannot be right; checked (and counted) like a wrong code


class SignInChallenge:
    """Issues the ticket a password sign-in returns when the user has a second factor."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def issue(self, user: User) -> str | None:
        """A fresh ticket if ``user`` has a confirmed factor, else ``None``."""
        if not any(f.confirmed for f in self._store.list_mfa_factors(user.id)):
            return None
        ticket = new_token()
        now = self._clock()
        self._store.create_mfa_ticket(sha256_hex(ticket), user.id, now + TICKET_TTL, now)
        return ticket


class Mfa:
    """``auth.mfa``: enrol, verify and disable second factors."""

    def __init__(
        self,
        store: Store,
        billing: Billing,
        clock: Clock,
        *,
        keyring: Keyring,
        sign_in: SignInFlow,
    ) -> None:
        self._store = store
        self._billing = billing
        self._clock = clock
        self._keyring = keyring
        self._sign_in = sign_in

    # -- enrolment ---------------------------------------------------------------
    def begin_totp(self, user_id: str, *, issuer: str = "authsome") -> TOTPSetup:
        """Start a TOTP enrolment: a new secret and its ``otpauth://`` URI.

        Gated by ``authsome.feature.mfa`` (:class:`~authsome.errors.FeatureNotEntitled`
        before any secret exists). Replaces a pending enrolment; raises
        :class:`~authsome.errors.AlreadyExists` if TOTP is confirmed already.
        """
        user = self._user(user_id)
        issuer = _check_issuer(issuer)
        self._billing.require(Feature.MFA, LedgerContext(tenant=user.tenant, user_id=user.id))
        if self._confirmed_totp(user.id) is not None:
            raise AlreadyExists("TOTP is already enabled for this user")
        secret = base64.b32encode(secrets.token_bytes(TOTP_SECRET_BYTES)).decode("ascii")
        factor = MfaFactor(new_id("mfa"), user.id, MfaMethod.TOTP, self._clock())
        self._store.create_mfa_factor(factor, self._seal(factor.id, secret))
        uri = _totp(secret).provisioning_uri(name=user.email, issuer_name=issuer)
        return TOTPSetup(secret=secret, provisioning_uri=uri, factor_id=factor.id)

    def confirm_totp(self, user_id: str, code: str) -> list[str]:
        """Confirm the pending enrolment with a current code; returns the recovery
        codes, shown this once.

        Gated by ``authsome.feature.mfa``; records ``authsome.mfa.enrollments``
        (event id = the factor's id) once confirmed. A wrong code raises
        :class:`~authsome.errors.InvalidCredentials`; no pending enrolment,
        :class:`~authsome.errors.NotFound`.
        """
        user = self._user(user_id)
        kind, canonical = _classify(code)
        self._billing.require(Feature.MFA, LedgerContext(tenant=user.tenant, user_id=user.id))
        factor = self._pending_totp(user.id)
        now = self._clock()
        codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
        hashes = [_recovery_hash(_classify(c)[1]) for c in codes]
        with one_commit(self._store):
            self._reserve_attempt(user.id, now)
            step = self._matching_step(factor, canonical, now) if kind is _CodeKind.TOTP else None
            if step is None:
                raise InvalidCredentials("invalid code")
            if not self._store.confirm_mfa_factor(factor.id, step, hashes, now):
                # A concurrent confirmation or a new enrolment came first.
                raise InvalidCredentials("invalid code")
            self._store.delete_counter(_failure_key(user.id))
        ctx = LedgerContext(tenant=user.tenant, user_id=user.id, event_id=factor.id)
        self._billing.record(UsageEvent.MFA_ENROLLMENTS, ctx)
        return codes

    # -- use ---------------------------------------------------------------------
    def verify(
        self,
        ticket: str,
        code: str,
        *,
        tenant: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> SignIn:
        """Complete a sign-in that returned ``mfa_required`` with a TOTP or recovery code.

        Creates the session (records ``authsome.sessions.created`` and
        ``authsome.users.active``). A wrong code raises
        :class:`~authsome.errors.InvalidCredentials` and uses one of the ticket's
        attempts; a locked factor, :class:`~authsome.errors.MfaLocked` (a recovery
        code still works). An unknown, expired, used-up or used ticket raises
        :class:`~authsome.errors.InvalidToken`, and so does, given ``tenant``, a
        ticket of another tenant's user (which keeps all its attempts). ``ip`` and
        ``user_agent`` describe the client for the device list
        (:meth:`auth.sessions.list <authsome.sessions.Sessions.list>`).
        """
        ticket_hash = sha256_hex(v.check_token("ticket", ticket))
        kind, canonical = _classify(code)
        expected = None if tenant is None else v.check_tenant(tenant)
        client = Client.of(ip, user_agent)
        now = self._clock()
        # Every write below (the attempt, the counts, the used code, the session) is
        # one commit; the row locks they take hold until it, so racing verifies of
        # one ticket or factor queue behind each other.
        with one_commit(self._store):
            user_id = self._store.attempt_mfa_ticket(
                ticket_hash, now, TICKET_ATTEMPTS, tenant=expected
            )
            if user_id is None:
                # Unknown, spent, or another tenant's: left as it is, so a foreign
                # tenant's endpoint cannot burn a ticket.
                raise InvalidToken("invalid or expired sign-in ticket")
            user = self._store.get_user(user_id)
            factor = None if user is None else self._confirmed_totp(user.id)
            if user is None or factor is None:
                self._store.consume_mfa_ticket(ticket_hash)  # it can never succeed
                raise InvalidToken("invalid or expired sign-in ticket")
            self._check_second_factor(user.id, factor, kind, canonical, now)
            if not self._store.consume_mfa_ticket(ticket_hash):
                raise InvalidToken("invalid or expired sign-in ticket")  # a racing verify won
            tokens = self._sign_in.open_session(user, client)
        return self._sign_in.finish(user, tokens)

    def disable(self, user_id: str, code: str) -> bool:
        """Remove the user's TOTP factor and recovery codes; needs a valid TOTP or
        recovery code (:class:`~authsome.errors.InvalidCredentials` otherwise).
        ``False`` if the user (known or not) has no TOTP enabled."""
        user_id = v.require_str("user_id", user_id)
        kind, canonical = _classify(code)
        factor = self._confirmed_totp(user_id)
        if factor is None:
            return False
        with one_commit(self._store):
            self._check_second_factor(user_id, factor, kind, canonical, self._clock())
            return self._store.delete_mfa_factor(factor.id)

    def locked(self, user_id: str) -> bool:
        """Whether the user's TOTP factor is locked after :data:`LOCKOUT_THRESHOLD`
        consecutive wrong codes."""
        factor = self._confirmed_totp(self._user(user_id).id)
        return factor is not None and factor.failed_codes >= LOCKOUT_THRESHOLD

    def unlock(self, user_id: str) -> bool:
        """Clear the user's count of wrong codes (an administrator's action, after
        checking who asks); ``True`` if the factor was locked."""
        user = self._user(user_id)
        factor = self._confirmed_totp(user.id)
        if factor is None:
            return False
        self._store.reset_mfa_failures(factor.id)
        was_locked = factor.failed_codes >= LOCKOUT_THRESHOLD
        if was_locked:
            security_log.warning("TOTP factor unlocked: user_id=%s", user.id)
        return was_locked

    def factors(self, user_id: str) -> list[MfaFactor]:
        """The user's factors, pending enrolments included, oldest first."""
        return self._store.list_mfa_factors(self._user(user_id).id)

    def recovery_codes_left(self, user_id: str) -> int:
        """How many unused recovery codes the user has (0 without confirmed TOTP)."""
        factor = self._confirmed_totp(self._user(user_id).id)
        return 0 if factor is None else self._store.count_recovery_codes(factor.id)

    # -- internals -----------------------------------------------------------------
    def _user(self, user_id: str) -> User:
        user = self._store.get_user(v.require_str("user_id", user_id))
        if user is None:
            raise NotFound("no such user")
        return user

    def _confirmed_totp(self, user_id: str) -> MfaFactor | None:
        for factor in self._store.list_mfa_factors(user_id):
            if factor.confirmed and factor.method is MfaMethod.TOTP:
                return factor
        return None

    def _pending_totp(self, user_id: str) -> MfaFactor:
        for factor in self._store.list_mfa_factors(user_id):
            if factor.method is MfaMethod.TOTP:
                if factor.confirmed:
                    raise AlreadyExists("TOTP is already enabled for this user")
                return factor
        raise NotFound("no TOTP enrolment is pending; call begin_totp first")

    def _check_second_factor(
        self, user_id: str, factor: MfaFactor, kind: _CodeKind, canonical: str, now: datetime
    ) -> None:
        """Accept a TOTP or recovery code once, or count a failure and raise."""
        self._reserve_attempt(user_id, now)
        # Counted before the code is checked, like the window: racing guesses cannot
        # all be checked before one is counted. A right code clears the count again.
        failures = self._store.count_mfa_failure(factor.id)
        if failures > LOCKOUT_THRESHOLD and kind is not _CodeKind.RECOVERY:
            raise MfaLocked()
        if kind is _CodeKind.TOTP:
            step = self._matching_step(factor, canonical, now)
            accepted = step is not None and self._store.use_totp_step(factor.id, step)
        elif kind is _CodeKind.RECOVERY:
            accepted = self._store.consume_recovery_code(factor.id, _recovery_hash(canonical))
        else:
            accepted = False
        if not accepted:
            if failures == LOCKOUT_THRESHOLD:
                security_log.warning(
                    "TOTP factor locked after %d consecutive wrong codes: user_id=%s",
                    LOCKOUT_THRESHOLD,
                    user_id,
                )
            raise InvalidCredentials("invalid code")
        self._store.delete_counter(_failure_key(user_id))
        self._store.reset_mfa_failures(factor.id)

    def _matching_step(self, factor: MfaFactor, code: str, now: datetime) -> int | None:
        """The time-step within the window whose code is ``code``, or ``None``."""
        totp = _totp(self._secret(factor))
        current = int(now.timestamp()) // TOTP_PERIOD
        # Every candidate is compared, in constant time, whichever matches.
        matches = [
            step
            for step in range(current - TOTP_VALID_WINDOW, current + TOTP_VALID_WINDOW + 1)
            if hmac.compare_digest(totp.generate_otp(step), code)
        ]
        return matches[0] if matches else None

    def reseal_secrets(self) -> Resealed:
        """Seal under the current ``secret_key`` every TOTP secret stored in clear or
        under a previous key (what ``authsome reseal`` runs); reads each once."""
        return reseal_all(
            self._keyring,
            page=lambda after, limit: [
                (factor_id, _stored(value))
                for factor_id, value in self._store.list_mfa_secrets(after, limit)
            ],
            replace=lambda factor_id, old, new: self._store.replace_mfa_secret(
                factor_id, old.value, new.value
            ),
            aad=_aad,
            what=_WHAT,
        )

    def _seal(self, factor_id: str, secret: str) -> str:
        return self._keyring.seal(secret, aad=_aad(factor_id), what=_WHAT).value

    def _secret(self, factor: MfaFactor) -> str:
        stored = self._store.get_mfa_secret(factor.id)
        if stored is None:
            raise NotFound("no such factor")
        opened = self._keyring.open(_stored(stored), aad=_aad(factor.id))
        if opened.stale:
            # In clear or under an earlier key: sealed under the current key from now
            # on. A compare-and-set, so a racing re-seal or re-enrolment is kept.
            self._store.replace_mfa_secret(
                factor.id, stored, self._seal(factor.id, opened.plaintext)
            )
        return opened.plaintext

    def _reserve_attempt(self, user_id: str, now: datetime) -> None:
        """Count this code as wrong before checking it, or refuse it.

        Hitting first and comparing the count the store returns means racing
        requests cannot all pass a check before any of them is counted. A refused
        attempt takes its hit back; a right code clears the counter.
        """
        key = _failure_key(user_id)
        hits, expires_at = self._store.hit_counter(key, now, int(FAILURE_WINDOW.total_seconds()))
        if hits > MAX_FAILURES:
            self._store.release_counter(key, now)
            raise RateLimited((expires_at - now).total_seconds())

    def __repr__(self) -> str:
        return f"Mfa(encrypted={self._keyring.has_key})"


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, digest=hashlib.sha1, interval=TOTP_PERIOD)


_WHAT = "a TOTP secret"


def _stored(value: str) -> StoredSecret:
    # Base32 never holds the sealed prefix's dot, so the prefix tells the two apart.
    return StoredSecret(value, sealed=value.startswith(SEALED_PREFIX))


def _aad(factor_id: str) -> str:
    # Binds a sealed secret to its row: copied into another factor, it will not open.
    return f"mfa_factors.secret:{factor_id}"


def _failure_key(user_id: str) -> str:
    return sha256_hex(f"throttle:mfa\x00{user_id}")


def _classify(code: object) -> tuple[_CodeKind, str]:
    """Tell a TOTP code from a recovery code; spaces, dashes and case do not matter."""
    text = v.require_str("code", code)
    if len(text) > _MAX_CODE:
        raise ValidationError(f"code must be at most {_MAX_CODE} characters")
    compact = "".join(ch for ch in text if ch not in "- \t").upper()
    if len(compact) == TOTP_DIGITS and compact.isascii() and compact.isdigit():
        return _CodeKind.TOTP, compact
    compact = compact.translate(_LOOKALIKES)
    if len(compact) == RECOVERY_CODE_CHARS and all(ch in _BASE32 for ch in compact):
        return _CodeKind.RECOVERY, compact
    return _CodeKind.MALFORMED, ""


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_BASE32) for _ in range(RECOVERY_CODE_CHARS))
    return "-".join(raw[i : i + 4] for i in range(0, RECOVERY_CODE_CHARS, 4))


def _recovery_hash(canonical: str) -> str:
    return sha256_hex(f"recovery:{canonical}")


def _check_issuer(issuer: object) -> str:
    text = v.check_display_text("issuer", issuer, MAX_ISSUER)
    if not text or ":" in text:
        raise ValidationError(f"issuer must be 1..{MAX_ISSUER} characters without ':'")
    return text
