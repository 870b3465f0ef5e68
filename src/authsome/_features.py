"""The ledger keys of authsome, each written exactly once in the code base.

``UsageEvent`` keys are recorded after an operation succeeded; ``GatedFeature`` keys
are checked before a plan-gated operation. The strings are the Go engine's, so one
ledger can serve both.

``Feature`` is the former name of ``GatedFeature``, kept as an alias: prefer
``GatedFeature``, which does not collide with :class:`authsome.ledger.Feature` (a
plan's feature) when both are imported by name.
"""

from __future__ import annotations

from enum import StrEnum, unique

__all__ = ["Feature", "GatedFeature", "UsageEvent"]


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
class GatedFeature(StrEnum):
    """Entitlements checked before a plan-gated operation."""

    MFA = "authsome.feature.mfa"
    SSO = "authsome.feature.sso"
    ORGS = "authsome.feature.orgs"
    PASSKEYS = "authsome.feature.passkeys"
    CUSTOM_DOMAINS = "authsome.feature.custom_domains"


Feature = GatedFeature
"""The former name of :class:`GatedFeature`, kept so existing code keeps working."""
