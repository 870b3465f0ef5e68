"""API keys (``auth.api_keys``): format, validation, usage, scopes, last-used, secrecy."""

from __future__ import annotations

import dataclasses
import logging
import pickle
import re
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from authsome import (
    ApiKey,
    ApiKeyPolicy,
    Authsome,
    CreatedApiKey,
    InsufficientScope,
    InvalidToken,
    NotFound,
    UsageEvent,
    ValidationError,
)
from authsome.apikeys import API_KEY_LENGTH, API_KEY_PREFIX, _compose_secret, _TouchThrottle
from authsome.bridge import LedgerContext
from authsome.crypto import (
    BASE62_ALPHABET,
    base62_checksum,
    base62_encode,
    has_valid_checksum,
    new_ordered_id,
    random_base62,
    sha256_hex,
)
from authsome.errors import StoreError
from authsome.models import User
from authsome.stores import MemoryStore, SQLiteStore, Store
from authsome.testing import FailingLedger, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock

BASE62 = set(BASE62_ALPHABET)


class CountingStore:
    """Wraps a store and counts the calls of each method; can make ``touch`` fail."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.counts: Counter[str] = Counter()
        self.fail_touch = False
        self.fixed_secret: str | None = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            if name == "touch_api_key" and self.fail_touch:
                raise StoreError("sqlite store: touch_api_key failed (SQLITE_BUSY)")
            return attr(*args, **kwargs)

        return counted

    def reset(self) -> None:
        self.counts.clear()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@pytest.fixture
def counting() -> CountingStore:
    return CountingStore(MemoryStore())


@pytest.fixture
def cauth(make_auth: AuthFactory, counting: CountingStore, ledger: RecordingLedger) -> Authsome:
    return make_auth(store=counting, ledger=ledger)  # type: ignore[arg-type]


def _user(auth: Authsome, email: str = "ann@example.com", tenant: str = "acme") -> User:
    return auth.users.register(email, PASSWORD, tenant=tenant)


def _key(auth: Authsome, owner: User, **options: Any) -> CreatedApiKey:
    return auth.api_keys.create(owner.id, "ci deploy", **options)


def _usage(ledger: RecordingLedger) -> list[LedgerContext]:
    return [c.ctx for c in ledger.usage(UsageEvent.APIKEYS_VALIDATED)]


def _with_checksum(unchecked: str) -> str:
    return unchecked + base62_checksum(unchecked)


def _base62_decode(text: str) -> int:
    number = 0
    for char in text:
        number = number * 62 + BASE62_ALPHABET.index(char)
    return number


# -- format ----------------------------------------------------------------------------


def test_secret_format_prefix_lengths_alphabet_and_checksum(auth: Authsome) -> None:
    created = _key(auth, _user(auth))
    secret = created.secret

    assert len(secret) == API_KEY_LENGTH == 40
    assert secret.startswith(f"{API_KEY_PREFIX}_") and API_KEY_PREFIX == "ask"
    assert set(secret[4:]) <= BASE62
    assert secret[4:12] == created.key.lookup_id
    assert secret[-6:] == base62_checksum(secret[:-6])
    assert has_valid_checksum(secret)


def test_secrets_and_lookup_ids_are_distinct(auth: Authsome) -> None:
    user = _user(auth)
    made = [_key(auth, user) for _ in range(50)]
    assert len({m.secret for m in made}) == 50
    assert len({m.secret[12:34] for m in made}) == 50  # the random bodies
    assert len({m.key.lookup_id for m in made}) == 50
    assert len({m.key.id for m in made}) == 50


@given(st.integers(min_value=0, max_value=62**8 - 1))
def test_base62_encode_is_fixed_width_and_round_trips(number: int) -> None:
    text = base62_encode(number, 8)
    assert len(text) == 8
    assert _base62_decode(text) == number


@pytest.mark.parametrize(("number", "width"), [(-1, 4), (62**4, 4)])
def test_base62_encode_refuses_what_does_not_fit(number: int, width: int) -> None:
    with pytest.raises(ValueError, match="base62"):
        base62_encode(number, width)


@given(st.integers(min_value=1, max_value=40))
def test_random_base62_has_the_length_and_alphabet(length: int) -> None:
    text = random_base62(length)
    assert len(text) == length
    assert set(text) <= BASE62


@given(st.text(min_size=1, max_size=60) | st.just("ask_\uffff" * 9))
def test_checksum_is_six_base62_chars_and_verifies(text: str) -> None:
    checksum = base62_checksum(text)
    assert checksum == base62_encode(zlib.crc32(text.encode()), 6)
    assert len(checksum) == 6
    assert set(checksum) <= BASE62
    assert has_valid_checksum(text + checksum)


# -- rejected without a store lookup ---------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_character_change_is_rejected_without_a_store_call(
    cauth: Authsome, counting: CountingStore, ledger: RecordingLedger, data: st.DataObject
) -> None:
    secret = _fixed_secret(cauth, counting)
    position = data.draw(st.integers(min_value=0, max_value=API_KEY_LENGTH - 1), label="pos")
    original = secret[position]
    replacement = data.draw(
        # Lone surrogates are a ValidationError: see the test just below.
        st.sampled_from(sorted(BASE62 | set("_-+/= \n\x00\u00e9")))
        | st.characters(exclude_categories=["Cs"]),
        label="char",
    )
    assume(replacement != original)
    tampered = secret[:position] + replacement + secret[position + 1 :]
    counting.reset()
    ledger.clear()

    with pytest.raises(InvalidToken):
        cauth.api_keys.validate(tampered)

    assert counting.total == 0
    assert ledger.calls == []


@pytest.mark.parametrize("position", [0, 4, API_KEY_LENGTH - 1])
def test_a_lone_surrogate_in_a_key_is_refused_without_a_store_call(
    cauth: Authsome, counting: CountingStore, position: int
) -> None:
    secret = _fixed_secret(cauth, counting)
    tampered = secret[:position] + "\ud800" + secret[position + 1 :]
    counting.reset()

    # Text that is not valid Unicode is refused like everywhere else (test_signin.py).
    with pytest.raises(ValidationError):
        cauth.api_keys.validate(tampered)

    assert counting.total == 0


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_inserting_or_deleting_a_character_is_rejected_without_a_store_call(
    cauth: Authsome, counting: CountingStore, data: st.DataObject
) -> None:
    secret = _fixed_secret(cauth, counting)
    position = data.draw(st.integers(min_value=0, max_value=API_KEY_LENGTH - 1))
    if data.draw(st.booleans(), label="delete"):
        tampered = secret[:position] + secret[position + 1 :]
    else:
        tampered = (
            secret[:position] + data.draw(st.sampled_from(BASE62_ALPHABET)) + secret[position:]
        )
    counting.reset()

    with pytest.raises(InvalidToken):
        cauth.api_keys.validate(tampered)
    assert counting.total == 0


def _fixed_secret(auth: Authsome, counting: CountingStore) -> str:
    """One key per engine, made on first use: hypothesis runs every example of a
    test with the same fixtures."""
    if counting.fixed_secret is None:
        counting.fixed_secret = _key(auth, _user(auth)).secret
    return counting.fixed_secret


def _malformed(secret: str) -> dict[str, str]:
    body = secret[4:-6]
    return {
        "empty": "",
        "prefix only": "ask_",
        "other prefix, valid checksum": _with_checksum("ghp_" + body),
        "upper-case prefix, valid checksum": _with_checksum("ASK_" + body),
        "no separator, valid checksum": _with_checksum("ask" + body + "x"),
        "non-base62 char, valid checksum": _with_checksum("ask_" + body[:-1] + "-"),
        "too long, valid checksum": _with_checksum("ask_" + body + "A"),
        "too short, valid checksum": _with_checksum("ask_" + body[:-1]),
        "bad checksum": secret[:-6] + ("000000" if secret[-6:] != "000000" else "000001"),
        "trailing newline": secret + "\n",
        "leading space": " " + secret,
        "swapped case": secret[:4] + secret[4:].swapcase(),
        "non-ascii digits": secret[:-1] + "\uff11",
        "huge": "ask_" + "A" * 100_000,
    }


MALFORMED_NAMES = sorted(_malformed("ask_" + "A" * 36))


@pytest.mark.parametrize("case", MALFORMED_NAMES)
def test_malformed_or_checksum_broken_keys_raise_invalid_token_without_a_store_call(
    cauth: Authsome, counting: CountingStore, ledger: RecordingLedger, case: str
) -> None:
    secret = _key(cauth, _user(cauth)).secret
    bad = _malformed(secret)[case]
    counting.reset()
    ledger.clear()

    with pytest.raises(InvalidToken) as raised:
        cauth.api_keys.validate(bad)

    assert str(raised.value) == "invalid or expired token"
    assert counting.total == 0
    assert ledger.calls == []


@pytest.mark.parametrize("value", [None, 42, b"ask_abc", ["ask_"]])
def test_a_non_str_secret_is_a_type_error_without_a_store_call(
    cauth: Authsome, counting: CountingStore, value: object
) -> None:
    counting.reset()
    with pytest.raises(TypeError, match="secret must be a str"):
        cauth.api_keys.validate(value)  # type: ignore[arg-type]
    assert counting.total == 0


def test_a_well_formed_key_costs_exactly_one_store_lookup(
    cauth: Authsome, counting: CountingStore
) -> None:
    secret = _key(cauth, _user(cauth)).secret
    cauth.api_keys.validate(secret)  # the first validation also writes last-used
    counting.reset()

    cauth.api_keys.validate(secret)

    assert counting.counts == Counter({"find_api_key_by_lookup_id": 1})


# -- rejected after the lookup ---------------------------------------------------------


def test_unknown_well_formed_key_is_invalid_and_records_nothing(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    _key(auth, _user(auth))
    ledger.clear()
    stranger = _compose_secret("ZZZZZZZZ")

    with pytest.raises(InvalidToken):
        auth.api_keys.validate(stranger)
    assert ledger.calls == []


def test_right_lookup_id_with_a_wrong_body_is_invalid(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    created = _key(auth, _user(auth))
    forged = _compose_secret(created.key.lookup_id)  # checksum valid, body random
    assert forged != created.secret
    ledger.clear()

    with pytest.raises(InvalidToken) as raised:
        auth.api_keys.validate(forged)

    assert str(raised.value) == "invalid or expired token"
    assert ledger.calls == []


def test_expired_key_is_invalid_and_records_nothing(
    auth: Authsome, ledger: RecordingLedger, clock: FakeClock
) -> None:
    created = _key(auth, _user(auth), expires_at=clock.now + timedelta(hours=1))
    clock.advance(minutes=59, seconds=59)
    auth.api_keys.validate(created.secret)
    ledger.clear()

    clock.advance(seconds=1)  # exactly at expires_at: over
    with pytest.raises(InvalidToken) as raised:
        auth.api_keys.validate(created.secret)

    assert str(raised.value) == "invalid or expired token"
    assert ledger.calls == []


def test_revoked_key_is_invalid_and_records_nothing(
    auth: Authsome, ledger: RecordingLedger, clock: FakeClock
) -> None:
    created = _key(auth, _user(auth))
    auth.api_keys.validate(created.secret)
    ledger.clear()
    clock.advance(seconds=5)

    assert auth.api_keys.revoke(created.key.id) is True
    with pytest.raises(InvalidToken):
        auth.api_keys.validate(created.secret)

    assert ledger.calls == []
    assert auth.api_keys.get(created.key.id).revoked_at == clock.now


def test_revoke_twice_or_unknown_is_false(auth: Authsome) -> None:
    created = _key(auth, _user(auth))
    assert auth.api_keys.revoke(created.key.id) is True
    assert auth.api_keys.revoke(created.key.id) is False
    assert auth.api_keys.revoke("key_nope") is False
    with pytest.raises(TypeError):
        auth.api_keys.revoke(None)  # type: ignore[arg-type]


def test_revoking_one_key_leaves_the_others_working(auth: Authsome) -> None:
    user = _user(auth)
    first, second = _key(auth, user), _key(auth, user)
    auth.api_keys.revoke(first.key.id)
    assert auth.api_keys.validate(second.secret).id == second.key.id


# -- usage recorded ------------------------------------------------------------------------


def test_creating_a_key_calls_the_ledger_not_at_all(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    user = _user(auth)
    ledger.clear()
    _key(auth, user)
    assert ledger.calls == []


def test_valid_key_records_one_event_with_the_owners_tenant_and_user(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    user = _user(auth, tenant="acme")
    created = _key(auth, user)
    ledger.clear()

    key = auth.api_keys.validate(created.secret)

    assert key.id == created.key.id
    (call,) = ledger.calls
    assert call.kind == "record_usage"
    assert call.feature_key == UsageEvent.APIKEYS_VALIDATED
    assert call.quantity == 1
    assert call.ctx == LedgerContext(
        tenant="acme", user_id=user.id, org_id=None, event_id=call.ctx.event_id
    )
    assert re.fullmatch(r"akv_[0-9a-f]{32}", call.ctx.event_id or "")


def test_each_validation_is_its_own_event(auth: Authsome, ledger: RecordingLedger) -> None:
    created = _key(auth, _user(auth))
    ledger.clear()

    auth.api_keys.validate(created.secret)
    auth.api_keys.validate(created.secret)

    event_ids = [ctx.event_id for ctx in _usage(ledger)]
    assert len(event_ids) == 2
    assert len(set(event_ids)) == 2


def test_validation_event_ids_are_time_ordered(auth: Authsome, ledger: RecordingLedger) -> None:
    # Time-ordered ids are appended to a SQL ledger's event index, not inserted at random.
    created = _key(auth, _user(auth))
    ledger.clear()

    for _ in range(50):
        auth.api_keys.validate(created.secret)

    event_ids = [ctx.event_id or "" for ctx in _usage(ledger)]
    assert len(set(event_ids)) == 50
    stamps = [int(e[4:20], 16) for e in event_ids]
    assert stamps == sorted(stamps)


def test_new_ordered_id_is_fresh_and_sorts_by_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [new_ordered_id("akv") for _ in range(1000)]
    assert all(re.fullmatch(r"akv_[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == 1000
    assert [i[4:20] for i in ids] == sorted(i[4:20] for i in ids)
    # A clock stuck in one tick, then stepped back: ids still sort in creation order.
    monkeypatch.setattr("authsome.crypto.time.time_ns", lambda: 1)
    stuck = [new_ordered_id("akv") for _ in range(1000)]
    monkeypatch.setattr("authsome.crypto.time.time_ns", lambda: 0)
    back = [new_ordered_id("akv") for _ in range(10)]
    later = [*ids, *stuck, *back]
    assert len(set(later)) == len(later)
    assert later == sorted(later)


def test_tenants_are_attributed_separately(auth: Authsome, ledger: RecordingLedger) -> None:
    a = _user(auth, tenant="t1")
    b = _user(auth, tenant="t2")
    key_a, key_b = _key(auth, a), _key(auth, b)
    ledger.clear()

    auth.api_keys.validate(key_b.secret)
    auth.api_keys.validate(key_a.secret)

    assert [(c.tenant, c.user_id) for c in _usage(ledger)] == [("t2", b.id), ("t1", a.id)]


def test_an_org_owned_key_bills_the_org_in_its_tenant(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    owner = auth.users.register("boss@bigco.example", PASSWORD, tenant="bigco")
    org = auth.orgs.create(owner.id, "BigCo")
    created = auth.api_keys.create(org.id, "deploy bot", scopes=("deploy",))
    assert (created.key.owner_kind, created.key.owner_id) == ("org", org.id)
    assert [k.id for k in auth.api_keys.list(org.id)] == [created.key.id]
    ledger.clear()

    auth.api_keys.validate(created.secret)

    (ctx,) = _usage(ledger)
    assert (ctx.tenant, ctx.user_id, ctx.org_id) == ("bigco", None, org.id)


def test_a_failing_ledger_does_not_fail_validation(make_auth: AuthFactory) -> None:
    ledger = FailingLedger(fail=["record_usage"])
    auth = make_auth(ledger=ledger)
    created = _key(auth, _user(auth))
    failures = auth.ledger_stats.record_failures

    assert auth.api_keys.validate(created.secret).id == created.key.id
    assert auth.ledger_stats.record_failures == failures + 1


def test_concurrent_validations_each_record_once_and_touch_once(
    cauth: Authsome, counting: CountingStore, ledger: RecordingLedger
) -> None:
    created = _key(cauth, _user(cauth))
    ledger.clear()
    counting.reset()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(25):
            cauth.api_keys.validate(created.secret)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    event_ids = [ctx.event_id for ctx in _usage(ledger)]
    assert len(event_ids) == 200
    assert len(set(event_ids)) == 200
    assert counting.counts["touch_api_key"] == 1


# -- scopes ----------------------------------------------------------------------------


def test_scopes_are_deduplicated_and_sorted(auth: Authsome) -> None:
    created = _key(auth, _user(auth), scopes=["users:write", "billing.read", "users:write"])
    assert created.key.scopes == ("billing.read", "users:write")
    assert auth.api_keys.get(created.key.id).scopes == ("billing.read", "users:write")


def test_required_scopes_that_the_key_has_pass(auth: Authsome, ledger: RecordingLedger) -> None:
    created = _key(auth, _user(auth), scopes=("a", "b", "c"))
    ledger.clear()
    auth.api_keys.validate(created.secret, required_scopes=("c", "a", "a"))
    assert len(_usage(ledger)) == 1


def test_missing_scopes_raise_insufficient_scope_and_record_nothing(
    auth: Authsome, ledger: RecordingLedger
) -> None:
    created = _key(auth, _user(auth), scopes=("read",))
    ledger.clear()

    with pytest.raises(InsufficientScope) as raised:
        auth.api_keys.validate(created.secret, required_scopes=["write", "read", "admin"])

    assert raised.value.missing == ("admin", "write")
    assert isinstance(raised.value, PermissionError)
    assert ledger.calls == []


def test_insufficient_scope_pickles() -> None:
    again = pickle.loads(pickle.dumps(InsufficientScope(("a", "b"))))
    assert again.missing == ("a", "b")
    assert "a, b" in str(again)


def test_required_scopes_are_checked_only_on_a_valid_key(auth: Authsome) -> None:
    created = _key(auth, _user(auth))
    auth.api_keys.revoke(created.key.id)
    with pytest.raises(InvalidToken):  # not InsufficientScope: says nothing about the key
        auth.api_keys.validate(created.secret, required_scopes=["admin"])


@pytest.mark.parametrize(
    ("scopes", "error"),
    [
        ("read", TypeError),  # a str is iterable, but surely a mistake
        (b"read", TypeError),
        (42, TypeError),
        ([1], TypeError),
        ([""], ValidationError),
        (["Read"], ValidationError),
        (["read write"], ValidationError),
        (["read\n"], ValidationError),
        (["é"], ValidationError),
        (["a" * 101], ValidationError),
        ([f"s{i}" for i in range(65)], ValidationError),
    ],
)
def test_bad_scopes_are_refused_on_create_and_validate(
    auth: Authsome, scopes: object, error: type[Exception]
) -> None:
    user = _user(auth)
    with pytest.raises(error):
        auth.api_keys.create(user.id, "k", scopes=scopes)  # type: ignore[arg-type]
    assert auth.store.list_api_keys("user", user.id) == []
    created = _key(auth, user)
    with pytest.raises(error):
        auth.api_keys.validate(created.secret, required_scopes=scopes)  # type: ignore[arg-type]


# -- last used ---------------------------------------------------------------------------


def test_last_used_is_written_at_most_once_per_window(
    cauth: Authsome, counting: CountingStore, clock: FakeClock
) -> None:
    created = _key(cauth, _user(cauth))
    first_use = clock.now
    counting.reset()

    for _ in range(20):
        cauth.api_keys.validate(created.secret)
        clock.advance(seconds=2.9)  # 20 uses over 58 s
    assert counting.counts["touch_api_key"] == 1
    assert cauth.api_keys.get(created.key.id).last_used_at == first_use

    clock.now = first_use + timedelta(seconds=60)
    cauth.api_keys.validate(created.secret)
    assert counting.counts["touch_api_key"] == 2
    assert cauth.api_keys.get(created.key.id).last_used_at == clock.now


def test_keys_are_throttled_independently(cauth: Authsome, counting: CountingStore) -> None:
    user = _user(cauth)
    first, second = _key(cauth, user), _key(cauth, user)
    counting.reset()

    for _ in range(3):
        cauth.api_keys.validate(first.secret)
        cauth.api_keys.validate(second.secret)

    assert counting.counts["touch_api_key"] == 2


def test_a_new_key_has_no_last_used_time(auth: Authsome) -> None:
    assert _key(auth, _user(auth)).key.last_used_at is None


def test_resolution_is_configurable(make_auth: AuthFactory, counting: CountingStore) -> None:
    auth = make_auth(store=counting, api_keys=ApiKeyPolicy(last_used_resolution=timedelta(0)))
    created = _key(auth, _user(auth))
    counting.reset()
    for _ in range(3):
        auth.api_keys.validate(created.secret)
    assert counting.counts["touch_api_key"] == 3


@pytest.mark.parametrize(("value", "error"), [(timedelta(seconds=-1), ValueError), (60, TypeError)])
def test_bad_policy_is_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        ApiKeyPolicy(last_used_resolution=value)


def test_a_failed_last_used_write_is_logged_retried_and_never_fails_the_request(
    cauth: Authsome,
    counting: CountingStore,
    ledger: RecordingLedger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    created = _key(cauth, _user(cauth))
    counting.fail_touch = True
    ledger.clear()

    with caplog.at_level(logging.WARNING, logger="authsome.apikeys"):
        cauth.api_keys.validate(created.secret)
    assert "last-used time not written" in caplog.text
    assert len(_usage(ledger)) == 1

    counting.fail_touch = False
    counting.reset()
    cauth.api_keys.validate(created.secret)  # same window, but the last write failed
    assert counting.counts["touch_api_key"] == 1


def test_the_throttle_forgets_old_entries_but_still_throttles_recent_ones(
    clock: FakeClock,
) -> None:
    store = CountingStore(MemoryStore())
    throttle = _TouchThrottle(store, timedelta(seconds=60))  # type: ignore[arg-type]
    throttle._prune_at = 3
    for i in range(3):
        throttle.touch(f"old{i}", clock.now)
    clock.advance(seconds=61)
    throttle.touch("new0", clock.now)  # 4 entries > 3: the 3 old ones go
    assert set(throttle._written) == {"new0"}
    store.reset()
    throttle.touch("new0", clock.now)
    assert store.counts["touch_api_key"] == 0


# -- listing and lookup ---------------------------------------------------------------------


def test_list_returns_the_owners_keys_oldest_first(auth: Authsome, clock: FakeClock) -> None:
    ann, bob = _user(auth), _user(auth, "bob@example.com")
    first = _key(auth, ann)
    clock.advance(seconds=1)
    second = _key(auth, ann)
    _key(auth, bob)
    auth.api_keys.revoke(first.key.id)

    listed = auth.api_keys.list(ann.id)

    assert [k.id for k in listed] == [first.key.id, second.key.id]
    assert listed[0].revoked_at is not None


def test_the_public_key_record_holds_no_secret_or_hash() -> None:
    names = {f.name for f in dataclasses.fields(ApiKey)}
    assert not {n for n in names if "secret" in n or "hash" in n}


def test_unknown_owner_or_key_is_not_found(auth: Authsome) -> None:
    with pytest.raises(NotFound):
        auth.api_keys.list("usr_nope")
    with pytest.raises(NotFound):
        auth.api_keys.get("key_nope")


# -- bad input: typed errors, nothing written --------------------------------------------------


def _bad_create_calls(user: User, now: datetime) -> list[tuple[str, Callable[..., Any], type]]:
    naive = now.replace(tzinfo=None) + timedelta(days=1)
    return [
        ("owner not str", lambda a: a.api_keys.create(None, "k"), TypeError),
        ("unknown user", lambda a: a.api_keys.create("usr_nope", "k"), NotFound),
        ("unknown org", lambda a: a.api_keys.create("org_1", "k"), NotFound),
        ("not an id", lambda a: a.api_keys.create("ann@example.com", "k"), NotFound),
        ("name not str", lambda a: a.api_keys.create(user.id, 7), TypeError),
        ("empty name", lambda a: a.api_keys.create(user.id, ""), ValidationError),
        ("blank name", lambda a: a.api_keys.create(user.id, "   "), ValidationError),
        ("long name", lambda a: a.api_keys.create(user.id, "n" * 101), ValidationError),
        ("control char", lambda a: a.api_keys.create(user.id, "a\x00b"), ValidationError),
        (
            "naive expiry",
            lambda a: a.api_keys.create(user.id, "k", expires_at=naive),
            ValidationError,
        ),
        ("past expiry", lambda a: a.api_keys.create(user.id, "k", expires_at=now), ValidationError),
        (
            "expiry not datetime",
            lambda a: a.api_keys.create(user.id, "k", expires_at="2030-01-01"),
            TypeError,
        ),
    ]


@pytest.mark.parametrize("case", range(12))
def test_bad_input_raises_a_typed_error_and_writes_nothing(
    cauth: Authsome, counting: CountingStore, ledger: RecordingLedger, clock: FakeClock, case: int
) -> None:
    user = _user(cauth)
    label, call, error = _bad_create_calls(user, clock.now)[case]
    ledger.clear()
    counting.reset()

    with pytest.raises(error):
        call(cauth)

    assert counting.counts["create_api_key"] == 0, label
    assert cauth.store.list_api_keys("user", user.id) == []
    assert ledger.calls == []


def test_name_is_trimmed_and_100_characters_are_fine(auth: Authsome) -> None:
    user = _user(auth)
    assert auth.api_keys.create(user.id, "  deploy  ").key.name == "deploy"
    assert auth.api_keys.create(user.id, "n" * 100).key.name == "n" * 100


def test_a_lookup_id_collision_is_retried(auth: Authsome, monkeypatch: pytest.MonkeyPatch) -> None:
    from authsome import apikeys

    user = _user(auth)
    taken = _key(auth, user).key.lookup_id
    draws = iter([taken, "Fresh001"])
    real = apikeys.random_base62
    monkeypatch.setattr(apikeys, "random_base62", lambda n: next(draws) if n == 8 else real(n))

    created = _key(auth, user)

    assert created.key.lookup_id == "Fresh001"
    assert auth.api_keys.validate(created.secret).id == created.key.id


# -- secrecy -----------------------------------------------------------------------------------


def test_no_secret_or_hash_in_repr_str_errors_or_logs(
    auth: Authsome, ledger: RecordingLedger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = _user(auth)
    created = _key(auth, user, scopes=["read"], expires_at=clock.now + timedelta(days=1))
    secret = created.secret
    body = secret[12:34]
    forbidden = [secret, body, sha256_hex(secret)]
    texts = [repr(created), str(created), repr(created.key), repr(auth), repr(ledger.calls)]

    auth.api_keys.validate(secret)
    typo = secret[:-1] + ("y" if secret.endswith("x") else "x")  # always a different key
    for attempt in (typo, _compose_secret(created.key.lookup_id), secret + " "):
        with pytest.raises(InvalidToken) as raised:
            auth.api_keys.validate(attempt)
        texts += [str(raised.value), repr(raised.value)]
    with pytest.raises(InsufficientScope) as insufficient:
        auth.api_keys.validate(secret, required_scopes=["write"])
    texts += [str(insufficient.value), repr(insufficient.value)]
    stored = auth.store.find_api_key_by_lookup_id(created.key.lookup_id)
    texts += [repr(stored), repr(auth.api_keys.list(user.id))]
    auth.api_keys.revoke(created.key.id)
    clock.advance(days=2)
    with pytest.raises(InvalidToken) as expired:
        auth.api_keys.validate(secret)
    texts += [str(expired.value), caplog.text, *(r.getMessage() for r in caplog.records)]

    blob = "\n".join(texts)
    for value in forbidden:
        assert value not in blob
    assert created.key.id in blob  # the scan does look at real output


def test_the_secret_never_reaches_the_sqlite_file(make_auth: AuthFactory, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "auth.db")
    auth = make_auth(store=store)
    created = _key(auth, _user(auth), scopes=["read"])
    auth.api_keys.validate(created.secret)
    auth.api_keys.revoke(created.key.id)
    auth.close()

    files = list(tmp_path.iterdir())
    blob = b"".join(p.read_bytes() for p in files if p.is_file())
    assert created.secret.encode() not in blob
    assert created.secret[12:34].encode() not in blob
    assert sha256_hex(created.secret).encode() in blob  # the hash is what is kept
    assert created.key.lookup_id.encode() in blob


def test_api_keys_work_end_to_end_on_sqlite(make_auth: AuthFactory, tmp_path: Path) -> None:
    ledger = RecordingLedger()
    auth = make_auth(store=SQLiteStore(tmp_path / "auth.db"), ledger=ledger)
    user = _user(auth)
    created = _key(auth, user, scopes=["b", "a"])
    reopened = make_auth(store=SQLiteStore(tmp_path / "auth.db"), ledger=ledger)

    key = reopened.api_keys.validate(created.secret, required_scopes=["a"])

    assert key == created.key
    assert reopened.api_keys.list(user.id)[0].last_used_at is not None
    assert len(_usage(ledger)) == 1
