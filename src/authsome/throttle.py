"""Throttling of failed sign-ins that an attacker cannot turn into a long lock-out.

Three counters, each a window that starts at the first failure and ends
``window`` later (so no block outlives ``window``):

* per account *and* IP: a few failures from one address block that address for
  that account only — the real user elsewhere is unaffected;
* per IP: many failures across accounts block the address (credential stuffing);
* per account: many failures from many addresses block the account, but only for
  addresses it has never signed in from — the real user on a known address still
  gets in (an address is remembered for ``known_ip_ttl`` after a sign-in).

Each attempt is counted before the password is checked and given back when it
succeeds (:meth:`Throttle.reserve`, :meth:`Throttle.succeeded`), so parallel
requests get no more guesses than sequential ones.

Addresses are compared in canonical form (:func:`canonical_address`): an IPv4
address as itself (also when written as IPv4-mapped IPv6), an IPv6 address by its
/64 network, since one subscriber usually holds a whole /64 and could otherwise
take a fresh address for every guess. A value that is not an IP address goes to
one shared bucket (see :data:`INVALID_ADDRESS_BUCKET`).

Counter keys are HMAC-SHA256 digests under a key of their own (derived from the
engine's ``secret_key``, or from a random key the store keeps when there is none),
so the store holds no e-mail or address in clear, and the few billion IPv4
addresses cannot be hashed one by one to read the counters back.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from authsome._keys import PurposeKeys
from authsome.crypto import keyed_digest
from authsome.errors import RateLimited
from authsome.stores import Store

__all__ = [
    "INVALID_ADDRESS_BUCKET",
    "Throttle",
    "ThrottlePolicy",
    "canonical_address",
    "parse_address",
]

security_log = logging.getLogger("authsome.security")

IPV6_PREFIX = 64
"""IPv6 clients are throttled per network of this prefix length."""

INVALID_ADDRESS_BUCKET = "\x00not-an-address"
"""Where an ``ip`` that is no IP address is counted: one bucket for all of them, so
made-up values buy no fresh counters, and never remembered as a known address."""

_MAX_ADDRESS = 64  # longer than any textual IPv6 address with a zone id
_KEY_PURPOSE = "authsome.throttle.counter-keys.v1"
CODE_FAILURES_KEPT = timedelta(days=365)
"""How long a run of failed e-mail code attempts at one address is remembered
without a successful sign-in, from its first failure."""


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address, or ``None`` if it is none. An IPv4-mapped IPv6 address
    (``::ffff:192.0.2.1``, how a dual-stack socket reports an IPv4 peer) is its IPv4
    address: one client, one name, for the throttle and for trusted proxies alike."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def canonical_address(ip: str) -> str | None:
    """The throttle's name for the client address ``ip``, or ``None`` if it is none.

    Spellings of one address give one name (``2001:db8::1`` and
    ``2001:0DB8:0000::0001``), an IPv4-mapped IPv6 address gives its IPv4 address,
    every IPv6 address of one /64 gives that network (``2001:db8::/64``), and a zone
    id (``fe80::1%eth0``) or brackets do not matter.
    """
    text = ip.strip()
    if len(text) > _MAX_ADDRESS:
        return None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    address = parse_address(text)
    if address is None or isinstance(address, ipaddress.IPv4Address):
        return None if address is None else str(address)
    host_bits = 128 - IPV6_PREFIX
    network = ipaddress.IPv6Network((int(address) >> host_bits << host_bits, IPV6_PREFIX))
    return str(network)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """Limits on failed sign-ins within ``window``, and on sign-in starts at an
    identity provider (``starts_per_ip``: each stores a short-lived state)."""

    per_account_ip: int = 5
    per_ip: int = 100
    per_account: int = 20
    window: timedelta = timedelta(minutes=15)
    known_ip_ttl: timedelta = timedelta(days=90)
    starts_per_ip: int = 60

    def __post_init__(self) -> None:
        for name in ("per_account_ip", "per_ip", "per_account", "starts_per_ip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ThrottlePolicy.{name} must be a positive int")
        # Counters expire in whole seconds; a shorter window would silently never block.
        if self.window < timedelta(seconds=1) or self.known_ip_ttl < timedelta(seconds=1):
            raise ValueError("ThrottlePolicy windows must be at least one second")


class Throttle:
    """Applies a :class:`ThrottlePolicy` with counters kept in the store."""

    def __init__(
        self, store: Store, policy: ThrottlePolicy, *, secret_key: bytes | None = None
    ) -> None:
        """``secret_key`` (the engine's) keys the counter names; without it a random
        key the store keeps is used, the same for every engine on that store."""
        self._store = store
        self.policy = policy
        self._next_prune: datetime | None = None
        self._purpose_keys = PurposeKeys(store, secret_key)
        self._warned_invalid = False
        self._warn_lock = threading.Lock()

    def reserve(self, tenant: str, email: str, ip: str | None, now: datetime) -> None:
        """Count this attempt as a failure *before* it is tried, or refuse it.

        Every counter is hit first and the counts it returns are compared with the
        limits, so racing attempts cannot all pass a check before any of them is
        counted: at most ``limit`` of them get through. A refused attempt takes its
        hits back (it was never tried, so it must not lengthen anyone's lock-out)
        and raises :class:`RateLimited`. Failures from a known address are still
        counted for the account, they are only exempt from its limit.
        """
        self.prune_now_and_then(now)
        keys = self._keys(tenant, email, ip)
        ttl = int(self.policy.window.total_seconds())
        exempt = self._is_known(keys, now)
        limits = [
            (keys.account_ip, self.policy.per_account_ip),
            (keys.account, None if exempt else self.policy.per_account),
            (keys.ip, self.policy.per_ip),
        ]
        counted: list[str] = []
        blocked_until: list[datetime] = []
        for key, limit in limits:
            if not key:
                continue
            hits, expires_at = self._store.hit_counter(key, now, ttl)
            counted.append(key)
            if limit is not None and hits > limit:
                blocked_until.append(expires_at)
        if blocked_until:
            for key in counted:
                self._store.release_counter(key, now)
            raise RateLimited((max(blocked_until) - now).total_seconds())

    def succeeded(self, tenant: str, email: str, ip: str | None, now: datetime) -> None:
        """After a reserved attempt succeeded: clear this address's failures for the
        account, give back the hit it reserved on the other counters, and remember
        the address."""
        keys = self._keys(tenant, email, ip)
        self._store.delete_counter(keys.account_ip)
        for key in (keys.account, keys.ip):
            if key:
                self._store.release_counter(key, now)
        if keys.known:
            self._store.delete_counter(keys.known)  # restart its lifetime from now
            self._store.hit_counter(keys.known, now, int(self.policy.known_ip_ttl.total_seconds()))

    def reserve_ip(self, ip: str | None, now: datetime) -> None:
        """Like :meth:`reserve`, for a sign-in that names no account until it has
        succeeded (at an identity provider): only the address's counter."""
        if ip is None:
            return
        key = self._keys("", "", ip).ip
        hits, expires_at = self._store.hit_counter(
            key, now, int(self.policy.window.total_seconds())
        )
        if hits > self.policy.per_ip:
            self._store.release_counter(key, now)
            raise RateLimited((expires_at - now).total_seconds())

    def count_start(self, ip: str | None, now: datetime) -> None:
        """Count a sign-in start at an identity provider from ``ip``, or refuse it
        (:class:`RateLimited`) past ``starts_per_ip`` within the window. Every start
        counts, successful or not: each one costs a stored state or a provider call."""
        if ip is None:
            return
        self.prune_now_and_then(now)
        key = self._keys("", "", ip).start
        hits, expires_at = self._store.hit_counter(
            key, now, int(self.policy.window.total_seconds())
        )
        if hits > self.policy.starts_per_ip:
            self._store.release_counter(key, now)
            raise RateLimited((expires_at - now).total_seconds())

    def ip_succeeded(self, ip: str | None, now: datetime) -> None:
        """After a :meth:`reserve_ip` attempt succeeded: give its hit back."""
        if ip is not None:
            self._store.release_counter(self._keys("", "", ip).ip, now)

    def count_code_attempt(self, tenant: str, email: str, now: datetime) -> int:
        """Count an e-mail code attempt at the address as a failure *before* it is
        tried, and return the failures in a row so far, this one included (so racing
        attempts each see a count of their own). A successful sign-in of the account
        clears them (:meth:`signed_in`)."""
        kept = int(CODE_FAILURES_KEPT.total_seconds())
        hits, _ = self._store.hit_counter(self._code_key(tenant, email), now, kept)
        return hits

    def signed_in(self, tenant: str, email: str) -> None:
        """A sign-in of the account with this address succeeded, by any way: its run
        of failed e-mail code attempts ends."""
        self._store.delete_counter(self._code_key(tenant, email))

    def _code_key(self, tenant: str, email: str) -> str:
        key = self._purpose_keys.key(_KEY_PURPOSE)
        return keyed_digest(key, f"code-failures\x00{tenant}\x00{email}")

    def prune_now_and_then(self, now: datetime) -> None:
        """Delete expired counters, at most once per window (``reserve`` calls it too).

        A sign-in calls it before the transaction its hits are written in: a sweep
        locks many rows, and inside that transaction it could deadlock with another
        sign-in's hits on PostgreSQL."""
        # Expired counters are dead weight (one row per attacked account and address);
        # sweeping them once per window keeps the table at one window's worth of rows.
        # Two threads may both sweep at the boundary, which is harmless.
        if self._next_prune is None or now >= self._next_prune:
            self._next_prune = now + self.policy.window
            self._store.prune_counters(now)

    def _is_known(self, keys: _Keys, now: datetime) -> bool:
        return bool(keys.known) and self._store.get_counter(keys.known, now) is not None

    def _keys(self, tenant: str, email: str, ip: str | None) -> _Keys:
        key = self._purpose_keys.key(_KEY_PURPOSE)
        address = None if ip is None else canonical_address(ip)
        if ip is not None and address is None:
            self._warn_once_invalid()
        bucket = "" if ip is None else (address or INVALID_ADDRESS_BUCKET)
        # Neither a tenant nor a normalized e-mail holds a NUL: the parts cannot blur.
        account = f"{tenant}\x00{email}"
        return _Keys(
            account=keyed_digest(key, f"account\x00{account}"),
            account_ip=keyed_digest(key, f"account-ip\x00{account}\x00{bucket}"),
            ip="" if ip is None else keyed_digest(key, f"ip\x00{bucket}"),
            start="" if ip is None else keyed_digest(key, f"start\x00{bucket}"),
            known=""
            if address is None
            else keyed_digest(key, f"known-ip\x00{account}\x00{address}"),
        )

    def _warn_once_invalid(self) -> None:
        # Once per engine, and without the value: it may be whatever a client sent.
        with self._warn_lock:
            if self._warned_invalid:
                return
            self._warned_invalid = True
        security_log.warning(
            "sign_in got an ip that is not an IP address: all such attempts share one"
            " throttle bucket and none is remembered as a known address; pass the"
            " client's address as ip"
        )


@dataclass(frozen=True, slots=True)
class _Keys:
    account: str
    account_ip: str
    ip: str
    start: str
    known: str
