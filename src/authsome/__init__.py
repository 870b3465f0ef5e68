"""authsome: in-process authentication with a billing ledger bridge."""

from __future__ import annotations

from authsome.billing import LedgerStats
from authsome.crypto import PasswordHashing, SecretBox
from authsome.engine import Authsome
from authsome.errors import (
    AlreadyExists,
    AuthsomeError,
    DecryptionError,
    FeatureNotEntitled,
    InvalidCredentials,
    InvalidToken,
    LedgerUnavailable,
    NotFound,
    RateLimited,
    StoreError,
    ValidationError,
)
from authsome.features import Feature, UsageEvent
from authsome.mfa import Mfa
from authsome.models import MfaFactor, MfaMethod, Session, SessionTokens, SignIn, TOTPSetup, User
from authsome.sessions import SessionPolicy
from authsome.throttle import ThrottlePolicy

__all__ = [
    "AlreadyExists",
    "Authsome",
    "AuthsomeError",
    "DecryptionError",
    "Feature",
    "FeatureNotEntitled",
    "InvalidCredentials",
    "InvalidToken",
    "LedgerStats",
    "LedgerUnavailable",
    "Mfa",
    "MfaFactor",
    "MfaMethod",
    "NotFound",
    "PasswordHashing",
    "RateLimited",
    "SecretBox",
    "Session",
    "SessionPolicy",
    "SessionTokens",
    "SignIn",
    "StoreError",
    "TOTPSetup",
    "ThrottlePolicy",
    "UsageEvent",
    "User",
    "ValidationError",
]
