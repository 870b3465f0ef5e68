"""An in-process store: fast, thread-safe, gone when the process ends."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from authsome.errors import AlreadyExists, StoreError
from authsome.models import (
    ApiKey,
    ApiKeyOwnerKind,
    RefreshOutcome,
    RefreshStatus,
    Session,
    StoredApiKey,
    User,
)
from authsome.stores._protocol import Counter

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
        self._api_keys: dict[str, StoredApiKey] = {}
        self._api_key_by_lookup: dict[str, str] = {}  # lookup id -> key id

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

    # -- api keys --------------------------------------------------------------
    def create_api_key(self, key: ApiKey, secret_hash: str) -> None:
        with self._lock:
            if key.id in self._api_keys:
                raise AlreadyExists("api key id exists")
            if key.lookup_id in self._api_key_by_lookup:
                raise AlreadyExists("api key lookup id exists")
            self._api_keys[key.id] = StoredApiKey(key, secret_hash)
            self._api_key_by_lookup[key.lookup_id] = key.id

    def get_api_key(self, key_id: str) -> ApiKey | None:
        with self._lock:
            stored = self._api_keys.get(key_id)
            return None if stored is None else stored.key

    def find_api_key_by_lookup_id(self, lookup_id: str) -> StoredApiKey | None:
        with self._lock:
            key_id = self._api_key_by_lookup.get(lookup_id)
            return None if key_id is None else self._api_keys[key_id]

    def list_api_keys(self, owner_kind: ApiKeyOwnerKind, owner_id: str) -> list[ApiKey]:
        with self._lock:
            keys = [
                s.key
                for s in self._api_keys.values()
                if s.key.owner_kind == owner_kind and s.key.owner_id == owner_id
            ]
        return sorted(keys, key=lambda k: (k.created_at, k.id))

    def revoke_api_key(self, key_id: str, now: datetime) -> bool:
        with self._lock:
            stored = self._api_keys.get(key_id)
            if stored is None or stored.key.revoked_at is not None:
                return False
            self._replace_api_key(stored, dataclasses.replace(stored.key, revoked_at=now))
            return True

    def touch_api_key(self, key_id: str, at: datetime) -> None:
        with self._lock:
            stored = self._api_keys.get(key_id)
            if stored is None:
                return
            last = stored.key.last_used_at
            if last is None or at > last:
                self._replace_api_key(stored, dataclasses.replace(stored.key, last_used_at=at))

    def _replace_api_key(self, stored: StoredApiKey, key: ApiKey) -> None:
        self._api_keys[key.id] = StoredApiKey(key, stored.secret_hash)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MemoryStore(users={len(self._users)}, sessions={len(self._sessions)})"
