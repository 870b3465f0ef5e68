"""Frozen value objects the engine hands out and the stores persist.

Secrets never live here in clear: tokens appear only once, in
:class:`SessionTokens`, and are hidden from ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "Membership",
    "Org",
    "OrgRole",
    "RefreshOutcome",
    "RefreshStatus",
    "SSOConnectionInfo",
    "SSOProtocol",
    "Session",
    "SessionTokens",
    "SignIn",
    "StoredSecret",
    "User",
]


@dataclass(frozen=True, slots=True)
class User:
    """A registered identity within one tenant. ``email`` is stored normalized."""

    id: str
    tenant: str
    email: str
    name: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in session.

    ``expires_at`` is the absolute end (a refresh never extends it);
    ``access_expires_at`` ends the current access token.
    """

    id: str
    user_id: str
    tenant: str
    created_at: datetime
    expires_at: datetime
    access_expires_at: datetime
    revoked_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        """Whether the session is neither revoked nor past its absolute end."""
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class SessionTokens:
    """The bearer tokens of a session; shown to the caller once, never stored."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    session: Session


@dataclass(frozen=True, slots=True)
class SignIn:
    """The result of a sign-in.

    Either ``tokens`` is set (signed in), or ``mfa_required`` is true and
    ``ticket`` must be exchanged with a second factor.
    """

    user: User
    tokens: SessionTokens | None = None
    mfa_required: bool = False
    ticket: str | None = field(default=None, repr=False)


class RefreshStatus(StrEnum):
    """What a store did with a presented refresh token."""

    ROTATED = "rotated"
    REUSED = "reused"  # a rotated token came back: the whole session was revoked
    INVALID = "invalid"  # unknown token, or its session is revoked or expired


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """Result of :meth:`authsome.stores.Store.rotate_refresh_token`."""

    status: RefreshStatus
    session: Session | None = None


class OrgRole(StrEnum):
    """A member's role in an organization.

    The library stores roles and keeps one invariant (an org always has an owner);
    what each role may do is the application's decision.
    """

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


@dataclass(frozen=True, slots=True)
class Org:
    """An organization. It lives in one tenant, the tenant of the user who created it.

    ``slug`` is unique within the tenant: lowercase ASCII letters, digits and ``-``.
    """

    id: str
    tenant: str
    slug: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's membership of an org, with the role they hold there."""

    org_id: str
    user_id: str
    role: OrgRole
    created_at: datetime


class SSOProtocol(StrEnum):
    """The single sign-on protocol of a connection."""

    OIDC = "oidc"
    SAML = "saml"


@dataclass(frozen=True, slots=True)
class SSOConnectionInfo:
    """An org's SSO connection as stored, without its client secret.

    OIDC connections fill ``issuer``, ``client_id`` and ``scopes``; SAML ones
    ``entity_id``, ``sso_url`` and ``x509_certificate`` (PEM; public, so returned).
    ``domains`` are the e-mail domains routed to this connection, lowercase A-labels
    (IDNA), each owned by at most one connection in the whole store.
    ``has_client_secret`` tells whether a secret is kept; the secret itself is
    never part of this record.
    """

    id: str
    org_id: str
    protocol: SSOProtocol
    domains: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    issuer: str | None = None
    client_id: str | None = None
    scopes: tuple[str, ...] = ()
    has_client_secret: bool = False
    entity_id: str | None = None
    sso_url: str | None = None
    x509_certificate: str | None = field(default=None, repr=False)  # long; public anyway


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """A secret as a store keeps it: sealed (encrypted, see ``sealed``) or in clear.

    Only stores and the service that owns the secret see this type.
    """

    value: str = field(repr=False)
    sealed: bool = False
