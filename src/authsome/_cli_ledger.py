"""The ledger commands of ``authsome``: plans, subscriptions, usage and entitlements.

Each command is a function that takes an open :class:`~authsome.ledger.Engine` and
returns data; the ``*_table`` and ``*_json`` functions turn that data into what the
command line prints. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from authsome.errors import NotFound
from authsome.ledger import (
    Engine,
    Feature,
    FeatureKind,
    Plan,
    Reason,
    Subscription,
    UnknownPlan,
)
from authsome.ledger.plans import decide

__all__ = [
    "EntitlementRow",
    "Entitlements",
    "PlanLoaded",
    "Subscribed",
    "Usage",
    "UsageRow",
    "define_plans",
    "entitlements",
    "entitlements_json",
    "entitlements_table",
    "render_table",
    "subscribe",
    "usage",
    "usage_json",
    "usage_table",
]

PeriodChoice = Literal["current", "previous"] | date
_BEFORE = timedelta(microseconds=1)
_NO_NUMBERS = frozenset(
    r.value for r in (Reason.CANCELED, Reason.TRIAL_EXPIRED, Reason.NO_SUBSCRIPTION)
)


# --- plans load ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanLoaded:
    """One plan of a plans file after loading: its stored version, and whether it changed."""

    key: str
    name: str
    version: int
    features: int
    changed: bool


def define_plans(engine: Engine, plans: Iterable[Plan]) -> list[PlanLoaded]:
    """Define each plan; a plan identical to its stored version is left alone, so
    loading one file twice does not pile up versions."""
    loaded: list[PlanLoaded] = []
    for plan in plans:
        try:
            current: Plan | None = engine.plan(plan.key)
        except UnknownPlan:
            current = None
        changed = current is None or current.with_version(0) != plan
        stored = engine.define_plan(plan) if changed else current
        assert stored is not None
        loaded.append(PlanLoaded(plan.key, plan.name, stored.version, len(plan.features), changed))
    return loaded


# --- subscribe -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The outcome of :func:`subscribe`: ``action`` is ``"subscribed"`` (a new
    subscription, billing periods start now), ``"changed"`` (plan switched, billing
    anchor and usage kept) or ``"unchanged"``."""

    subscription: Subscription
    previous_plan: str | None
    action: Literal["subscribed", "changed", "unchanged"]


def subscribe(
    engine: Engine, tenant: str, plan: str, *, trial_days: int | None = None
) -> Subscribed:
    """Put ``tenant`` on ``plan``.

    A tenant with a live subscription keeps its billing anchor (an upgrade must not
    reset the month's usage); a new, canceled or expired one starts afresh, as does any
    request for a trial. :class:`~authsome.ledger.UnknownPlan` if ``plan`` is unknown.
    """
    try:
        engine.plan(plan)  # fail before anything changes
    except UnknownPlan:
        known = ", ".join(sorted(engine.store.plan_keys())) or "none yet"
        raise NotFound(f"unknown plan {plan!r} (defined plans: {known})") from None
    current = engine.subscription(tenant)
    live = current is not None and current.denial(datetime.now(UTC)) is None
    if current is None or not live or trial_days is not None:
        sub = engine.subscribe(tenant, plan, trial_days=trial_days)
        return Subscribed(sub, None if current is None else current.plan, "subscribed")
    if current.plan == plan:
        return Subscribed(current, current.plan, "unchanged")
    return Subscribed(engine.change_plan(tenant, plan), current.plan, "changed")


# --- usage ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageRow:
    """A metered or seat feature's usage in one period; ``status`` is a ledger reason."""

    feature: str
    kind: FeatureKind
    used: int
    limit: int | None
    soft_limit: int | None
    period_start: datetime | None
    period_end: datetime | None
    status: str


@dataclass(frozen=True, slots=True)
class Usage:
    """A tenant's usage report for one period choice."""

    tenant: str
    plan: str
    plan_name: str
    period: str
    rows: tuple[UsageRow, ...]


def _subscribed_plan(engine: Engine, tenant: str) -> tuple[Subscription, Plan]:
    sub = engine.subscription(tenant)
    if sub is None:
        raise NotFound(
            f"unknown tenant {tenant!r}: it has no subscription "
            f"(add one with: authsome subscribe {tenant} PLAN)"
        )
    return sub, engine.plan(sub.plan)


def _past_row(engine: Engine, tenant: str, feature: Feature, at: datetime) -> UsageRow:
    bounds = engine.period(tenant, feature.key, at=at)
    used = engine.usage(tenant, feature.key, period=bounds)
    # requested=0: how the period's total stands against the limits, not "one more?"
    status = decide(feature, used, 0).reason.value
    start = None if bounds.end is None else bounds.start
    return UsageRow(
        feature.key,
        feature.kind,
        used,
        feature.limit,
        feature.soft_limit,
        start,
        bounds.end,
        status,
    )


def _instant(engine: Engine, tenant: str, key: str, choice: PeriodChoice) -> datetime:
    if isinstance(choice, date):
        return datetime(choice.year, choice.month, choice.day, tzinfo=UTC)
    return engine.period(tenant, key).start - _BEFORE  # the instant before the current one


def usage(engine: Engine, tenant: str, period: PeriodChoice = "current") -> Usage:
    """Usage of every metered and seat feature of the tenant's plan in ``period``:
    ``"current"``, ``"previous"`` or the period containing 00:00 UTC of a date.

    Each feature has its own period (they follow the subscription's billing anchor);
    features that never reset show their all-time total.
    """
    _, plan = _subscribed_plan(engine, tenant)
    if period == "current":
        rows = tuple(
            UsageRow(
                r.feature,
                r.kind,
                r.used,
                r.limit,
                r.soft_limit,
                r.period_start,
                r.period_end,
                r.reason.value,
            )
            for r in engine.report(tenant)
            if r.kind is not FeatureKind.BOOLEAN
        )
    else:
        rows = tuple(
            _past_row(engine, tenant, f, _instant(engine, tenant, f.key, period))
            for f in plan.features
            if f.kind is not FeatureKind.BOOLEAN
        )
    label = period if isinstance(period, str) else period.isoformat()
    return Usage(tenant, plan.key, plan.name, label, rows)


# --- entitlements ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntitlementRow:
    """The ledger's answer for one feature of the tenant's plan, right now."""

    feature: str
    kind: FeatureKind
    allowed: bool
    reason: str
    used: int
    limit: int | None
    remaining: int | None


@dataclass(frozen=True, slots=True)
class Entitlements:
    """Every feature of a tenant's plan with the current entitlement decision."""

    tenant: str
    plan: str
    plan_name: str
    status: str
    rows: tuple[EntitlementRow, ...]


def entitlements(engine: Engine, tenant: str) -> Entitlements:
    """May ``tenant`` use each feature of its plan now? Records nothing."""
    sub, plan = _subscribed_plan(engine, tenant)
    rows = []
    for f in plan.features:
        ent = engine.entitled(tenant, f.key)
        rows.append(
            EntitlementRow(
                f.key, f.kind, ent.allowed, ent.reason.value, ent.used, ent.limit, ent.remaining
            )
        )
    denial = sub.denial(datetime.now(UTC))
    status = sub.status.value if denial is None else denial.value
    return Entitlements(tenant, plan.key, plan.name, status, tuple(rows))


# --- rendering --------------------------------------------------------------------------


def render_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()
) -> list[str]:
    """Aligned columns, two spaces apart; the columns in ``right`` are right-aligned."""
    body = [list(row) for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *body, strict=True)]
    right_cols = set(right)

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if i in right_cols else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), *(line(row) for row in body)]


def _number(value: int | None, none: str) -> str:
    return none if value is None else f"{value:,}"


def _day(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d}"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _period_cell(row: UsageRow) -> str:
    if row.period_end is None:
        return "all time"
    return f"{_day(row.period_start)} .. {_day(row.period_end)}"


def usage_table(report: Usage) -> list[str]:
    """The usage report as aligned lines for a terminal."""
    title = f"{report.tenant}: plan {report.plan} ({report.plan_name}), {report.period} period"
    if not report.rows:
        return [title, "no metered or seat features in this plan"]
    headers = ("feature", "kind", "used", "limit", "soft limit", "period", "status")
    rows = [
        (
            r.feature,
            r.kind.value,
            _number(r.used, ""),
            _number(r.limit, "unlimited"),
            _number(r.soft_limit, "-"),
            _period_cell(r),
            r.status,
        )
        for r in report.rows
    ]
    return [title, *render_table(headers, rows, right=(2, 3, 4))]


def usage_json(report: Usage) -> dict[str, Any]:
    """The usage report as a JSON-ready document (times in ISO 8601, UTC)."""
    return {
        "tenant": report.tenant,
        "plan": report.plan,
        "plan_name": report.plan_name,
        "period": report.period,
        "features": [
            {
                "feature": r.feature,
                "kind": r.kind.value,
                "used": r.used,
                "limit": r.limit,
                "soft_limit": r.soft_limit,
                "period_start": _iso(r.period_start),
                "period_end": _iso(r.period_end),
                "status": r.status,
            }
            for r in report.rows
        ],
    }


def entitlements_table(report: Entitlements) -> list[str]:
    """The entitlements as aligned lines for a terminal."""
    title = (
        f"{report.tenant}: plan {report.plan} ({report.plan_name}), subscription {report.status}"
    )
    if not report.rows:
        return [title, "no features in this plan"]
    headers = ("feature", "kind", "allowed", "reason", "used", "limit", "remaining")
    rows = []
    for r in report.rows:
        # A refusal for the whole subscription carries no usage numbers: show none.
        counted = r.kind is not FeatureKind.BOOLEAN and r.reason not in _NO_NUMBERS
        rows.append(
            (
                r.feature,
                r.kind.value,
                "yes" if r.allowed else "no",
                r.reason,
                _number(r.used, "") if counted else "-",
                _number(r.limit, "unlimited") if counted else "-",
                _number(r.remaining, "unlimited") if counted else "-",
            )
        )
    return [title, *render_table(headers, rows, right=(4, 5, 6))]


def entitlements_json(report: Entitlements) -> dict[str, Any]:
    """The entitlements as a JSON-ready document."""
    return {
        "tenant": report.tenant,
        "plan": report.plan,
        "plan_name": report.plan_name,
        "status": report.status,
        "features": [
            {
                "feature": r.feature,
                "kind": r.kind.value,
                "allowed": r.allowed,
                "reason": r.reason,
                "used": r.used,
                "limit": r.limit,
                "remaining": r.remaining,
            }
            for r in report.rows
        ],
    }
