"""authsome: in-process authentication with a billing ledger bridge."""

from __future__ import annotations

from authsome.errors import (
    AlreadyExists,
    AuthsomeError,
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

__all__ = [
    "AlreadyExists",
    "AuthsomeError",
    "Feature",
    "FeatureNotEntitled",
    "InvalidCredentials",
    "InvalidToken",
    "LedgerUnavailable",
    "NotFound",
    "RateLimited",
    "StoreError",
    "UsageEvent",
    "ValidationError",
]
