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

Counter keys are SHA-256 digests, so the store holds no e-mail or IP in clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from authsome.crypto import sha256_hex
from authsome.errors import RateLimited
from authsome.stores import Store

__all__ = ["Throttle", "ThrottlePolicy"]


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """Limits on failed sign-ins within ``window``."""

    per_account_ip: int = 5
    per_ip: int = 100
    per_account: int = 20
    window: timedelta = timedelta(minutes=15)
    known_ip_ttl: timedelta = timedelta(days=90)

    def __post_init__(self) -> None:
        for name in ("per_account_ip", "per_ip", "per_account"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ThrottlePolicy.{name} must be a positive int")
        # Counters expire in whole seconds; a shorter window would silently never block.
        if self.window < timedelta(seconds=1) or self.known_ip_ttl < timedelta(seconds=1):
            raise ValueError("ThrottlePolicy windows must be at least one second")


class Throttle:
    """Applies a :class:`ThrottlePolicy` with counters kept in the store."""

    def __init__(self, store: Store, policy: ThrottlePolicy) -> None:
        self._store = store
        self.policy = policy
        self._next_prune: datetime | None = None

    def reserve(self, tenant: str, email: str, ip: str | None, now: datetime) -> None:
        """Count this attempt as a failure *before* it is tried, or refuse it.

        Every counter is hit first and the counts it returns are compared with the
        limits, so racing attempts cannot all pass a check before any of them is
        counted: at most ``limit`` of them get through. A refused attempt takes its
        hits back (it was never tried, so it must not lengthen anyone's lock-out)
        and raises :class:`RateLimited`. Failures from a known address are still
        counted for the account, they are only exempt from its limit.
        """
        self._prune_now_and_then(now)
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

    def _prune_now_and_then(self, now: datetime) -> None:
        # Expired counters are dead weight (one row per attacked account and address);
        # sweeping them once per window keeps the table at one window's worth of rows.
        # Two threads may both sweep at the boundary, which is harmless.
        if self._next_prune is None or now >= self._next_prune:
            self._next_prune = now + self.policy.window
            self._store.prune_counters(now)

    def _is_known(self, keys: _Keys, now: datetime) -> bool:
        return bool(keys.known) and self._store.get_counter(keys.known, now) is not None

    @staticmethod
    def _keys(tenant: str, email: str, ip: str | None) -> _Keys:
        account = f"{tenant}\x00{email}"
        return _Keys(
            account=sha256_hex(f"throttle:account\x00{account}"),
            account_ip=sha256_hex(f"throttle:account-ip\x00{account}\x00{ip or ''}"),
            ip="" if ip is None else sha256_hex(f"throttle:ip\x00{ip}"),
            known="" if ip is None else sha256_hex(f"known-ip\x00{account}\x00{ip}"),
        )


@dataclass(frozen=True, slots=True)
class _Keys:
    account: str
    account_ip: str
    ip: str
    known: str
