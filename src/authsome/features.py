"""The ledger keys of authsome, each written exactly once in the code base.

``UsageEvent`` keys are recorded after an operation succeeded; ``Feature`` keys are
checked before a plan-gated operation. The strings are the Go engine's, so one
ledger can serve both.
"""

from __future__ import annotations

from enum import StrEnum, unique

__all__ = ["Feature", "UsageEvent"]


@unique
class UsageEvent(StrEnum):
    """Usage recorded after success, once per event."""

    USERS_ACTIVE = "authsome.users.active"
    USERS_CREATED = "authsome.users.created"
    MFA_ENROLLMENTS = "authsome.mfa.enrollments"
    APIKEYS_VALIDATED = "authsome.apikeys.validated"
    ORGS_MEMBERS = "authsome.orgs.members"
    SESSIONS_CREATED = "authsome.sessions.created"


@unique
class Feature(StrEnum):
    """Entitlements checked before a plan-gated operation."""

    MFA = "authsome.feature.mfa"
    SSO = "authsome.feature.sso"
    ORGS = "authsome.feature.orgs"
    PASSKEYS = "authsome.feature.passkeys"
    CUSTOM_DOMAINS = "authsome.feature.custom_domains"
