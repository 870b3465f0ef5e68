"""Entitlements: every reason code, every feature kind, trials, cancellation, plans."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from authsome import ledger
from authsome.ledger import Reason

EngineFactory = Callable[..., ledger.Engine]
START = datetime(2024, 1, 31, 12, 0, tzinfo=UTC)  # where the clock fixture starts


def test_every_reason_code_is_tested() -> None:
    # Keep in step with the tests below (one per reason, named in REASONS_TESTED).
    assert set(Reason) == REASONS_TESTED


REASONS_TESTED = {
    Reason.OK,
    Reason.UNLIMITED,
    Reason.SOFT_LIMIT,
    Reason.NOT_IN_PLAN,
    Reason.NO_SUBSCRIPTION,
    Reason.DISABLED,
    Reason.LIMIT_REACHED,
    Reason.TRIAL_EXPIRED,
    Reason.CANCELED,
    Reason.NOT_STARTED,
}


def test_reason_ok_for_an_enabled_boolean(engine: ledger.Engine) -> None:
    e = engine.entitled("acme", "mfa")
    assert (e.allowed, e.reason, e.used, e.limit, e.remaining) == (True, Reason.OK, 0, None, None)
    assert bool(e)


def test_reason_disabled_for_a_boolean_switched_off(engine: ledger.Engine) -> None:
    e = engine.entitled("acme", "sso")
    assert not e.allowed
    assert e.reason is Reason.DISABLED
    assert not e


def test_reason_not_in_plan(engine: ledger.Engine) -> None:
    e = engine.entitled("acme", "custom_domains")
    assert (e.allowed, e.reason) == (False, Reason.NOT_IN_PLAN)


def test_reason_no_subscription(engine: ledger.Engine) -> None:
    e = engine.entitled("nobody", "mfa")
    assert (e.allowed, e.reason) == (False, Reason.NO_SUBSCRIPTION)


def test_default_plan_applies_to_tenants_without_subscription(
    make_engine: EngineFactory, store: ledger.LedgerStore, starter: ledger.Plan
) -> None:
    eng = make_engine(store=store, default_plan="starter")
    eng.define_plan(starter)
    assert eng.entitled("walk-in", "mfa").reason is Reason.OK
    eng.meter("walk-in", "api", 4)
    assert eng.entitled("walk-in", "api").used == 4
    # Calendar-month periods for them.
    assert eng.period("walk-in", "api").start == datetime(2024, 1, 1, tzinfo=UTC)


def test_unknown_default_plan_is_a_typed_error(make_engine: EngineFactory) -> None:
    eng = make_engine(default_plan="ghost")
    with pytest.raises(ledger.UnknownPlan):
        eng.entitled("walk-in", "mfa")


def test_metered_limit_ok_then_limit_reached(engine: ledger.Engine) -> None:
    engine.meter("acme", "reports")
    e = engine.entitled("acme", "reports")
    assert (e.allowed, e.reason, e.used, e.limit, e.remaining) == (True, Reason.OK, 1, 2, 1)
    engine.meter("acme", "reports")
    e = engine.entitled("acme", "reports")
    assert (e.allowed, e.reason, e.used, e.remaining) == (False, Reason.LIMIT_REACHED, 2, 0)


def test_requested_counts_against_the_limit(engine: ledger.Engine) -> None:
    engine.meter("acme", "api", 9)
    assert engine.entitled("acme", "api", requested=1).allowed
    assert engine.entitled("acme", "api", requested=2).reason is Reason.LIMIT_REACHED


def test_soft_limit_allows_but_flags_overage(engine: ledger.Engine) -> None:
    engine.meter("acme", "api", 7)
    assert engine.entitled("acme", "api").reason is Reason.OK  # 8th unit: at the soft limit
    engine.meter("acme", "api")
    e = engine.entitled("acme", "api")  # 9th unit: past it
    assert (e.allowed, e.reason, e.remaining) == (True, Reason.SOFT_LIMIT, 2)


def test_unlimited_feature(engine: ledger.Engine) -> None:
    engine.meter("acme", "exports", 1_000_000)
    e = engine.entitled("acme", "exports")
    assert (e.allowed, e.reason, e.used, e.limit, e.remaining) == (
        True,
        Reason.UNLIMITED,
        1_000_000,
        None,
        None,
    )


def test_unlimited_with_soft_limit_flags_overage(engine: ledger.Engine) -> None:
    engine.meter("acme", "overage", 2)
    e = engine.entitled("acme", "overage")
    assert (e.allowed, e.reason) == (True, Reason.SOFT_LIMIT)


def test_seats_count_up_and_down_and_never_reset(
    engine: ledger.Engine, clock: ledger.ManualClock
) -> None:
    engine.meter("acme", "members", 2)
    assert engine.entitled("acme", "members").reason is Reason.LIMIT_REACHED
    engine.release("acme", "members")
    assert engine.entitled("acme", "members").used == 1
    engine.flush()
    clock.advance(days=400)
    e = engine.entitled("acme", "members")
    assert (e.allowed, e.used, e.remaining) == (True, 1, 1)
    assert engine.period("acme", "members").end is None


def test_unique_counts_distinct_users_sum_counts_quantities(engine: ledger.Engine) -> None:
    for user in ["ann", "bob", "ann", "ann", "bob"]:
        engine.meter("acme", "mau", user_id=user)
        engine.meter("acme", "exports", 2, user_id=user)
    assert engine.usage("acme", "mau") == 2
    assert engine.usage("acme", "exports") == 10
    engine.flush()
    engine.meter("acme", "mau", user_id="ann")  # already counted in the store
    engine.meter("acme", "mau", user_id="cid")
    assert engine.usage("acme", "mau") == 3
    engine.flush()
    assert engine.usage("acme", "mau") == 3
    assert engine.entitled("acme", "mau").reason is Reason.LIMIT_REACHED


def test_unique_feature_needs_a_user(engine: ledger.Engine) -> None:
    with pytest.raises(ledger.InvalidArgument):
        engine.meter("acme", "mau")


def test_usage_resets_at_the_anchored_month_end(
    engine: ledger.Engine, clock: ledger.ManualClock
) -> None:
    engine.meter("acme", "api", 10)
    engine.meter("acme", "mau", user_id="ann")
    assert engine.entitled("acme", "api").reason is Reason.LIMIT_REACHED
    clock.set(datetime(2024, 2, 29, 11, 59, tzinfo=UTC))  # still January's period
    assert engine.entitled("acme", "api").reason is Reason.LIMIT_REACHED  # cache expires at end
    clock.set(datetime(2024, 2, 29, 12, 0, tzinfo=UTC))  # leap day: new period
    e = engine.entitled("acme", "api")
    assert (e.used, e.reason) == (0, Reason.OK)
    assert engine.usage("acme", "mau") == 0
    engine.meter("acme", "api", 3)
    clock.set(datetime(2024, 3, 31, 12, 0, tzinfo=UTC))
    assert engine.usage("acme", "api") == 0
    previous = engine.period("acme", "api", at=datetime(2024, 3, 1, tzinfo=UTC))
    assert previous == (
        datetime(2024, 2, 29, 12, tzinfo=UTC),
        datetime(2024, 3, 31, 12, tzinfo=UTC),
    )
    assert engine.usage("acme", "api", period=previous) == 3
    assert engine.usage("acme", "api", period=START) == 10


def test_backdated_meter_lands_in_its_own_period(
    engine: ledger.Engine, clock: ledger.ManualClock
) -> None:
    clock.set(datetime(2024, 3, 1, tzinfo=UTC))
    engine.meter("acme", "api", 5, at=datetime(2024, 2, 29, 11, 0, tzinfo=UTC))
    engine.flush()
    assert engine.usage("acme", "api") == 0
    assert engine.usage("acme", "api", period=START) == 5


def test_yearly_feature_counts_over_the_year(
    engine: ledger.Engine, clock: ledger.ManualClock
) -> None:
    engine.meter("acme", "reports", 2)
    clock.advance(days=200)
    assert engine.entitled("acme", "reports").reason is Reason.LIMIT_REACHED
    clock.set(datetime(2025, 1, 31, 12, tzinfo=UTC))
    assert engine.entitled("acme", "reports").used == 0


def test_trial_expired_after_trial_end_unless_activated(
    engine: ledger.Engine, clock: ledger.ManualClock
) -> None:
    sub = engine.subscribe("trial-co", "starter", trial_days=14)
    assert sub.status is ledger.Status.TRIALING
    assert sub.trial_end == START + timedelta(days=14)
    assert engine.entitled("trial-co", "mfa").reason is Reason.OK
    clock.advance(days=14)
    assert engine.entitled("trial-co", "mfa").reason is Reason.TRIAL_EXPIRED
    engine.activate("trial-co")
    assert engine.entitled("trial-co", "mfa").reason is Reason.OK


def test_a_subscription_starting_later_entitles_nothing_until_it_starts(
    engine: ledger.Engine, clock: ledger.ManualClock
) -> None:
    engine.subscribe("later-co", "starter", at=START + timedelta(days=10))
    before = engine.entitled("later-co", "mfa")  # cached: the answer must expire at the start
    assert (before.allowed, before.reason) == (False, Reason.NOT_STARTED)
    clock.advance(days=10)
    assert engine.entitled("later-co", "mfa").reason is Reason.OK


def test_trial_converted_before_its_end_stays_allowed(
    engine: ledger.Engine, clock: ledger.ManualClock
) -> None:
    engine.subscribe("trial-co", "starter", trial_end=START + timedelta(days=3))
    engine.activate("trial-co")
    clock.advance(days=30)
    assert engine.entitled("trial-co", "mfa").allowed


def test_canceled_now(engine: ledger.Engine) -> None:
    sub = engine.cancel("acme")
    assert sub.status is ledger.Status.CANCELED
    assert engine.entitled("acme", "mfa").reason is Reason.CANCELED
    with pytest.raises(ledger.InvalidArgument):
        engine.activate("acme")


def test_cancel_at_period_end_takes_effect_at_period_end(
    engine: ledger.Engine, clock: ledger.ManualClock
) -> None:
    clock.set(datetime(2024, 2, 10, tzinfo=UTC))
    sub = engine.cancel("acme", at_period_end=True)
    assert sub.cancel_at == datetime(2024, 2, 29, 12, tzinfo=UTC)
    assert engine.entitled("acme", "mfa").reason is Reason.OK
    clock.set(datetime(2024, 2, 29, 11, 59, 59, tzinfo=UTC))
    assert engine.entitled("acme", "mfa").reason is Reason.OK
    clock.set(datetime(2024, 2, 29, 12, tzinfo=UTC))
    assert engine.entitled("acme", "mfa").reason is Reason.CANCELED


def test_cancel_at_period_end_can_be_undone(
    engine: ledger.Engine, clock: ledger.ManualClock
) -> None:
    engine.cancel("acme", at_period_end=True)
    engine.activate("acme")
    clock.advance(days=60)
    assert engine.entitled("acme", "mfa").allowed


def test_define_plan_replaces_and_keeps_versions(
    engine: ledger.Engine, starter: ledger.Plan
) -> None:
    assert engine.entitled("acme", "sso").reason is Reason.DISABLED
    v2 = engine.define_plan(
        ledger.Plan("starter", [*starter.features[1:], ledger.Feature.boolean("sso")])
    )
    assert v2.version == 2
    assert engine.entitled("acme", "sso").reason is Reason.OK  # cache invalidated at once
    history = engine.plan_history("starter")
    assert [p.version for p in history] == [1, 2]
    assert history[0].feature("sso") == ledger.Feature.boolean("sso", enabled=False)
    assert engine.plan("starter") == v2


def test_change_plan_keeps_anchor_and_usage(engine: ledger.Engine) -> None:
    engine.define_plan(ledger.Plan("business", [ledger.Feature.metered("api", limit=100)]))
    engine.meter("acme", "api", 10)
    assert not engine.entitled("acme", "api").allowed
    sub = engine.change_plan("acme", "business")
    assert (sub.plan, sub.anchor) == ("business", START)
    e = engine.entitled("acme", "api")
    assert (e.allowed, e.used, e.limit) == (True, 10, 100)
    assert engine.entitled("acme", "mfa").reason is Reason.NOT_IN_PLAN


def test_cache_is_invalidated_by_meter(engine: ledger.Engine) -> None:
    first = engine.entitled("acme", "api")
    assert engine.entitled("acme", "api") is first  # a cache hit
    engine.meter("acme", "api")
    assert engine.entitled("acme", "api").used == 1


def test_cache_ttl_bounds_staleness_across_engines(
    make_engine: EngineFactory, tmp_path: Path, clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    stores = [ledger.SQLiteStore(tmp_path / "shared.db") for _ in range(2)]
    try:
        a = make_engine(store=stores[0], cache_ttl=5)
        b = make_engine(store=stores[1], cache_ttl=5)
        a.define_plan(starter)
        a.subscribe("acme", "starter")
        assert b.entitled("acme", "api").used == 0
        a.meter("acme", "api", 4)
        a.flush()
        assert b.entitled("acme", "api").used == 0  # stale, within the ttl
        clock.advance(seconds=5)
        assert b.entitled("acme", "api").used == 4
    finally:
        for s in stores:
            s.close()


def test_report_lists_every_feature_with_its_period(
    engine: ledger.Engine, starter: ledger.Plan
) -> None:
    engine.meter("acme", "api", 9)
    rows = {r.feature: r for r in engine.report("acme")}
    assert set(rows) == {f.key for f in starter.features}
    api = rows["api"]
    assert (api.used, api.limit, api.soft_limit, api.reason) == (9, 10, 8, Reason.SOFT_LIMIT)
    assert (api.period_start, api.period_end) == (START, datetime(2024, 2, 29, 12, tzinfo=UTC))
    assert rows["sso"].reason is Reason.DISABLED
    assert rows["members"].period_end is None
    assert engine.report("nobody") == []


def test_reopened_engine_knows_plans_subscriptions_and_usage(
    make_engine: EngineFactory, tmp_path: Path, starter: ledger.Plan
) -> None:
    path = tmp_path / "billing.db"
    with _closing(ledger.SQLiteStore(path)) as s:
        eng = make_engine(store=s)
        eng.define_plan(starter)
        eng.subscribe("acme", "starter", trial_days=30)
        eng.meter("acme", "api", 6)
        eng.close()
    with _closing(ledger.SQLiteStore(path)) as s:
        eng = make_engine(store=s)
        sub = eng.subscription("acme")
        assert sub is not None
        assert sub.status is ledger.Status.TRIALING
        assert eng.entitled("acme", "api").used == 6
        with pytest.raises(ledger.InvalidArgument):
            eng.meter("acme", "mau")  # knows "mau" is unique without being told again
        eng.close()


class _closing:
    def __init__(self, store: ledger.SQLiteStore) -> None:
        self.store = store

    def __enter__(self) -> ledger.SQLiteStore:
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda e: e.meter("acme", "api", 0), ValueError),
        (lambda e: e.meter("acme", "api", -3), ValueError),
        (lambda e: e.meter("acme", "api", 1.5), TypeError),
        (lambda e: e.meter("acme", "api", True), TypeError),
        (lambda e: e.meter("acme", "api", "1"), TypeError),
        (lambda e: e.meter("", "api"), ValueError),
        (lambda e: e.meter("acme", ""), ValueError),
        (lambda e: e.meter("acme", "   "), ValueError),
        (lambda e: e.meter(None, "api"), TypeError),
        (lambda e: e.meter("acme", "api", user_id=""), ValueError),
        (lambda e: e.meter("acme", "api", event_id=7), TypeError),
        (lambda e: e.meter("acme", "api", at=datetime(2024, 1, 1)), ValueError),
        (lambda e: e.entitled("acme", ""), ValueError),
        (lambda e: e.entitled(["acme"], "api"), TypeError),
        (lambda e: e.entitled("acme", "api", requested=0), ValueError),
        (lambda e: e.consume("acme", "api", False), TypeError),
        (lambda e: e.consume("", "api"), ValueError),
        (lambda e: e.subscribe("acme", "ghost"), LookupError),
        (lambda e: e.change_plan("acme", "ghost"), LookupError),
        (lambda e: e.change_plan("nobody", "starter"), LookupError),
        (lambda e: e.cancel("nobody"), LookupError),
        (lambda e: e.subscribe("acme", "starter", trial_days=0), ValueError),
        (lambda e: e.define_plan("starter"), TypeError),
    ],
)
def test_bad_input_gets_a_typed_error(
    engine: ledger.Engine, call: object, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        call(engine)  # type: ignore[operator]
    assert isinstance(info.value, ledger.LedgerError)
    assert engine.unflushed == 0


def test_unknown_plan_carries_the_key(engine: ledger.Engine) -> None:
    with pytest.raises(ledger.UnknownPlan) as info:
        engine.subscribe("acme", "ghost")
    assert info.value.plan == "ghost"


@pytest.mark.parametrize(
    "build",
    [
        lambda: ledger.Feature.metered("k", limit=-1),
        lambda: ledger.Feature.metered("k", limit=True),
        lambda: ledger.Feature.metered("k", period="weekly"),
        lambda: ledger.Feature.metered("k", aggregation="max"),
        lambda: ledger.Feature.metered("k", limit=5, soft_limit=6),
        lambda: ledger.Feature.seat("", 3),
        lambda: ledger.Plan("p", [ledger.Feature.boolean("a"), ledger.Feature.boolean("a")]),
        lambda: ledger.Plan("p", interval="none"),
        lambda: ledger.Plan("p", ["a"]),
        lambda: ledger.Subscription("t", "p", datetime(2024, 1, 1)),
        lambda: ledger.Subscription("t", "p", START, status="paused"),
        lambda: ledger.Subscription("t", "p", START, status="trialing"),
        lambda: ledger.Engine(durability="disk"),
        lambda: ledger.Engine(durability="spool"),
        lambda: ledger.Engine(max_buffer=0),
    ],
)
def test_bad_model_values_get_typed_errors(build: object) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        build()  # type: ignore[operator]
    assert isinstance(info.value, ledger.LedgerError)


def test_closed_engine_refuses_work(make_engine: EngineFactory) -> None:
    eng = make_engine()
    eng.close()
    eng.close()  # idempotent
    with pytest.raises(ledger.LedgerClosed):
        eng.meter("acme", "api")
    with pytest.raises(ledger.LedgerClosed):
        eng.entitled("acme", "api")
