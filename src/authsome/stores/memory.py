"""An in-process store: fast, thread-safe, gone when the process ends."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from authsome.errors import AlreadyExists, StoreError
from authsome.models import (
    ApiKey,
    ApiKeyOwnerKind,
    Domain,
    Identity,
    Membership,
    MfaFactor,
    OneTimeState,
    OneTimeToken,
    Org,
    OrgRole,
    Passkey,
    PasskeyChallenge,
    RefreshOutcome,
    RefreshStatus,
    Session,
    SocialProviderInfo,
    SSOConnectionInfo,
    StoredApiKey,
    StoredSecret,
    User,
)
from authsome.stores._protocol import Counter
from authsome.stores._rules import (
    Duplicate,
    check_owner_membership,
    check_social_record,
    check_sso_record,
    last_owner_conflict,
)

__all__ = ["MemoryStore"]

_MIN_SWEEP = 64  # below this many stored states, expired ones are not worth a sweep


@dataclass(slots=True)
class _RefreshToken:
    session_id: str
    used: bool = False


@dataclass(slots=True)
class _Factor:
    record: MfaFactor
    secret: str
    last_step: int | None = None
    recovery_hashes: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Ticket:
    user_id: str
    expires_at: datetime
    attempts: int = 0


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
        self._store_keys: dict[str, bytes] = {}
        self._orgs: dict[str, Org] = {}
        self._org_by_slug: dict[tuple[str, str], str] = {}
        # org id -> user id -> membership; dicts keep insertion order, lists sort anyway
        self._members: dict[str, dict[str, Membership]] = {}
        self._domains: dict[str, Domain] = {}
        self._domain_tokens: dict[str, str] = {}
        self._domain_by_hostname: dict[str, str] = {}  # verified domains only
        self._domain_by_claim: dict[tuple[str, str], str] = {}  # (tenant, hostname) -> id
        self._factors: dict[str, _Factor] = {}
        self._tickets: dict[str, _Ticket] = {}
        self._one_time_tokens: dict[str, OneTimeToken] = {}
        self._one_time_states: dict[str, OneTimeState] = {}
        self._states_sweep_at = _MIN_SWEEP  # the size that triggers the next sweep
        self._identities: dict[tuple[str, str, str], Identity] = {}
        self._code_attempts: dict[str, int] = {}  # by token hash
        self._api_keys: dict[str, StoredApiKey] = {}
        self._api_key_by_lookup: dict[str, str] = {}  # lookup id -> key id
        self._passkey_challenges: dict[str, PasskeyChallenge] = {}
        self._passkeys: dict[str, Passkey] = {}
        self._sso: dict[str, SSOConnectionInfo] = {}
        self._sso_secrets: dict[str, StoredSecret] = {}
        # (tenant, e-mail domain) -> connection id: one owner per domain in a tenant
        self._sso_by_domain: dict[tuple[str, str], str] = {}
        # (connection id, SAML assertion id) -> kept until
        self._saml_assertion_ids: dict[tuple[str, str], datetime] = {}
        # (tenant, provider) -> configuration, and its secret by configuration id
        self._social: dict[tuple[str, str], SocialProviderInfo] = {}
        self._social_secrets: dict[str, StoredSecret] = {}

    # -- units of work -----------------------------------------------------------
    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Hold the store's lock for the block: no other thread's call interleaves.
        Nothing here is durable, so there is no commit to save; a block that raises
        keeps what it wrote (there is no log to undo it from)."""
        with self._lock:
            yield

    # -- users -----------------------------------------------------------------
    def create_user(self, user: User, password_hash: str) -> None:
        with self._lock:
            email_key = (user.tenant, user.email)
            if user.id in self._users or email_key in self._user_by_email:
                raise AlreadyExists(Duplicate.USER_EMAIL)
            self._users[user.id] = dataclasses.replace(user, email_verified_at=None)
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

    def mark_email_verified(self, user_id: str, email: str, now: datetime) -> User | None:
        with self._lock:
            user = self._users.get(user_id)
            if user is None or user.email != email:
                return None
            if user.email_verified_at is None:
                user = dataclasses.replace(user, email_verified_at=now)
                self._users[user_id] = user
            return user

    def change_user_email(
        self, user_id: str, old_email: str, new_email: str, now: datetime
    ) -> User | None:
        with self._lock:
            user = self._users.get(user_id)
            if user is None or user.email != old_email:
                return None
            new_key = (user.tenant, new_email)
            if self._user_by_email.get(new_key, user_id) != user_id:
                raise AlreadyExists(Duplicate.USER_EMAIL)
            del self._user_by_email[(user.tenant, old_email)]
            self._user_by_email[new_key] = user_id
            user = dataclasses.replace(user, email=new_email, email_verified_at=now)
            self._users[user_id] = user
            return user

    # -- one-time tokens -------------------------------------------------------
    def create_one_time_token(self, token_hash: str, token: OneTimeToken, now: datetime) -> None:
        with self._lock:
            if token.user_id and token.user_id not in self._users:
                raise StoreError("one-time token refers to an unknown user")
            if token_hash in self._one_time_tokens:
                raise AlreadyExists(Duplicate.ONE_TIME_TOKEN)
            _delete_where(
                self._one_time_tokens,
                lambda t: t.expires_at <= now or _replaced_by(t, token),
            )
            self._one_time_tokens[token_hash] = token
            # The counts of tokens deleted since the last new one go with them.
            for stale in self._code_attempts.keys() - self._one_time_tokens.keys():
                del self._code_attempts[stale]

    def attempt_one_time_code(
        self,
        code_hash: str,
        purpose: str,
        tenant: str,
        email: str,
        now: datetime,
        max_attempts: int,
    ) -> OneTimeToken | None:
        with self._lock:
            counted = False
            for token_hash, token in self._one_time_tokens.items():
                if (token.purpose, token.tenant, token.email) != (purpose, tenant, email):
                    continue
                attempts = self._code_attempts.get(token_hash, 0)
                if token.expires_at <= now or attempts >= max_attempts:
                    continue
                self._code_attempts[token_hash] = attempts + 1
                counted = counted or token_hash == code_hash
            if not counted:
                return None
            self._code_attempts.pop(code_hash, None)
            return self._one_time_tokens.pop(code_hash)

    def consume_one_time_token(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeToken | None:
        with self._lock:
            token = self._one_time_tokens.get(token_hash)
            if token is None or token.expires_at <= now:
                return None
            if token.purpose != purpose or token.tenant != tenant:
                return None
            del self._one_time_tokens[token_hash]
            return token

    def find_one_time_token(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeToken | None:
        with self._lock:
            token = self._one_time_tokens.get(token_hash)
            if token is None or token.expires_at <= now:
                return None
            if token.purpose != purpose or token.tenant != tenant:
                return None
            return token

    def delete_one_time_token(self, token_hash: str) -> bool:
        with self._lock:
            return self._one_time_tokens.pop(token_hash, None) is not None

    def delete_user_one_time_tokens(self, user_id: str) -> int:
        with self._lock:
            return _delete_where(self._one_time_tokens, lambda t: t.user_id == user_id)

    def create_one_time_state(self, token_hash: str, state: OneTimeState, now: datetime) -> None:
        with self._lock:
            existing = self._one_time_states.get(token_hash)
            if existing is not None and existing.expires_at > now:  # an expired one is gone
                raise AlreadyExists(Duplicate.ONE_TIME_TOKEN)
            # Sweep expired states only once the map has doubled since the last sweep:
            # amortised constant work per insert, where a sweep per insert made a flood
            # of starts quadratic. Expired states are never answered meanwhile.
            if len(self._one_time_states) >= self._states_sweep_at:
                _delete_where(self._one_time_states, lambda s: s.expires_at <= now)
                self._states_sweep_at = max(_MIN_SWEEP, 2 * len(self._one_time_states))
            self._one_time_states[token_hash] = state

    def consume_one_time_state(
        self, token_hash: str, purpose: str, tenant: str, now: datetime
    ) -> OneTimeState | None:
        with self._lock:
            state = self._one_time_states.get(token_hash)
            if state is None or state.expires_at <= now:
                return None
            if state.purpose != purpose or state.tenant != tenant:
                return None
            del self._one_time_states[token_hash]
            return state

    # -- identities at external providers --------------------------------------
    def create_identity(self, identity: Identity) -> None:
        key = (identity.tenant, identity.provider, identity.subject)
        with self._lock:
            if identity.user_id not in self._users:
                raise StoreError("identity refers to an unknown user")
            if key in self._identities:
                raise AlreadyExists(Duplicate.IDENTITY)
            self._identities[key] = identity

    def find_identity(self, tenant: str, provider: str, subject: str) -> Identity | None:
        with self._lock:
            return self._identities.get((tenant, provider, subject))

    def list_identities(self, user_id: str) -> list[Identity]:
        with self._lock:
            found = [i for i in self._identities.values() if i.user_id == user_id]
        return sorted(found, key=lambda i: (i.created_at, i.provider, i.subject))

    def delete_identity(self, user_id: str, provider: str, subject: str) -> bool:
        with self._lock:
            return (
                _delete_where(
                    self._identities,
                    lambda i: (i.user_id, i.provider, i.subject) == (user_id, provider, subject),
                )
                > 0
            )

    # -- sessions --------------------------------------------------------------
    def create_session(self, session: Session, access_hash: str, refresh_hash: str) -> None:
        with self._lock:
            if session.id in self._sessions:
                raise AlreadyExists(Duplicate.SESSION_ID)
            if session.user_id not in self._users:
                raise StoreError("session refers to an unknown user")
            if session.last_seen_at is None:
                session = dataclasses.replace(session, last_seen_at=session.created_at)
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
        *,
        tenant: str | None = None,
        idle_since: datetime | None = None,
    ) -> RefreshOutcome:
        with self._lock:
            token = self._refresh.get(refresh_hash)
            if token is None:
                return RefreshOutcome(RefreshStatus.INVALID)
            session = self._sessions[token.session_id]
            if not session.usable(now, tenant=tenant, idle_since=idle_since):
                return RefreshOutcome(RefreshStatus.INVALID)
            if token.used:
                self._revoke(session.id, now)
                return RefreshOutcome(RefreshStatus.REUSED, self._sessions[session.id])
            token.used = True
            self._refresh[new_refresh_hash] = _RefreshToken(session.id)
            self._set_access(session.id, new_access_hash)
            rotated = dataclasses.replace(
                session, access_expires_at=access_expires_at, last_seen_at=now
            )
            self._sessions[session.id] = rotated
            return RefreshOutcome(RefreshStatus.ROTATED, rotated)

    def touch_session(self, session_id: str, at: datetime) -> None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.last_activity < at:
                self._sessions[session_id] = dataclasses.replace(session, last_seen_at=at)

    def revoke_session(self, session_id: str, now: datetime) -> bool:
        with self._lock:
            return self._revoke(session_id, now)

    def revoke_user_session(self, session_id: str, user_id: str, now: datetime) -> bool:
        with self._lock:
            session = self._sessions.get(session_id)
            return (
                session is not None and session.user_id == user_id and self._revoke(session_id, now)
            )

    def list_user_sessions(self, user_id: str, now: datetime) -> list[Session]:
        with self._lock:
            live = [s for s in self._sessions.values() if s.user_id == user_id and s.is_active(now)]
        return sorted(live, key=lambda s: (s.created_at, s.id), reverse=True)

    def revoke_user_sessions(self, user_id: str, now: datetime) -> int:
        with self._lock:
            ids = [s.id for s in self._sessions.values() if s.user_id == user_id]
            return sum(self._revoke(session_id, now) for session_id in ids)

    def revoke_other_user_sessions(self, user_id: str, keep_session_id: str, now: datetime) -> int:
        with self._lock:
            ids = [
                s.id
                for s in self._sessions.values()
                if s.user_id == user_id and s.id != keep_session_id
            ]
            return sum(self._revoke(session_id, now) for session_id in ids)

    def prune_sessions(
        self, ended_before: datetime, idle_since: datetime | None, limit: int
    ) -> int:
        with self._lock:
            ended = [
                s.id for s in self._sessions.values() if _ended_by(s, ended_before, idle_since)
            ][:limit]
            for session_id in ended:
                del self._sessions[session_id]
                del self._access[self._access_of_session.pop(session_id)]
            gone = set(ended)
            for digest in [h for h, t in self._refresh.items() if t.session_id in gone]:
                del self._refresh[digest]
            return len(ended)

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

    def release_counter(self, key: str, now: datetime) -> None:
        with self._lock:
            current = self._live_counter(key, now)
            if current is not None:
                self._counters[key] = (max(current[0] - 1, 0), current[1])

    def prune_counters(self, now: datetime) -> int:
        with self._lock:
            return _delete_where(self._counters, lambda counter: counter[1] <= now)

    # -- keys kept in the store ------------------------------------------------
    def keep_store_key(self, name: str, candidate: bytes) -> bytes:
        with self._lock:
            return self._store_keys.setdefault(name, bytes(candidate))

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
                raise AlreadyExists(Duplicate.ORG_ID)
            if slug_key in self._org_by_slug:
                raise AlreadyExists(Duplicate.ORG_SLUG)
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
                raise AlreadyExists(Duplicate.MEMBERSHIP)
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

    def remove_membership(self, org_id: str, user_id: str) -> Membership | None:
        with self._lock:
            members = self._members.get(org_id, {})
            current = members.get(user_id)
            if current is None:
                return None
            if current.role is OrgRole.OWNER and self._owner_count(members) == 1:
                raise last_owner_conflict("removed")
            del members[user_id]
            return current

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

    # -- custom domains --------------------------------------------------------
    def create_domain(self, domain: Domain, token: str) -> None:
        with self._lock:
            claim = (domain.tenant, domain.hostname)
            if claim in self._domain_by_claim:
                raise AlreadyExists(Duplicate.DOMAIN_CLAIM)
            if domain.hostname in self._domain_by_hostname:
                raise AlreadyExists(Duplicate.HOSTNAME_VERIFIED)
            if domain.id in self._domains:
                raise AlreadyExists(Duplicate.DOMAIN_ID)
            self._domains[domain.id] = domain
            self._domain_tokens[domain.id] = token
            self._domain_by_claim[claim] = domain.id
            if domain.verified_at is not None:
                self._domain_by_hostname[domain.hostname] = domain.id

    def get_domain(self, domain_id: str) -> Domain | None:
        with self._lock:
            return self._domains.get(domain_id)

    def get_domain_token(self, domain_id: str) -> str | None:
        with self._lock:
            return self._domain_tokens.get(domain_id)

    def find_domain_by_hostname(self, hostname: str) -> Domain | None:
        with self._lock:
            domain_id = self._domain_by_hostname.get(hostname)
            return None if domain_id is None else self._domains[domain_id]

    def list_domains(self, tenant: str) -> list[Domain]:
        with self._lock:
            found = [d for d in self._domains.values() if d.tenant == tenant]
        return sorted(found, key=lambda d: d.hostname)

    def mark_domain_verified(self, domain_id: str, now: datetime) -> Domain | None:
        with self._lock:
            domain = self._domains.get(domain_id)
            if domain is None or domain.verified_at is not None:
                return domain
            if domain.hostname in self._domain_by_hostname:  # another claim won
                raise AlreadyExists(Duplicate.HOSTNAME_VERIFIED)
            verified = dataclasses.replace(domain, verified_at=now)
            self._domains[domain_id] = verified
            self._domain_by_hostname[domain.hostname] = domain_id
            return verified

    def delete_pending_domains(self, created_before: datetime) -> int:
        with self._lock:
            stale = [
                d.id
                for d in self._domains.values()
                if not d.verified and d.created_at <= created_before
            ]
            return sum(self.delete_domain(domain_id) for domain_id in stale)

    def delete_domain(self, domain_id: str) -> bool:
        with self._lock:
            domain = self._domains.pop(domain_id, None)
            if domain is None:
                return False
            del self._domain_tokens[domain_id]
            del self._domain_by_claim[(domain.tenant, domain.hostname)]
            if domain.verified_at is not None:
                del self._domain_by_hostname[domain.hostname]
            return True

    # -- mfa -------------------------------------------------------------------
    def create_mfa_factor(self, factor: MfaFactor, secret: str) -> None:
        with self._lock:
            if factor.user_id not in self._users:
                raise StoreError("factor refers to an unknown user")
            if factor.id in self._factors:
                raise AlreadyExists(Duplicate.FACTOR_ID)
            for existing in self._user_factors(factor.user_id):
                if existing.record.method is factor.method:
                    if existing.record.confirmed:
                        raise AlreadyExists(Duplicate.CONFIRMED_FACTOR)
                    del self._factors[existing.record.id]  # a pending one is replaced
            self._factors[factor.id] = _Factor(factor, secret)

    def get_mfa_factor(self, factor_id: str) -> MfaFactor | None:
        with self._lock:
            entry = self._factors.get(factor_id)
            return None if entry is None else entry.record

    def get_mfa_secret(self, factor_id: str) -> str | None:
        with self._lock:
            entry = self._factors.get(factor_id)
            return None if entry is None else entry.secret

    def list_mfa_secrets(self, after: str, limit: int) -> list[tuple[str, str]]:
        with self._lock:
            pairs = [(i, entry.secret) for i, entry in self._factors.items() if i > after]
        return sorted(pairs)[:limit]

    def replace_mfa_secret(self, factor_id: str, expected: str, secret: str) -> bool:
        with self._lock:
            entry = self._factors.get(factor_id)
            if entry is None or entry.secret != expected:
                return False
            entry.secret = secret
            return True

    def list_mfa_factors(self, user_id: str) -> list[MfaFactor]:
        with self._lock:
            records = [entry.record for entry in self._user_factors(user_id)]
        return sorted(records, key=lambda f: (f.created_at, f.id))

    def confirm_mfa_factor(
        self, factor_id: str, step: int, recovery_hashes: Sequence[str], now: datetime
    ) -> bool:
        with self._lock:
            entry = self._factors.get(factor_id)
            if entry is None or entry.record.confirmed or not _step_is_new(entry, step):
                return False
            entry.record = dataclasses.replace(entry.record, confirmed_at=now)
            entry.last_step = step
            entry.recovery_hashes = set(recovery_hashes)
            return True

    def use_totp_step(self, factor_id: str, step: int) -> bool:
        with self._lock:
            entry = self._factors.get(factor_id)
            if entry is None or not _step_is_new(entry, step):
                return False
            entry.last_step = step
            return True

    def consume_recovery_code(self, factor_id: str, code_hash: str) -> bool:
        with self._lock:
            entry = self._factors.get(factor_id)
            if entry is None or code_hash not in entry.recovery_hashes:
                return False
            entry.recovery_hashes.discard(code_hash)
            return True

    def count_recovery_codes(self, factor_id: str) -> int:
        with self._lock:
            entry = self._factors.get(factor_id)
            return 0 if entry is None else len(entry.recovery_hashes)

    def delete_mfa_factor(self, factor_id: str) -> bool:
        with self._lock:
            return self._factors.pop(factor_id, None) is not None

    def create_mfa_ticket(
        self, ticket_hash: str, user_id: str, expires_at: datetime, now: datetime
    ) -> None:
        with self._lock:
            if user_id not in self._users:
                raise StoreError("ticket refers to an unknown user")
            if ticket_hash in self._tickets:
                raise AlreadyExists(Duplicate.TICKET_HASH)
            _delete_where(self._tickets, lambda t: t.expires_at <= now)
            self._tickets[ticket_hash] = _Ticket(user_id, expires_at)

    def attempt_mfa_ticket(
        self, ticket_hash: str, now: datetime, max_attempts: int, *, tenant: str | None = None
    ) -> str | None:
        with self._lock:
            ticket = self._tickets.get(ticket_hash)
            if ticket is None or ticket.expires_at <= now or ticket.attempts >= max_attempts:
                return None
            if tenant is not None and self._users[ticket.user_id].tenant != tenant:
                return None
            ticket.attempts += 1
            return ticket.user_id

    def consume_mfa_ticket(self, ticket_hash: str) -> bool:
        with self._lock:
            return self._tickets.pop(ticket_hash, None) is not None

    def delete_user_mfa_tickets(self, user_id: str) -> int:
        with self._lock:
            return _delete_where(self._tickets, lambda t: t.user_id == user_id)

    def count_mfa_failure(self, factor_id: str) -> int:
        with self._lock:
            entry = self._factors.get(factor_id)
            if entry is None:
                return 0
            failed = entry.record.failed_codes + 1
            entry.record = dataclasses.replace(entry.record, failed_codes=failed)
            return failed

    def reset_mfa_failures(self, factor_id: str) -> bool:
        with self._lock:
            entry = self._factors.get(factor_id)
            if entry is None or entry.record.failed_codes == 0:
                return False
            entry.record = dataclasses.replace(entry.record, failed_codes=0)
            return True

    def _user_factors(self, user_id: str) -> list[_Factor]:
        return [entry for entry in self._factors.values() if entry.record.user_id == user_id]

    # -- api keys --------------------------------------------------------------
    def create_api_key(self, key: ApiKey, secret_hash: str) -> None:
        with self._lock:
            if key.id in self._api_keys:
                raise AlreadyExists(Duplicate.API_KEY_ID)
            if key.lookup_id in self._api_key_by_lookup:
                raise AlreadyExists(Duplicate.API_KEY_LOOKUP_ID)
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

    # -- passkeys --------------------------------------------------------------
    def create_passkey_challenge(self, challenge: PasskeyChallenge, now: datetime) -> None:
        with self._lock:
            _delete_where(self._passkey_challenges, lambda c: c.expires_at <= now)
            if challenge.challenge_hash in self._passkey_challenges:
                raise AlreadyExists(Duplicate.CHALLENGE)
            if challenge.user_id is not None and challenge.user_id not in self._users:
                raise StoreError("challenge refers to an unknown user")
            self._passkey_challenges[challenge.challenge_hash] = challenge

    def consume_passkey_challenge(
        self, challenge_hash: str, now: datetime
    ) -> PasskeyChallenge | None:
        with self._lock:
            challenge = self._passkey_challenges.pop(challenge_hash, None)
        if challenge is None or challenge.expires_at <= now:
            return None
        return challenge

    def create_passkey(self, passkey: Passkey) -> None:
        with self._lock:
            if passkey.credential_id in self._passkeys:
                raise AlreadyExists(Duplicate.PASSKEY)
            if passkey.user_id not in self._users:
                raise StoreError("passkey refers to an unknown user")
            self._passkeys[passkey.credential_id] = passkey

    def get_passkey(self, credential_id: str) -> Passkey | None:
        with self._lock:
            return self._passkeys.get(credential_id)

    def sample_passkey(self, tenant: str, rp_id: str, point: str) -> Passkey | None:
        with self._lock:
            ids = sorted(
                p.credential_id
                for p in self._passkeys.values()
                if p.tenant == tenant and p.rp_id == rp_id
            )
            if not ids:
                return None
            chosen = next((i for i in ids if i >= point), ids[0])
            return self._passkeys[chosen]

    def list_user_passkeys(self, user_id: str) -> list[Passkey]:
        with self._lock:
            found = [p for p in self._passkeys.values() if p.user_id == user_id]
        return sorted(found, key=lambda p: (p.created_at, p.credential_id))

    def update_passkey_sign_count(
        self, credential_id: str, expected: int, new: int, now: datetime
    ) -> bool:
        with self._lock:
            current = self._passkeys.get(credential_id)
            if current is None or current.sign_count != expected:
                return False
            self._passkeys[credential_id] = dataclasses.replace(
                current, sign_count=new, last_used_at=now
            )
            return True

    def delete_passkey(self, user_id: str, credential_id: str) -> bool:
        with self._lock:
            current = self._passkeys.get(credential_id)
            if current is None or current.user_id != user_id:
                return False
            del self._passkeys[credential_id]
            return True

    # -- sso -------------------------------------------------------------------
    def create_sso_connection(
        self, connection: SSOConnectionInfo, client_secret: StoredSecret | None
    ) -> None:
        check_sso_record(connection, client_secret)
        with self._lock:
            if connection.id in self._sso:
                raise AlreadyExists(Duplicate.SSO_ID)
            if connection.org_id not in self._orgs:
                raise StoreError("SSO connection refers to an unknown org")
            self._check_domains_free(connection, connection.org_id)
            self._put_sso(connection, client_secret)

    def update_sso_connection(
        self, connection: SSOConnectionInfo, client_secret: StoredSecret | None
    ) -> SSOConnectionInfo | None:
        check_sso_record(connection, client_secret)
        with self._lock:
            current = self._sso.get(connection.id)
            if current is None:
                return None
            self._check_domains_free(connection, current.org_id)
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

    def find_sso_connection_by_domain(self, tenant: str, domain: str) -> SSOConnectionInfo | None:
        with self._lock:
            connection_id = self._sso_by_domain.get((tenant, domain))
            return None if connection_id is None else self._sso[connection_id]

    def get_sso_client_secret(self, connection_id: str) -> StoredSecret | None:
        with self._lock:
            return self._sso_secrets.get(connection_id)

    def list_sso_client_secrets(self, after: str, limit: int) -> list[tuple[str, StoredSecret]]:
        with self._lock:
            return _page_of(self._sso_secrets, after, limit)

    def replace_sso_client_secret(
        self, connection_id: str, expected: StoredSecret, secret: StoredSecret
    ) -> bool:
        with self._lock:
            return _replace_if(self._sso_secrets, connection_id, expected, secret)

    def use_saml_assertion_id(
        self, connection_id: str, assertion_id: str, keep_until: datetime, now: datetime
    ) -> bool:
        with self._lock:
            kept = self._saml_assertion_ids
            _delete_where(kept, lambda until: until <= now)
            if (connection_id, assertion_id) in kept:
                return False
            kept[(connection_id, assertion_id)] = keep_until
            return True

    def delete_sso_connection(self, connection_id: str) -> bool:
        with self._lock:
            if connection_id not in self._sso:
                return False
            self._drop_sso(connection_id)
            return True

    def _check_domains_free(self, connection: SSOConnectionInfo, org_id: str) -> None:
        # A connection may keep its own domains on update; another owner in the same
        # tenant conflicts. Other tenants' connections do not matter.
        tenant = self._orgs[org_id].tenant
        for domain in connection.domains:
            if self._sso_by_domain.get((tenant, domain), connection.id) != connection.id:
                raise AlreadyExists(Duplicate.SSO_DOMAIN)

    def _put_sso(self, connection: SSOConnectionInfo, client_secret: StoredSecret | None) -> None:
        self._sso[connection.id] = connection
        if client_secret is not None:
            self._sso_secrets[connection.id] = client_secret
        tenant = self._orgs[connection.org_id].tenant
        for domain in connection.domains:
            self._sso_by_domain[(tenant, domain)] = connection.id

    def _drop_sso(self, connection_id: str) -> None:
        connection = self._sso.pop(connection_id)
        self._sso_secrets.pop(connection_id, None)
        tenant = self._orgs[connection.org_id].tenant
        for domain in connection.domains:
            del self._sso_by_domain[(tenant, domain)]

    # -- social sign-in providers ------------------------------------------------
    def put_social_provider(
        self, provider: SocialProviderInfo, client_secret: StoredSecret
    ) -> SocialProviderInfo:
        check_social_record(provider, client_secret)
        key = (provider.tenant, provider.provider)
        with self._lock:
            current = self._social.get(key)
            if current is not None:
                provider = dataclasses.replace(provider, created_at=current.created_at)
                self._social_secrets.pop(current.id, None)
            self._social[key] = provider
            self._social_secrets[provider.id] = client_secret
            return provider

    def get_social_provider(self, tenant: str, provider: str) -> SocialProviderInfo | None:
        with self._lock:
            return self._social.get((tenant, provider))

    def list_social_providers(self, tenant: str) -> list[SocialProviderInfo]:
        with self._lock:
            found = [p for (t, _), p in self._social.items() if t == tenant]
        return sorted(found, key=lambda p: p.provider)

    def get_social_client_secret(self, provider_id: str) -> StoredSecret | None:
        with self._lock:
            return self._social_secrets.get(provider_id)

    def list_social_client_secrets(self, after: str, limit: int) -> list[tuple[str, StoredSecret]]:
        with self._lock:
            return _page_of(self._social_secrets, after, limit)

    def replace_social_client_secret(
        self, provider_id: str, expected: StoredSecret, secret: StoredSecret
    ) -> bool:
        with self._lock:
            return _replace_if(self._social_secrets, provider_id, expected, secret)

    def delete_social_provider(self, tenant: str, provider: str) -> bool:
        with self._lock:
            current = self._social.pop((tenant, provider), None)
            if current is None:
                return False
            self._social_secrets.pop(current.id, None)
            return True

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"MemoryStore(users={len(self._users)}, sessions={len(self._sessions)})"


_K = TypeVar("_K")
_V = TypeVar("_V")


def _delete_where(records: dict[_K, _V], doomed: Callable[[_V], bool]) -> int:
    """Delete the records ``doomed`` picks (call with the lock held); how many."""
    keys = [key for key, record in records.items() if doomed(record)]
    for key in keys:
        del records[key]
    return len(keys)


def _page_of(
    secrets: dict[str, StoredSecret], after: str, limit: int
) -> list[tuple[str, StoredSecret]]:
    """The next ``limit`` (id, secret) pairs after ``after``, by id (with the lock held):
    a page of a reseal."""
    return sorted(((i, s) for i, s in secrets.items() if i > after), key=lambda p: p[0])[:limit]


def _replace_if(
    secrets: dict[str, StoredSecret], key: str, expected: StoredSecret, secret: StoredSecret
) -> bool:
    """Compare-and-set (with the lock held): ``secret`` only if ``expected`` is there."""
    if secrets.get(key) != expected:
        return False
    secrets[key] = secret
    return True


def _replaced_by(old: OneTimeToken, new: OneTimeToken) -> bool:
    """Whether a new token makes ``old`` stop working: the same user and purpose,
    or for a sign-up token (no user) the same purpose, tenant and address."""
    if new.user_id:
        return (old.user_id, old.purpose) == (new.user_id, new.purpose)
    return not old.user_id and (old.purpose, old.tenant, old.email) == (
        new.purpose,
        new.tenant,
        new.email,
    )


def _step_is_new(entry: _Factor, step: int) -> bool:
    return entry.last_step is None or entry.last_step < step


def _ended_by(session: Session, ended_before: datetime, idle_since: datetime | None) -> bool:
    """Whether ``session`` ended at or before ``ended_before`` (see ``prune_sessions``)."""
    revoked = session.revoked_at
    return (
        (revoked is not None and revoked <= ended_before)
        or session.expires_at <= ended_before
        or (idle_since is not None and session.last_activity <= idle_since)
    )
