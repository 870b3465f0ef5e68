"""Checks every store applies the same way, so their behaviour and messages agree."""

from __future__ import annotations

from authsome.errors import Conflict
from authsome.models import Membership, Org, OrgRole

__all__ = ["check_owner_membership", "last_owner_conflict"]


def check_owner_membership(org: Org, owner: Membership) -> None:
    """Refuse a first membership that is not an owner of ``org`` (a caller's bug)."""
    if owner.org_id != org.id or OrgRole(owner.role) is not OrgRole.OWNER:
        raise ValueError("an org's first membership must be an owner of that org")


def last_owner_conflict(action: str) -> Conflict:
    """The error for an operation that would leave an org without an owner."""
    return Conflict(f"the last owner of an org cannot be {action}; make another member owner first")
