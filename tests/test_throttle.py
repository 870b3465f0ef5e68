"""Throttling of failed sign-ins: per (account, IP), per IP, per account with the known-IP
exception, bounded lock-out, no existence oracle, and no clear-text keys."""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authsome import Authsome, InvalidCredentials, RateLimited, ThrottlePolicy
from authsome.crypto import PasswordHasher
from authsome.stores import MemoryStore, SQLiteStore, Store
from tests.conftest import FAST, PASSWORD, AuthFactory, FakeClock
from tests.support.overlap import Overlap

EMAIL = "ann@example.com"
WRONG = "definitely not it"
IP = "203.0.113.7"
OTHER_IP = "198.51.100.9"
WINDOW = ThrottlePolicy().window


def _fail(auth: Authsome, email: str, ip: str | None, **kw: str) -> None:
    with pytest.raises(InvalidCredentials):
        auth.sign_in(email, WRONG, ip=ip, **kw)


def _limited(auth: Authsome, email: str, password: str, ip: str | None) -> RateLimited:
    with pytest.raises(RateLimited) as info:
        auth.sign_in(email, password, ip=ip)
    return info.value


def test_default_policy_limits() -> None:
    policy = ThrottlePolicy()
    assert policy.per_account_ip == 5
    assert policy.window == timedelta(minutes=15)


def test_per_account_ip_blocks_that_address_only(auth: Authsome) -> None:
    auth.users.register(EMAIL, PASSWORD)
    limit = ThrottlePolicy().per_account_ip
    for _ in range(limit):
        _fail(auth, EMAIL, IP)
    blocked = _limited(auth, EMAIL, PASSWORD, IP)  # even the right password
    assert 0 < blocked.retry_after <= WINDOW.total_seconds()
    # the real user elsewhere is unaffected
    assert auth.sign_in(EMAIL, PASSWORD, ip=OTHER_IP).tokens is not None
    # and the blocked address is still blocked for this account only
    _limited(auth, EMAIL, PASSWORD, IP)


def test_fewer_failures_than_the_limit_do_not_block(auth: Authsome) -> None:
    auth.users.register(EMAIL, PASSWORD)
    for _ in range(ThrottlePolicy().per_account_ip - 1):
        _fail(auth, EMAIL, IP)
    assert auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens is not None


def test_block_ends_when_the_window_passes(auth: Authsome, clock: FakeClock) -> None:
    auth.users.register(EMAIL, PASSWORD)
    for _ in range(ThrottlePolicy().per_account_ip):
        _fail(auth, EMAIL, IP)
    first = _limited(auth, EMAIL, PASSWORD, IP)
    assert first.retry_after == pytest.approx(WINDOW.total_seconds())
    clock.advance(minutes=10)
    later = _limited(auth, EMAIL, PASSWORD, IP)
    assert later.retry_after == pytest.approx((WINDOW - timedelta(minutes=10)).total_seconds())
    clock.advance(seconds=later.retry_after - 1)
    _limited(auth, EMAIL, PASSWORD, IP)  # one second before the end: still blocked
    clock.advance(seconds=1)
    assert auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens is not None


def test_blocked_attempts_do_not_extend_the_block(auth: Authsome, clock: FakeClock) -> None:
    auth.users.register(EMAIL, PASSWORD)
    for _ in range(ThrottlePolicy().per_account_ip):
        _fail(auth, EMAIL, IP)
    for _ in range(14):
        clock.advance(minutes=1)
        with pytest.raises(RateLimited):
            auth.sign_in(EMAIL, WRONG, ip=IP)  # the attacker keeps hammering
    clock.advance(minutes=1)  # exactly `window` after the first failure
    assert auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens is not None


def test_per_ip_blocks_credential_stuffing_across_accounts(
    make_auth: AuthFactory,
) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_ip=3))
    auth.users.register(EMAIL, PASSWORD)
    for i in range(3):
        _fail(auth, f"victim{i}@example.com", IP)
    # a fourth account from the same address is blocked before any password check
    blocked = _limited(auth, EMAIL, PASSWORD, IP)
    assert 0 < blocked.retry_after <= WINDOW.total_seconds()
    _limited(auth, "someone.else@example.com", WRONG, IP)
    # other addresses are unaffected, for the same and for other accounts
    assert auth.sign_in(EMAIL, PASSWORD, ip=OTHER_IP).tokens is not None
    _fail(auth, "victim0@example.com", OTHER_IP)


def test_per_ip_block_also_ends_after_the_window(make_auth: AuthFactory, clock: FakeClock) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_ip=3))
    auth.users.register(EMAIL, PASSWORD)
    for i in range(3):
        _fail(auth, f"victim{i}@example.com", IP)
    _limited(auth, EMAIL, PASSWORD, IP)
    clock.advance(minutes=15)
    assert auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens is not None


def test_per_account_spares_the_real_users_known_ip(make_auth: AuthFactory) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_account=3))
    auth.users.register(EMAIL, PASSWORD)
    home = "192.0.2.10"
    assert auth.sign_in(EMAIL, PASSWORD, ip=home).tokens is not None  # home becomes known
    for i in range(3):
        _fail(auth, EMAIL, f"198.51.100.{i}")  # distributed attack, one try per address
    # a never-seen address is blocked for this account, even with the right password
    blocked = _limited(auth, EMAIL, PASSWORD, "198.51.100.200")
    assert 0 < blocked.retry_after <= WINDOW.total_seconds()
    # but the real user at home still gets in: no lock-out
    assert auth.sign_in(EMAIL, PASSWORD, ip=home).tokens is not None
    assert auth.sign_in(EMAIL, PASSWORD, ip=home).tokens is not None


def test_per_account_blocks_everyone_without_a_known_ip(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_account=3))
    auth.users.register(EMAIL, PASSWORD)
    for i in range(3):
        _fail(auth, EMAIL, f"198.51.100.{i}")
    _limited(auth, EMAIL, PASSWORD, "192.0.2.10")
    _limited(auth, EMAIL, PASSWORD, None)
    # other accounts from those addresses are unaffected
    auth.users.register("bob@example.com", PASSWORD)
    assert auth.sign_in("bob@example.com", PASSWORD, ip="198.51.100.0").tokens is not None
    clock.advance(minutes=15)
    assert auth.sign_in(EMAIL, PASSWORD, ip="192.0.2.10").tokens is not None


def test_success_clears_the_account_ip_count(auth: Authsome) -> None:
    auth.users.register(EMAIL, PASSWORD)
    limit = ThrottlePolicy().per_account_ip
    for _ in range(limit - 1):
        _fail(auth, EMAIL, IP)
    assert auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens is not None  # clears the count
    for _ in range(limit - 1):
        _fail(auth, EMAIL, IP)
    # without the reset this would be failure number 2 * limit - 2 >= limit
    assert auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens is not None
    for _ in range(limit):
        _fail(auth, EMAIL, IP)
    _limited(auth, EMAIL, PASSWORD, IP)


def test_throttling_without_ip_uses_the_account_counter(auth: Authsome) -> None:
    auth.users.register(EMAIL, PASSWORD)
    for _ in range(ThrottlePolicy().per_account_ip):
        _fail(auth, EMAIL, None)
    _limited(auth, EMAIL, PASSWORD, None)
    assert auth.sign_in(EMAIL, PASSWORD, ip=IP).tokens is not None


def test_throttle_is_per_tenant(auth: Authsome) -> None:
    auth.users.register(EMAIL, PASSWORD, tenant="t1")
    auth.users.register(EMAIL, PASSWORD, tenant="t2")
    for _ in range(ThrottlePolicy().per_account_ip):
        _fail(auth, EMAIL, IP, tenant="t1")
    with pytest.raises(RateLimited):
        auth.sign_in(EMAIL, PASSWORD, ip=IP, tenant="t1")
    assert auth.sign_in(EMAIL, PASSWORD, ip=IP, tenant="t2").tokens is not None


def test_throttle_key_uses_the_normalized_email(auth: Authsome) -> None:
    auth.users.register(EMAIL, PASSWORD)
    variants = [
        "ANN@example.com",
        "Ann@Example.Com",
        "ａｎｎ@example.com",
        " ann@example.com",
        EMAIL,
    ]
    for variant in variants:
        _fail(auth, variant, IP)
    _limited(auth, EMAIL, PASSWORD, IP)


def _behaviour(auth: Authsome, email: str) -> list[str]:
    """What an attacker observes over limit + 2 attempts from one address."""
    seen: list[str] = []
    for _ in range(ThrottlePolicy().per_account_ip + 2):
        try:
            auth.sign_in(email, WRONG, ip=IP)
        except RateLimited as exc:
            seen.append(f"RateLimited({exc.retry_after}) {exc}")
        except InvalidCredentials as exc:
            seen.append(f"InvalidCredentials {exc}")
    return seen


def test_unknown_emails_are_throttled_the_same_way(make_auth: AuthFactory) -> None:
    known = make_auth()
    known.users.register(EMAIL, PASSWORD)
    unknown = make_auth()
    a = _behaviour(known, EMAIL)
    b = _behaviour(unknown, EMAIL)
    assert a == b
    assert a[-1].startswith("RateLimited")
    # both counters live in the store alike
    assert isinstance(known.store, MemoryStore)
    assert isinstance(unknown.store, MemoryStore)
    assert len(known.store._counters) == len(unknown.store._counters)


def test_counter_keys_hold_no_email_or_ip_in_clear(make_auth: AuthFactory) -> None:
    store = MemoryStore()
    auth = make_auth(store=store)
    auth.users.register(EMAIL, PASSWORD)
    _fail(auth, EMAIL, IP)
    _fail(auth, "nobody@example.com", OTHER_IP)
    auth.sign_in(EMAIL, PASSWORD, ip="192.0.2.55")  # a remembered (known) address too
    keys = list(store._counters)
    assert keys
    secrets = [EMAIL, "ann", "example.com", "nobody", IP, OTHER_IP, "192.0.2.55", "203.0.113"]
    for key in keys:
        assert re.fullmatch(r"[0-9a-f]{64}", key), key
        for secret in secrets:
            assert secret not in key
    # nor anywhere in the stored counter values
    for value in store._counters.values():
        for secret in secrets:
            assert secret not in repr(value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"per_account_ip": 0},
        {"per_account_ip": -1},
        {"per_ip": 0},
        {"per_account": 0},
        {"per_account": -5},
        {"per_account_ip": True},
        {"per_ip": False},
        {"per_account": True},
        {"per_ip": 1.5},
        {"per_account": "5"},
        {"window": timedelta(0)},
        {"window": timedelta(seconds=-1)},
        {"known_ip_ttl": timedelta(0)},
        {"known_ip_ttl": timedelta(days=-1)},
    ],
)
def test_policy_rejects_bad_limits(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="ThrottlePolicy"):
        ThrottlePolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_accepts_minimal_positive_values() -> None:
    policy = ThrottlePolicy(per_account_ip=1, per_ip=1, per_account=1, window=timedelta(seconds=1))
    assert policy.per_ip == 1


ATTACKER_IPS = ["198.51.100.1", "198.51.100.2", "198.51.100.3", None]

attempts = st.lists(
    st.tuples(
        st.sampled_from(ATTACKER_IPS),
        st.integers(min_value=0, max_value=20 * 60),  # seconds before this attempt
        st.booleans(),  # against the real account, or an unregistered one
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=30, deadline=None)
@given(
    attempts=attempts,
    per_account_ip=st.integers(min_value=1, max_value=5),
    per_ip=st.integers(min_value=1, max_value=8),
    per_account=st.integers(min_value=1, max_value=8),
    window_minutes=st.integers(min_value=1, max_value=30),
)
def test_lock_out_is_bounded_by_the_window(
    attempts: list[tuple[str | None, int, bool]],
    per_account_ip: int,
    per_ip: int,
    per_account: int,
    window_minutes: int,
) -> None:
    clock = FakeClock()
    window = timedelta(minutes=window_minutes)
    policy = ThrottlePolicy(
        per_account_ip=per_account_ip, per_ip=per_ip, per_account=per_account, window=window
    )
    with Authsome(password_hashing=FAST, clock=clock, throttle=policy) as auth:
        auth.users.register(EMAIL, PASSWORD)
        retry_afters: list[float] = []
        for ip, wait, real_account in attempts:
            clock.advance(seconds=wait)
            email = EMAIL if real_account else "ghost@example.com"
            try:
                auth.sign_in(email, WRONG, ip=ip)
            except RateLimited as exc:
                retry_afters.append(exc.retry_after)
            except InvalidCredentials:
                pass
            else:  # pragma: no cover - a wrong password never signs in
                pytest.fail("a wrong password signed in")
        # no single block outlives the window
        assert all(0 < r <= window.total_seconds() for r in retry_afters), retry_afters
        clock.advance(seconds=window.total_seconds())
        # the real user from a fresh address gets in once the window has passed
        assert auth.sign_in(EMAIL, PASSWORD, ip="192.0.2.99").tokens is not None
        # and so do the attackers' addresses, since every block has ended
        for ip in ATTACKER_IPS:
            assert auth.sign_in(EMAIL, PASSWORD, ip=ip).tokens is not None


def test_a_known_ip_is_forgotten_after_known_ip_ttl(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    policy = ThrottlePolicy(per_account=2, known_ip_ttl=timedelta(days=1))
    auth = make_auth(throttle=policy)
    auth.users.register(EMAIL, PASSWORD)
    home = "192.0.2.10"
    auth.sign_in(EMAIL, PASSWORD, ip=home)
    clock.advance(days=1)  # home is no longer remembered
    for i in range(2):
        _fail(auth, EMAIL, f"198.51.100.{i}")
    _limited(auth, EMAIL, PASSWORD, home)


def test_signing_in_again_renews_the_known_ip(make_auth: AuthFactory, clock: FakeClock) -> None:
    policy = ThrottlePolicy(per_account=2, known_ip_ttl=timedelta(days=1))
    auth = make_auth(throttle=policy)
    auth.users.register(EMAIL, PASSWORD)
    home = "192.0.2.10"
    auth.sign_in(EMAIL, PASSWORD, ip=home)
    clock.advance(hours=20)
    auth.sign_in(EMAIL, PASSWORD, ip=home)  # remembered for another day from now
    clock.advance(hours=20)
    for i in range(2):
        _fail(auth, EMAIL, f"198.51.100.{i}")
    assert auth.sign_in(EMAIL, PASSWORD, ip=home).tokens is not None


def test_a_sub_second_window_is_refused_rather_than_silently_disabling_throttling() -> None:
    # Counters expire in whole seconds: a 500 ms window would round to 0 and never block.
    with pytest.raises(ValueError, match="at least one second"):
        ThrottlePolicy(per_account_ip=1, window=timedelta(milliseconds=500))
    with pytest.raises(ValueError, match="at least one second"):
        ThrottlePolicy(known_ip_ttl=timedelta(milliseconds=10))


# -- racing attempts ------------------------------------------------------------------


def _store(kind: str, tmp_path: Path) -> Store:
    return MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "auth.db")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_parallel_guesses_get_no_more_tries_than_sequential_ones(
    make_auth: AuthFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    limit, attackers = 5, 40
    auth = make_auth(store=_store(kind, tmp_path), throttle=ThrottlePolicy(per_account_ip=limit))
    auth.users.register(EMAIL, PASSWORD)
    home = "192.0.2.10"
    assert auth.sign_in(EMAIL, PASSWORD, ip=home).tokens is not None  # home becomes known
    overlap = Overlap(attackers)
    original = PasswordHasher.verify

    def slow_verify(self: PasswordHasher, stored: str | None, password: str) -> bool:
        overlap.wait_for_all()  # every guess that got this far is hashing at once
        return original(self, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", slow_verify)
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def guess(i: int) -> None:
        try:
            auth.sign_in(EMAIL, f"wrong guess {i:04d}", ip=IP)
            outcome = "signed in"
        except InvalidCredentials:
            outcome = "tried"
        except RateLimited:
            overlap.turned_away()
            outcome = "refused"
        with lock:
            outcomes[outcome] += 1

    _run_threads(guess, attackers)

    assert overlap.reached == outcomes["tried"] == limit, outcomes
    assert outcomes["refused"] == attackers - limit
    monkeypatch.setattr(PasswordHasher, "verify", original)
    _limited(auth, EMAIL, PASSWORD, IP)  # the attacker's address stays blocked
    assert auth.sign_in(EMAIL, PASSWORD, ip=home).tokens is not None
    # Refused attempts count nothing: the per-account counter saw only the five
    # tries, so even a never-seen address of the real user is not locked out.
    assert auth.sign_in(EMAIL, PASSWORD, ip="192.0.2.99").tokens is not None


def _run_threads(target: Callable[[int], None], count: int) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_a_refused_attempt_is_not_counted(make_auth: AuthFactory) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_account_ip=2, per_account=5))
    auth.users.register(EMAIL, PASSWORD)
    for _ in range(2):
        _fail(auth, EMAIL, IP)
    for _ in range(10):
        _limited(auth, EMAIL, WRONG, IP)  # refused: never tried, so never counted
    # 2 tries on the account so far, well under per_account=5, from a new address:
    for i in range(2):
        _fail(auth, EMAIL, f"198.51.100.{i}")
    assert auth.sign_in(EMAIL, PASSWORD, ip="192.0.2.10").tokens is not None


def test_successful_sign_ins_give_back_the_per_ip_hit(make_auth: AuthFactory) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_ip=2))
    for i in range(5):  # an office behind one address, everyone signing in correctly
        auth.users.register(f"user{i}@example.com", PASSWORD)
        for _ in range(2):
            assert auth.sign_in(f"user{i}@example.com", PASSWORD, ip=IP).tokens is not None
    _fail(auth, "user0@example.com", IP)
    _fail(auth, "user1@example.com", IP)
    _limited(auth, "user2@example.com", PASSWORD, IP)  # failures still add up


def test_successful_sign_ins_give_back_the_per_account_hit(make_auth: AuthFactory) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_account=2))
    auth.users.register(EMAIL, PASSWORD)
    for i in range(5):  # a new address each time, so the account limit applies
        assert auth.sign_in(EMAIL, PASSWORD, ip=f"198.51.100.{i}").tokens is not None
    _fail(auth, EMAIL, "203.0.113.50")
    _fail(auth, EMAIL, "203.0.113.51")
    _limited(auth, EMAIL, PASSWORD, "203.0.113.52")


def test_expired_counters_are_swept_once_a_window(make_auth: AuthFactory, clock: FakeClock) -> None:
    store = MemoryStore()
    auth = make_auth(store=store)
    auth.users.register(EMAIL, PASSWORD)
    for i in range(3):
        _fail(auth, EMAIL, f"198.51.100.{i}")
    assert len(store._counters) > 0
    clock.advance(seconds=ThrottlePolicy().window.total_seconds() + 1)
    _fail(auth, EMAIL, "203.0.113.77")  # the first attempt of a new window sweeps
    live = {key for key, (_, expires_at) in store._counters.items() if expires_at > clock.now}
    assert set(store._counters) == live
