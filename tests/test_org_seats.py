"""Seats follow membership: ``authsome.orgs.members`` is released when a member leaves.

Through the public API with the embedded ledger (``LedgerAdapter(ledger.Engine(...))``)
on memory, SQLite and PostgreSQL stores, and with a ledger that has only the seed's two calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from authsome import AlreadyExists, Authsome, Org, PasswordHashing, UsageEvent, User, ledger
from authsome.bridge import LedgerAdapter, LedgerContext, ReleasingLedger
from authsome.testing import DenyingLedger, FailingLedger, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.stores import AuthAndLedgerStores, auth_and_ledger_stores

SEATS = UsageEvent.ORGS_MEMBERS.value
PLAN = ledger.Plan(
    "team",
    [ledger.Feature.boolean("authsome.feature.orgs"), ledger.Feature.seat(SEATS, limit=5)],
)

Backend = AuthAndLedgerStores


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with auth_and_ledger_stores(request, tmp_path, pool_size=2) as stores:
        yield stores


@pytest.fixture
def engine(backend: Backend) -> Iterator[ledger.Engine]:
    eng = ledger.Engine(store=backend[1](), flush_interval=60)
    eng.define_plan(PLAN)
    eng.subscribe("acme", "team")
    yield eng
    eng.close()


@pytest.fixture
def auth(make_auth: AuthFactory, backend: Backend, engine: ledger.Engine) -> Authsome:
    return make_auth(store=backend[0](), ledger=LedgerAdapter(engine))


def _users(auth: Authsome, count: int) -> list[User]:
    return [auth.users.register(f"u{i}@example.com", PASSWORD, tenant="acme") for i in range(count)]


def _seats(engine: ledger.Engine) -> int:
    engine.flush()
    return engine.usage("acme", SEATS)


def _org_of(auth: Authsome, owner: User) -> Org:
    return auth.orgs.create(owner.id, "Acme Team")


def test_seats_equal_current_members_after_joins_and_leaves(
    auth: Authsome, engine: ledger.Engine
) -> None:
    owner, *others = _users(auth, 4)
    org = _org_of(auth, owner)
    for user in others:
        auth.orgs.add_member(org.id, user.id)
    assert engine.entitled("acme", SEATS).used == 4
    for user in others:
        assert auth.orgs.remove_member(org.id, user.id) is True
    assert _seats(engine) == 1 == len(auth.orgs.members(org.id))


def test_a_retried_remove_releases_once(auth: Authsome, engine: ledger.Engine) -> None:
    owner, ann, bob = _users(auth, 3)
    org = _org_of(auth, owner)
    auth.orgs.add_member(org.id, ann.id)
    auth.orgs.add_member(org.id, bob.id)
    assert auth.orgs.remove_member(org.id, ann.id) is True
    assert auth.orgs.remove_member(org.id, ann.id) is False
    assert _seats(engine) == 2


def test_leaving_and_joining_again_counts_again(
    auth: Authsome, engine: ledger.Engine, clock: FakeClock
) -> None:
    owner, ann = _users(auth, 2)
    org = _org_of(auth, owner)
    auth.orgs.add_member(org.id, ann.id)
    auth.orgs.remove_member(org.id, ann.id)
    clock.advance(seconds=1)
    auth.orgs.add_member(org.id, ann.id)
    assert _seats(engine) == 2
    auth.orgs.remove_member(org.id, ann.id)
    clock.advance(seconds=1)
    auth.orgs.add_member(org.id, ann.id)
    assert _seats(engine) == 2


def test_join_and_leave_name_the_same_membership_instance(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    recording = RecordingLedger()
    auth = make_auth(ledger=recording)
    owner, ann = _users(auth, 2)
    org = _org_of(auth, owner)
    recording.clear()
    auth.orgs.add_member(org.id, ann.id)
    auth.orgs.remove_member(org.id, ann.id)
    clock.advance(seconds=1)
    auth.orgs.add_member(org.id, ann.id)
    first, second = (c.ctx.event_id for c in recording.usage(SEATS))
    (left,) = recording.releases(SEATS)
    assert first != second
    assert left.ctx == LedgerContext(
        tenant="acme", user_id=ann.id, org_id=org.id, event_id=f"{first}:left"
    )
    assert [c.kind for c in recording.usage()] == ["record_usage", "record_usage"]


class _SeedLedger:
    """A ledger with only the seed's two calls."""

    def __init__(self) -> None:
        self.recorded: list[str] = []

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        self.recorded.append(feature_key)

    def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
        return True


def test_a_ledger_without_release_keeps_working_and_logs_once(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    seed = _SeedLedger()
    assert not isinstance(seed, ReleasingLedger)
    auth = make_auth(ledger=seed)
    owner, ann, bob = _users(auth, 3)
    org = _org_of(auth, owner)
    auth.orgs.add_member(org.id, ann.id)
    auth.orgs.add_member(org.id, bob.id)
    with caplog.at_level(logging.WARNING, logger="authsome.ledger"):
        assert auth.orgs.remove_member(org.id, ann.id) is True
        assert auth.orgs.remove_member(org.id, bob.id) is True
    warnings = [r for r in caplog.records if "release_usage" in r.getMessage()]
    assert len(warnings) == 1
    assert auth.ledger_stats.record_failures == 0
    assert [m.user_id for m in auth.orgs.members(org.id)] == [owner.id]


def test_a_failing_release_is_counted_and_never_fails_the_removal(
    make_auth: AuthFactory,
) -> None:
    failing = FailingLedger(fail=["release_usage"])
    auth = make_auth(ledger=failing)
    owner, ann = _users(auth, 2)
    org = _org_of(auth, owner)
    auth.orgs.add_member(org.id, ann.id)
    assert auth.orgs.remove_member(org.id, ann.id) is True
    assert len(failing.releases(SEATS)) == 1
    assert auth.ledger_stats.record_failures == 1
    assert auth.orgs.role_of(org.id, ann.id) is None


def test_every_shipped_ledger_implements_release(engine: ledger.Engine) -> None:
    from authsome.bridge import NoopLedger

    for made in (NoopLedger(), RecordingLedger(), DenyingLedger(), FailingLedger()):
        assert isinstance(made, ReleasingLedger)
    assert isinstance(LedgerAdapter(engine), ReleasingLedger)


def test_the_adapter_releases_one_event_id_once(engine: ledger.Engine) -> None:
    adapter = LedgerAdapter(engine)
    for n in range(3):
        adapter.record_usage(LedgerContext("acme", event_id=f"join-{n}"), SEATS)
    leave = LedgerContext("acme", event_id="join-0:left")
    adapter.release_usage(leave, SEATS)
    adapter.release_usage(leave, SEATS)  # a retry
    assert _seats(engine) == 2
    adapter.release_usage(leave, SEATS)  # a retry after the flush
    assert _seats(engine) == 2


class SeatsFollowMembership(RuleBasedStateMachine):
    """Any sequence of joins, leaves, rejoins and retried leaves: seats == members."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.engine = ledger.Engine(flush_interval=60)
        self.engine.define_plan(PLAN)
        self.engine.subscribe("acme", "team")
        self.auth = Authsome(
            ledger=LedgerAdapter(self.engine),
            password_hashing=PasswordHashing.fast_insecure_for_tests(),
            clock=self.clock,
        )
        owner, *self.users = _users(self.auth, 4)
        self.org = _org_of(self.auth, owner)
        self.members = {owner.id}

    @rule(n=st.integers(0, 2))
    def join(self, n: int) -> None:
        user = self.users[n]
        self.clock.advance(microseconds=1)
        if user.id in self.members:
            with pytest.raises(AlreadyExists):
                self.auth.orgs.add_member(self.org.id, user.id)
        else:
            self.auth.orgs.add_member(self.org.id, user.id)
            self.members.add(user.id)

    @rule(n=st.integers(0, 2), retries=st.integers(1, 2))
    def leave(self, n: int, retries: int) -> None:
        user = self.users[n]
        removed = [self.auth.orgs.remove_member(self.org.id, user.id) for _ in range(retries)]
        assert removed == [user.id in self.members] + [False] * (retries - 1)
        self.members.discard(user.id)

    @invariant()
    def seats_are_the_current_members(self) -> None:
        assert self.engine.entitled("acme", SEATS).used == len(self.members)

    def teardown(self) -> None:
        assert _seats(self.engine) == len(self.members)
        self.auth.close()
        self.engine.close()


SeatsFollowMembership.TestCase.settings = settings(max_examples=25, deadline=None)
test_seats_follow_membership = SeatsFollowMembership.TestCase
