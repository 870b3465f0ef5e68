"""The bridge contract: Ledger Protocol, LedgerContext, NoopLedger and the test ledgers."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsome.bridge import Ledger, LedgerContext, NoopLedger, validate_quantity
from authsome.errors import AuthsomeError, LedgerUnavailable
from authsome.testing import DenyingLedger, FailingLedger, RecordingLedger

CTX = LedgerContext(tenant="acme", user_id="usr_1", event_id="evt_1")


def test_noop_ledger_satisfies_the_protocol() -> None:
    assert isinstance(NoopLedger(), Ledger)
    assert isinstance(RecordingLedger(), Ledger)
    assert isinstance(DenyingLedger(), Ledger)


def test_objects_without_both_methods_are_not_ledgers() -> None:
    class HalfLedger:
        def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
            pass

    assert not isinstance(HalfLedger(), Ledger)
    assert not isinstance(object(), Ledger)


def test_noop_ledger_allows_everything_and_discards_usage() -> None:
    noop = NoopLedger()
    assert noop.check_entitlement(CTX, "authsome.feature.sso") is True
    assert noop.check_entitlement(CTX, "anything.at.all") is True
    assert noop.record_usage(CTX, "authsome.users.active", 3) is None  # type: ignore[func-returns-value]


@pytest.mark.parametrize("ledger", [NoopLedger(), RecordingLedger()], ids=repr)
@pytest.mark.parametrize(
    ("quantity", "error"),
    [(0, ValueError), (-1, ValueError), (True, TypeError), (1.0, TypeError), ("1", TypeError)],
)
def test_record_usage_rejects_bad_quantities(
    ledger: Ledger, quantity: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        ledger.record_usage(CTX, "authsome.users.active", quantity)  # type: ignore[arg-type]


@pytest.mark.parametrize("ledger", [NoopLedger(), RecordingLedger()], ids=repr)
@pytest.mark.parametrize(
    ("key", "error"), [("", ValueError), ("   ", ValueError), (None, TypeError)]
)
def test_calls_reject_bad_feature_keys(ledger: Ledger, key: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        ledger.check_entitlement(CTX, key)  # type: ignore[arg-type]
    with pytest.raises(error):
        ledger.record_usage(CTX, key)  # type: ignore[arg-type]


def test_calls_reject_a_context_of_the_wrong_type() -> None:
    with pytest.raises(TypeError):
        NoopLedger().check_entitlement({"tenant": "acme"}, "k")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        NoopLedger().record_usage("acme", "k")  # type: ignore[arg-type]


def test_a_rejected_call_is_not_recorded() -> None:
    ledger = RecordingLedger()
    with pytest.raises(ValueError, match="positive"):
        ledger.record_usage(CTX, "authsome.users.active", 0)
    assert ledger.calls == []


@given(st.integers(min_value=1, max_value=2**63))
def test_every_positive_int_is_a_valid_quantity(quantity: int) -> None:
    assert validate_quantity(quantity) == quantity


@given(st.integers(max_value=0))
def test_no_non_positive_int_is_a_valid_quantity(quantity: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        validate_quantity(quantity)


class TestLedgerContext:
    def test_is_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            CTX.tenant = "other"  # type: ignore[misc]

    def test_keyword_fields(self) -> None:
        ctx = LedgerContext(tenant="t", user_id="u", org_id="o", event_id="e")
        assert (ctx.tenant, ctx.user_id, ctx.org_id, ctx.event_id) == ("t", "u", "o", "e")
        assert LedgerContext(tenant="t").user_id is None

    @pytest.mark.parametrize("tenant", ["", "x" * 257])
    def test_rejects_bad_tenants(self, tenant: str) -> None:
        with pytest.raises(ValueError, match="tenant"):
            LedgerContext(tenant=tenant)

    def test_rejects_wrong_types(self) -> None:
        with pytest.raises(TypeError):
            LedgerContext(tenant=None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            LedgerContext(tenant="t", user_id=7)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="event_id"):
            LedgerContext(tenant="t", event_id="")

    def test_pickles(self) -> None:
        assert pickle.loads(pickle.dumps(CTX)) == CTX


class TestRecordingLedger:
    def test_records_every_call_in_order_with_its_context(self) -> None:
        ledger = RecordingLedger()
        ledger.record_usage(CTX, "a.b", 2)
        assert ledger.check_entitlement(CTX, "c.d") is True
        kinds = [(c.kind, c.feature_key, c.quantity) for c in ledger.calls]
        assert kinds == [("record_usage", "a.b", 2), ("check_entitlement", "c.d", 1)]
        assert all(c.ctx is CTX for c in ledger.calls)
        assert [c.feature_key for c in ledger.usage()] == ["a.b"]
        assert [c.feature_key for c in ledger.checks("c.d")] == ["c.d"]
        ledger.clear()
        assert ledger.calls == []

    def test_calls_is_a_copy(self) -> None:
        ledger = RecordingLedger()
        ledger.calls.append(None)  # type: ignore[arg-type]
        assert ledger.calls == []


class TestDenyingLedger:
    def test_denies_only_the_given_keys(self) -> None:
        ledger = DenyingLedger("authsome.feature.sso")
        assert ledger.check_entitlement(CTX, "authsome.feature.sso") is False
        assert ledger.check_entitlement(CTX, "authsome.feature.mfa") is True
        assert [c.allowed for c in ledger.checks()] == [False, True]

    def test_denies_everything_without_keys(self) -> None:
        ledger = DenyingLedger()
        assert ledger.check_entitlement(CTX, "authsome.feature.mfa") is False
        assert ledger.check_entitlement(CTX, "x") is False


class TestFailingLedger:
    def test_raises_after_recording(self) -> None:
        ledger = FailingLedger(LedgerUnavailable("down"))
        with pytest.raises(LedgerUnavailable):
            ledger.record_usage(CTX, "a.b")
        with pytest.raises(LedgerUnavailable):
            ledger.check_entitlement(CTX, "a.b")
        assert len(ledger.calls) == 2

    def test_can_fail_only_one_kind(self) -> None:
        ledger = FailingLedger(fail=["record_usage"])
        assert ledger.check_entitlement(CTX, "a.b") is True
        with pytest.raises(ConnectionError):
            ledger.record_usage(CTX, "a.b")


def test_ledger_unavailable_is_in_the_tree() -> None:
    assert issubclass(LedgerUnavailable, AuthsomeError)
    assert issubclass(LedgerUnavailable, ConnectionError)
