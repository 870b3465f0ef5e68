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
    "RefreshOutcome",
    "RefreshStatus",
    "Session",
    "SessionTokens",
    "SignIn",
    "StoredApiKey",
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
