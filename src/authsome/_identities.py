"""Account resolution for sign-ins at external identity providers (SSO, social).

The provider's subject is the stable link: ``(tenant, provider, subject)`` names one
user, and an account linked already signs in whatever its address says now. A first
sign-in goes by the provider's address, under three rules:

- the address must be one this provider may speak for (``address_rule``; SSO: its
  domain is one of the connection's own domains and proven by the tenant, so the
  address routes to this very connection; social: any address);
- it links an existing user only when the provider verified the address **and** the
  user verified it here (``email_verified_at``): an unverified account may be a
  squatter's, who would keep its password and sessions;
- it provisions a new user just in time (into an org with a role, when the caller
  says so) only with an address the provider verified, unless the caller accepts
  unverified addresses (SSO, inside the domains the org proved it owns).

Anything else is refused: anyone can type any address at an identity provider they
run. Because a social account never provisions or links with an address its provider
did not verify, a later proof of that address here (a password reset, a verified
e-mail change) finds no identity it would need to undo.

:meth:`Identities.resolve` writes; call it inside the sign-in's commit and record
the usage it reports (users created, members joined) after that commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from authsome import _validation as v
from authsome._time import Clock
from authsome.crypto import new_ordered_id
from authsome.errors import InvalidCredentials, ValidationError
from authsome.models import Identity, Membership, OrgRole, User
from authsome.stores import Store

__all__ = ["Identities", "Resolution", "email_domain"]

security_log = logging.getLogger("authsome.security")

# Stored as the password hash of a user provisioned by an identity provider: no
# password verifies against it (it is not an argon2 hash), until one is set.
UNUSABLE_PASSWORD = "!no-password"  # noqa: S105 (a marker, not a password)


@dataclass(frozen=True, slots=True)
class Resolution:
    """Who signed in, and whether the resolution created them (billed after commit;
    a provisioned membership's seat is held through ``before_join``)."""

    user: User
    created: bool = False


class Identities:
    """Finds, links and provisions the users behind provider accounts."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        address_rule: Callable[[str, str, str], bool],
        provision_unverified: bool,
    ) -> None:
        """``address_rule(tenant, provider, address)`` says whether ``provider`` may
        speak for ``address`` at all (link or provision by it);
        ``provision_unverified`` whether an address the provider did not verify may
        still provision a new user (never link one)."""
        self._store = store
        self._clock = clock
        self._address_rule = address_rule
        self._provision_unverified = provision_unverified

    def resolve(
        self,
        *,
        tenant: str,
        provider: str,
        subject: str,
        email: object,
        email_verified: object,
        org_id: str | None,
        role: OrgRole | str,
        jit: bool,
        name: str | None = None,
        before_join: Callable[[User, Membership], None] | None = None,
    ) -> Resolution:
        """The user of this provider account: linked already, linked now to the
        user with the same address (both sides verified it), or provisioned (with
        ``name``, the provider's display name, when it gives one).
        :class:`~authsome.errors.InvalidCredentials` when none of these may happen
        (the reason is logged on ``authsome.security``). ``before_join`` is called
        with the user and membership a provisioning is about to write, before any
        write: it may refuse (an enforced seat limit)."""
        linked = self._store.find_identity(tenant, provider, subject)
        if linked is not None:
            user = self._store.get_user(linked.user_id)
            if user is None:
                raise _refused("the linked user no longer exists", provider)
            return Resolution(user)
        address = _address(email)
        if address is None:
            raise _refused("no linked user and no usable address", provider)
        if not self._address_rule(tenant, provider, address):
            raise _refused("the address is outside the domains this provider owns", provider)
        verified = email_verified is True
        existing = self._store.find_user_by_email(tenant, address)
        if existing is not None:
            self._check_linkable(existing, verified, provider)
            self._link(tenant, provider, subject, existing.id)
            return Resolution(existing)
        if not jit:
            raise _refused("no linked user and no just-in-time provisioning", provider)
        if not (verified or self._provision_unverified):
            raise _refused("an unverified address provisions nobody", provider)
        return self._provision(
            tenant,
            provider,
            subject,
            address,
            verified,
            org_id,
            role,
            name=name,
            before_join=before_join,
        )

    def _check_linkable(self, existing: User, verified: bool, provider: str) -> None:
        """An existing user is linked only when both sides verified the address."""
        if not verified:
            raise _refused("an unverified address matches an unlinked user", provider)
        if existing.email_verified_at is None:
            # Whoever registered it never proved the address: perhaps a squatter
            # waiting for the owner's first federated sign-in. The owner verifies
            # the address (or resets the password) first.
            raise _refused("the matching user has not verified the address here", provider)

    def _provision(
        self,
        tenant: str,
        provider: str,
        subject: str,
        address: str,
        verified: bool,
        org_id: str | None,
        role: OrgRole | str,
        *,
        name: str | None,
        before_join: Callable[[User, Membership], None] | None,
    ) -> Resolution:
        now = self._clock()
        user = User(new_ordered_id("usr"), tenant, address, name, now)
        membership = None if org_id is None else Membership(org_id, user.id, OrgRole(role), now)
        if membership is not None and before_join is not None:
            before_join(user, membership)
        self._store.create_user(user, UNUSABLE_PASSWORD)
        if verified:
            user = self._store.mark_email_verified(user.id, address, now) or user
        if membership is not None:
            self._store.add_membership(membership)
        self._link(tenant, provider, subject, user.id)
        security_log.info("user provisioned by %s: user=%s", provider, user.id)
        return Resolution(user, created=True)

    def _link(self, tenant: str, provider: str, subject: str, user_id: str) -> None:
        self._store.create_identity(Identity(tenant, provider, subject, user_id, self._clock()))

    def list(self, user_id: str) -> list[Identity]:
        """The user's linked provider accounts, oldest first."""
        return self._store.list_identities(user_id)

    def remove(self, user_id: str, provider: str, subject: str) -> bool:
        """Unlink one provider account from the user; whether it was linked."""
        return self._store.delete_identity(user_id, provider, subject)


def _address(email: object) -> str | None:
    """The provider's address as authsome stores addresses, or ``None``."""
    if not isinstance(email, str):
        return None
    try:
        return v.normalize_email(email)
    except ValidationError:
        return None


def email_domain(address: str) -> str:
    return address.rpartition("@")[2]


def _refused(reason: str, provider: str) -> InvalidCredentials:
    security_log.warning("sign-in at %s refused: %s", provider, reason)
    return InvalidCredentials()
