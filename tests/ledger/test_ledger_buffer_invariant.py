"""The metering buffer's invariant (the top of ``authsome/ledger/meter.py``).

Every acknowledged event is raw, spilled, pending, in flight or stored, exactly once:
``usage`` (persisted plus pending) equals what was acknowledged at every step, and
after ``close()`` the store holds it all, or ``close()`` says how many are left.
``max_buffer`` bounds what is held in memory.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from authsome import ledger
from tests.ledger.conftest import START
from tests.ledger.ledger_doubles import FlakyStore

PLAN = ledger.Plan(
    "p",
    [
        ledger.Feature.metered("api", limit=None),
        ledger.Feature.metered("mau", limit=None, aggregation="unique"),
    ],
)
MAX_BUFFER = 12


def _period(eng: ledger.Engine, key: str) -> int:
    return int(eng.period("acme", key).start.timestamp())


class _Metering(RuleBasedStateMachine):
    """meter / flush against a store that fails at random / close, on a small buffer."""

    spool: Path | None = None

    def __init__(self) -> None:
        super().__init__()
        self.inner = ledger.MemoryStore()
        self.store = FlakyStore(self.inner)
        options: dict[str, Any] = {}
        if self.spool is not None:
            options = {"durability": "spool", "spool_path": self.spool}
        self.eng = ledger.Engine(
            store=self.store,
            clock=ledger.ManualClock(START),
            flush_interval=3600,
            max_buffer=MAX_BUFFER,
            batch_size=5,
            buffer_timeout=0.01,
            retry_backoff=(0.001, 0.002),
            **options,
        )
        self.eng.define_plan(PLAN)
        self.eng.subscribe("acme", "p")
        self.ids: dict[str, int] = {}  # acknowledged event id -> the quantity that counts
        self.anonymous = 0
        self.users: set[str] = set()
        self.closed = False

    def _expected(self) -> int:
        return sum(self.ids.values()) + self.anonymous

    @precondition(lambda self: not self.closed)
    @rule(
        event_id=st.one_of(st.none(), st.sampled_from([f"e{i}" for i in range(40)])),
        quantity=st.integers(1, 3),
    )
    def meter(self, event_id: str | None, quantity: int) -> None:
        try:
            self.eng.meter("acme", "api", quantity, event_id=event_id, wait=False)
        except ledger.BufferFull:
            assert self.spool is None  # a spooling engine spills instead
            return
        if event_id is None:
            self.anonymous += quantity
        else:
            self.ids.setdefault(event_id, quantity)

    @precondition(lambda self: not self.closed)
    @rule(user=st.sampled_from(["ann", "bob", "cat"]))
    def meter_user(self, user: str) -> None:
        try:
            self.eng.meter("acme", "mau", user_id=user, wait=False)
        except ledger.BufferFull:
            return
        self.users.add(user)

    @precondition(lambda self: not self.closed)
    @rule(failures=st.integers(0, 2))
    def flush(self, failures: int) -> None:
        self.store.failures = failures
        with contextlib.suppress(ledger.LedgerStoreError):
            self.eng.flush()
        self.store.failures = 0

    @precondition(lambda self: not self.closed)
    @rule(store_up=st.booleans())
    def close(self, store_up: bool) -> None:
        self.store.failures = 0 if store_up else 10**9
        self.closed = True
        if store_up:
            self.eng.close(timeout=5)
            assert self.eng.unflushed == 0
            return
        if self.eng.unflushed == 0:
            self.eng.close(timeout=0.01)  # nothing to write: the store is not asked
            return
        with pytest.raises(ledger.UnflushedEvents) as info:
            self.eng.close(timeout=0.01)
        assert info.value.count == self.eng.unflushed
        assert info.value.spooled is (self.spool is not None)
        assert str(info.value.count) in str(info.value)

    @rule()
    def look(self) -> None:
        if self.closed:  # a closed engine acknowledges nothing more
            with pytest.raises(ledger.LedgerClosed):
                self.eng.meter("acme", "api", event_id="late", wait=False)
        else:
            assert self.eng.entitled("acme", "api").used <= self._expected()

    @invariant()
    def every_acknowledged_event_is_counted_once(self) -> None:
        if self.closed:
            stored = self.inner.get_usage("acme", "api", _period(self.eng, "api"))
            if self.eng.unflushed == 0:
                assert stored == self._expected()
            else:
                assert stored <= self._expected()
            return
        spool = self.eng._m.spool  # nothing public tells the spilled events apart
        spilled = 0 if spool is None else spool.backlog_events
        if spilled:  # on disk only: entitlements count them once they are read back
            assert self.eng.usage("acme", "api") <= self._expected()
            assert self._expected() <= self.eng.usage("acme", "api") + 3 * spilled
            return
        assert self.eng.usage("acme", "api") == self._expected()
        assert self.eng.usage("acme", "mau") == len(self.users)

    @invariant()
    def memory_holds_at_most_max_buffer(self) -> None:
        m = self.eng._m  # nothing public tells memory from the spool's backlog
        assert m.held + len(m.raw) // 7 <= MAX_BUFFER

    def teardown(self) -> None:
        if not self.closed:
            self.store.failures = 0
            self.eng.close(timeout=5)
            assert self.inner.get_usage("acme", "api", _period(self.eng, "api")) == (
                self._expected()
            )


_SETTINGS = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@_SETTINGS
class _MemoryMetering(_Metering):
    pass


TestMemoryMetering = _MemoryMetering.TestCase


def test_with_a_spool_every_event_is_counted_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    class _SpoolMetering(_Metering):
        def __init__(self) -> None:
            type(self).spool = tmp_path_factory.mktemp("spool")
            super().__init__()

    run_state_machine_as_test(_SpoolMetering, settings=_SETTINGS)


def test_close_with_the_store_down_says_how_many_are_left_and_where(tmp_path: Path) -> None:
    for options in ({}, {"durability": "spool", "spool_path": tmp_path / "spool"}):
        store = FlakyStore(ledger.MemoryStore(), failures=10**9)
        eng = ledger.Engine(
            store=store, flush_interval=3600, retry_backoff=(0.001, 0.002), **options
        )
        eng.define_plan(PLAN)
        eng.subscribe("acme", "p")
        for i in range(3):
            eng.meter("acme", "api", event_id=f"e{i}")
        with pytest.raises(ledger.UnflushedEvents, match="3 events not stored") as info:
            eng.close(timeout=0.01)
        assert info.value.count == 3 == eng.unflushed
        spooled = "spool_path" in options
        assert info.value.spooled is spooled
        assert ("safe in the spool" in str(info.value)) is spooled
        assert isinstance(info.value, ledger.LedgerStoreError)
    store = ledger.MemoryStore()
    again = ledger.Engine(store=store, durability="spool", spool_path=tmp_path / "spool")
    again.close()
    assert sum(r.used for r in store.usage_records("acme")) == 3  # the spooled ones
