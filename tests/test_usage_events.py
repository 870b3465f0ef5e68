"""Rows of DESIGN.md's usage table covered by this slice: users.created,
sessions.created, users.active — after commit, once, with the right context."""

from __future__ import annotations

import logging

import pytest

from authsome import AlreadyExists, Authsome, InvalidCredentials, RateLimited, UsageEvent, _billing
from authsome.bridge import LedgerContext
from authsome.stores import MemoryStore, Store
from authsome.testing import FailingLedger, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory


def _usage(ledger: RecordingLedger) -> list[tuple[str, LedgerContext]]:
    return [(c.feature_key, c.ctx) for c in ledger.usage()]


def test_register_records_users_created_once_with_tenant_user_and_event_id(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    user = auth.users.register("ann@example.com", PASSWORD, tenant="acme")
    assert _usage(ledger) == [
        (
            UsageEvent.USERS_CREATED,
            LedgerContext(tenant="acme", user_id=user.id, event_id=user.id),
        )
    ]
    assert ledger.usage()[0].quantity == 1


def test_duplicate_registration_records_nothing(auth: Authsome, ledger: RecordingLedger) -> None:
    auth.users.register("ann@example.com", PASSWORD)
    ledger.clear()
    with pytest.raises(AlreadyExists):
        auth.users.register("ANN@example.com", "another good passphrase")
    assert ledger.calls == []


def test_sign_in_records_sessions_created_and_users_active_once(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    user = auth.users.register("ann@example.com", PASSWORD, tenant="acme")
    ledger.clear()
    result = auth.sign_in("ann@example.com", PASSWORD, tenant="acme")
    assert result.tokens is not None
    session_id = result.tokens.session.id
    expected_ctx = LedgerContext(tenant="acme", user_id=user.id, event_id=session_id)
    assert _usage(ledger) == [
        (UsageEvent.SESSIONS_CREATED, expected_ctx),
        (UsageEvent.USERS_ACTIVE, expected_ctx),
    ]


def test_each_sign_in_is_its_own_event(auth: Authsome, ledger: RecordingLedger) -> None:
    auth.users.register("ann@example.com", PASSWORD)
    auth.sign_in("ann@example.com", PASSWORD)
    auth.sign_in("ann@example.com", PASSWORD)
    event_ids = [c.ctx.event_id for c in ledger.usage(UsageEvent.USERS_ACTIVE)]
    assert len(event_ids) == 2
    assert len(set(event_ids)) == 2


def test_event_ids_of_sign_ins_and_registrations_grow_with_time(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    # A ledger keeps every event id in an index: ids that grow with time are appended
    # at its end instead of inserted at random, so metering cost stays flat with history.
    for n in range(20):
        auth.users.register(f"u{n}@example.com", PASSWORD)
        auth.sign_in(f"u{n}@example.com", PASSWORD, ip="203.0.113.7")
    for event in (UsageEvent.USERS_CREATED, UsageEvent.SESSIONS_CREATED):
        ids = [c.ctx.event_id for c in ledger.usage(event)]
        assert len(ids) == 20
        assert ids == sorted(ids)  # type: ignore[type-var]


def test_tenants_are_attributed_separately(auth: Authsome, ledger: RecordingLedger) -> None:
    a = auth.users.register("ann@example.com", PASSWORD, tenant="t1")
    b = auth.users.register("ann@example.com", PASSWORD, tenant="t2")
    auth.sign_in("ann@example.com", PASSWORD, tenant="t2")
    active = ledger.usage(UsageEvent.USERS_ACTIVE)
    assert [(c.ctx.tenant, c.ctx.user_id) for c in active] == [("t2", b.id)]
    created = ledger.usage(UsageEvent.USERS_CREATED)
    assert [(c.ctx.tenant, c.ctx.user_id) for c in created] == [("t1", a.id), ("t2", b.id)]


def test_failed_sign_ins_record_nothing(make_auth: AuthFactory, ledger: RecordingLedger) -> None:
    auth = make_auth(ledger=ledger)
    auth.users.register("ann@example.com", PASSWORD)
    ledger.clear()
    with pytest.raises(InvalidCredentials):
        auth.sign_in("ann@example.com", "wrong password here")
    with pytest.raises(InvalidCredentials):
        auth.sign_in("nobody@example.com", PASSWORD)
    for _ in range(10):
        with pytest.raises((InvalidCredentials, RateLimited)):
            auth.sign_in("ann@example.com", "wrong password here", ip="203.0.113.9")
    with pytest.raises(RateLimited):
        auth.sign_in("ann@example.com", PASSWORD, ip="203.0.113.9")
    assert ledger.calls == []


def test_refresh_rotation_records_only_the_active_user_once_a_day(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    user = auth.users.register("ann@example.com", PASSWORD)
    tokens = auth.sign_in("ann@example.com", PASSWORD).tokens
    assert tokens is not None
    ledger.clear()
    for _ in range(3):
        tokens = auth.sessions.refresh(tokens.refresh_token)
    auth.sessions.validate(tokens.access_token)
    calls = ledger.calls
    assert {(c.kind, c.feature_key) for c in calls} == {("record_usage", "authsome.users.active")}
    assert len({c.ctx.event_id for c in calls}) == 1  # one event a day: a sum is not inflated
    assert calls[0].ctx.user_id == user.id


class _CommitCheckingLedger(RecordingLedger):
    """Asserts, at the moment usage is recorded, that the data is already stored."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.seen_committed: list[bool] = []

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        assert ctx.user_id is not None and ctx.event_id is not None
        if feature_key == UsageEvent.USERS_CREATED:
            committed = self.store.get_user(ctx.user_id) is not None
        else:
            committed = self.store.get_session(ctx.event_id) is not None
        self.seen_committed.append(committed)
        super().record_usage(ctx, feature_key, quantity)


def test_usage_is_recorded_only_after_the_data_is_committed(make_auth: AuthFactory) -> None:
    store = MemoryStore()
    ledger = _CommitCheckingLedger(store)
    auth = make_auth(store=store, ledger=ledger)
    auth.users.register("ann@example.com", PASSWORD)
    auth.sign_in("ann@example.com", PASSWORD)
    assert ledger.seen_committed == [True, True, True]


def test_a_raising_ledger_never_breaks_register_or_sign_in(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = FailingLedger(RuntimeError("billing backend exploded"))
    auth = make_auth(ledger=ledger)
    with caplog.at_level(logging.DEBUG, logger="authsome.ledger"):
        auth.users.register("ann@example.com", PASSWORD, tenant="acme")
        result = auth.sign_in("ann@example.com", PASSWORD, tenant="acme")
    assert result.tokens is not None
    assert auth.sessions.validate(result.tokens.access_token).tenant == "acme"
    assert auth.ledger_stats.record_failures == 3
    records = [r for r in caplog.records if r.name == "authsome.ledger"]
    messages = [r.getMessage() for r in records]
    assert len(messages) == 3
    assert all("usage not recorded" in m and "RuntimeError" in m for m in messages)
    assert all(PASSWORD not in m and result.tokens.access_token not in m for m in messages)
    assert [r.levelno for r in records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_an_outage_of_the_ledger_warns_once_per_interval_with_a_count(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ledger that fails every record must not turn each request into a warning: the
    # first failure of an interval is warned, with how many failed since the last one.
    auth = make_auth(ledger=FailingLedger(RuntimeError("down")))
    key = auth.api_keys.create(auth.users.register("ann@example.com", PASSWORD).id, "ci")
    with caplog.at_level(logging.WARNING, logger="authsome.ledger"):
        for _ in range(50):
            auth.api_keys.validate(key.secret)
        monkeypatch.setattr(_billing, "RECORD_WARNING_INTERVAL", 0.0)
        auth.api_keys.validate(key.secret)
        auth.api_keys.validate(key.secret)
    warnings = [r.getMessage() for r in caplog.records if r.name == "authsome.ledger"]
    assert auth.ledger_stats.record_failures == 53  # users.created and 52 validations
    assert len(warnings) == 3
    assert "(0 more since the last warning)" in warnings[0]
    assert "(50 more since the last warning)" in warnings[1]
    assert "(0 more since the last warning)" in warnings[2]
