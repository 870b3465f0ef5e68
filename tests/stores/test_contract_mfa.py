"""The ``# -- mfa --`` part of the Store contract, run against every store."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authsome.errors import AlreadyExists, StoreError
from authsome.models import MfaFactor, MfaMethod
from authsome.stores import Store
from tests.support.race import race

from ._factories import NOW, add_user

LATER = NOW + timedelta(minutes=1)
TICKET_EXPIRY = NOW + timedelta(minutes=5)


def _factor(
    factor_id: str = "f1", user_id: str = "u1", *, at: timedelta = timedelta(0)
) -> MfaFactor:
    return MfaFactor(id=factor_id, user_id=user_id, method=MfaMethod.TOTP, created_at=NOW + at)


def _pending(store: Store, factor_id: str = "f1", user_id: str = "u1") -> MfaFactor:
    factor = _factor(factor_id, user_id)
    store.create_mfa_factor(factor, f"secret-{factor_id}")
    return factor


def _confirmed(store: Store, factor_id: str = "f1", user_id: str = "u1", step: int = 100) -> None:
    _pending(store, factor_id, user_id)
    assert store.confirm_mfa_factor(factor_id, step, ["h1", "h2", "h3"], LATER)


# -- factors -------------------------------------------------------------------------


def test_created_factor_is_pending_and_keeps_its_secret_as_given(store: Store) -> None:
    add_user(store)
    factor = _pending(store)

    assert store.get_mfa_factor("f1") == factor
    assert factor.confirmed_at is None
    assert store.get_mfa_secret("f1") == "secret-f1"
    assert store.list_mfa_factors("u1") == [factor]


def test_unknown_factor_is_none_everywhere(store: Store) -> None:
    assert store.get_mfa_factor("nope") is None
    assert store.get_mfa_secret("nope") is None
    assert store.list_mfa_factors("nobody") == []
    assert store.count_recovery_codes("nope") == 0
    assert store.use_totp_step("nope", 1) is False
    assert store.consume_recovery_code("nope", "h1") is False
    assert store.delete_mfa_factor("nope") is False
    assert store.confirm_mfa_factor("nope", 1, ["h"], NOW) is False


def test_factor_of_unknown_user_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.create_mfa_factor(_factor(user_id="ghost"), "s")
    assert store.get_mfa_factor("f1") is None


def test_a_new_enrolment_replaces_the_pending_one(store: Store) -> None:
    add_user(store)
    _pending(store, "f1")
    second = _factor("f2", at=timedelta(seconds=1))
    store.create_mfa_factor(second, "secret-f2")

    assert store.get_mfa_factor("f1") is None
    assert store.get_mfa_secret("f1") is None
    assert store.list_mfa_factors("u1") == [second]


def test_a_confirmed_factor_is_not_replaced(store: Store) -> None:
    add_user(store)
    _confirmed(store, "f1")

    with pytest.raises(AlreadyExists):
        store.create_mfa_factor(_factor("f2"), "secret-f2")

    assert [f.id for f in store.list_mfa_factors("u1")] == ["f1"]
    assert store.get_mfa_secret("f2") is None
    assert store.count_recovery_codes("f1") == 3


def test_factors_are_per_user(store: Store) -> None:
    add_user(store, "u1")
    add_user(store, "u2", email="bob@example.com")
    _confirmed(store, "f1", "u1")
    other = _pending(store, "f2", "u2")

    assert [f.id for f in store.list_mfa_factors("u1")] == ["f1"]
    assert store.list_mfa_factors("u2") == [other]


def test_duplicate_factor_id_is_refused(store: Store) -> None:
    add_user(store, "u1")
    add_user(store, "u2", email="bob@example.com")
    _pending(store, "f1", "u1")

    with pytest.raises(AlreadyExists):
        store.create_mfa_factor(_factor("f1", "u2"), "other")

    assert store.list_mfa_factors("u2") == []
    assert store.get_mfa_secret("f1") == "secret-f1"


# -- confirmation ----------------------------------------------------------------------


def test_confirm_sets_time_step_and_recovery_codes_together(store: Store) -> None:
    add_user(store)
    _pending(store)

    assert store.confirm_mfa_factor("f1", 100, ["h1", "h2"], LATER) is True

    factor = store.get_mfa_factor("f1")
    assert factor is not None
    assert factor.confirmed_at == LATER
    assert factor.confirmed
    assert store.count_recovery_codes("f1") == 2
    assert store.use_totp_step("f1", 100) is False  # the confirming code is used up
    assert store.use_totp_step("f1", 101) is True


def test_confirm_twice_is_refused_and_changes_nothing(store: Store) -> None:
    add_user(store)
    _confirmed(store)

    assert store.confirm_mfa_factor("f1", 200, ["other"], LATER + timedelta(hours=1)) is False

    factor = store.get_mfa_factor("f1")
    assert factor is not None
    assert factor.confirmed_at == LATER
    assert store.consume_recovery_code("f1", "other") is False
    assert store.count_recovery_codes("f1") == 3


def test_concurrent_confirmations_let_exactly_one_through(store: Store) -> None:
    add_user(store)
    _pending(store)

    results = race(lambda i: store.confirm_mfa_factor("f1", 100 + i, [f"h{i}"], LATER), range(8))

    assert results.count(True) == 1
    assert store.count_recovery_codes("f1") == 1


# -- time-steps -------------------------------------------------------------------------


def test_a_step_is_accepted_once_and_only_later_steps_after_it(store: Store) -> None:
    add_user(store)
    _confirmed(store, step=100)

    assert store.use_totp_step("f1", 99) is False
    assert store.use_totp_step("f1", 102) is True
    assert store.use_totp_step("f1", 102) is False
    assert store.use_totp_step("f1", 101) is False  # older than the last accepted
    assert store.use_totp_step("f1", 103) is True


def test_a_pending_factor_takes_its_first_step(store: Store) -> None:
    add_user(store)
    _pending(store)

    assert store.use_totp_step("f1", 5) is True
    assert store.use_totp_step("f1", 5) is False


def test_concurrent_use_of_one_step_accepts_exactly_one(store: Store) -> None:
    add_user(store)
    _confirmed(store, step=100)

    results = race(lambda _i: store.use_totp_step("f1", 101), range(8))

    assert results.count(True) == 1


# -- recovery codes ---------------------------------------------------------------------


def test_recovery_code_is_single_use(store: Store) -> None:
    add_user(store)
    _confirmed(store)

    assert store.consume_recovery_code("f1", "h2") is True
    assert store.consume_recovery_code("f1", "h2") is False
    assert store.count_recovery_codes("f1") == 2


def test_recovery_codes_belong_to_their_factor(store: Store) -> None:
    add_user(store, "u1")
    add_user(store, "u2", email="bob@example.com")
    _confirmed(store, "f1", "u1")
    _pending(store, "f2", "u2")
    assert store.confirm_mfa_factor("f2", 7, ["x1"], LATER)

    assert store.consume_recovery_code("f2", "h1") is False
    assert store.consume_recovery_code("f1", "x1") is False
    assert store.consume_recovery_code("f2", "x1") is True


def test_concurrent_use_of_one_recovery_code_accepts_exactly_one(store: Store) -> None:
    add_user(store)
    _confirmed(store)

    results = race(lambda _i: store.consume_recovery_code("f1", "h1"), range(8))

    assert results.count(True) == 1


def test_deleting_a_factor_removes_its_secret_and_recovery_codes(store: Store) -> None:
    add_user(store)
    _confirmed(store)

    assert store.delete_mfa_factor("f1") is True

    assert store.get_mfa_factor("f1") is None
    assert store.get_mfa_secret("f1") is None
    assert store.list_mfa_factors("u1") == []
    assert store.count_recovery_codes("f1") == 0
    assert store.consume_recovery_code("f1", "h1") is False
    assert store.delete_mfa_factor("f1") is False
    # The user can enrol afresh, and old codes do not come back with the same id.
    _confirmed(store, "f1")
    assert store.consume_recovery_code("f1", "h1") is True


# -- tickets ---------------------------------------------------------------------------


def test_ticket_attempts_return_the_user_until_the_limit(store: Store) -> None:
    add_user(store)
    store.create_mfa_ticket("t1", "u1", TICKET_EXPIRY, NOW)

    assert [store.attempt_mfa_ticket("t1", NOW, 3) for _ in range(4)] == ["u1", "u1", "u1", None]


def test_ticket_is_dead_at_its_expiry(store: Store) -> None:
    add_user(store)
    store.create_mfa_ticket("t1", "u1", TICKET_EXPIRY, NOW)

    assert store.attempt_mfa_ticket("t1", TICKET_EXPIRY - timedelta(microseconds=1), 5) == "u1"
    assert store.attempt_mfa_ticket("t1", TICKET_EXPIRY, 5) is None


def test_unknown_ticket_is_refused(store: Store) -> None:
    assert store.attempt_mfa_ticket("nope", NOW, 5) is None
    assert store.consume_mfa_ticket("nope") is False


def test_consumed_ticket_is_gone(store: Store) -> None:
    add_user(store)
    store.create_mfa_ticket("t1", "u1", TICKET_EXPIRY, NOW)

    assert store.consume_mfa_ticket("t1") is True
    assert store.consume_mfa_ticket("t1") is False
    assert store.attempt_mfa_ticket("t1", NOW, 5) is None


def test_ticket_of_unknown_user_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.create_mfa_ticket("t1", "ghost", TICKET_EXPIRY, NOW)
    assert store.attempt_mfa_ticket("t1", NOW, 5) is None


def test_duplicate_ticket_hash_is_refused(store: Store) -> None:
    add_user(store)
    store.create_mfa_ticket("t1", "u1", TICKET_EXPIRY, NOW)
    with pytest.raises(AlreadyExists):
        store.create_mfa_ticket("t1", "u1", TICKET_EXPIRY, NOW)


def test_creating_a_ticket_may_purge_expired_ones_but_never_live_ones(store: Store) -> None:
    add_user(store)
    store.create_mfa_ticket("old", "u1", NOW + timedelta(minutes=1), NOW)
    store.create_mfa_ticket("live", "u1", NOW + timedelta(minutes=30), NOW)
    later = NOW + timedelta(minutes=10)
    store.create_mfa_ticket("new", "u1", later + timedelta(minutes=5), later)

    assert store.attempt_mfa_ticket("old", later, 5) is None
    assert store.attempt_mfa_ticket("live", later, 5) == "u1"
    assert store.attempt_mfa_ticket("new", later, 5) == "u1"


def test_concurrent_attempts_never_exceed_the_limit(store: Store) -> None:
    add_user(store)
    store.create_mfa_ticket("t1", "u1", TICKET_EXPIRY, NOW)

    results = race(lambda _i: store.attempt_mfa_ticket("t1", NOW, 5) is not None, range(12))

    assert results.count(True) == 5


def test_concurrent_consumption_succeeds_once(store: Store) -> None:
    add_user(store)
    store.create_mfa_ticket("t1", "u1", TICKET_EXPIRY, NOW)

    results = race(lambda _i: store.consume_mfa_ticket("t1"), range(8))

    assert results.count(True) == 1


def test_tickets_of_another_tenant_are_unknown_and_keep_their_attempts(store: Store) -> None:
    add_user(store, tenant="acme")
    store.create_mfa_ticket("t1", "u1", TICKET_EXPIRY, NOW)

    assert [store.attempt_mfa_ticket("t1", NOW, 2, tenant="globex") for _ in range(3)] == [None] * 3
    assert store.attempt_mfa_ticket("t1", NOW, 2, tenant="acme") == "u1"
    assert store.attempt_mfa_ticket("t1", NOW, 2) == "u1"
    assert store.attempt_mfa_ticket("t1", NOW, 2, tenant="acme") is None  # used up


def test_deleting_a_users_tickets_leaves_other_users_tickets(store: Store) -> None:
    add_user(store, "u1")
    add_user(store, "u2", email="u2@example.com")
    store.create_mfa_ticket("t1", "u1", TICKET_EXPIRY, NOW)
    store.create_mfa_ticket("t2", "u1", TICKET_EXPIRY, NOW)
    store.create_mfa_ticket("t3", "u2", TICKET_EXPIRY, NOW)

    assert store.delete_user_mfa_tickets("u1") == 2
    assert store.delete_user_mfa_tickets("u1") == 0
    assert store.attempt_mfa_ticket("t1", NOW, 5) is None
    assert store.attempt_mfa_ticket("t3", NOW, 5) == "u2"


# -- consecutive wrong codes -----------------------------------------------------------


def test_wrong_codes_count_up_on_the_factor_until_reset(store: Store) -> None:
    add_user(store)
    _confirmed(store, "f1")
    assert store.reset_mfa_failures("f1") is False  # nothing to reset

    assert [store.count_mfa_failure("f1") for _ in range(3)] == [1, 2, 3]
    factor = store.get_mfa_factor("f1")
    assert factor is not None and factor.failed_codes == 3
    assert [f.failed_codes for f in store.list_mfa_factors("u1")] == [3]

    assert store.reset_mfa_failures("f1") is True
    assert store.count_mfa_failure("f1") == 1


def test_counting_a_failure_of_an_unknown_factor_is_zero(store: Store) -> None:
    assert store.count_mfa_failure("nope") == 0
    assert store.reset_mfa_failures("nope") is False


def test_concurrent_wrong_codes_are_each_counted_once(store: Store) -> None:
    add_user(store)
    _confirmed(store, "f1")

    counts = race(lambda _i: store.count_mfa_failure("f1"), range(16))

    assert sorted(counts) == list(range(1, 17))
    factor = store.get_mfa_factor("f1")
    assert factor is not None and factor.failed_codes == 16


_factor_ids = itertools.count()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=st.lists(st.sampled_from(["fail", "reset"]), max_size=30))
def test_wrong_code_counts_follow_a_simple_model(store: Store, operations: list[str]) -> None:
    # Each example has a factor of its own, so examples sharing the store cannot meet.
    user_id, factor_id = f"u{next(_factor_ids)}", f"f{next(_factor_ids)}"
    add_user(store, user_id, email=f"{user_id}@example.com")
    _confirmed(store, factor_id, user_id)
    model = 0
    for operation in operations:
        if operation == "fail":
            model += 1
            assert store.count_mfa_failure(factor_id) == model
        else:
            assert store.reset_mfa_failures(factor_id) is (model > 0)
            model = 0
    factor = store.get_mfa_factor(factor_id)
    assert factor is not None and factor.failed_codes == model
