"""Opt-in hard limits: ``Authsome(enforce_limits=[...])`` makes a plan's numbers hold.

Through the public API with the embedded ledger (``LedgerAdapter(ledger.Engine(...))``)
on memory, SQLite and PostgreSQL stores (auth store and ledger store alike), and with
the shipped test ledgers for the failure policies.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from authsome import (
    AlreadyExists,
    Authsome,
    FeatureNotEntitled,
    LedgerUnavailable,
    PasswordHashing,
    UsageEvent,
    User,
    ValidationError,
    ledger,
)
from authsome.bridge import ConsumingLedger, LedgerAdapter, LedgerContext, NoopLedger
from authsome.mail import MailSettings
from authsome.sessions import SessionPolicy
from authsome.testing import DenyingLedger, FailingLedger, Outbox, RecordingLedger
from tests.conftest import LINK_BASE, PASSWORD, AuthFactory, FakeClock
from tests.support.race import race
from tests.support.stores import AuthAndLedgerStores, auth_and_ledger_stores

SEATS = UsageEvent.ORGS_MEMBERS.value
MAU = UsageEvent.USERS_ACTIVE.value
VALIDATED = UsageEvent.APIKEYS_VALIDATED.value
SEAT_LIMIT, MAU_LIMIT, VALIDATION_LIMIT = 5, 3, 4
PLAN = ledger.Plan(
    "starter",
    [
        ledger.Feature.boolean("authsome.feature.orgs"),
        ledger.Feature.seat(SEATS, limit=SEAT_LIMIT),
        ledger.Feature.metered(MAU, limit=MAU_LIMIT, aggregation="unique"),
        ledger.Feature.metered(VALIDATED, limit=VALIDATION_LIMIT),
    ],
)
LONG = SessionPolicy(ttl=timedelta(days=400), idle_timeout=None)  # periods pass, sessions stay
ALL = [UsageEvent.ORGS_MEMBERS, UsageEvent.USERS_ACTIVE, UsageEvent.APIKEYS_VALIDATED]

Backend = AuthAndLedgerStores


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with auth_and_ledger_stores(request, tmp_path, pool_size=8) as stores:
        yield stores


@pytest.fixture
def engine(backend: Backend, clock: FakeClock) -> Iterator[ledger.Engine]:
    eng = ledger.Engine(store=backend[1](), flush_interval=60, clock=clock)
    eng.define_plan(PLAN)
    eng.subscribe("acme", "starter")
    yield eng
    eng.close()


@pytest.fixture
def auth(make_auth: AuthFactory, backend: Backend, engine: ledger.Engine) -> Authsome:
    return make_auth(
        store=backend[0](), ledger=LedgerAdapter(engine), enforce_limits=ALL, sessions=LONG
    )


def _users(auth: Authsome, count: int, first: int = 0) -> list[User]:
    return [
        auth.users.register(f"u{i}@example.com", PASSWORD, tenant="acme")
        for i in range(first, first + count)
    ]


def _used(engine: ledger.Engine, key: str) -> int:
    engine.flush()
    return engine.usage("acme", key)


# --- construction -------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys",
    [["authsome.users.created"], [UsageEvent.SESSIONS_CREATED], ["nonsense"], [3], SEATS],
    ids=repr,
)
def test_only_the_three_limit_keys_can_be_enforced(make_auth: AuthFactory, keys: object) -> None:
    with pytest.raises(ValidationError, match="enforce_limits"):
        make_auth(ledger=RecordingLedger(), enforce_limits=keys)


class _SeedLedger:
    """A ledger with only the seed's two calls."""

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        pass

    def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
        return True


class _EngineWithoutConsume:
    def meter(self, tenant: str, key: str, quantity: int = 1, **ids: str | None) -> None:
        pass

    def entitled(self, tenant: str, key: str) -> ledger.Entitlement:
        raise NotImplementedError


@pytest.mark.parametrize(
    "made", [_SeedLedger, lambda: LedgerAdapter(_EngineWithoutConsume())], ids=["seed", "adapter"]
)
def test_enforcing_needs_a_ledger_that_consumes(
    make_auth: AuthFactory, made: Callable[[], object]
) -> None:
    with pytest.raises(ValidationError, match="consume_usage"):
        make_auth(ledger=made(), enforce_limits=[UsageEvent.USERS_ACTIVE])
    make_auth(ledger=made())  # not enforcing: the seed's two calls are enough


def test_every_shipped_ledger_consumes(engine: ledger.Engine) -> None:
    for made in (NoopLedger(), RecordingLedger(), DenyingLedger(), FailingLedger()):
        assert isinstance(made, ConsumingLedger)
    assert isinstance(LedgerAdapter(engine), ConsumingLedger)
    assert not isinstance(_SeedLedger(), ConsumingLedger)


def test_by_default_limits_are_only_reported(
    make_auth: AuthFactory, backend: Backend, engine: ledger.Engine
) -> None:
    auth = make_auth(store=backend[0](), ledger=LedgerAdapter(engine))
    owner, *others = _users(auth, SEAT_LIMIT + 2)
    org = auth.orgs.create(owner.id, "Acme")
    for user in others:
        auth.orgs.add_member(org.id, user.id)
    assert _used(engine, SEATS) == SEAT_LIMIT + 2
    assert not engine.entitled("acme", SEATS).allowed


# --- seats --------------------------------------------------------------------------


def test_a_member_beyond_the_seat_limit_is_refused_and_nothing_is_written(
    auth: Authsome, engine: ledger.Engine
) -> None:
    owner, *others = _users(auth, SEAT_LIMIT + 1)
    org = auth.orgs.create(owner.id, "Acme")
    for user in others[:-1]:
        auth.orgs.add_member(org.id, user.id)
    with pytest.raises(FeatureNotEntitled) as refused:
        auth.orgs.add_member(org.id, others[-1].id)
    assert refused.value.feature == SEATS
    assert auth.orgs.role_of(org.id, others[-1].id) is None
    assert len(auth.orgs.members(org.id)) == SEAT_LIMIT == _used(engine, SEATS)
    auth.orgs.remove_member(org.id, others[0].id)  # a seat frees up: the next one joins
    auth.orgs.add_member(org.id, others[-1].id)
    assert len(auth.orgs.members(org.id)) == SEAT_LIMIT == _used(engine, SEATS)


def test_a_failed_write_gives_its_seat_back(auth: Authsome, engine: ledger.Engine) -> None:
    owner, ann = _users(auth, 2)
    org = auth.orgs.create(owner.id, "Acme")
    auth.orgs.add_member(org.id, ann.id)
    for _ in range(3):
        with pytest.raises(AlreadyExists):
            auth.orgs.add_member(org.id, ann.id)
    with pytest.raises(AlreadyExists):  # a taken slug: the owner's seat is given back too
        auth.orgs.create(ann.id, "Acme")
    assert _used(engine, SEATS) == 2 == len(auth.orgs.members(org.id))


def test_eight_threads_joining_at_once_fill_exactly_the_seat_limit(
    auth: Authsome, engine: ledger.Engine
) -> None:
    owner, *others = _users(auth, 9)
    org = auth.orgs.create(owner.id, "Acme")

    def join(user: User) -> str:
        try:
            auth.orgs.add_member(org.id, user.id)
        except FeatureNotEntitled as exc:
            return exc.feature
        return "joined"

    outcomes = race(join, others)
    assert sorted(outcomes) == sorted(["joined"] * (SEAT_LIMIT - 1) + [SEATS] * 4)
    assert len(auth.orgs.members(org.id)) == SEAT_LIMIT == _used(engine, SEATS)


class EnforcedSeatsFollowMembership(RuleBasedStateMachine):
    """Joins, leaves, rejoins and retries under a hard seat limit: a join is admitted
    exactly when a seat is free, and seats == members after every step."""

    LIMIT = 3

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.engine = ledger.Engine(store=self.ledger_store(), flush_interval=60)
        self.engine.define_plan(
            ledger.Plan(
                "small",
                [
                    ledger.Feature.boolean("authsome.feature.orgs"),
                    ledger.Feature.seat(SEATS, limit=self.LIMIT),
                ],
            )
        )
        self.engine.subscribe("acme", "small")
        self.auth = Authsome(
            ledger=LedgerAdapter(self.engine),
            password_hashing=PasswordHashing.fast_insecure_for_tests(),
            clock=self.clock,
            enforce_limits=[UsageEvent.ORGS_MEMBERS],
        )
        owner, *self.users = _users(self.auth, 5)
        self.org = self.auth.orgs.create(owner.id, "Acme")
        self.members = {owner.id}

    def ledger_store(self) -> ledger.LedgerStore:
        return ledger.MemoryLedgerStore()

    @rule(n=st.integers(0, 3), retries=st.integers(1, 2))
    def join(self, n: int, retries: int) -> None:
        user = self.users[n]
        self.clock.advance(microseconds=1)
        for _ in range(retries):
            if user.id in self.members:
                with pytest.raises(AlreadyExists):
                    self.auth.orgs.add_member(self.org.id, user.id)
            elif len(self.members) >= self.LIMIT:
                with pytest.raises(FeatureNotEntitled):
                    self.auth.orgs.add_member(self.org.id, user.id)
            else:
                self.auth.orgs.add_member(self.org.id, user.id)
                self.members.add(user.id)

    @rule(n=st.integers(0, 3), retries=st.integers(1, 2))
    def leave(self, n: int, retries: int) -> None:
        user = self.users[n]
        removed = [self.auth.orgs.remove_member(self.org.id, user.id) for _ in range(retries)]
        assert removed == [user.id in self.members] + [False] * (retries - 1)
        self.members.discard(user.id)

    @rule()
    def flush(self) -> None:
        self.engine.flush()

    @invariant()
    def seats_are_the_current_members(self) -> None:
        assert self.engine.entitled("acme", SEATS).used == len(self.members)
        assert {m.user_id for m in self.auth.orgs.members(self.org.id)} == self.members

    def teardown(self) -> None:
        self.auth.close()
        self.engine.close()


EnforcedSeatsFollowMembership.TestCase.settings = settings(max_examples=25, deadline=None)
test_enforced_seats_follow_membership = EnforcedSeatsFollowMembership.TestCase


class EnforcedSeatsFollowMembershipOnSQLite(EnforcedSeatsFollowMembership):
    """The same, with the ledger's counts in a SQLite file (consume is a conditional
    write there, releases are buffered until a flush)."""

    def ledger_store(self) -> ledger.LedgerStore:
        self.tmp = tempfile.TemporaryDirectory()
        return ledger.SQLiteLedgerStore(str(Path(self.tmp.name) / "ledger.db"))

    def teardown(self) -> None:
        super().teardown()
        self.engine.store.close()
        self.tmp.cleanup()


EnforcedSeatsFollowMembershipOnSQLite.TestCase.settings = settings(max_examples=10, deadline=None)
test_enforced_seats_follow_membership_on_sqlite = EnforcedSeatsFollowMembershipOnSQLite.TestCase


# --- monthly active users ---------------------------------------------------------------


def _sign_in_outcome(auth: Authsome, user: User) -> str:
    try:
        signed = auth.sign_in(user.email, PASSWORD, tenant="acme")
    except FeatureNotEntitled as exc:
        return exc.feature
    assert signed.tokens is not None
    return "signed in"


def test_a_new_user_beyond_the_active_limit_is_refused_without_a_session(
    auth: Authsome, engine: ledger.Engine
) -> None:
    users = _users(auth, MAU_LIMIT + 1)
    for user in users[:-1]:
        assert _sign_in_outcome(auth, user) == "signed in"
    assert _sign_in_outcome(auth, users[-1]) == MAU
    assert auth.sessions.revoke_all(users[-1].id) == 0  # no session was written
    for user in users[:-1]:  # already counted: they keep signing in
        assert _sign_in_outcome(auth, user) == "signed in"
    assert _used(engine, MAU) == MAU_LIMIT


def test_eight_threads_signing_in_at_once_admit_exactly_the_active_limit(
    auth: Authsome, engine: ledger.Engine
) -> None:
    active = _users(auth, 1)
    assert _sign_in_outcome(auth, active[0]) == "signed in"
    newcomers = _users(auth, 6, first=1)
    # Eight at once: six users never seen, and the active user twice.
    outcomes = race(lambda user: (user, _sign_in_outcome(auth, user)), [*newcomers, *active * 2])
    assert [o for u, o in outcomes if u == active[0]] == ["signed in"] * 2
    new = [o for u, o in outcomes if u != active[0]]
    assert sorted(new) == sorted(["signed in"] * (MAU_LIMIT - 1) + [MAU] * 4)
    live = sum(auth.sessions.revoke_all(user.id) for user in newcomers)
    assert live == MAU_LIMIT - 1
    assert _used(engine, MAU) == MAU_LIMIT


def test_refreshes_in_a_new_period_count_the_user_once(
    make_auth: AuthFactory, backend: Backend, engine: ledger.Engine, clock: FakeClock
) -> None:
    auth = make_auth(store=backend[0](), ledger=LedgerAdapter(engine), sessions=LONG)
    ann, bob = _users(auth, 2)
    tokens = auth.sign_in(ann.email, PASSWORD, tenant="acme").tokens
    auth.sign_in(bob.email, PASSWORD, tenant="acme")
    assert tokens is not None
    first = engine.period("acme", MAU)
    assert _used(engine, MAU) == 2
    assert first.end is not None
    clock.now = first.end  # the next period begins; ann stays signed in by refreshing
    for _ in range(3):
        tokens = auth.sessions.refresh(tokens.refresh_token, tenant="acme")
        clock.advance(hours=9)  # across a day too
        tokens = auth.sessions.refresh(tokens.refresh_token, tenant="acme")
    assert _used(engine, MAU) == 1
    assert engine.usage("acme", MAU, period=first) == 2


@pytest.mark.parametrize("enforced", [False, True], ids=["reported", "enforced"])
def test_a_period_starting_mid_day_counts_a_refresh_on_each_side(
    make_auth: AuthFactory,
    backend: Backend,
    engine: ledger.Engine,
    clock: FakeClock,
    enforced: bool,
) -> None:
    limits = [UsageEvent.USERS_ACTIVE] if enforced else []
    auth = make_auth(
        store=backend[0](), ledger=LedgerAdapter(engine), sessions=LONG, enforce_limits=limits
    )
    (ann,) = _users(auth, 1)
    tokens = auth.sign_in(ann.email, PASSWORD, tenant="acme").tokens
    assert tokens is not None
    first = engine.period("acme", MAU)
    assert first.end is not None
    second = engine.period("acme", MAU, at=first.end)
    assert second.end is not None and second.end.hour == 12  # the anchor's time of day
    clock.now = second.end - timedelta(hours=2)  # ann's first activity of this period
    tokens = auth.sessions.refresh(tokens.refresh_token)
    clock.now = second.end + timedelta(hours=2)  # the same UTC day, the next period
    auth.sessions.refresh(tokens.refresh_token)
    assert _used(engine, MAU) == 1
    assert engine.usage("acme", MAU, period=second) == 1


def test_refreshes_do_not_inflate_a_sum_of_active_users(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    eng = ledger.Engine(flush_interval=60, clock=clock)
    try:
        eng.define_plan(ledger.Plan("sum", [ledger.Feature.metered(MAU, limit=None)]))
        eng.subscribe("acme", "sum")
        auth = make_auth(ledger=LedgerAdapter(eng))
        (ann,) = _users(auth, 1)
        tokens = auth.sign_in(ann.email, PASSWORD, tenant="acme").tokens
        assert tokens is not None
        for _ in range(5):
            tokens = auth.sessions.refresh(tokens.refresh_token)
        eng.flush()
        assert eng.usage("acme", MAU) == 2  # the sign-in, and one day of activity
    finally:
        eng.close()


def test_an_uncounted_user_refreshing_beyond_the_limit_is_signed_out(
    auth: Authsome, engine: ledger.Engine, clock: FakeClock
) -> None:
    users = _users(auth, MAU_LIMIT + 1)
    tokens = [auth.sign_in(u.email, PASSWORD, tenant="acme").tokens for u in users[:MAU_LIMIT]]
    period = engine.period("acme", MAU)
    assert period.end is not None
    clock.now = period.end  # a new period: nobody is counted yet
    late = tokens.pop(0)
    assert late is not None
    for user in users[1:]:  # these fill the new period
        assert _sign_in_outcome(auth, user) == "signed in"
    with pytest.raises(FeatureNotEntitled):
        auth.sessions.refresh(late.refresh_token, tenant="acme")
    assert auth.sessions.revoke_all(users[0].id) == 0  # signed out
    for kept in tokens:  # counted in this period: refreshing goes on
        assert kept is not None
        auth.sessions.refresh(kept.refresh_token, tenant="acme")
    assert _used(engine, MAU) == MAU_LIMIT


# --- API key validations -----------------------------------------------------------------


def test_a_validation_beyond_the_period_limit_is_refused(
    auth: Authsome, engine: ledger.Engine, clock: FakeClock
) -> None:
    (ann,) = _users(auth, 1)
    secret = auth.api_keys.create(ann.id, "ci").secret

    def validate(_: int) -> str:
        try:
            auth.api_keys.validate(secret, tenant="acme")
        except FeatureNotEntitled as exc:
            return exc.feature
        return "valid"

    outcomes = race(validate, range(8))
    assert sorted(outcomes) == sorted(["valid"] * VALIDATION_LIMIT + [VALIDATED] * 4)
    assert _used(engine, VALIDATED) == VALIDATION_LIMIT
    period = engine.period("acme", VALIDATED)
    assert period.end is not None
    clock.now = period.end
    assert validate(0) == "valid"


# --- ledger failures and the bridge calls ---------------------------------------------------


def test_a_failing_limit_check_refuses_under_raise_and_writes_nothing(
    make_auth: AuthFactory,
) -> None:
    failing = FailingLedger(fail=["consume_usage"])
    auth = make_auth(ledger=failing, enforce_limits=ALL)
    (ann,) = _users(auth, 1)
    with pytest.raises(LedgerUnavailable):
        auth.sign_in(ann.email, PASSWORD, tenant="acme")
    assert auth.sessions.revoke_all(ann.id) == 0
    with pytest.raises(LedgerUnavailable):
        auth.orgs.create(ann.id, "Acme")
    assert auth.orgs.orgs_of(ann.id) == []
    assert auth.ledger_stats.check_failures == 2
    assert {c.feature_key for c in failing.usage()} == {UsageEvent.USERS_CREATED.value}


def test_a_failing_limit_check_allowed_by_policy_records_after_commit(
    make_auth: AuthFactory,
) -> None:
    failing = FailingLedger(fail=["consume_usage"])
    auth = make_auth(ledger=failing, enforce_limits=ALL, on_ledger_error="allow")
    ann, bob = _users(auth, 2)
    signed = auth.sign_in(ann.email, PASSWORD, tenant="acme")
    assert signed.tokens is not None
    org = auth.orgs.create(ann.id, "Acme")
    auth.orgs.add_member(org.id, bob.id)
    secret = auth.api_keys.create(ann.id, "ci").secret
    auth.api_keys.validate(secret)
    recorded = {(c.feature_key, c.ctx.event_id) for c in failing.usage()}
    consumed = {(c.feature_key, c.ctx.event_id) for c in failing.consumes()}
    assert consumed <= recorded  # each use let through is recorded, under the same id
    assert {key for key, _ in consumed} == {MAU, SEATS, VALIDATED}
    assert auth.ledger_stats.check_failures == 4


@pytest.mark.parametrize("policy", ["raise", "allow"])
def test_a_failing_check_at_refresh_never_fails_the_refresh(
    make_auth: AuthFactory, policy: str
) -> None:
    failing = FailingLedger(fail=["consume_usage"])
    auth = make_auth(ledger=failing, on_ledger_error="allow")
    (ann,) = _users(auth, 1)
    tokens = auth.sign_in(ann.email, PASSWORD, tenant="acme").tokens
    assert tokens is not None
    auth = make_auth(ledger=failing, enforce_limits=ALL, on_ledger_error=policy, store=auth.store)
    failing.clear()
    rotated = auth.sessions.refresh(tokens.refresh_token, tenant="acme")
    assert auth.sessions.validate(rotated.access_token).user_id == ann.id
    (consumed,) = failing.consumes(MAU)
    (recorded,) = failing.usage(MAU)  # the activity, recorded instead
    assert recorded.ctx == consumed.ctx


def test_an_enforced_use_is_consumed_once_and_not_recorded_again(
    make_auth: AuthFactory,
) -> None:
    recording = RecordingLedger()
    auth = make_auth(ledger=recording, enforce_limits=ALL)
    ann, bob = _users(auth, 2)
    signed = auth.sign_in(ann.email, PASSWORD, tenant="acme")
    assert signed.tokens is not None
    org = auth.orgs.create(ann.id, "Acme")
    auth.orgs.add_member(org.id, bob.id)
    auth.api_keys.validate(auth.api_keys.create(ann.id, "ci").secret)
    consumed = recording.consumes()
    assert [c.feature_key for c in consumed] == [MAU, SEATS, SEATS, VALIDATED]
    assert consumed[0].ctx.event_id == signed.tokens.session.id
    assert {c.feature_key for c in recording.usage()} & {MAU, SEATS, VALIDATED} == set()


def test_a_denying_ledger_refuses_with_the_key(make_auth: AuthFactory) -> None:
    auth = make_auth(ledger=DenyingLedger(MAU), enforce_limits=ALL)
    (ann,) = _users(auth, 1)
    with pytest.raises(FeatureNotEntitled) as refused:
        auth.sign_in(ann.email, PASSWORD, tenant="acme")
    assert refused.value.feature == MAU
    assert auth.sessions.revoke_all(ann.id) == 0


def test_the_seed_ledger_serves_every_metered_operation(make_auth: AuthFactory) -> None:
    """A ledger with only the seed's two calls, limits not enforced: everything works."""
    auth = make_auth(ledger=_SeedLedger())
    ann, bob = _users(auth, 2)
    tokens = auth.sign_in(ann.email, PASSWORD, tenant="acme").tokens
    assert tokens is not None
    auth.sessions.refresh(tokens.refresh_token)
    org = auth.orgs.create(ann.id, "Acme")
    auth.orgs.add_member(org.id, bob.id)
    assert auth.orgs.remove_member(org.id, bob.id) is True
    auth.api_keys.validate(auth.api_keys.create(ann.id, "ci").secret)
    assert auth.ledger_stats.record_failures == 0


def test_every_sign_in_path_is_refused_at_its_completion(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    """MFA and magic link finish in the same completion point as a password sign-in."""
    outbox = Outbox()
    auth = make_auth(
        ledger=DenyingLedger(MAU),
        enforce_limits=ALL,
        mailer=outbox,
        mail=MailSettings(link_base_url=LINK_BASE),
    )
    ann, bob = _users(auth, 2)
    setup = auth.mfa.begin_totp(ann.id)
    auth.mfa.confirm_totp(ann.id, pyotp.TOTP(setup.secret).at(clock.now))
    clock.advance(seconds=30)
    pending = auth.sign_in(ann.email, PASSWORD, tenant="acme")
    assert pending.mfa_required and pending.ticket is not None  # no session yet, no count
    with pytest.raises(FeatureNotEntitled) as refused:
        auth.mfa.verify(pending.ticket, pyotp.TOTP(setup.secret).at(clock.now))
    assert refused.value.feature == MAU
    assert auth.passwordless.begin(bob.email, tenant="acme", ip="192.0.2.3") is None
    auth.flush_mail()
    with pytest.raises(FeatureNotEntitled):
        auth.passwordless.complete(outbox.token(bob.email), tenant="acme")
    assert auth.sessions.revoke_all(ann.id) == auth.sessions.revoke_all(bob.id) == 0
