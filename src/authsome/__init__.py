"""authsome: in-process authentication with a billing ledger bridge."""

from __future__ import annotations

from authsome.billing import LedgerStats
from authsome.crypto import PasswordHashing
from authsome.domains import DnsPythonResolver, TxtResolver
from authsome.engine import Authsome
from authsome.errors import (
    AlreadyExists,
    AuthsomeError,
    Conflict,
    FeatureNotEntitled,
    InvalidCredentials,
    InvalidToken,
    LedgerUnavailable,
    NotFound,
    RateLimited,
    StoreError,
    ValidationError,
    VerificationFailed,
)
from authsome.features import Feature, UsageEvent
from authsome.models import (
    Domain,
    DomainChallenge,
    Membership,
    Org,
    OrgRole,
    Session,
    SessionTokens,
    SignIn,
    User,
)
from authsome.sessions import SessionPolicy
from authsome.throttle import ThrottlePolicy

__all__ = [
    "AlreadyExists",
    "Authsome",
    "AuthsomeError",
    "Conflict",
    "DnsPythonResolver",
    "Domain",
    "DomainChallenge",
    "Feature",
    "FeatureNotEntitled",
    "InvalidCredentials",
    "InvalidToken",
    "LedgerStats",
    "LedgerUnavailable",
    "Membership",
    "NotFound",
    "Org",
    "OrgRole",
    "PasswordHashing",
    "RateLimited",
    "Session",
    "SessionPolicy",
    "SessionTokens",
    "SignIn",
    "StoreError",
    "ThrottlePolicy",
    "TxtResolver",
    "UsageEvent",
    "User",
    "ValidationError",
    "VerificationFailed",
]
