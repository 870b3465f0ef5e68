"""A plan or subscription change: events metered before it keep their periods, events
metered after it (or while it is written) get the new ones; none is lost."""

from __future__ import annotations

from authsome import ledger


def _engine(
    clock: ledger.ManualClock, plan: ledger.Plan, store: ledger.LedgerStore
) -> ledger.Engine:
    eng = ledger.Engine(store=store, clock=clock, flush_interval=3600)
    eng.define_plan(plan)
    eng.subscribe("acme", plan.key)
    return eng


def test_events_metered_before_a_plan_change_keep_their_periods(
    clock: ledger.ManualClock,
) -> None:
    yearly = ledger.Plan("starter", [ledger.Feature.metered("exports", period="yearly")])
    eng = _engine(clock, yearly, ledger.MemoryStore())
    clock.advance(days=40)  # the monthly period no longer starts where the yearly one does
    eng.meter("acme", "exports", event_id="before-1")
    eng.meter("acme", "exports", event_id="before-2")
    year = eng.period("acme", "exports")
    eng.define_plan(ledger.Plan("starter", [ledger.Feature.metered("exports")]))
    month = eng.period("acme", "exports")
    assert month.start != year.start
    eng.meter("acme", "exports", event_id="after")
    eng.flush()
    assert eng.usage("acme", "exports", period=year) == 2
    assert eng.usage("acme", "exports") == 1
    eng.close()


class _MeteringWhileSaving(ledger.MemoryStore):
    """Meters one event while the subscription is written, as another thread could."""

    engine: ledger.Engine | None = None

    def put_subscription(self, sub: ledger.Subscription) -> None:
        super().put_subscription(sub)
        if self.engine is not None:
            self.engine.meter("acme", "exports", event_id="during")


def test_an_event_metered_during_a_subscription_change_gets_the_new_periods(
    clock: ledger.ManualClock, starter: ledger.Plan
) -> None:
    store = _MeteringWhileSaving()
    eng = _engine(clock, starter, store)
    clock.advance(days=10)
    store.engine = eng
    eng.subscribe("acme", "starter")  # a new anchor: now
    store.engine = None
    eng.flush()
    assert eng.usage("acme", "exports") == 1  # "during", in the period from the new anchor
    eng.close()
