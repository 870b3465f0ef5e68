"""authsome: in-process authentication with a billing ledger bridge."""

from __future__ import annotations

from authsome.apikeys import ApiKeyPolicy
from authsome.billing import LedgerStats
from authsome.crypto import PasswordHashing, SecretBox
from authsome.domains import DnsPythonResolver, TxtResolver
from authsome.engine import Authsome
from authsome.errors import (
    AlreadyExists,
    AuthsomeError,
    Conflict,
    DecryptionError,
    ExtraNotInstalled,
    FeatureNotEntitled,
    InsufficientScope,
    InvalidCredentials,
    InvalidToken,
    LedgerUnavailable,
    MfaLocked,
    NotFound,
    RateLimited,
    StoreError,
    ValidationError,
    VerificationFailed,
)
from authsome.features import Feature, UsageEvent
from authsome.mfa import Mfa
from authsome.models import (
    ApiKey,
    CreatedApiKey,
    Domain,
    DomainChallenge,
    Membership,
    MfaFactor,
    MfaMethod,
    Org,
    OrgRole,
    Passkey,
    Session,
    SessionTokens,
    SignIn,
    SSOConnectionInfo,
    SSOProtocol,
    TOTPSetup,
    User,
)
from authsome.sessions import SessionPolicy
from authsome.sso import OIDCConnection, SAMLConnection
from authsome.throttle import ThrottlePolicy

__all__ = [
    "AlreadyExists",
    "ApiKey",
    "ApiKeyPolicy",
    "Authsome",
    "AuthsomeError",
    "Conflict",
    "CreatedApiKey",
    "DecryptionError",
    "DnsPythonResolver",
    "Domain",
    "DomainChallenge",
    "ExtraNotInstalled",
    "Feature",
    "FeatureNotEntitled",
    "InsufficientScope",
    "InvalidCredentials",
    "InvalidToken",
    "LedgerStats",
    "LedgerUnavailable",
    "Membership",
    "Mfa",
    "MfaFactor",
    "MfaLocked",
    "MfaMethod",
    "NotFound",
    "OIDCConnection",
    "Org",
    "OrgRole",
    "Passkey",
    "PasswordHashing",
    "RateLimited",
    "SAMLConnection",
    "SSOConnectionInfo",
    "SSOProtocol",
    "SecretBox",
    "Session",
    "SessionPolicy",
    "SessionTokens",
    "SignIn",
    "StoreError",
    "TOTPSetup",
    "ThrottlePolicy",
    "TxtResolver",
    "UsageEvent",
    "User",
    "ValidationError",
    "VerificationFailed",
]
