"""Frozen value objects the engine hands out and the stores persist.

Secrets never live here in clear: tokens appear only once, in
:class:`SessionTokens`, and are hidden from ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

__all__ = [
    "ApiKey",
    "ApiKeyOwnerKind",
    "CreatedApiKey",
    "DeviceSession",
    "Domain",
    "DomainChallenge",
    "Identity",
    "Membership",
    "MfaFactor",
    "MfaMethod",
    "OneTimeState",
    "OneTimeToken",
    "Org",
    "OrgRole",
    "Passkey",
    "PasskeyCeremony",
    "PasskeyChallenge",
    "RefreshOutcome",
    "RefreshStatus",
    "SSOConnectionInfo",
    "SSOProtocol",
    "SSORedirect",
    "Session",
    "SessionTokens",
    "SignIn",
    "SocialProviderInfo",
    "StoredApiKey",
    "StoredSecret",
    "TOTPSetup",
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
    email_verified_at: datetime | None = None
    """When the user proved they read mail at ``email`` (``None``: not yet)."""


@dataclass(frozen=True, slots=True)
class OneTimeToken:
    """What a one-time token (e-mail verification, password reset, ...) is bound to.

    The token itself is never stored, only its SHA-256 (an e-mail code: a keyed
    hash); ``email`` is the address the token was sent to, which the journey acts on
    (the one to verify, or to change to). ``user_id`` is ``""`` for a sign-up token,
    sent to an address that has no account yet.
    """

    purpose: str
    user_id: str
    tenant: str
    email: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OneTimeState:
    """A one-time token that belongs to no user yet: the state of a sign-in at an
    identity provider. ``payload`` is what the flow needs back, sealed under a key
    derived from the token (stores keep it as given)."""

    purpose: str
    tenant: str
    payload: str = field(repr=False)
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Identity:
    """A user's account at an external identity provider.

    ``provider`` names where it lives (an SSO connection's id, or a social
    provider's name) and ``subject`` is that provider's stable id for the account
    (OpenID Connect's ``sub``): together, within ``tenant``, they name one user.
    """

    tenant: str
    provider: str
    subject: str
    user_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SSORedirect:
    """Where to send the browser to sign in at an identity provider.

    ``url`` is the provider's authorization URL. ``handle`` is the sign-in's state:
    keep it on the client (an ``HttpOnly`` cookie) and hand it back to
    :meth:`auth.sso.complete <authsome.sso.SSO.complete>`; it is a one-time secret,
    so it never appears in ``repr``.
    """

    url: str
    handle: str = field(repr=False)

    def __repr__(self) -> str:
        # The URL's query carries the handle too (social's state, SAML's RelayState).
        base, query = self.url.split("?", 1) if "?" in self.url else (self.url, "")
        return f"SSORedirect(url={base + ('?...' if query else '')!r})"


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in session.

    ``expires_at`` is the absolute end (a refresh never extends it);
    ``access_expires_at`` ends the current access token. ``last_seen_at`` is the
    last activity the engine wrote down (sign-in, refresh, and validations now and
    then), which the idle timeout is measured from; ``None`` reads as ``created_at``.
    ``ip`` and ``user_agent`` are what the application said about the client at
    sign-in (``None`` when it said nothing): shown in the device list, never trusted.
    """

    id: str
    user_id: str
    tenant: str
    created_at: datetime
    expires_at: datetime
    access_expires_at: datetime
    revoked_at: datetime | None = None
    last_seen_at: datetime | None = None
    ip: str | None = None
    user_agent: str | None = None

    def is_active(self, now: datetime) -> bool:
        """Whether the session is neither revoked nor past its absolute end."""
        return self.revoked_at is None and now < self.expires_at

    @property
    def last_activity(self) -> datetime:
        """When the session was last seen in use: ``last_seen_at``, else its start."""
        return self.created_at if self.last_seen_at is None else self.last_seen_at

    def usable(
        self, now: datetime, *, tenant: str | None = None, idle_since: datetime | None = None
    ) -> bool:
        """Whether the session may be used at ``now``: active, of ``tenant`` when one
        is given, and in use after ``idle_since`` when one is given."""
        return (
            self.is_active(now)
            and (tenant is None or self.tenant == tenant)
            and (idle_since is None or self.last_activity > idle_since)
        )


@dataclass(frozen=True, slots=True)
class DeviceSession:
    """One signed-in device in :meth:`auth.sessions.list <authsome.sessions.Sessions.list>`.

    ``last_used_at`` is the last activity written down (sign-in, refresh, and
    validations now and then: up to 1 % of the idle timeout behind). ``ip`` and
    ``user_agent`` are what the application passed at sign-in, as untrusted text.
    No token or token hash: ``id`` only names the session, for
    :meth:`~authsome.sessions.Sessions.revoke_by_id`.
    """

    id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None

    @classmethod
    def of(cls, session: Session) -> DeviceSession:
        """The device view of a stored session."""
        return cls(
            id=session.id,
            created_at=session.created_at,
            last_used_at=session.last_activity,
            expires_at=session.expires_at,
            ip=session.ip,
            user_agent=session.user_agent,
        )


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


@dataclass(frozen=True, slots=True)
class Domain:
    """A custom hostname a tenant serves its sign-in pages on.

    ``hostname`` is stored normalized (lower-case ASCII, IDNA A-labels, no trailing
    dot); a wildcard domain starts with ``*.`` and covers hosts one label deeper.
    Only a verified domain (``verified_at`` set) routes requests to its tenant.
    """

    id: str
    tenant: str
    hostname: str
    created_at: datetime
    verified_at: datetime | None = None

    @property
    def verified(self) -> bool:
        """Whether the DNS challenge was met."""
        return self.verified_at is not None

    @property
    def wildcard(self) -> bool:
        """Whether this domain covers every host one label below its base name."""
        return self.hostname.startswith("*.")


@dataclass(frozen=True, slots=True)
class DomainChallenge:
    """The DNS TXT record the customer must publish to prove they control a domain.

    Publish a TXT record named ``record_name`` whose text is ``record_value``, then
    call ``auth.domains.verify(domain.id)``.
    """

    domain: Domain
    record_name: str
    record_value: str = field(repr=False)
    record_type: str = "TXT"


class MfaMethod(StrEnum):
    """The kinds of second factor."""

    TOTP = "totp"  # RFC 6238 one-time codes from an authenticator app


@dataclass(frozen=True, slots=True)
class MfaFactor:
    """A second factor of a user. Its secret is not part of the record.

    ``confirmed_at`` is ``None`` while the enrolment is pending: a pending factor
    is never asked for at sign-in. ``failed_codes`` counts the wrong codes given
    since the last right one (the lockout after 100 is measured on it).
    """

    id: str
    user_id: str
    method: MfaMethod
    created_at: datetime
    confirmed_at: datetime | None = None
    failed_codes: int = 0

    @property
    def confirmed(self) -> bool:
        """Whether the enrolment was confirmed with a valid code."""
        return self.confirmed_at is not None


@dataclass(frozen=True, slots=True)
class TOTPSetup:
    """What an authenticator app needs to enrol; shown to the user once.

    ``provisioning_uri`` (the ``otpauth://`` URI for a QR code) contains the secret
    too, so neither appears in ``repr``.
    """

    secret: str = field(repr=False)
    provisioning_uri: str = field(repr=False)
    factor_id: str


ApiKeyOwnerKind = Literal["user", "org"]
"""Who an API key acts for: a user or an organization."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as the engine hands it out: no secret and no hash in it.

    ``lookup_id`` is the public part of the secret right after its prefix (as in
    ``ask_<lookup_id>...``), so a key can be recognised in a list without revealing
    it. ``tenant`` is the owner's tenant, billed when the key validates.
    ``scopes`` are sorted and unique. ``last_used_at`` is written at most once per
    resolution window, so it may lag the latest use by that much.
    """

    id: str
    lookup_id: str
    owner_kind: ApiKeyOwnerKind
    owner_id: str
    tenant: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        """Whether the key is neither revoked nor past ``expires_at``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A new key and its secret. The secret is shown here once and never stored."""

    key: ApiKey
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class StoredApiKey:
    """What a store keeps of a key: the key and the SHA-256 of its secret.

    Internal: handed from the store to the service for verification, never to callers.
    """

    key: ApiKey
    secret_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Passkey:
    """A WebAuthn credential registered to a user.

    ``credential_id`` is the authenticator's credential id, base64url without padding
    (as browsers send it); it is unique across the store. ``public_key`` is the
    COSE-encoded public key, ``sign_count`` the authenticator's signature counter as
    last seen, ``transports`` the hints the browser reported (``"usb"``, ``"internal"``...).
    """

    credential_id: str
    user_id: str
    tenant: str
    rp_id: str
    public_key: bytes = field(repr=False)
    sign_count: int
    transports: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None = None


class PasskeyCeremony(StrEnum):
    """Which WebAuthn ceremony a challenge was issued for."""

    REGISTRATION = "registration"
    AUTHENTICATION = "authentication"


@dataclass(frozen=True, slots=True)
class PasskeyChallenge:
    """A pending WebAuthn challenge, usable once until ``expires_at``.

    Only the SHA-256 of the challenge is kept. It is bound to the ceremony, the
    relying party (``rp_id``, ``origin``), the tenant and, when known, the user.
    """

    challenge_hash: str
    ceremony: PasskeyCeremony
    user_id: str | None
    tenant: str
    rp_id: str
    origin: str
    expires_at: datetime


class SSOProtocol(StrEnum):
    """The single sign-on protocol of a connection."""

    OIDC = "oidc"
    SAML = "saml"


@dataclass(frozen=True, slots=True)
class SSOConnectionInfo:
    """An org's SSO connection as stored, without its client secret.

    OIDC connections fill ``issuer``, ``client_id`` and ``scopes``; SAML ones
    ``entity_id``, ``sso_url``, ``x509_certificate`` (PEM; public, so returned), the
    optional ``rollover_x509_certificate`` and ``allow_idp_initiated``.
    ``domains`` are the e-mail domains this connection claims, lowercase A-labels
    (IDNA), each claimed by at most one connection per tenant; a domain routes only
    once the tenant has verified it (see :mod:`authsome.sso`).
    ``has_client_secret`` tells whether a secret is kept; the secret itself is
    never part of this record. ``auth_method``, ``jit``, ``jit_role``,
    ``trust_idp_mfa`` and ``userinfo`` say how an OIDC connection signs users in
    (see :class:`~authsome.sso.OIDCConnection`); ``jit``, ``jit_role``,
    ``email_attribute``, ``name_attribute``, ``groups_attribute`` and
    ``admin_groups`` how a SAML one does (see :class:`~authsome.sso.SAMLConnection`).
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
    auth_method: str = "client_secret_basic"
    jit: bool = True
    jit_role: str = "member"
    trust_idp_mfa: bool = False
    userinfo: bool = False
    rollover_x509_certificate: str | None = field(default=None, repr=False)
    allow_idp_initiated: bool = False
    email_attribute: str | None = None
    name_attribute: str | None = None
    groups_attribute: str | None = None
    admin_groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SocialProviderInfo:
    """A tenant's social sign-in provider as stored, without its secret.

    ``provider`` is the preset's name (``"github"``, ``"google"``, ...);
    ``settings`` are its other, non-secret options (endpoint overrides, Apple's
    team and key ids, ...) as text. ``has_client_secret`` tells whether a secret
    (a client secret, or Apple's private key) is kept; the secret itself is never
    part of this record.
    """

    id: str
    tenant: str
    provider: str
    client_id: str
    scopes: tuple[str, ...]
    settings: tuple[tuple[str, str], ...]
    has_client_secret: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """A secret as a store keeps it: sealed (encrypted, see ``sealed``) or in clear.

    Only stores and the service that owns the secret see this type.
    """

    value: str = field(repr=False)
    sealed: bool = False
