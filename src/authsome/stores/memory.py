"""An in-process store: fast, thread-safe, gone when the process ends."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from authsome.errors import AlreadyExists, StoreError
from authsome.models import (
    Membership,
    Org,
    OrgRole,
    RefreshOutcome,
    RefreshStatus,
    Session,
    SSOConnectionInfo,
    StoredSecret,
    User,
)
from authsome.stores._protocol import Counter
from authsome.stores._rules import (
    DUPLICATE_SSO_DOMAIN,
    check_owner_membership,
    check_sso_record,
    last_owner_conflict,
)

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _RefreshToken:
    session_id: str
    used: bool = False


class MemoryStore:
    """A :class:`~authsome.stores.Store` kept in dictionaries behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._users: dict[str, User] = {}
        self._user_by_email: dict[tuple[str, str], str] = {}
        self._password_hashes: dict[str, str] = {}
        self._sessions: dict[str, Session] = {}
        self._access: dict[str, str] = {}  # access hash -> session id
        self._access_of_session: dict[str, str] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._counters: dict[str, Counter] = {}
        self._orgs: dict[str, Org] = {}
        self._org_by_slug: dict[tuple[str, str], str] = {}
        # org id -> user id -> membership; dicts keep insertion order, lists sort anyway
        self._members: dict[str, dict[str, Membership]] = {}
        self._sso: dict[str, SSOConnectionInfo] = {}
        self._sso_secrets: dict[str, StoredSecret] = {}
        self._sso_by_domain: dict[str, str] = {}  # e-mail domain -> connection id

    # -- users -----------------------------------------------------------------
    def create_user(self, user: User, password_hash: str) -> None:
        with self._lock:
            email_key = (user.tenant, user.email)
            if user.id in self._users or email_key in self._user_by_email:
                raise AlreadyExists("a user with this e-mail exists in this tenant")
            self._users[user.id] = user
            self._user_by_email[email_key] = user.id
            self._password_hashes[user.id] = password_hash

    def get_user(self, user_id: str) -> User | None:
        with self._lock:
            return self._users.get(user_id)

    def find_user_by_email(self, tenant: str, email: str) -> User | None:
        with self._lock:
            user_id = self._user_by_email.get((tenant, email))
            return None if user_id is None else self._users[user_id]

    def get_password_hash(self, user_id: str) -> str | None:
        with self._lock:
            return self._password_hashes.get(user_id)

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        with self._lock:
            if user_id in self._users:
                self._password_hashes[user_id] = password_hash

    # -- sessions --------------------------------------------------------------
    def create_session(self, session: Session, access_hash: str, refresh_hash: str) -> None:
        with self._lock:
            if session.id in self._sessions:
                raise AlreadyExists("session id exists")
            if session.user_id not in self._users:
                raise StoreError("session refers to an unknown user")
            self._sessions[session.id] = session
            self._set_access(session.id, access_hash)
            self._refresh[refresh_hash] = _RefreshToken(session.id)

    def get_session(self, session_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id)

    def find_session_by_access_hash(self, access_hash: str) -> Session | None:
        with self._lock:
            session_id = self._access.get(access_hash)
            return None if session_id is None else self._sessions[session_id]

    def rotate_refresh_token(
        self,
        refresh_hash: str,
        new_refresh_hash: str,
        new_access_hash: str,
        access_expires_at: datetime,
        now: datetime,
    ) -> RefreshOutcome:
        with self._lock:
            token = self._refresh.get(refresh_hash)
            if token is None:
                return RefreshOutcome(RefreshStatus.INVALID)
            session = self._sessions[token.session_id]
            if not session.is_active(now):
                return RefreshOutcome(RefreshStatus.INVALID)
            if token.used:
                self._revoke(session.id, now)
                return RefreshOutcome(RefreshStatus.REUSED, self._sessions[session.id])
            token.used = True
            self._refresh[new_refresh_hash] = _RefreshToken(session.id)
            self._set_access(session.id, new_access_hash)
            rotated = dataclasses.replace(session, access_expires_at=access_expires_at)
            self._sessions[session.id] = rotated
            return RefreshOutcome(RefreshStatus.ROTATED, rotated)

    def revoke_session(self, session_id: str, now: datetime) -> bool:
        with self._lock:
            return self._revoke(session_id, now)

    def revoke_user_sessions(self, user_id: str, now: datetime) -> int:
        with self._lock:
            ids = [s.id for s in self._sessions.values() if s.user_id == user_id]
            return sum(self._revoke(session_id, now) for session_id in ids)

    def _revoke(self, session_id: str, now: datetime) -> bool:
        session = self._sessions.get(session_id)
        if session is None or not session.is_active(now):
            return False  # unknown, revoked already, or ended by expiry
        self._sessions[session_id] = dataclasses.replace(session, revoked_at=now)
        return True

    def _set_access(self, session_id: str, access_hash: str) -> None:
        old = self._access_of_session.pop(session_id, None)
        if old is not None:
            del self._access[old]
        self._access[access_hash] = session_id
        self._access_of_session[session_id] = access_hash

    # -- throttle counters -----------------------------------------------------
    def hit_counter(self, key: str, now: datetime, ttl_seconds: int) -> Counter:
        with self._lock:
            current = self._live_counter(key, now)
            if current is None:
                counter = (1, now + timedelta(seconds=ttl_seconds))
            else:
                counter = (current[0] + 1, current[1])
            self._counters[key] = counter
            return counter

    def get_counter(self, key: str, now: datetime) -> Counter | None:
        with self._lock:
            return self._live_counter(key, now)

    def delete_counter(self, key: str) -> None:
        with self._lock:
            self._counters.pop(key, None)

    def _live_counter(self, key: str, now: datetime) -> Counter | None:
        counter = self._counters.get(key)
        if counter is None or counter[1] <= now:
            return None
        return counter

    # -- orgs ------------------------------------------------------------------
    def create_org(self, org: Org, owner: Membership) -> None:
        check_owner_membership(org, owner)
        with self._lock:
            slug_key = (org.tenant, org.slug)
            if org.id in self._orgs:
                raise AlreadyExists("an org with this id exists")
            if slug_key in self._org_by_slug:
                raise AlreadyExists("an org with this slug exists in this tenant")
            if owner.user_id not in self._users:
                raise StoreError("org owner is an unknown user")
            self._orgs[org.id] = org
            self._org_by_slug[slug_key] = org.id
            self._members[org.id] = {owner.user_id: owner}

    def get_org(self, org_id: str) -> Org | None:
        with self._lock:
            return self._orgs.get(org_id)

    def find_org_by_slug(self, tenant: str, slug: str) -> Org | None:
        with self._lock:
            org_id = self._org_by_slug.get((tenant, slug))
            return None if org_id is None else self._orgs[org_id]

    def add_membership(self, membership: Membership) -> None:
        with self._lock:
            members = self._members.get(membership.org_id)
            if members is None:
                raise StoreError("membership refers to an unknown org")
            if membership.user_id not in self._users:
                raise StoreError("membership refers to an unknown user")
            if membership.user_id in members:
                raise AlreadyExists("the user is a member of this org already")
            members[membership.user_id] = membership

    def get_membership(self, org_id: str, user_id: str) -> Membership | None:
        with self._lock:
            return self._members.get(org_id, {}).get(user_id)

    def list_memberships(self, org_id: str) -> list[Membership]:
        with self._lock:
            members = list(self._members.get(org_id, {}).values())
        return sorted(members, key=lambda m: (m.created_at, m.user_id))

    def list_user_orgs(self, user_id: str) -> list[Org]:
        with self._lock:
            orgs = [self._orgs[o] for o, members in self._members.items() if user_id in members]
        return sorted(orgs, key=lambda o: (o.created_at, o.id))

    def remove_membership(self, org_id: str, user_id: str) -> bool:
        with self._lock:
            members = self._members.get(org_id, {})
            current = members.get(user_id)
            if current is None:
                return False
            if current.role is OrgRole.OWNER and self._owner_count(members) == 1:
                raise last_owner_conflict("removed")
            del members[user_id]
            return True

    def set_membership_role(self, org_id: str, user_id: str, role: OrgRole) -> Membership | None:
        role = OrgRole(role)
        with self._lock:
            members = self._members.get(org_id, {})
            current = members.get(user_id)
            if current is None:
                return None
            demotes_owner = current.role is OrgRole.OWNER and role is not OrgRole.OWNER
            if demotes_owner and self._owner_count(members) == 1:
                raise last_owner_conflict("demoted")
            updated = dataclasses.replace(current, role=role)
            members[user_id] = updated
            return updated

    @staticmethod
    def _owner_count(members: dict[str, Membership]) -> int:
        return sum(m.role is OrgRole.OWNER for m in members.values())

    # -- sso -------------------------------------------------------------------
    def create_sso_connection(
        self, connection: SSOConnectionInfo, client_secret: StoredSecret | None
    ) -> None:
        check_sso_record(connection, client_secret)
        with self._lock:
            if connection.id in self._sso:
                raise AlreadyExists("an SSO connection with this id exists")
            if connection.org_id not in self._orgs:
                raise StoreError("SSO connection refers to an unknown org")
            self._check_domains_free(connection)
            self._put_sso(connection, client_secret)

    def update_sso_connection(
        self, connection: SSOConnectionInfo, client_secret: StoredSecret | None
    ) -> SSOConnectionInfo | None:
        check_sso_record(connection, client_secret)
        with self._lock:
            current = self._sso.get(connection.id)
            if current is None:
                return None
            self._check_domains_free(connection)
            updated = dataclasses.replace(
                connection, org_id=current.org_id, created_at=current.created_at
            )
            self._drop_sso(current.id)
            self._put_sso(updated, client_secret)
            return updated

    def get_sso_connection(self, connection_id: str) -> SSOConnectionInfo | None:
        with self._lock:
            return self._sso.get(connection_id)

    def list_sso_connections(self, org_id: str) -> list[SSOConnectionInfo]:
        with self._lock:
            found = [c for c in self._sso.values() if c.org_id == org_id]
        return sorted(found, key=lambda c: (c.created_at, c.id))

    def find_sso_connection_by_domain(self, domain: str) -> SSOConnectionInfo | None:
        with self._lock:
            connection_id = self._sso_by_domain.get(domain)
            return None if connection_id is None else self._sso[connection_id]

    def get_sso_client_secret(self, connection_id: str) -> StoredSecret | None:
        with self._lock:
            return self._sso_secrets.get(connection_id)

    def delete_sso_connection(self, connection_id: str) -> bool:
        with self._lock:
            if connection_id not in self._sso:
                return False
            self._drop_sso(connection_id)
            return True

    def _check_domains_free(self, connection: SSOConnectionInfo) -> None:
        # A connection may keep its own domains on update; any other owner conflicts.
        for domain in connection.domains:
            if self._sso_by_domain.get(domain, connection.id) != connection.id:
                raise AlreadyExists(DUPLICATE_SSO_DOMAIN)

    def _put_sso(self, connection: SSOConnectionInfo, client_secret: StoredSecret | None) -> None:
        self._sso[connection.id] = connection
        if client_secret is not None:
            self._sso_secrets[connection.id] = client_secret
        for domain in connection.domains:
            self._sso_by_domain[domain] = connection.id

    def _drop_sso(self, connection_id: str) -> None:
        connection = self._sso.pop(connection_id)
        self._sso_secrets.pop(connection_id, None)
        for domain in connection.domains:
            del self._sso_by_domain[domain]

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MemoryStore(users={len(self._users)}, sessions={len(self._sessions)})"
