"""LedgerAdapter: the bridge's two calls on top of any LedgerEngine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authsome import ledger
from authsome.bridge import Ledger, LedgerContext
from authsome.bridge.ledgeradapter import LedgerAdapter, LedgerEngine
from authsome.errors import LedgerUnavailable


@pytest.fixture
def eng(starter: ledger.Plan) -> ledger.Engine:
    e = ledger.Engine(flush_interval=60)
    e.define_plan(starter)
    e.subscribe("acme", "starter")
    yield e  # type: ignore[misc]
    e.close()


def test_adapter_is_a_bridge_ledger_and_engine_is_a_ledger_engine(eng: ledger.Engine) -> None:
    assert isinstance(eng, LedgerEngine)
    adapter = LedgerAdapter(eng)
    assert isinstance(adapter, Ledger)


def test_record_usage_maps_the_context(eng: ledger.Engine) -> None:
    adapter = LedgerAdapter(eng)
    ctx = LedgerContext("acme", user_id="ann", event_id="sess-1")
    adapter.record_usage(ctx, "mau")
    adapter.record_usage(ctx, "mau")  # retried: same event id
    adapter.record_usage(LedgerContext("acme", user_id="bob", event_id="sess-2"), "mau")
    adapter.record_usage(LedgerContext("acme", event_id="x"), "api", 3)
    adapter.record_usage(LedgerContext("acme", event_id="x"), "api", 3)
    assert eng.usage("acme", "mau") == 2
    assert eng.usage("acme", "api") == 3


def test_check_entitlement_returns_allowed(eng: ledger.Engine) -> None:
    adapter = LedgerAdapter(eng)
    assert adapter.check_entitlement(LedgerContext("acme"), "mfa") is True
    assert adapter.check_entitlement(LedgerContext("acme"), "sso") is False
    assert adapter.check_entitlement(LedgerContext("nobody"), "mfa") is False


def test_bad_arguments_are_the_callers_error(eng: ledger.Engine) -> None:
    adapter = LedgerAdapter(eng)
    with pytest.raises(TypeError):
        adapter.record_usage("acme", "api")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quantity"):
        adapter.record_usage(LedgerContext("acme"), "api", 0)
    with pytest.raises(TypeError):
        adapter.record_usage(LedgerContext("acme"), "api", True)
    with pytest.raises(ValueError, match="feature_key"):
        adapter.check_entitlement(LedgerContext("acme"), " ")
    with pytest.raises(TypeError):
        LedgerAdapter(object())  # type: ignore[arg-type]


def test_engine_argument_errors_are_the_callers_not_unavailability(eng: ledger.Engine) -> None:
    adapter = LedgerAdapter(eng)
    with pytest.raises(ValueError, match="user_id is required"):  # unique: needs user_id
        adapter.record_usage(LedgerContext("acme"), "mau")
    with pytest.raises(ledger.InvalidArgument):
        adapter.record_usage(LedgerContext("acme"), "api", 2**60)  # over MAX_QUANTITY
    assert eng.unflushed == 0


def test_engine_failures_become_ledger_unavailable(eng: ledger.Engine) -> None:
    adapter = LedgerAdapter(eng)
    eng.close()
    with pytest.raises(LedgerUnavailable) as closed:
        adapter.check_entitlement(LedgerContext("acme"), "mfa")
    assert isinstance(closed.value.__cause__, ledger.LedgerClosed)
    with pytest.raises(LedgerUnavailable) as info:
        adapter.record_usage(LedgerContext("acme", event_id="secret-ish"), "api")
    assert isinstance(info.value.__cause__, ledger.LedgerClosed)
    assert "closed" not in str(info.value)  # generic message, the cause is chained


def test_buffer_full_becomes_ledger_unavailable(starter: ledger.Plan) -> None:
    from ledger_doubles import FlakyStore

    store = FlakyStore(ledger.MemoryStore(), failures=10**9)
    e = ledger.Engine(store=store, flush_interval=60, max_buffer=1, buffer_timeout=0.01)  # type: ignore[arg-type]
    e.define_plan(starter)
    e.subscribe("acme", "starter")
    adapter = LedgerAdapter(e)
    adapter.record_usage(LedgerContext("acme"), "api")
    with pytest.raises(LedgerUnavailable) as info:
        adapter.record_usage(LedgerContext("acme"), "api")
    assert isinstance(info.value.__cause__, ledger.BufferFull)
    store.failures = 0
    e.close()


@dataclass
class _Answer:
    allowed: object


class _Foreign:
    """Someone else's engine: only the two methods the Protocol asks for."""

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.metered: list[tuple[str, str, int, str | None, str | None]] = []

    def meter(
        self,
        tenant: str,
        key: str,
        quantity: int = 1,
        *,
        user_id: str | None = None,
        event_id: str | None = None,
    ) -> None:
        self.metered.append((tenant, key, quantity, user_id, event_id))

    def entitled(self, tenant: str, key: str) -> _Answer:
        return _Answer(self.answer)


def test_any_engine_satisfying_the_protocol_works() -> None:
    foreign = _Foreign(True)
    adapter = LedgerAdapter(foreign)
    adapter.record_usage(LedgerContext("t", user_id="u", org_id="o", event_id="e"), "k", 2)
    assert foreign.metered == [("t", "k", 2, "u", "e")]
    assert adapter.check_entitlement(LedgerContext("t"), "k") is True


def test_a_non_bool_answer_is_not_silently_trusted() -> None:
    adapter = LedgerAdapter(_Foreign("yes"))
    with pytest.raises(LedgerUnavailable):
        adapter.check_entitlement(LedgerContext("t"), "k")


def test_the_fast_path_checks_like_meter_after_the_first_call(eng: ledger.Engine) -> None:
    """The adapter's entry into the embedded engine remembers validated strings; what
    it was never shown is still refused like ``meter`` refuses it, every time."""
    adapter = LedgerAdapter(eng)
    for _ in range(2):  # the second round runs on remembered tenant, key and user
        adapter.record_usage(LedgerContext("acme", user_id="ann", event_id="e1"), "api")
        for bad in ("a\x00b", " ", "\ud800"):
            with pytest.raises(ledger.InvalidArgument):
                adapter.record_usage(LedgerContext("acme", user_id="ann", event_id=bad), "api")
            with pytest.raises(ledger.InvalidArgument):
                adapter.record_usage(LedgerContext(bad, user_id="ann", event_id="e2"), "api")
            with pytest.raises(ledger.InvalidArgument):
                adapter.record_usage(LedgerContext("acme", user_id=bad, event_id="e2"), "api")
        with pytest.raises(ledger.InvalidArgument, match="user_id is required"):
            adapter.record_usage(LedgerContext("acme", event_id="e3"), "mau")
        with pytest.raises(ledger.InvalidArgument):
            adapter.record_usage(LedgerContext("acme", event_id="e4"), "api", 2**60)
    adapter.record_usage(LedgerContext("acme", event_id="e5"), "api", 2)
    assert eng.usage("acme", "api") == 3  # e1 once, e5 twice
    eng.close()
    with pytest.raises(LedgerUnavailable):
        adapter.record_usage(LedgerContext("acme", user_id="ann", event_id="e6"), "api")


def test_the_fast_path_spools_like_meter(tmp_path: Path, starter: ledger.Plan) -> None:
    spool = tmp_path / "spool"
    e = ledger.Engine(flush_interval=60, durability="spool", spool_path=spool)
    e.define_plan(starter)
    e.subscribe("acme", "starter")
    adapter = LedgerAdapter(e)
    for _ in range(2):
        adapter.record_usage(LedgerContext("acme", user_id="ann"), "api")
    assert b"api" in b"".join(p.read_bytes() for p in spool.glob("segment-*.log"))
    assert e.usage("acme", "api") == 2
    e.close()


class _AuditingEngine(ledger.Engine):
    calls = 0

    def meter(self, *args: Any, **kwargs: Any) -> None:
        type(self).calls += 1
        super().meter(*args, **kwargs)


def test_an_engine_subclass_overriding_meter_sees_every_event() -> None:
    eng = _AuditingEngine(flush_interval=3600)
    eng.define_plan(ledger.Plan("p", [ledger.Feature.metered("api")]))
    eng.subscribe("acme", "p")
    adapter = LedgerAdapter(eng)
    for i in range(3):
        adapter.record_usage(LedgerContext("acme", event_id=f"e{i}"), "api")
    eng.close()
    assert _AuditingEngine.calls == 3


def test_recording_through_the_adapter_invalidates_a_cached_entitlement(
    eng: ledger.Engine,
) -> None:
    adapter = LedgerAdapter(eng)
    for i in range(10):
        assert adapter.check_entitlement(LedgerContext("acme"), "api")  # cached between calls
        adapter.record_usage(LedgerContext("acme", event_id=f"e{i}"), "api")
    assert not adapter.check_entitlement(LedgerContext("acme"), "api")  # limit 10
    assert eng.entitled("acme", "api").used == 10
