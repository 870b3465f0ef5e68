"""The ledger's model: plans, features, subscriptions, entitlements, billing periods.

Everything here is a frozen value and a pure function, so it is trivially shared
between threads and easy to test; the engine adds state and the stores persistence.

Billing periods follow the subscription's *anchor* in UTC, not the calendar: a
subscription anchored on 31 January renews on 29 February (28 in common years),
31 March, 30 April, ... The start day of every period is ``min(anchor day, length of
the month)`` and the time of day is the anchor's. Yearly periods work the same way
(an anchor on 29 February renews on 28 February in common years).
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum, unique
from typing import Any, NamedTuple, TypeVar

from authsome.ledger.clock import to_utc
from authsome.ledger.errors import InvalidArgument, InvalidArgumentType

__all__ = [
    "EPOCH",
    "MAX_COUNTER",
    "MAX_KEY",
    "MAX_QUANTITY",
    "Aggregation",
    "BillingPeriod",
    "Entitlement",
    "Feature",
    "FeatureKind",
    "Period",
    "Plan",
    "Reason",
    "ReportRow",
    "Status",
    "Subscription",
    "add_months",
    "check_key",
    "check_quantity",
    "decide",
    "denied",
    "dump_plan",
    "dump_subscription",
    "is_utf8",
    "load_plan",
    "load_subscription",
    "period_bounds",
]

MAX_KEY = 256
MAX_QUANTITY = 2**53 - 1
"""The largest quantity one call may meter, consume or release (exact as a float, too)."""
MAX_COUNTER = 2**63 - 1
"""Stores keep counters in signed 64-bit integers and saturate them here."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Start of the single period of features that never reset, and the anchor of default plans."""


@unique
class Period(StrEnum):
    """How often a metered feature's usage resets."""

    MONTHLY = "monthly"
    YEARLY = "yearly"
    NONE = "none"


@unique
class Aggregation(StrEnum):
    """How metered events add up: quantities (``sum``) or distinct users (``unique``)."""

    SUM = "sum"
    UNIQUE = "unique"


@unique
class FeatureKind(StrEnum):
    """What a feature is: a switch, a per-period counter or a current count of seats."""

    BOOLEAN = "boolean"
    METERED = "metered"
    SEAT = "seat"


@unique
class Status(StrEnum):
    """A subscription's status as stored; see :meth:`Subscription.denial` for the effect."""

    ACTIVE = "active"
    TRIALING = "trialing"
    CANCELED = "canceled"


@unique
class Reason(StrEnum):
    """Why an entitlement was granted or refused. Stable strings, safe to log and compare."""

    OK = "ok"
    """Allowed: enabled, or within the limit."""
    UNLIMITED = "unlimited"
    """Allowed: the feature has no limit."""
    SOFT_LIMIT = "soft_limit"
    """Allowed, but past the soft limit: the use is overage."""
    NOT_IN_PLAN = "not_in_plan"
    """Refused: the tenant's plan does not contain the feature."""
    NO_SUBSCRIPTION = "no_subscription"
    """Refused: the tenant has no subscription and the engine has no default plan."""
    DISABLED = "disabled"
    """Refused: a boolean feature switched off in the plan."""
    LIMIT_REACHED = "limit_reached"
    """Refused: the use would exceed the feature's limit for the period."""
    TRIAL_EXPIRED = "trial_expired"
    """Refused: the trial ended and the subscription was not activated."""
    CANCELED = "canceled"
    """Refused: the subscription was canceled (and its paid period is over)."""
    NOT_STARTED = "not_started"
    """Refused: the subscription starts later (``subscribe(..., at=<future>)``)."""


def check_key(value: object, name: str = "key") -> str:
    """Return ``value`` if it is a non-blank ``str`` of at most 256 characters that
    UTF-8 can encode, without NUL characters (PostgreSQL text cannot hold them).

    The one rule for every key, tenant, user and event id the ledger takes. A ``str``
    subclass (a ``StrEnum`` member, say) is accepted as the plain ``str`` of its
    characters, which is what is returned and kept: a subclass's own ``__eq__`` or
    ``__hash__`` never reaches a buffer, a cache or a store.
    """
    if value.__class__ is not str:
        if not isinstance(value, str):
            raise InvalidArgumentType(f"{name} must be a str, not {type(value).__name__}")
        value = str.__str__(value)  # the characters, as an exact str
    if not value or len(value) > MAX_KEY or value.isspace():
        raise InvalidArgument(f"{name} must be 1..{MAX_KEY} non-blank characters")
    if "\x00" in value:
        raise InvalidArgument(f"{name} must not contain NUL characters")
    if not (value.isascii() or is_utf8(value)):
        raise InvalidArgument(f"{name} is not valid Unicode text (a lone surrogate?)")
    return value


def is_utf8(value: str) -> bool:
    """Whether ``value`` can be encoded as UTF-8 (no lone surrogates): stores need that."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_quantity(value: object, name: str = "quantity") -> int:
    """Return ``value`` if it is an ``int`` in 1..MAX_QUANTITY; ``bool`` and floats are
    refused. Like :func:`check_key`, an ``int`` subclass is taken as its plain value."""
    if value.__class__ is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgumentType(f"{name} must be an int, not {type(value).__name__}")
        value = int.__int__(value)  # the number, as an exact int
    if not 0 < value <= MAX_QUANTITY:
        raise InvalidArgument(f"{name} must be 1..{MAX_QUANTITY}, got {value}")
    return value


def _check_limit(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentType(f"{name} must be an int or None, not {type(value).__name__}")
    if value < 0:
        raise InvalidArgument(f"{name} must not be negative, got {value}")
    return value


_E = TypeVar("_E", bound=StrEnum)


def _enum(cls: type[_E], value: object, name: str) -> _E:
    if not isinstance(value, str):
        raise InvalidArgumentType(f"{name} must be a str, not {type(value).__name__}")
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in cls)
        raise InvalidArgument(f"{name} must be one of {choices}, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature of a plan. Build it with :meth:`boolean`, :meth:`metered` or :meth:`seat`.

    ``limit=None`` means unlimited. ``soft_limit`` (metered and seat features) marks
    overage: a use past it is still allowed but reported with reason ``soft_limit``;
    a use past ``limit`` is refused.
    """

    key: str
    kind: FeatureKind
    enabled: bool = True
    limit: int | None = None
    period: Period = Period.NONE
    aggregation: Aggregation = Aggregation.SUM
    soft_limit: int | None = None

    def __post_init__(self) -> None:
        check_key(self.key, "feature key")
        set_ = object.__setattr__
        set_(self, "kind", _enum(FeatureKind, self.kind, "kind"))
        set_(self, "period", _enum(Period, self.period, "period"))
        set_(self, "aggregation", _enum(Aggregation, self.aggregation, "aggregation"))
        if not isinstance(self.enabled, bool):
            raise InvalidArgumentType("enabled must be a bool")
        _check_limit(self.limit, "limit")
        _check_limit(self.soft_limit, "soft_limit")
        if self.soft_limit is not None and self.limit is not None and self.soft_limit > self.limit:
            raise InvalidArgument("soft_limit must not exceed limit")
        if self.kind is FeatureKind.BOOLEAN and (self.limit, self.soft_limit) != (None, None):
            raise InvalidArgument("a boolean feature has no limits")
        if self.kind is FeatureKind.SEAT and (
            self.period is not Period.NONE or self.aggregation is not Aggregation.SUM
        ):
            raise InvalidArgument("a seat feature is a current count: no period, sum only")

    @classmethod
    def boolean(cls, key: str, enabled: bool = True) -> Feature:
        """An on/off feature, e.g. ``Feature.boolean("reports.export", enabled=False)``."""
        return cls(key, FeatureKind.BOOLEAN, enabled=enabled)

    @classmethod
    def metered(
        cls,
        key: str,
        limit: int | None = None,
        *,
        period: Period | str = Period.MONTHLY,
        aggregation: Aggregation | str = Aggregation.SUM,
        soft_limit: int | None = None,
    ) -> Feature:
        """A counter that resets every ``period`` (``"monthly"``, ``"yearly"`` or ``"none"``).

        ``aggregation="unique"`` counts distinct ``user_id``s per period (monthly active
        users); ``"sum"`` adds quantities.
        """
        return cls(
            key,
            FeatureKind.METERED,
            limit=limit,
            period=_enum(Period, period, "period"),
            aggregation=_enum(Aggregation, aggregation, "aggregation"),
            soft_limit=soft_limit,
        )

    @classmethod
    def seat(cls, key: str, limit: int | None = None, *, soft_limit: int | None = None) -> Feature:
        """A current count that never resets (members, projects); ``Engine.release`` lowers it."""
        return cls(key, FeatureKind.SEAT, limit=limit, soft_limit=soft_limit)

    @property
    def unique(self) -> bool:
        """Whether usage counts distinct users rather than quantities."""
        return self.aggregation is Aggregation.UNIQUE


@dataclass(frozen=True, slots=True, init=False)
class Plan:
    """A named set of features. ``interval`` is the billing cycle (for cancel-at-period-end).

    ``version`` is assigned by the store when the plan is defined: defining a plan with
    an existing key replaces it for every subscriber and keeps the old versions.
    """

    key: str
    features: tuple[Feature, ...] = ()
    name: str = ""
    interval: Period = Period.MONTHLY
    version: int = 0
    _index: Mapping[str, Feature] = field(default_factory=dict, repr=False, compare=False)

    def __init__(
        self,
        key: str,
        features: Iterable[Feature] = (),
        *,
        name: str = "",
        interval: Period | str = Period.MONTHLY,
        version: int = 0,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "key", check_key(key, "plan key"))
        feats = tuple(features)
        for f in feats:
            if not isinstance(f, Feature):
                raise InvalidArgumentType(f"features must be Feature, not {type(f).__name__}")
        index = {f.key: f for f in feats}
        if len(index) != len(feats):
            raise InvalidArgument(f"plan {key!r} lists a feature key twice")
        if not isinstance(name, str):
            raise InvalidArgumentType("name must be a str")
        interval = _enum(Period, interval, "interval")
        if interval is Period.NONE:
            raise InvalidArgument("a plan's interval is 'monthly' or 'yearly'")
        if _check_limit(version, "version") is None:
            raise InvalidArgumentType("version must be an int")
        set_(self, "features", feats)
        set_(self, "name", name or key)
        set_(self, "interval", interval)
        set_(self, "version", version)
        set_(self, "_index", index)

    def feature(self, key: str) -> Feature | None:
        """The feature with this key, or ``None`` if the plan does not contain it."""
        return self._index.get(key)

    def with_version(self, version: int) -> Plan:
        """This plan as stored under ``version``."""
        return Plan(
            self.key, self.features, name=self.name, interval=self.interval, version=version
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    """A tenant's subscription to a plan (by key: a redefined plan applies at once).

    ``anchor`` starts the billing periods. ``cancel_at`` is when a cancellation takes (or
    took) effect: now for an immediate cancel, the end of the billing period for
    ``cancel_at_period_end``.
    """

    tenant: str
    plan: str
    anchor: datetime
    status: Status = Status.ACTIVE
    trial_end: datetime | None = None
    cancel_at_period_end: bool = False
    cancel_at: datetime | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        check_key(self.tenant, "tenant")
        check_key(self.plan, "plan")
        set_(self, "anchor", to_utc(self.anchor, "anchor"))
        set_(self, "status", _enum(Status, self.status, "status"))
        for name in ("trial_end", "cancel_at"):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, to_utc(value, name))
        if self.status is Status.TRIALING and self.trial_end is None:
            raise InvalidArgument("a trialing subscription needs a trial_end")
        if self.status is Status.CANCELED and self.cancel_at is None:
            set_(self, "cancel_at", self.anchor)

    def denial(self, now: datetime) -> Reason | None:
        """Why every feature is refused at ``now``; ``None`` while the subscription is live."""
        if now < self.anchor:
            return Reason.NOT_STARTED
        if self.cancel_at is not None and now >= self.cancel_at:
            return Reason.CANCELED
        if self.status is Status.CANCELED:
            return Reason.CANCELED
        if self.status is Status.TRIALING and self.trial_end is not None and now >= self.trial_end:
            return Reason.TRIAL_EXPIRED
        return None

    def next_change(self, now: datetime) -> datetime | None:
        """The next instant after ``now`` at which :meth:`denial` may change."""
        times = [
            t for t in (self.anchor, self.trial_end, self.cancel_at) if t is not None and t > now
        ]
        return min(times) if times else None


@dataclass(frozen=True, slots=True)
class Entitlement:
    """The answer to "may ``tenant`` use ``feature`` now?" with the numbers behind it.

    ``used`` is this period's usage (persisted plus pending), ``limit`` ``None`` when
    unlimited or not applicable, ``remaining`` ``max(0, limit - used)`` or ``None``.
    Truthy when allowed.
    """

    allowed: bool
    feature: str
    used: int
    limit: int | None
    remaining: int | None
    reason: Reason

    def __bool__(self) -> bool:
        return self.allowed


class BillingPeriod(NamedTuple):
    """A usage period: ``start`` inclusive, ``end`` exclusive (``None``: never ends)."""

    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One line of :meth:`Engine.report`: a feature's usage in its current period."""

    feature: str
    kind: FeatureKind
    used: int
    limit: int | None
    soft_limit: int | None
    period_start: datetime | None
    period_end: datetime | None
    reason: Reason


def add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by ``months`` months, the day clamped to the month's length."""
    total = anchor.year * 12 + anchor.month - 1 + months
    year, month0 = divmod(total, 12)
    day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
    return anchor.replace(year=year, month=month0 + 1, day=day)


def period_bounds(anchor: datetime, period: Period, now: datetime) -> BillingPeriod:
    """The period of ``period`` length, anchored at ``anchor``, that contains ``now``."""
    if period is Period.NONE:
        return BillingPeriod(EPOCH, None)
    step = 12 if period is Period.YEARLY else 1
    # The month distance gives the period index up to one: a clamped or later-in-the-
    # month anchor can put the estimate one period too far, never too short.
    index = ((now.year - anchor.year) * 12 + now.month - anchor.month) // step
    start = add_months(anchor, index * step)
    if start > now:
        index -= 1
        start = add_months(anchor, index * step)
    return BillingPeriod(start, add_months(anchor, (index + 1) * step))


def decide(feature: Feature, used: int, requested: int) -> Entitlement:
    """The entitlement for a live subscription whose plan contains ``feature``."""
    key = feature.key
    if feature.kind is FeatureKind.BOOLEAN:
        reason = Reason.OK if feature.enabled else Reason.DISABLED
        return Entitlement(feature.enabled, key, 0, None, None, reason)
    used = max(used, 0)
    after = used + requested
    limit = feature.limit
    remaining = None if limit is None else max(0, limit - used)
    if limit is not None and after > limit:
        return Entitlement(False, key, used, limit, remaining, Reason.LIMIT_REACHED)
    if feature.soft_limit is not None and after > feature.soft_limit:
        return Entitlement(True, key, used, limit, remaining, Reason.SOFT_LIMIT)
    reason = Reason.UNLIMITED if limit is None else Reason.OK
    return Entitlement(True, key, used, limit, remaining, reason)


def denied(key: str, reason: Reason) -> Entitlement:
    """A refusal that has nothing to do with usage (no subscription, trial over...)."""
    return Entitlement(False, key, 0, None, None, reason)


# --- persistence helpers: stores keep plans and subscriptions as JSON documents ---


def _feature_doc(f: Feature) -> dict[str, Any]:
    return {
        "key": f.key,
        "kind": f.kind.value,
        "enabled": f.enabled,
        "limit": f.limit,
        "period": f.period.value,
        "aggregation": f.aggregation.value,
        "soft_limit": f.soft_limit,
    }


def dump_plan(plan: Plan) -> str:
    """``plan`` as a JSON document (without its version, which the store keeps)."""
    doc = {
        "key": plan.key,
        "name": plan.name,
        "interval": plan.interval.value,
        "features": [_feature_doc(f) for f in plan.features],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def load_plan(text: str, version: int) -> Plan:
    """The plan stored as ``text`` under ``version``."""
    doc = json.loads(text)
    feats = [Feature(**f) for f in doc["features"]]
    return Plan(doc["key"], feats, name=doc["name"], interval=doc["interval"], version=version)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def dump_subscription(sub: Subscription) -> str:
    """``sub`` as a JSON document."""
    doc = {
        "tenant": sub.tenant,
        "plan": sub.plan,
        "anchor": sub.anchor.isoformat(),
        "status": sub.status.value,
        "trial_end": _iso(sub.trial_end),
        "cancel_at_period_end": sub.cancel_at_period_end,
        "cancel_at": _iso(sub.cancel_at),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def load_subscription(text: str) -> Subscription:
    """The subscription stored as ``text``."""
    doc = json.loads(text)
    return Subscription(
        tenant=doc["tenant"],
        plan=doc["plan"],
        anchor=datetime.fromisoformat(doc["anchor"]),
        status=doc["status"],
        trial_end=_dt(doc["trial_end"]),
        cancel_at_period_end=doc["cancel_at_period_end"],
        cancel_at=_dt(doc["cancel_at"]),
    )
