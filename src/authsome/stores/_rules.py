"""Checks every store applies the same way, so their behaviour and messages agree."""

from __future__ import annotations

from authsome.errors import Conflict
from authsome.models import Membership, Org, OrgRole, SSOConnectionInfo, StoredSecret

__all__ = [
    "DUPLICATE_DOMAIN_CLAIM",
    "DUPLICATE_SSO_DOMAIN",
    "HOSTNAME_VERIFIED_ELSEWHERE",
    "check_owner_membership",
    "check_sso_record",
    "last_owner_conflict",
]

DUPLICATE_SSO_DOMAIN = "an e-mail domain belongs to another SSO connection of this tenant"
DUPLICATE_DOMAIN_CLAIM = "this tenant has claimed this hostname already"
HOSTNAME_VERIFIED_ELSEWHERE = "this hostname is verified by another tenant"


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
