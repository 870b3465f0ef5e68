"""authsome: in-process authentication with a billing ledger bridge.

The names here are the front door; the service classes are reached through an
engine (``auth.users``, ``auth.orgs``...). ``GatedFeature`` is the preferred name of
the plan-gated feature keys (``Feature`` is kept as an alias of it).
"""

from __future__ import annotations

from importlib import metadata as _metadata

from authsome._billing import LedgerStats
from authsome.apikeys import ApiKeyPolicy
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
    MailNotSent,
    MfaLocked,
    NotFound,
    RateLimited,
    SSOFailed,
    StoreError,
    ValidationError,
    VerificationFailed,
)
from authsome.features import Feature, GatedFeature, UsageEvent
from authsome.mail import Mailer, MailMessage, MailSettings, MailTemplate, SMTPMailer
from authsome.mfa import Mfa
from authsome.models import (
    ApiKey,
    CreatedApiKey,
    DeviceSession,
    Domain,
    DomainChallenge,
    Identity,
    Membership,
    MfaFactor,
    MfaMethod,
    Org,
    OrgRole,
    Passkey,
    Session,
    SessionTokens,
    SignIn,
    SocialProviderInfo,
    SSOConnectionInfo,
    SSOProtocol,
    SSORedirect,
    TOTPSetup,
    User,
)
from authsome.onetime import JourneyPolicy
from authsome.sessions import SessionPolicy
from authsome.sso import OIDCConnection, SAMLConnection, SAMLServiceProvider
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
    "DeviceSession",
    "DnsPythonResolver",
    "Domain",
    "DomainChallenge",
    "ExtraNotInstalled",
    "Feature",
    "FeatureNotEntitled",
    "GatedFeature",
    "Identity",
    "InsufficientScope",
    "InvalidCredentials",
    "InvalidToken",
    "JourneyPolicy",
    "LedgerStats",
    "LedgerUnavailable",
    "MailMessage",
    "MailNotSent",
    "MailSettings",
    "MailTemplate",
    "Mailer",
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
    "SAMLServiceProvider",
    "SMTPMailer",
    "SSOConnectionInfo",
    "SSOFailed",
    "SSOProtocol",
    "SSORedirect",
    "SecretBox",
    "Session",
    "SessionPolicy",
    "SessionTokens",
    "SignIn",
    "SocialProviderInfo",
    "StoreError",
    "TOTPSetup",
    "ThrottlePolicy",
    "TxtResolver",
    "UsageEvent",
    "User",
    "ValidationError",
    "VerificationFailed",
    "__version__",
]


def _installed_version() -> str:
    """This distribution's version, or a marker when it runs from a bare source tree."""
    try:
        return _metadata.version("authsome-engine")
    except _metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _installed_version()
