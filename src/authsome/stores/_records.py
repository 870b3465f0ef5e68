"""Rows → records, the same for every SQL store.

A row holds its columns in the order the stores' queries select them (named on each
method below). Only how a datetime or a list of strings is stored differs between
the stores, so each store builds one :class:`RecordReader` with its own decoders.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from authsome.models import (
    ApiKey,
    ApiKeyOwnerKind,
    Domain,
    Identity,
    Membership,
    MfaFactor,
    MfaMethod,
    OneTimeState,
    OneTimeToken,
    Org,
    OrgRole,
    Passkey,
    PasskeyCeremony,
    PasskeyChallenge,
    Session,
    SocialProviderInfo,
    SSOConnectionInfo,
    SSOProtocol,
    User,
)

__all__ = ["RecordReader", "Row", "sign_in_settings"]

Row = Sequence[Any]

# The sign-in settings of an SSO connection, kept as one JSON column: the
# connection's field name → its type.
_SIGN_IN_FIELDS: dict[str, type] = {
    "auth_method": str,
    "jit": bool,
    "jit_role": str,
    "trust_idp_mfa": bool,
    "userinfo": bool,
    "email_attribute": str,
    "name_attribute": str,
    "groups_attribute": str,
    "admin_groups": tuple,
}


def sign_in_settings(connection: SSOConnectionInfo) -> str:
    """The connection's sign-in settings as the JSON text the SQL stores keep."""
    return json.dumps({name: getattr(connection, name) for name in _SIGN_IN_FIELDS})


def _with_sign_in(connection: SSOConnectionInfo, text: str | None) -> SSOConnectionInfo:
    """``connection`` with the settings of :func:`sign_in_settings`' ``text``; a
    setting missing (a row from before the column) keeps its default."""
    stored = json.loads(text or "{}")
    known: dict[str, object] = {}
    for name, kind in _SIGN_IN_FIELDS.items():
        value = stored.get(name)
        if kind is tuple and isinstance(value, list):  # JSON keeps a tuple as a list
            known[name] = tuple(str(item) for item in value)
        elif isinstance(value, kind):
            known[name] = value
    return replace(connection, **known)  # type: ignore[arg-type]  # each type checked above


@dataclass(frozen=True, slots=True)
class RecordReader:
    """Builds records from rows. ``moment`` decodes a stored datetime into an aware
    UTC datetime; ``strings`` decodes a stored list of strings (API key scopes,
    passkey transports)."""

    moment: Callable[[Any], datetime]
    strings: Callable[[Any], Iterable[str]]

    def _optional(self, value: Any) -> datetime | None:
        return None if value is None else self.moment(value)

    def user(self, row: Row) -> User:
        """Columns: id, tenant, email, name, created_at, email_verified_at."""
        return User(
            id=row[0],
            tenant=row[1],
            email=row[2],
            name=row[3],
            created_at=self.moment(row[4]),
            email_verified_at=self._optional(row[5]),
        )

    def one_time_token(self, row: Row) -> OneTimeToken:
        """Columns: purpose, user_id, tenant, email, created_at, expires_at."""
        return OneTimeToken(
            purpose=row[0],
            user_id=row[1] or "",  # NULL: a sign-up token, no user yet
            tenant=row[2],
            email=row[3],
            created_at=self.moment(row[4]),
            expires_at=self.moment(row[5]),
        )

    def session(self, row: Row) -> Session:
        """Columns: id, user_id, tenant, created_at, expires_at, access_expires_at,
        revoked_at, last_seen_at, ip, user_agent."""
        return Session(
            id=row[0],
            user_id=row[1],
            tenant=row[2],
            created_at=self.moment(row[3]),
            expires_at=self.moment(row[4]),
            access_expires_at=self.moment(row[5]),
            revoked_at=self._optional(row[6]),
            last_seen_at=self._optional(row[7]),
            ip=row[8],
            user_agent=row[9],
        )

    def org(self, row: Row) -> Org:
        """Columns: id, tenant, slug, name, created_at."""
        return Org(
            id=row[0], tenant=row[1], slug=row[2], name=row[3], created_at=self.moment(row[4])
        )

    def membership(self, row: Row) -> Membership:
        """Columns: org_id, user_id, role, created_at."""
        return Membership(
            org_id=row[0], user_id=row[1], role=OrgRole(row[2]), created_at=self.moment(row[3])
        )

    def domain(self, row: Row) -> Domain:
        """Columns: id, tenant, hostname, created_at, verified_at."""
        return Domain(
            id=row[0],
            tenant=row[1],
            hostname=row[2],
            created_at=self.moment(row[3]),
            verified_at=self._optional(row[4]),
        )

    def factor(self, row: Row) -> MfaFactor:
        """Columns: id, user_id, method, created_at, confirmed_at, failed_codes."""
        return MfaFactor(
            id=row[0],
            user_id=row[1],
            method=MfaMethod(row[2]),
            created_at=self.moment(row[3]),
            confirmed_at=self._optional(row[4]),
            failed_codes=int(row[5]),
        )

    def api_key(self, row: Row) -> ApiKey:
        """Columns: id, lookup_id, owner_kind, owner_id, tenant, name, scopes,
        created_at, expires_at, revoked_at, last_used_at."""
        owner_kind: ApiKeyOwnerKind = "org" if row[2] == "org" else "user"
        return ApiKey(
            id=row[0],
            lookup_id=row[1],
            owner_kind=owner_kind,
            owner_id=row[3],
            tenant=row[4],
            name=row[5],
            scopes=tuple(self.strings(row[6])),
            created_at=self.moment(row[7]),
            expires_at=self._optional(row[8]),
            revoked_at=self._optional(row[9]),
            last_used_at=self._optional(row[10]),
        )

    def passkey(self, row: Row) -> Passkey:
        """Columns: credential_id, user_id, tenant, rp_id, public_key, sign_count,
        transports, created_at, last_used_at."""
        return Passkey(
            credential_id=row[0],
            user_id=row[1],
            tenant=row[2],
            rp_id=row[3],
            public_key=bytes(row[4]),
            sign_count=int(row[5]),
            transports=tuple(self.strings(row[6])),
            created_at=self.moment(row[7]),
            last_used_at=self._optional(row[8]),
        )

    def passkey_challenge(self, row: Row) -> PasskeyChallenge:
        """Columns: challenge_hash, ceremony, user_id, tenant, rp_id, origin,
        expires_at."""
        return PasskeyChallenge(
            challenge_hash=row[0],
            ceremony=PasskeyCeremony(row[1]),
            user_id=row[2],
            tenant=row[3],
            rp_id=row[4],
            origin=row[5],
            expires_at=self.moment(row[6]),
        )

    def sso_connection(
        self, row: Row, *, domains: Iterable[str], scopes: Iterable[str], sign_in: str | None
    ) -> SSOConnectionInfo:
        """Columns: id, org_id, protocol, issuer, client_id, (scopes), entity_id,
        sso_url, x509_certificate, has_client_secret, created_at, updated_at,
        rollover_x509_certificate, allow_idp_initiated; the domains and scopes come
        decoded, as the stores keep them differently, and the sign-in settings as
        :func:`sign_in_settings` wrote them."""
        return _with_sign_in(self._sso_connection(row, domains, scopes), sign_in)

    def _sso_connection(
        self, row: Row, domains: Iterable[str], scopes: Iterable[str]
    ) -> SSOConnectionInfo:
        return SSOConnectionInfo(
            id=row[0],
            org_id=row[1],
            protocol=SSOProtocol(row[2]),
            domains=tuple(domains),
            created_at=self.moment(row[10]),
            updated_at=self.moment(row[11]),
            issuer=row[3],
            client_id=row[4],
            scopes=tuple(scopes),
            has_client_secret=bool(row[9]),
            entity_id=row[6],
            sso_url=row[7],
            x509_certificate=row[8],
            rollover_x509_certificate=row[12],
            allow_idp_initiated=bool(row[13]),
        )

    def one_time_state(self, row: Row) -> OneTimeState:
        """Columns: purpose, tenant, payload, created_at, expires_at."""
        return OneTimeState(
            purpose=row[0],
            tenant=row[1],
            payload=row[2],
            created_at=self.moment(row[3]),
            expires_at=self.moment(row[4]),
        )

    def identity(self, row: Row) -> Identity:
        """Columns: tenant, provider, subject, user_id, created_at."""
        return Identity(
            tenant=row[0],
            provider=row[1],
            subject=row[2],
            user_id=row[3],
            created_at=self.moment(row[4]),
        )

    def social_provider(self, row: Row) -> SocialProviderInfo:
        """Columns: id, tenant, provider, client_id, scopes (a JSON array), settings
        (a JSON object), created_at, updated_at."""
        settings: dict[str, str] = json.loads(row[5])
        return SocialProviderInfo(
            id=row[0],
            tenant=row[1],
            provider=row[2],
            client_id=row[3],
            scopes=tuple(json.loads(row[4])),
            settings=tuple(sorted(settings.items())),
            has_client_secret=True,
            created_at=self.moment(row[6]),
            updated_at=self.moment(row[7]),
        )
