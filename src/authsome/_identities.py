"""Account resolution for sign-ins at external identity providers (SSO, social).

The provider's subject is the stable link: ``(tenant, provider, subject)`` names one
user. A first sign-in either links an existing user — only when the provider
asserts a *verified* address and the caller's linking rule accepts the user (SSO: a
domain the tenant has proven; social: an address the user verified here) — or provisions a new
one just in time (into an org with a role, when the caller says so). An unverified
address never links, whatever it matches: anyone can type any address at an
identity provider they run.

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
    """Who signed in, and what the resolution wrote that is billed after commit."""

    user: User
    created: bool = False
    membership: Membership | None = None


class Identities:
    """Finds, links and provisions the users behind provider accounts."""

    def __init__(self, store: Store, clock: Clock, may_link: Callable[[str, User], bool]) -> None:
        """``may_link(tenant, user)`` says whether a provider's verified address may
        link its account to ``user``, the tenant's user with that address."""
        self._store = store
        self._clock = clock
        self._may_link = may_link

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
    ) -> Resolution:
        """The user of this provider account: linked already, linked now to the
        user with the same verified address (if ``may_link`` agrees), or provisioned
        (with ``name``, the provider's display name, when it gives one).
        :class:`~authsome.errors.InvalidCredentials` when none of these may happen
        (the reason is logged on ``authsome.security``)."""
        linked = self._store.find_identity(tenant, provider, subject)
        if linked is not None:
            user = self._store.get_user(linked.user_id)
            if user is None:
                raise _refused("the linked user no longer exists", provider)
            return Resolution(user)
        address = _address(email)
        verified = email_verified is True and address is not None
        existing = None if address is None else self._store.find_user_by_email(tenant, address)
        if existing is not None:
            if not (verified and self._may_link(tenant, existing)):
                raise _refused(
                    "an unlinked account matches an address that is unverified or may not link",
                    provider,
                )
            self._link(tenant, provider, subject, existing.id)
            return Resolution(existing)
        if not jit or address is None:
            raise _refused("no linked user and no just-in-time provisioning", provider)
        return self._provision(
            tenant, provider, subject, address, verified, org_id, role, name=name
        )

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
    ) -> Resolution:
        now = self._clock()
        user = User(new_ordered_id("usr"), tenant, address, name, now)
        self._store.create_user(user, UNUSABLE_PASSWORD)
        if verified:
            user = self._store.mark_email_verified(user.id, address, now) or user
        membership = None
        if org_id is not None:
            membership = Membership(org_id, user.id, OrgRole(role), now)
            self._store.add_membership(membership)
        self._link(tenant, provider, subject, user.id)
        security_log.info("user provisioned by %s: user=%s", provider, user.id)
        return Resolution(user, created=True, membership=membership)

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
