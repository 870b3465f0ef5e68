"""authsome: in-process authentication with a billing ledger bridge."""

from __future__ import annotations

from authsome.apikeys import ApiKeyPolicy
from authsome.billing import LedgerStats
from authsome.crypto import PasswordHashing
from authsome.engine import Authsome
from authsome.errors import (
    AlreadyExists,
    AuthsomeError,
    FeatureNotEntitled,
    InsufficientScope,
    InvalidCredentials,
    InvalidToken,
    LedgerUnavailable,
    NotFound,
    RateLimited,
    StoreError,
    ValidationError,
)
from authsome.features import Feature, UsageEvent
from authsome.models import ApiKey, CreatedApiKey, Session, SessionTokens, SignIn, User
from authsome.sessions import SessionPolicy
from authsome.throttle import ThrottlePolicy

__all__ = [
    "AlreadyExists",
    "ApiKey",
    "ApiKeyPolicy",
    "Authsome",
    "AuthsomeError",
    "CreatedApiKey",
    "Feature",
    "FeatureNotEntitled",
    "InsufficientScope",
    "InvalidCredentials",
    "InvalidToken",
    "LedgerStats",
    "LedgerUnavailable",
    "NotFound",
    "PasswordHashing",
    "RateLimited",
    "Session",
    "SessionPolicy",
    "SessionTokens",
    "SignIn",
    "StoreError",
    "ThrottlePolicy",
    "UsageEvent",
    "User",
    "ValidationError",
]
