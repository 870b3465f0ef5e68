"""The ledger engine: plans, subscriptions, metering and entitlements in one object.

Consistency, in short:

* ``meter`` only appends to an in-memory buffer; a background thread flushes it. A
  failed flush keeps its events and retries. A full buffer never drops an event: a
  spooling engine spills it to disk; otherwise ``meter`` waits (up to
  ``buffer_timeout``, or not at all with ``wait=False``) and raises
  :class:`BufferFull`. See the invariant at the top of :mod:`authsome.ledger.meter`.
* Fork-safe: in a child process the engine starts with an empty buffer, a flusher
  and (with a spool) a spool of its own; the parent keeps and flushes its events.
* ``entitled`` and ``usage`` count persisted *plus* this process's pending usage, so
  a limit holds before the next flush.
* Entitlements are cached per process. This process's ``meter``, ``consume``, plan
  and subscription changes invalidate the cache at once; changes made by *other*
  processes sharing the store are seen after at most ``cache_ttl`` seconds (the same
  bound applies to their subscription and plan changes). ``consume`` never trusts the
  cache: it is a conditional write in the store.
* With ``durability="memory"`` a process that is killed hard loses the events it had
  not flushed yet (at most ``flush_interval`` seconds' worth, or ``max_buffer``
  events). With ``durability="spool"`` every acknowledged event is on disk first; see
  :class:`~authsome.ledger.meter.Spool` for exactly what "acknowledged" means.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, NamedTuple

from authsome.ledger.clock import Clock, system_clock, to_utc
from authsome.ledger.errors import (
    InvalidArgument,
    InvalidArgumentType,
    LedgerClosed,
    NoSubscription,
    UnflushedEvents,
    UnknownPlan,
)
from authsome.ledger.meter import Meter, Quarantined, Spool
from authsome.ledger.plans import (
    EPOCH,
    BillingPeriod,
    Entitlement,
    Feature,
    FeatureKind,
    Period,
    Plan,
    Reason,
    ReportRow,
    Status,
    Subscription,
    check_key,
    check_quantity,
    decide,
    denied,
    period_bounds,
)
from authsome.ledger.stores._protocol import ConsumeRequest, LedgerStore
from authsome.ledger.stores.memory import MemoryStore

__all__ = ["Durability", "Engine"]

log = logging.getLogger(__name__)

Durability = Literal["memory", "spool"]
_Cached = tuple[Entitlement | None, float]


class _View(NamedTuple):
    """What the engine knows of one tenant: subscription, plan, anchor; reloaded after ttl."""

    sub: Subscription | None
    plan: Plan | None
    anchor: datetime
    expires: float


def _positive(value: object, name: str, kind: type = float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentType(f"{name} must be a number")
    if kind is int and not isinstance(value, int):
        raise InvalidArgumentType(f"{name} must be an int")
    if not value > 0 or math.isinf(value):
        raise InvalidArgument(f"{name} must be positive and finite")


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Engine:
    """The embedded metering and entitlement engine.

    ``Engine(store=SQLiteStore("billing.db"))`` is the usual setup, and
    ``Engine(store=PostgresStore(dsn))`` when processes on several machines share one
    ledger; with no store the engine keeps everything in memory. ``flush_interval`` (s)
    is how often the background thread writes pending usage, ``batch_size`` how many
    waiting events make it flush early, ``max_buffer`` how many unflushed events it
    holds before ``meter`` blocks (for at most ``buffer_timeout`` s). ``cache_ttl`` (s)
    bounds how stale an entitlement may be with respect to *other* processes.
    ``default_plan`` applies to tenants without a subscription (calendar-month periods);
    without it they are refused with reason ``no_subscription``.

    Use it as a context manager or call :meth:`close`; an ``atexit`` hook drains it
    too if you forget.
    """

    def __init__(
        self,
        store: LedgerStore | None = None,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 10_000,
        max_buffer: int = 100_000,
        buffer_timeout: float = 5.0,
        cache_ttl: float = 5.0,
        durability: Durability = "memory",
        spool_path: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        default_plan: str | None = None,
        retry_backoff: tuple[float, float] = (0.05, 5.0),
    ) -> None:
        _positive(flush_interval, "flush_interval")
        _positive(batch_size, "batch_size", int)
        _positive(max_buffer, "max_buffer", int)
        _positive(buffer_timeout, "buffer_timeout")
        if isinstance(cache_ttl, bool) or not isinstance(cache_ttl, int | float):
            raise InvalidArgumentType("cache_ttl must be a number")
        _positive(cache_ttl + 1, "cache_ttl + 1")  # zero is fine: no caching
        if durability not in ("memory", "spool"):
            raise InvalidArgument(f"durability must be 'memory' or 'spool', got {durability!r}")
        if (durability == "spool") != (spool_path is not None):
            raise InvalidArgument("durability='spool' needs spool_path, and only it")
        if default_plan is not None:
            check_key(default_plan, "default_plan")
        self.store: LedgerStore = store if store is not None else MemoryStore()
        self._clock: Clock = clock or system_clock
        # The hot paths want a float timestamp; time.time is far cheaper than a datetime.
        self._time: Callable[[], float] = (
            time.time if clock is None else (lambda: self._clock().timestamp())
        )
        self._ttl = float(cache_ttl)
        self._default_plan = default_plan
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._views: dict[str, _View] = {}
        self._plans: dict[str, tuple[Plan, float]] = {}
        self._windows: dict[str, dict[str, tuple[float, float, int, bool]]] = {}
        self._unique_keys: set[str] = set()
        self._generation = 0  # bumped by every plan/subscription change in this process
        self._admin = threading.Lock()
        self._releasing = threading.Lock()
        self._closing = threading.Lock()
        # Read before the spool is opened, so a store error leaves nothing open behind.
        plans = [self.store.get_plan(plan_key) for plan_key in self.store.plan_keys()]
        spool = (
            Spool(spool_path, spill_every=min(batch_size, max_buffer))
            if spool_path is not None
            else None
        )
        self._id_prefix = f"{secrets.token_hex(8)}-"
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._m = Meter(
            self.store,
            self._resolve,
            self._cache,
            flush_interval=float(flush_interval),
            batch_size=batch_size,
            max_buffer=max_buffer,
            buffer_timeout=float(buffer_timeout),
            retry_backoff=retry_backoff,
            spool=spool,
        )
        for plan in plans:  # meter() must know which keys need a user_id
            if plan is not None:
                self._learn(plan)
        self._m.reload()  # what an earlier run left in the spool, as far as it fits
        self._m.start()
        self._closed = False
        self._exit_hook = _ExitHook(self)
        atexit.register(self._exit_hook)
        _live.add(self)

    # --- plans and subscriptions -------------------------------------------------

    def define_plan(self, plan: Plan) -> Plan:
        """Store ``plan`` (a new version if the key exists) and return it with its version.

        Subscribers of the key get the new version at once; old versions stay in the
        store (:meth:`plan_history`).
        """
        if not isinstance(plan, Plan):
            raise InvalidArgumentType(f"plan must be a Plan, not {type(plan).__name__}")
        with self._changing():
            stored = self.store.put_plan(plan)
            self._learn(stored)
        return stored

    def plan(self, key: str) -> Plan:
        """The current version of plan ``key``; :class:`UnknownPlan` if never defined."""
        check_key(key, "plan")
        plan = self.store.get_plan(key)
        if plan is None:
            raise UnknownPlan(key)
        self._learn(plan)
        return plan

    def plan_history(self, key: str) -> list[Plan]:
        """Every version of plan ``key``, oldest first."""
        check_key(key, "plan")
        return self.store.plan_versions(key)

    def subscription(self, tenant: str) -> Subscription | None:
        """The tenant's subscription as stored, or ``None``."""
        check_key(tenant, "tenant")
        return self.store.get_subscription(tenant)

    def subscribe(
        self,
        tenant: str,
        plan: str | Plan,
        *,
        at: datetime | None = None,
        trial_days: int | None = None,
        trial_end: datetime | None = None,
    ) -> Subscription:
        """Subscribe ``tenant`` to ``plan`` from ``at`` (default now), replacing any earlier
        subscription. ``at`` anchors the billing periods. With ``trial_days`` or
        ``trial_end`` the subscription is trialing until then (see :meth:`activate`)."""
        check_key(tenant, "tenant")
        key = self.plan(plan.key if isinstance(plan, Plan) else plan).key
        start = self._now() if at is None else to_utc(at, "at")
        if trial_days is not None and trial_end is not None:
            raise InvalidArgument("give trial_days or trial_end, not both")
        if trial_days is not None:
            trial_end = start + timedelta(days=check_quantity(trial_days, "trial_days"))
        status = Status.ACTIVE if trial_end is None else Status.TRIALING
        sub = Subscription(tenant, key, start, status, trial_end=trial_end)
        return self._save(sub)

    def change_plan(self, tenant: str, plan: str | Plan) -> Subscription:
        """Move ``tenant`` to another plan, keeping its billing anchor, status and usage."""
        sub = self._existing(tenant)
        key = self.plan(plan.key if isinstance(plan, Plan) else plan).key
        return self._save(_replace(sub, plan=key))

    def cancel(self, tenant: str, *, at_period_end: bool = False) -> Subscription:
        """Cancel now, or at the end of the current billing period (features stay until then)."""
        sub = self._existing(tenant)
        now = self._now()
        if not at_period_end:
            return self._save(_replace(sub, status=Status.CANCELED, cancel_at=now))
        interval = self.plan(sub.plan).interval
        end = period_bounds(sub.anchor, interval, now).end
        return self._save(_replace(sub, cancel_at_period_end=True, cancel_at=end))

    def activate(self, tenant: str) -> Subscription:
        """Make the subscription active: converts a trial, and undoes a pending
        cancel-at-period-end. A subscription whose cancellation took effect stays canceled."""
        sub = self._existing(tenant)
        if sub.denial(self._now()) is Reason.CANCELED:
            raise InvalidArgument(f"subscription of {tenant!r} is canceled; subscribe again")
        return self._save(
            _replace(sub, status=Status.ACTIVE, cancel_at_period_end=False, cancel_at=None)
        )

    def _existing(self, tenant: str) -> Subscription:
        check_key(tenant, "tenant")
        self._check_open()
        sub = self.store.get_subscription(tenant)
        if sub is None:
            raise NoSubscription(tenant)
        return sub

    def _save(self, sub: Subscription) -> Subscription:
        with self._changing():
            self.store.put_subscription(sub)
        return sub

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Around a plan or subscription change: events metered before it keep the
        periods they had (everything buffered is staged under the old plan first),
        events metered after it get the new ones (they are staged after it)."""
        self._check_open()
        with self._m.state:
            self._m.stage()
            try:
                yield
            finally:
                self._changed()

    def _learn(self, plan: Plan) -> None:
        self._unique_keys |= {f.key for f in plan.features if f.unique}

    def _changed(self) -> None:
        """Forget everything derived from plans and subscriptions (this process changed them)."""
        with self._admin, self._m.lock:  # the lock: see the token in _entitled_slow
            self._generation += 1
            self._cache.clear()
            self._views.clear()
            self._plans.clear()
            self._windows.clear()

    # --- metering ------------------------------------------------------------------

    def meter(
        self,
        tenant: str,
        key: str,
        quantity: int = 1,
        *,
        user_id: str | None = None,
        event_id: str | None = None,
        at: datetime | None = None,
        wait: bool = True,
    ) -> None:
        """Record ``quantity`` units of ``key`` used by ``tenant``; returns at once.

        ``event_id`` makes the call idempotent: one id counts once, ever. ``user_id``
        is required for ``aggregation="unique"`` features (it is what they count).
        ``at`` backdates the event (its period is the one containing ``at``). The event
        reaches the store with the next flush; entitlements count it immediately.

        When ``max_buffer`` events are waiting for the store, a spooling engine writes
        the event to the spool on disk only (read back when the store catches up);
        otherwise ``meter`` waits up to ``buffer_timeout`` for room, or with
        ``wait=False`` raises :class:`~authsome.ledger.errors.BufferFull` at once. The
        bridge adapter passes ``wait=False``: no sign-in waits for the ledger's store.

        Arguments are checked by the same rules as every other entry point
        (:func:`~authsome.ledger.plans.check_key`): a ``str`` or ``int`` subclass is
        taken as the plain value it holds.
        """
        tenant = check_key(tenant, "tenant")
        key = check_key(key, "key")
        quantity = check_quantity(quantity)
        if user_id is not None:
            user_id = check_key(user_id, "user_id")
        elif key in self._unique_keys:
            raise InvalidArgument(f"{key!r} counts unique users: user_id is required")
        fresh = False
        if event_id is not None:
            event_id = check_key(event_id, "event_id")
        elif self._m.spool is not None:  # spooled events need an id to replay idempotently
            event_id = self._id_prefix + str(next(self._ids))
            fresh = True
        ts = self._time() if at is None else to_utc(at, "at").timestamp()
        self._m.add((ts, tenant, key, quantity, user_id, event_id, fresh), wait)

    def release(
        self, tenant: str, key: str, quantity: int = 1, *, event_id: str | None = None
    ) -> None:
        """Give back ``quantity`` seats of a seat feature (a member left); buffered like meter.

        Releasing more than is in use releases what is in use: usage never goes below
        0, so a retried "member removed" hook cannot lift the seat limit. (The stores
        clamp at 0 too, for releases racing in from other processes.)
        """
        tenant = check_key(tenant, "tenant")
        key = check_key(key, "key")
        quantity = check_quantity(quantity)
        if event_id is not None:
            event_id = check_key(event_id, "event_id")
        self._check_open()
        with self._releasing:  # one at a time, so two releases cannot both see the seat
            start = self.period(tenant, key).start
            persisted, pending = self._usage_parts(tenant, key, start)
            quantity = min(quantity, max(0, persisted + pending))
            if quantity:
                self._release(tenant, key, quantity, event_id)

    def _release(self, tenant: str, key: str, quantity: int, event_id: str | None) -> None:
        fresh = event_id is None and self._m.spool is not None
        if fresh:
            event_id = self._id_prefix + str(next(self._ids))
        self._m.add((self._time(), tenant, key, -quantity, None, event_id, fresh), True)

    def _resolve(self, tenant: str, key: str, ts: float) -> tuple[int, bool]:
        """The period start and aggregation an event of ``key`` at ``ts`` belongs to."""
        windows = self._windows.get(tenant)
        w = None if windows is None else windows.get(key)
        if w is not None and w[0] <= ts < w[1]:
            return w[2], w[3]
        try:
            view = self._view(tenant, self._time())
        except UnknownPlan:  # a default plan not defined (yet): never block the flush on it
            view = _View(None, None, EPOCH, 0.0)
        start, end, unique = self._window(view, key, ts)
        self._windows.setdefault(tenant, {})[key] = (start, end, int(start), unique)
        return int(start), unique

    def _window(self, view: _View, key: str, ts: float) -> tuple[float, float, bool]:
        """The period of ``key`` that holds ``ts`` under ``view`` (start, end timestamps)
        and whether it counts unique users."""
        feature = None if view.plan is None else view.plan.feature(key)
        # A key outside the plan is still recorded (it is usage): monthly, by the anchor.
        period = Period.MONTHLY if feature is None else feature.period
        unique = key in self._unique_keys if feature is None else feature.unique
        bounds = period_bounds(view.anchor, period, datetime.fromtimestamp(ts, UTC))
        end = math.inf if bounds.end is None else bounds.end.timestamp()
        return bounds.start.timestamp(), end, unique

    # --- entitlements ----------------------------------------------------------------

    def entitled(self, tenant: str, key: str, *, requested: int = 1) -> Entitlement:
        """May ``tenant`` use ``requested`` more units of ``key`` now? Never records usage.

        Answers for ``requested=1`` are cached (a dict lookup) until this process meters
        the key or changes plans/subscriptions, the period or trial ends, or ``cache_ttl``
        passes (the bound on staleness with respect to other processes).
        """
        if (
            requested == 1
            and requested.__class__ is int
            and tenant.__class__ is str  # a subclass could hash and compare like another
            and key.__class__ is str
        ):
            hit = self._cache.get((tenant, key))
            if hit is not None and hit[1] > self._time():
                return hit[0]  # type: ignore[return-value]  # only tokens hold None
        return self._entitled_slow(tenant, key, requested)

    def _entitled_slow(self, tenant: str, key: str, requested: int) -> Entitlement:
        tenant = check_key(tenant, "tenant")
        key = check_key(key, "key")
        requested = check_quantity(requested, "requested")
        self._check_open()
        cacheable = requested == 1 and self._ttl > 0
        slot = (tenant, key)
        # A token marks "being computed"; a concurrent meter removes it, so a result that
        # may have missed that event is never cached.
        token: _Cached = (None, -float(next(self._tokens)))  # a fresh object every time
        if cacheable:
            with self._m.lock:
                self._cache[slot] = token
        now_ts = self._time()
        ent, until = self._decide(tenant, key, requested, now_ts)
        if cacheable and until > now_ts:
            with self._m.lock:
                if self._cache.get(slot) is token:
                    self._cache[slot] = (ent, until)
        return ent

    def _decide(
        self, tenant: str, key: str, requested: int, now_ts: float
    ) -> tuple[Entitlement, float]:
        """The entitlement at ``now_ts`` and until when it can be cached."""
        until = now_ts + self._ttl
        view = self._view(tenant, now_ts)
        now = _utc(now_ts)
        if view.plan is None:
            return denied(key, Reason.NO_SUBSCRIPTION), until
        if view.sub is not None:
            change = view.sub.next_change(now)
            if change is not None:
                until = min(until, change.timestamp())
            reason = view.sub.denial(now)
            if reason is not None:
                return denied(key, reason), until
        feature = view.plan.feature(key)
        if feature is None:
            return denied(key, Reason.NOT_IN_PLAN), until
        if feature.kind is FeatureKind.BOOLEAN:
            return decide(feature, 0, requested), until
        bounds = period_bounds(view.anchor, feature.period, now)
        if bounds.end is not None:
            until = min(until, bounds.end.timestamp())
        persisted, pending = self._usage_parts(tenant, key, bounds.start)
        return decide(feature, persisted + pending, requested), until

    def _usage_parts(self, tenant: str, key: str, start: datetime) -> tuple[int, int]:
        """(persisted, pending-and-not-persisted) usage of one period, consistently."""
        period_start = int(start.timestamp())
        with self._m.state:
            self._m.stage()
            pending, _ = self._m.pending_parts(tenant, key, period_start)
            persisted = self.store.get_usage(tenant, key, period_start)
        return persisted, pending

    def consume(
        self,
        tenant: str,
        key: str,
        quantity: int = 1,
        *,
        user_id: str | None = None,
        event_id: str | None = None,
    ) -> Entitlement:
        """Check and record in one step: ``quantity`` units are recorded only if allowed.

        For a limited feature the use is a conditional write in the store, under the
        engine's lock: N concurrent callers with one unit left cannot all pass, in this
        process or (with a shared store) in others. Returns the deciding entitlement
        with ``used``/``remaining`` counting this use when it was allowed.

        ``event_id`` makes a retry count once. For ``aggregation="unique"`` the user
        is what counts once per period, as with :meth:`meter`, and the id is not used.
        """
        tenant = check_key(tenant, "tenant")
        key = check_key(key, "key")
        quantity = check_quantity(quantity)
        if user_id is not None:
            user_id = check_key(user_id, "user_id")
        if event_id is not None:
            event_id = check_key(event_id, "event_id")
        self._check_open()
        with self._m.state:
            now_ts = self._time()
            feature = self._feature(tenant, key, now_ts)
            unique = feature is not None and feature.unique
            ent, _ = self._decide(tenant, key, 1 if unique else quantity, now_ts)
            if feature is None or feature.kind is FeatureKind.BOOLEAN:
                return ent
            # At the limit the store still admits a user already counted (unique) and
            # the retry of an event it already recorded; it decides, not the pre-check.
            retry_possible = unique or event_id is not None
            if not ent.allowed and not (ent.reason is Reason.LIMIT_REACHED and retry_possible):
                return ent
            if feature.limit is not None:
                return self._consume_limited(tenant, feature, quantity, user_id, event_id, now_ts)
        # Unlimited: nothing to race for, so buffered like meter, and outside ``state``:
        # with a full buffer meter waits for the flusher, which needs ``state``.
        self.meter(tenant, key, quantity, user_id=user_id, event_id=event_id)
        return _after(ent, 1 if unique else quantity)

    def _feature(self, tenant: str, key: str, now_ts: float) -> Feature | None:
        view = self._view(tenant, now_ts)
        if view.plan is None or (view.sub is not None and view.sub.denial(_utc(now_ts))):
            return None
        return view.plan.feature(key)

    def _consume_limited(
        self,
        tenant: str,
        feature: Feature,
        quantity: int,
        user_id: str | None,
        event_id: str | None,
        now_ts: float,
    ) -> Entitlement:
        if feature.unique and user_id is None:
            raise InvalidArgument(f"{feature.key!r} counts unique users: user_id is required")
        limit = feature.limit
        assert limit is not None
        view = self._view(tenant, now_ts)
        start = period_bounds(view.anchor, feature.period, _utc(now_ts)).start
        period = int(start.timestamp())
        persisted, pending = self._usage_parts(tenant, feature.key, start)
        if feature.unique and user_id in self._m.pending_parts(tenant, feature.key, period)[1]:
            # Already counted this period (pending, maybe persisted too): admit, write
            # nothing, and count the user once (not again on top of ``pending``).
            return _decided(feature, max(0, persisted + pending), True)
        request = ConsumeRequest(
            tenant,
            feature.key,
            period,
            quantity,
            ceiling=limit - pending,
            unique=feature.unique,
            user_id=user_id,
            # A unique count's idempotency key is the user in the period, as for meter:
            # an id remembered from an earlier period must not hide the user in this one.
            event_id=None if feature.unique else event_id,
        )
        result = self.store.consume(request)
        with self._m.lock:
            self._cache.pop((tenant, feature.key), None)
        return _decided(feature, max(0, result.used + pending), result.applied)

    # --- usage and reports -------------------------------------------------------------

    def period(self, tenant: str, key: str, *, at: datetime | None = None) -> BillingPeriod:
        """The usage period of ``key`` for ``tenant`` containing ``at`` (default now)."""
        check_key(tenant, "tenant")
        check_key(key, "key")
        when = self._now() if at is None else to_utc(at, "at")
        view = self._view(tenant, self._time())
        feature = None if view.plan is None else view.plan.feature(key)
        period = Period.MONTHLY if feature is None else feature.period
        return period_bounds(view.anchor, period, when)

    def usage(
        self, tenant: str, key: str, *, period: BillingPeriod | datetime | None = None
    ) -> int:
        """Usage of ``key`` in a period (default: the current one), persisted plus pending.

        ``period`` is a :class:`BillingPeriod` (from :meth:`period`) or any instant in it.
        """
        if isinstance(period, BillingPeriod):
            start = period.start
        else:
            start = self.period(tenant, key, at=period).start
        check_key(tenant, "tenant")
        self._check_open()
        persisted, pending = self._usage_parts(tenant, key, start)
        return max(0, persisted + pending)

    def report(self, tenant: str) -> list[ReportRow]:
        """One row per feature of the tenant's plan: usage, limits, current period, reason."""
        check_key(tenant, "tenant")
        self._check_open()
        now_ts = self._time()
        plan = self._view(tenant, now_ts).plan
        rows: list[ReportRow] = []
        for f in () if plan is None else plan.features:
            ent, _ = self._decide(tenant, f.key, 1, now_ts)
            bounds = None if f.kind is FeatureKind.BOOLEAN else self.period(tenant, f.key)
            used = 0
            if bounds is not None:  # read, not ent.used: a denial (canceled...) says 0
                persisted, pending = self._usage_parts(tenant, f.key, bounds.start)
                used = max(0, persisted + pending)
            rows.append(
                ReportRow(
                    feature=f.key,
                    kind=f.kind,
                    used=used,
                    limit=f.limit,
                    soft_limit=f.soft_limit,
                    period_start=None if bounds is None or bounds.end is None else bounds.start,
                    period_end=None if bounds is None else bounds.end,
                    reason=ent.reason,
                )
            )
        return rows

    # --- tenant views -------------------------------------------------------------------

    def _view(self, tenant: str, now_ts: float, *, reload: bool = False) -> _View:
        view = self._views.get(tenant)
        if not reload and view is not None and view.expires > now_ts:
            return view
        generation = self._generation
        sub = self.store.get_subscription(tenant)
        key = sub.plan if sub is not None else self._default_plan
        plan = None if key is None else self._plan_cached(key, now_ts, generation)
        anchor = EPOCH if sub is None else sub.anchor
        view = _View(sub, plan, anchor, now_ts + self._ttl)
        with self._admin:
            if generation == self._generation:  # not overtaken by a change in this process
                self._views[tenant] = view
                self._windows[tenant] = {}
        return view

    def _plan_cached(self, key: str, now_ts: float, generation: int) -> Plan:
        """Plan ``key``, from the cache when fresh. ``generation`` is the one read before
        anything else this lookup is based on: a plan read while ``define_plan`` ran in
        this process may be the old version, so it is only cached if none happened."""
        hit = self._plans.get(key)
        if hit is not None and hit[1] > now_ts:
            return hit[0]
        plan = self.store.get_plan(key)
        if plan is None:
            raise UnknownPlan(key)
        self._learn(plan)
        with self._admin:
            if generation == self._generation:
                self._plans[key] = (plan, now_ts + self._ttl)
        return plan

    # --- lifecycle ----------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Write every pending event to the store now.

        With ``timeout=None`` one attempt: a store error propagates and the events stay
        buffered (the background thread keeps retrying). With a timeout, failures are
        retried with back-off until it runs out.
        """
        self._check_open()
        if timeout is None:
            while self._m.flush_once():
                pass
        else:
            self._m.drain(timeout)

    @property
    def quarantined(self) -> list[Quarantined]:
        """Usage records the store refused for good (each also logged as an error).

        A flush that fails with :class:`~authsome.ledger.errors.LedgerDataError`
        halves its batch until the offending record is alone, sets it aside here and
        writes the rest; it is not retried. Input validation makes this rare (a store
        with narrower limits than the engine's, say).
        """
        return list(self._m.quarantined)

    @property
    def unflushed(self) -> int:
        """How many metered events are not in the store yet."""
        return self._m.unflushed()

    def close(self, timeout: float | None = 30.0) -> None:
        """Drain everything to the store and stop. Idempotent.

        Returns only when every acknowledged event is stored. Failed flushes are
        retried until ``timeout`` (``None``: forever); if the store stays down it raises
        :class:`~authsome.ledger.errors.UnflushedEvents`, which says how many events are
        left (``unflushed`` still counts them) and whether they are safe in the spool
        for the next start or lost with this process. The store passed in is not
        closed (it belongs to the caller).
        """
        with self._closing:  # two threads closing at once: one drains, one returns
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._exit_hook)
        m = self._m
        with m.lock:  # from here meter() refuses: nothing can slip in after the drain
            m.closed = True
            m.room.notify_all()
            self._cache.clear()
        m.stop()
        _live.discard(self)
        try:
            m.drain(timeout)
        except Exception as exc:
            left = m.unflushed()
            if m.spool is None:
                where = "they are lost when this process exits"
            else:
                where = f"they are safe in the spool ({m.spool.dir}) and sent at the next start"
            log.error("ledger closed with %d events not stored: %s", left, where)
            raise UnflushedEvents(
                f"ledger closed with {left} events not stored ({exc}); {where}",
                left,
                spooled=m.spool is not None,
            ) from exc
        finally:
            if m.spool is not None:
                m.spool.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerClosed("the ledger engine is closed")

    def _now(self) -> datetime:
        return to_utc(self._clock(), "clock()")

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Engine(store={self.store!r}, unflushed={self.unflushed})"

    def _after_fork(self) -> None:
        """In a forked child: start afresh. The buffer is the parent's (it flushes it),
        so the child's starts empty; locks held by a parent thread at the fork would
        never be released here, so all are new; so are the id prefixes, so the child's
        generated event and batch ids cannot collide with the parent's. With a spool
        the child gets one of its own (see :meth:`Spool.for_child`)."""
        self._admin = threading.Lock()
        self._releasing = threading.Lock()
        self._closing = threading.Lock()
        self._cache.clear()
        self._views.clear()
        self._plans.clear()
        self._windows.clear()
        self._id_prefix = f"{secrets.token_hex(8)}-"
        self._ids = itertools.count(1)
        self._m.after_fork()


_live: weakref.WeakSet[Engine] = weakref.WeakSet()
"""Open engines of this process, to be made fork-safe in a child."""


def _after_fork_in_child() -> None:
    for engine in list(_live):
        engine._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _ExitHook:
    """Drains an engine at interpreter exit without keeping it alive meanwhile."""

    def __init__(self, engine: Engine) -> None:
        self._ref = weakref.ref(engine)

    def __call__(self) -> None:
        engine = self._ref()
        if engine is not None:
            try:
                engine.close()
            except Exception:
                log.exception("ledger could not drain at exit")


def _replace(sub: Subscription, **changes: Any) -> Subscription:
    return dataclasses.replace(sub, **changes)


def _decided(feature: Feature, used: int, applied: bool) -> Entitlement:
    """The answer of a limited ``consume``: ``used`` counts the use when ``applied``."""
    limit = feature.limit
    assert limit is not None
    if not applied:
        reason = Reason.LIMIT_REACHED
    elif feature.soft_limit is not None and used > feature.soft_limit:
        reason = Reason.SOFT_LIMIT
    else:
        reason = Reason.OK
    return Entitlement(applied, feature.key, used, limit, max(0, limit - used), reason)


def _after(ent: Entitlement, quantity: int) -> Entitlement:
    used = ent.used + quantity
    remaining = None if ent.limit is None else max(0, ent.limit - used)
    return Entitlement(ent.allowed, ent.feature, used, ent.limit, remaining, ent.reason)
