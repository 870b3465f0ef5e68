"""Checks every store applies the same way, so their behaviour and messages agree."""

from __future__ import annotations

from datetime import datetime

from authsome.errors import Conflict, ValidationError
from authsome.models import (
    Membership,
    Org,
    OrgRole,
    SocialProviderInfo,
    SSOConnectionInfo,
    StoredSecret,
)

__all__ = [
    "Duplicate",
    "aware",
    "check_owner_membership",
    "check_social_record",
    "check_sso_record",
    "last_owner_conflict",
]


class Duplicate:
    """What :class:`~authsome.errors.AlreadyExists` says for each unique key: the same
    in every store, and never the duplicate value itself. ``RECORD`` is for a key
    no store names."""

    USER_EMAIL = "a user with this e-mail exists in this tenant"
    USER_ID = "a user with this id exists"
    SESSION_ID = "session id exists"
    ACCESS_HASH = "access token hash exists"
    REFRESH_HASH = "refresh token hash exists"
    ORG_SLUG = "an org with this slug exists in this tenant"
    ORG_ID = "an org with this id exists"
    MEMBERSHIP = "the user is a member of this org already"
    DOMAIN_CLAIM = "this tenant has claimed this hostname already"
    HOSTNAME_VERIFIED = "this hostname is verified by another tenant"
    DOMAIN_ID = "a domain with this id exists"
    FACTOR_ID = "factor id exists"
    FACTOR_METHOD = "the user has a factor of this method"
    CONFIRMED_FACTOR = "the user has a confirmed factor of this method"
    TICKET_HASH = "ticket hash exists"
    ONE_TIME_TOKEN = "one-time token hash exists"  # noqa: S105 (a message, not a secret)
    API_KEY_ID = "api key id exists"
    API_KEY_LOOKUP_ID = "api key lookup id exists"
    PASSKEY = "a passkey with this credential id exists"
    CHALLENGE = "this challenge is pending already"
    SSO_ID = "an SSO connection with this id exists"
    SSO_DOMAIN = "an e-mail domain belongs to another SSO connection of this tenant"
    IDENTITY = "this account at the identity provider is linked to a user already"
    RECORD = "record exists"


def aware(moment: datetime) -> datetime:
    """``moment``, refused if naive: a store cannot tell which instant it means
    (PostgreSQL would read it in the session's time zone)."""
    if moment.utcoffset() is None:
        raise ValidationError("datetimes given to a store must be timezone-aware")
    return moment


def check_owner_membership(org: Org, owner: Membership) -> None:
    """Refuse a first membership that is not an owner of ``org`` (a caller's bug)."""
    if owner.org_id != org.id or OrgRole(owner.role) is not OrgRole.OWNER:
        raise ValueError("an org's first membership must be an owner of that org")


def last_owner_conflict(action: str) -> Conflict:
    """The error for an operation that would leave an org without an owner."""
    return Conflict(f"the last owner of an org cannot be {action}; make another member owner first")


def check_sso_record(connection: SSOConnectionInfo, client_secret: StoredSecret | None) -> None:
    """Refuse an SSO record that contradicts itself (a caller's bug, not user input)."""
    if connection.has_client_secret != (client_secret is not None):
        raise ValueError("has_client_secret must say whether a client secret is given")
    if len(set(connection.domains)) != len(connection.domains):
        raise ValueError("an SSO connection must not list a domain twice")


def check_social_record(provider: SocialProviderInfo, client_secret: StoredSecret) -> None:
    """Refuse a social provider record that contradicts itself (a caller's bug)."""
    if not provider.has_client_secret or not isinstance(client_secret, StoredSecret):
        raise ValueError("a social provider is stored with its secret")
    if len({name for name, _ in provider.settings}) != len(provider.settings):
        raise ValueError("a social provider must not repeat a setting")
