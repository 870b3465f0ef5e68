"""The one exception tree of authsome.

Every error the library raises on purpose is an :class:`AuthsomeError`. Where a
builtin exception means the same thing, the error subclasses it too, so callers
can catch either (``except PermissionError`` catches :class:`FeatureNotEntitled`).

Messages never contain secrets: no passwords, tokens, hashes or TOTP secrets.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "AuthsomeError",
    "Conflict",
    "DecryptionError",
    "ExtraNotInstalled",
    "FeatureNotEntitled",
    "InsufficientScope",
    "InvalidCredentials",
    "InvalidToken",
    "LedgerUnavailable",
    "MailNotSent",
    "MfaLocked",
    "NotFound",
    "RateLimited",
    "SSOFailed",
    "StoreError",
    "ValidationError",
    "VerificationFailed",
]


class AuthsomeError(Exception):
    """Base class of every error authsome raises on purpose."""


class ValidationError(AuthsomeError, ValueError):
    """An argument was rejected at the API edge; nothing was written."""


class InvalidCredentials(AuthsomeError):
    """Sign-in failed.

    Deliberately the same for an unknown account and a wrong password, so the
    error tells an attacker nothing about which accounts exist.
    """

    def __init__(self, message: str = "invalid credentials") -> None:
        super().__init__(message)


class MfaLocked(InvalidCredentials):
    """The user's TOTP factor is locked after too many consecutive wrong codes: it
    refuses every code, right ones too, until the user signs in with a recovery code
    or an administrator unlocks it (``auth.mfa.unlock``)."""

    def __init__(
        self, message: str = "too many wrong codes: use a recovery code, or ask to be unlocked"
    ) -> None:
        super().__init__(message)


class InvalidToken(AuthsomeError):
    """A bearer token (session, refresh token, API key) is malformed, unknown,
    expired, revoked or already used; the message never says which."""

    def __init__(self, message: str = "invalid or expired token") -> None:
        super().__init__(message)


class InsufficientScope(AuthsomeError, PermissionError):
    """A valid API key lacks scopes the operation requires; ``missing`` names them."""

    def __init__(self, missing: tuple[str, ...]) -> None:
        self.missing = tuple(missing)
        super().__init__(f"API key lacks required scopes: {', '.join(self.missing)}")

    def __reduce__(self) -> tuple[type[InsufficientScope], tuple[tuple[str, ...]]]:
        return (type(self), (self.missing,))


class RateLimited(AuthsomeError):
    """Too many failed attempts; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(0.0, float(retry_after))
        super().__init__(f"too many attempts; retry after {self.retry_after:.0f} s")


class SSOFailed(InvalidCredentials):
    """A single sign-on response was refused (bad signature, wrong audience, expired,
    replayed, ...); nobody was signed in.

    ``reason`` is a short code naming the check that refused it (``"signature"``,
    ``"audience"``, ``"expired"``, ``"replayed"``...), for logs; the message is the
    same for every reason, so a user (or an attacker probing) learns nothing more.
    """

    def __init__(self, reason: str) -> None:
        self.reason = str(reason)
        super().__init__("single sign-on failed")

    def __reduce__(self) -> tuple[type[SSOFailed], tuple[str]]:
        return (type(self), (self.reason,))


class AlreadyExists(AuthsomeError):
    """The record to create exists already (e.g. an e-mail within a tenant)."""


class Conflict(AuthsomeError):
    """The request is well-formed but the current state forbids it, e.g. removing
    or demoting the last owner of an organization. Nothing was changed."""


class NotFound(AuthsomeError, LookupError):
    """The record asked for does not exist."""


class StoreError(AuthsomeError):
    """The store failed (I/O, schema, connection); the operation was not performed."""


class DecryptionError(AuthsomeError, ValueError):
    """A stored secret could not be decrypted: wrong ``secret_key``, or the data
    was altered or moved to another record. Nothing was used or changed."""

    def __init__(
        self, message: str = "stored secret could not be decrypted (wrong key or altered data)"
    ) -> None:
        super().__init__(message)


class FeatureNotEntitled(AuthsomeError, PermissionError):
    """The tenant's plan does not allow this feature; nothing was done.

    ``feature`` is the entitlement key, e.g. the value of ``Feature.SSO``.
    """

    def __init__(self, feature: str) -> None:
        self.feature = str(feature)
        super().__init__(f"feature not entitled: {self.feature}")

    def __reduce__(self) -> tuple[type[FeatureNotEntitled], tuple[str]]:
        return (type(self), (self.feature,))


class LedgerUnavailable(AuthsomeError, ConnectionError):
    """The ledger could not answer; under ``on_ledger_error="raise"`` nothing was done."""


class MailNotSent(AuthsomeError, ConnectionError):
    """The mailer could not send a journey's message (server down, refused, timed
    out, or no mailer configured). The journey's token was withdrawn: nothing usable
    was left behind, and the call can simply be repeated."""

    def __init__(self, message: str = "the message could not be sent") -> None:
        super().__init__(message)


class VerificationFailed(AuthsomeError):
    """A custom domain's DNS challenge was not met; the domain stays unverified.

    ``reason`` says why (no such name, no matching record, lookup timed out, ...).
    """

    def __init__(self, reason: str) -> None:
        self.reason = str(reason)
        super().__init__(f"domain not verified: {self.reason}")

    def __reduce__(self) -> tuple[type[VerificationFailed], tuple[str]]:
        return (type(self), (self.reason,))


class ExtraNotInstalled(AuthsomeError, ImportError):
    """A feature needs an optional dependency that is not installed.

    ``extra`` names the package extra to install, e.g. ``"passkeys"`` for
    ``pip install "authsome-engine[passkeys]"``.
    """

    def __init__(self, extra: str, package: str) -> None:
        self.extra = str(extra)
        self.package = str(package)
        super().__init__(
            f"{self.extra} need the optional package {self.package!r}:"
            f' pip install "authsome-engine[{self.extra}]"'
        )

    def __reduce__(self) -> tuple[type[ExtraNotInstalled], tuple[str, str]]:
        return (type(self), (self.extra, self.package))
