"""API keys: long-lived bearer secrets for machines, owned by a user or an org.

A secret is ``ask_`` + an 8-character lookup id + 22 random characters + a
6-character checksum, all base62 (like GitHub's tokens), 40 characters in all::

    ask_LLLLLLLLRRRRRRRRRRRRRRRRRRRRRRCCCCCC
        lookup  random body           crc32

* The checksum (CRC32 of everything before it) lets :meth:`ApiKeys.validate`
  reject typos and random strings without touching the store, and lets secret
  scanners recognise a leaked key with few false positives.
* The lookup id finds the row through a unique index; the random body carries
  log2(62**22) ~ 131 bits, so guessing a key is hopeless even when its lookup id
  is known.
* Only the SHA-256 of the whole secret is stored, compared in constant time.

Each successful validation records ``authsome.apikeys.validated`` for the
owner's tenant with a fresh event id. The last-used time is written at most
once per key per :attr:`ApiKeyPolicy.last_used_resolution`, so a hot key does
not turn every request into a write.
"""

from __future__ import annotations

import builtins
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from authsome import _validation as v
from authsome._billing import Billing
from authsome._time import Clock
from authsome.bridge import LedgerContext
from authsome.crypto import (
    BASE62_ALPHABET,
    CHECKSUM_CHARS,
    base62_checksum,
    constant_time_equals,
    has_valid_checksum,
    new_id,
    new_ordered_id,
    random_base62,
    sha256_hex,
)
from authsome.errors import (
    AlreadyExists,
    InsufficientScope,
    InvalidToken,
    NotFound,
    StoreError,
    ValidationError,
)
from authsome.features import UsageEvent
from authsome.models import ApiKey, ApiKeyOwnerKind, CreatedApiKey
from authsome.stores import Store

__all__ = [
    "API_KEY_LENGTH",
    "API_KEY_PREFIX",
    "ApiKeyPolicy",
    "ApiKeys",
]

logger = logging.getLogger("authsome.apikeys")

API_KEY_PREFIX = "ask"
"""The start of every secret (``ask_...``): what secret scanners look for."""

LOOKUP_CHARS = 8  # ~47.6 bits: unique-index lookups, collisions retried at creation
BODY_CHARS = 22  # ~131 bits of CSPRNG output: the actual secret
API_KEY_LENGTH = len(API_KEY_PREFIX) + 1 + LOOKUP_CHARS + BODY_CHARS + CHECKSUM_CHARS
"""Length of every secret (40)."""

MAX_KEY_NAME = 100
MAX_SCOPE = 100
MAX_SCOPES = 64
_SCOPE = re.compile(r"[a-z0-9:._-]+")
_B62 = re.escape(BASE62_ALPHABET)
_SECRET = re.compile(
    rf"{API_KEY_PREFIX}_(?P<lookup>[{_B62}]{{{LOOKUP_CHARS}}})"
    rf"[{_B62}]{{{BODY_CHARS}}}[{_B62}]{{{CHECKSUM_CHARS}}}"
)
_CREATE_ATTEMPTS = 3  # a lookup-id collision (1 in ~2e14 per pair) is retried


@dataclass(frozen=True, slots=True)
class ApiKeyPolicy:
    """``last_used_resolution``: how stale ``ApiKey.last_used_at`` may get.

    Within one process a key's last-used time is written at most once per window.
    """

    last_used_resolution: timedelta = timedelta(seconds=60)

    def __post_init__(self) -> None:
        if not isinstance(self.last_used_resolution, timedelta):
            raise TypeError("ApiKeyPolicy.last_used_resolution must be a timedelta")
        if self.last_used_resolution < timedelta(0):
            raise ValueError("ApiKeyPolicy.last_used_resolution must not be negative")


@dataclass(frozen=True, slots=True)
class _Owner:
    kind: ApiKeyOwnerKind
    id: str
    tenant: str


class ApiKeys:
    """``auth.api_keys``: create, validate, revoke and list API keys."""

    def __init__(self, store: Store, billing: Billing, policy: ApiKeyPolicy, clock: Clock):
        self._store = store
        self._billing = billing
        self.policy = policy
        self._clock = clock
        self._touches = _TouchThrottle(store, policy.last_used_resolution)

    def create(
        self,
        owner: str,
        name: str,
        *,
        scopes: Iterable[str] = (),
        expires_at: datetime | None = None,
    ) -> CreatedApiKey:
        """Create a key for ``owner`` (a user id) and return it with its secret.

        The secret is in the result only: it is never stored and cannot be shown
        again. ``scopes`` are deduplicated and sorted; each must match
        ``[a-z0-9:._-]+``. ``expires_at`` must be timezone-aware and in the future.
        Bad input raises ``TypeError`` or :class:`~authsome.errors.ValidationError`,
        an unknown owner :class:`~authsome.errors.NotFound`; nothing is written then.
        """
        owner_id = v.require_str("owner", owner)
        name = _check_key_name(name)
        scope_set = _check_scopes("scopes", scopes)
        now = self._clock()
        expires_at = _check_expiry(expires_at, now)
        resolved = self._resolve_owner(owner_id)
        for _ in range(_CREATE_ATTEMPTS - 1):
            try:
                return self._insert(resolved, name, scope_set, now, expires_at)
            except AlreadyExists:
                continue  # the random lookup id collided with another key: draw again
        return self._insert(resolved, name, scope_set, now, expires_at)

    def _insert(
        self,
        owner: _Owner,
        name: str,
        scopes: tuple[str, ...],
        now: datetime,
        expires_at: datetime | None,
    ) -> CreatedApiKey:
        lookup_id = random_base62(LOOKUP_CHARS)
        secret = _compose_secret(lookup_id)
        key = ApiKey(
            id=new_id("key"),
            lookup_id=lookup_id,
            owner_kind=owner.kind,
            owner_id=owner.id,
            tenant=owner.tenant,
            name=name,
            scopes=scopes,
            created_at=now,
            expires_at=expires_at,
        )
        self._store.create_api_key(key, sha256_hex(secret))
        return CreatedApiKey(key=key, secret=secret)

    def validate(
        self, secret: str, *, required_scopes: Iterable[str] = (), tenant: str | None = None
    ) -> ApiKey:
        """The key of ``secret`` if it is valid and has every ``required_scopes``.

        A malformed secret, a wrong checksum (both decided without a store lookup),
        an unknown key, a revoked or expired one, and (given ``tenant``) a key of
        another tenant all raise the same :class:`~authsome.errors.InvalidToken`. A
        valid key missing a required scope raises
        :class:`~authsome.errors.InsufficientScope`. Only a fully valid call
        records ``authsome.apikeys.validated`` (fresh event id, the owner's tenant)
        and may update the last-used time. With ``authsome.apikeys.validated`` in
        ``enforce_limits``, a validation beyond the period's limit raises
        :class:`~authsome.errors.FeatureNotEntitled` and touches nothing.
        """
        lookup_id = _parse_secret(secret)
        required = _check_scopes("required_scopes", required_scopes)
        expected = None if tenant is None else v.check_tenant(tenant)
        stored = self._store.find_api_key_by_lookup_id(lookup_id)
        if stored is None or not constant_time_equals(sha256_hex(secret), stored.secret_hash):
            raise InvalidToken()
        if expected is not None and stored.key.tenant != expected:
            raise InvalidToken()  # the answer an unknown key gets: no scope, no usage
        key = stored.key
        now = self._clock()
        if not key.is_active(now):
            raise InvalidToken()
        missing = tuple(scope for scope in required if scope not in key.scopes)
        if missing:
            raise InsufficientScope(missing)
        # Counted (or refused, with enforce_limits) before anything is written.
        self._billing.use(UsageEvent.APIKEYS_VALIDATED, _ledger_context(key))
        self._touches.touch(key.id, now)
        return key

    def get(self, key_id: str) -> ApiKey:
        """The key with this id; :class:`~authsome.errors.NotFound` otherwise."""
        key = self._store.get_api_key(v.require_str("key_id", key_id))
        if key is None:
            raise NotFound("no such API key")
        return key

    def revoke(self, key_id: str) -> bool:
        """Revoke a key for good; ``False`` if it is unknown or revoked already."""
        key_id = v.require_str("key_id", key_id)
        revoked = self._store.revoke_api_key(key_id, self._clock())
        self._touches.forget(key_id)
        return revoked

    def list(self, owner: str) -> builtins.list[ApiKey]:
        """Every key of ``owner`` (revoked and expired too), oldest first.

        An unknown owner raises :class:`~authsome.errors.NotFound`.
        """
        resolved = self._resolve_owner(v.require_str("owner", owner))
        return self._store.list_api_keys(resolved.kind, resolved.id)

    def _resolve_owner(self, owner_id: str) -> _Owner:
        """Who ``owner_id`` is and which tenant pays for its keys: a user
        ("usr_...") or an org ("org_...") through its stored record; anything
        else raises NotFound."""
        if owner_id.startswith("usr_"):
            user = self._store.get_user(owner_id)
            if user is not None:
                return _Owner("user", user.id, user.tenant)
        elif owner_id.startswith("org_"):
            org = self._store.get_org(owner_id)
            if org is not None:
                return _Owner("org", org.id, org.tenant)
        raise NotFound("no such owner")


def _ledger_context(key: ApiKey) -> LedgerContext:
    """Who pays for one validation: the owner's tenant, a fresh event id each time."""
    return LedgerContext(
        tenant=key.tenant,
        user_id=key.owner_id if key.owner_kind == "user" else None,
        org_id=key.owner_id if key.owner_kind == "org" else None,
        event_id=new_ordered_id("akv"),
    )


# -- the secret's format ---------------------------------------------------------------


def _compose_secret(lookup_id: str) -> str:
    unchecked = f"{API_KEY_PREFIX}_{lookup_id}{random_base62(BODY_CHARS)}"
    return unchecked + base62_checksum(unchecked)


def _parse_secret(secret: object) -> str:
    """The lookup id of a well-formed secret with a valid checksum.

    Decided from the string alone, so malformed input never reaches the store.
    """
    text = v.require_str("secret", secret)
    match = _SECRET.fullmatch(text) if len(text) == API_KEY_LENGTH else None
    if match is None or not has_valid_checksum(text):
        raise InvalidToken()
    return match["lookup"]


# -- input checks ----------------------------------------------------------------------


def _check_key_name(name: object) -> str:
    text = v.require_str("name", name).strip()
    if not 1 <= len(text) <= MAX_KEY_NAME:
        raise ValidationError(f"name must be 1..{MAX_KEY_NAME} characters")
    if not text.isprintable():
        raise ValidationError("name must not contain control characters")
    return text


def _check_scopes(label: str, scopes: object) -> tuple[str, ...]:
    """A sorted, duplicate-free tuple of well-formed scopes."""
    if scopes == ():
        return ()  # the common case on the hot path, without the ABC check
    if isinstance(scopes, str | bytes) or not isinstance(scopes, Iterable):
        raise TypeError(f"{label} must be an iterable of str, not {type(scopes).__name__}")
    checked: set[str] = set()
    for scope in scopes:
        text = v.require_str("scope", scope)
        if len(text) > MAX_SCOPE or not _SCOPE.fullmatch(text):
            raise ValidationError(
                f"each scope must be 1..{MAX_SCOPE} characters of a-z 0-9 : . _ -"
            )
        checked.add(text)
    if len(checked) > MAX_SCOPES:
        raise ValidationError(f"at most {MAX_SCOPES} scopes")
    return tuple(sorted(checked))


def _check_expiry(expires_at: object, now: datetime) -> datetime | None:
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime):
        raise TypeError(f"expires_at must be a datetime, not {type(expires_at).__name__}")
    if expires_at.utcoffset() is None:
        raise ValidationError("expires_at must be timezone-aware")
    if expires_at <= now:
        raise ValidationError("expires_at must be in the future")
    return expires_at


# -- last-used writes --------------------------------------------------------------------


class _TouchThrottle:
    """Writes a key's last-used time at most once per ``resolution`` per process.

    The decision is a dict lookup under a lock; the write itself happens outside
    the lock, so a slow store never serialises validations of other keys. A failed
    write is logged and retried on the key's next use: it never fails a request.
    """

    _PRUNE_AT = 4096

    def __init__(self, store: Store, resolution: timedelta) -> None:
        self._store = store
        self._resolution = resolution
        self._lock = threading.Lock()
        self._written: dict[str, datetime] = {}  # key id -> last time written
        self._prune_at = self._PRUNE_AT

    def touch(self, key_id: str, now: datetime) -> None:
        with self._lock:
            last = self._written.get(key_id)
            if last is not None and now - last < self._resolution:
                return
            self._written[key_id] = now
            if len(self._written) > self._prune_at:
                self._prune(now)
        try:
            self._store.touch_api_key(key_id, now)
        except StoreError as exc:
            self.forget(key_id)
            logger.warning("last-used time not written: key_id=%s error=%s", key_id, exc)

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._written.pop(key_id, None)

    def _prune(self, now: datetime) -> None:
        # Entries older than the window decide nothing any more; dropping them keeps
        # the dict as small as the set of keys used recently.
        self._written = {k: t for k, t in self._written.items() if now - t < self._resolution}
        self._prune_at = max(self._PRUNE_AT, 2 * len(self._written))
