"""_billing.py, the single caller of the bridge: checks before, records after,
and the failure policies of DESIGN.md §2."""

from __future__ import annotations

import logging

import pytest

from authsome import Authsome, FeatureNotEntitled, LedgerUnavailable
from authsome._billing import Billing
from authsome.bridge import LedgerContext, NoopLedger
from authsome.features import Feature, UsageEvent
from authsome.testing import DenyingLedger, FailingLedger, RecordingLedger

CTX = LedgerContext(tenant="acme", user_id="usr_1")


@pytest.mark.parametrize("feature", list(Feature))
def test_require_passes_when_the_ledger_allows(feature: Feature) -> None:
    ledger = RecordingLedger()
    Billing(ledger).require(feature, CTX)
    assert [(c.feature_key, c.ctx) for c in ledger.checks()] == [(feature.value, CTX)]


@pytest.mark.parametrize("feature", list(Feature))
def test_require_raises_feature_not_entitled_when_denied(feature: Feature) -> None:
    with pytest.raises(FeatureNotEntitled) as info:
        Billing(DenyingLedger(feature.value)).require(feature, CTX)
    assert info.value.feature == feature.value
    assert isinstance(info.value, PermissionError)


def test_a_denied_feature_leaves_the_others_allowed() -> None:
    billing = Billing(DenyingLedger(Feature.SSO))
    billing.require(Feature.MFA, CTX)
    with pytest.raises(FeatureNotEntitled):
        billing.require(Feature.SSO, CTX)


def test_failing_check_raises_ledger_unavailable_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    billing = Billing(FailingLedger(TimeoutError("slow")))
    with (
        caplog.at_level(logging.ERROR, logger="authsome.ledger"),
        pytest.raises(LedgerUnavailable) as info,
    ):
        billing.require(Feature.SSO, CTX)
    assert isinstance(info.value.__cause__, TimeoutError)
    assert billing.stats.check_failures == 1
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_failing_check_is_allowed_and_logged_under_the_allow_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    billing = Billing(FailingLedger(TimeoutError("slow")), on_ledger_error="allow")
    with caplog.at_level(logging.WARNING, logger="authsome.ledger"):
        billing.require(Feature.SSO, CTX)  # no exception: fail-open, on purpose
    assert billing.stats.check_failures == 1
    assert any("allowed by policy" in r.getMessage() for r in caplog.records)


def test_a_ledger_denial_is_not_overridden_by_the_allow_policy() -> None:
    billing = Billing(DenyingLedger(), on_ledger_error="allow")
    with pytest.raises(FeatureNotEntitled):
        billing.require(Feature.ORGS, CTX)


@pytest.mark.parametrize("answer", [None, 1, "yes", 0])
def test_a_non_bool_answer_is_a_ledger_failure_not_a_silent_decision(answer: object) -> None:
    class OddLedger(NoopLedger):
        def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
            return answer  # type: ignore[return-value]

    with pytest.raises(LedgerUnavailable):
        Billing(OddLedger()).require(Feature.MFA, CTX)


def test_record_swallows_logs_and_counts_failures(caplog: pytest.LogCaptureFixture) -> None:
    billing = Billing(FailingLedger())
    with caplog.at_level(logging.WARNING, logger="authsome.ledger"):
        billing.record(UsageEvent.USERS_ACTIVE, LedgerContext(tenant="acme", event_id="ses_1"))
    assert billing.stats.record_failures == 1
    (record,) = [r for r in caplog.records if r.name == "authsome.ledger"]
    assert "authsome.users.active" in record.getMessage()
    assert "ses_1" in record.getMessage()


def test_record_does_not_swallow_keyboard_interrupt() -> None:
    billing = Billing(FailingLedger(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        billing.record(UsageEvent.USERS_ACTIVE, CTX)


def test_bad_policy_and_bad_ledger_are_rejected() -> None:
    with pytest.raises(ValueError, match="on_ledger_error"):
        Billing(NoopLedger(), on_ledger_error="deny")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ledger"):
        Billing(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_ledger_error"):
        Authsome(on_ledger_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Authsome(ledger="ledger")  # type: ignore[arg-type]


def test_engine_defaults_to_memory_store_and_noop_ledger() -> None:
    auth = Authsome()
    assert isinstance(auth.ledger, NoopLedger)
    assert type(auth.store).__name__ == "MemoryStore"
    assert auth.ledger_stats.record_failures == 0


def test_engine_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Authsome(None, None)  # type: ignore[call-arg]


def test_engine_rejects_a_store_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="store"):
        Authsome(store={})  # type: ignore[arg-type]
