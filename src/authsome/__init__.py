"""authsome: in-process authentication with a billing ledger bridge."""

from __future__ import annotations

from authsome.billing import LedgerStats
from authsome.crypto import PasswordHashing
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
)
from authsome.features import Feature, UsageEvent
from authsome.models import (
    Membership,
    Org,
    OrgRole,
    Session,
    SessionTokens,
    SignIn,
    SSOConnectionInfo,
    SSOProtocol,
    User,
)
from authsome.sessions import SessionPolicy
from authsome.sso import OIDCConnection, SAMLConnection
from authsome.throttle import ThrottlePolicy

__all__ = [
    "AlreadyExists",
    "Authsome",
    "AuthsomeError",
    "Conflict",
    "Feature",
    "FeatureNotEntitled",
    "InvalidCredentials",
    "InvalidToken",
    "LedgerStats",
    "LedgerUnavailable",
    "Membership",
    "NotFound",
    "OIDCConnection",
    "Org",
    "OrgRole",
    "PasswordHashing",
    "RateLimited",
    "SAMLConnection",
    "SSOConnectionInfo",
    "SSOProtocol",
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
