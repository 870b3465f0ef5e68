"""Equal sign-in work after the password-hashing parameters are raised: accounts
still on the old parameters (upgraded only at their next successful sign-in) must
not be refused faster than unknown ones."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import argon2
import pytest
from argon2.exceptions import VerifyMismatchError

from authsome import Authsome, InvalidCredentials, PasswordHashing
from authsome.stores import MemoryStore
from tests.conftest import FAST, PASSWORD, AuthFactory

OLD = FAST  # m=8, t=1
NEW = PasswordHashing(time_cost=2, memory_cost_kib=16)


def _parameters(encoded: str) -> str:
    """The "$argon2id$v=19$m=..,t=..,p=.." part of an encoded hash."""
    return encoded.rsplit("$", 2)[0]


def _set(params: PasswordHashing) -> str:
    """That part for hashes made with ``params``."""
    return f"$argon2id$v=19$m={params.memory_cost_kib},t={params.time_cost},p={params.parallelism}"


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The parameters of every argon2 verification, in order."""
    seen: list[str] = []
    original = argon2.PasswordHasher.verify

    def recording_verify(self: argon2.PasswordHasher, stored: str | bytes, password: Any) -> bool:
        seen.append(_parameters(stored if isinstance(stored, str) else stored.decode()))
        try:
            return original(self, stored, password)
        except VerifyMismatchError:  # argon2 ran in full and the digests differ
            raise
        except Exception:
            seen.append("a check that did not run argon2 in full")
            raise

    monkeypatch.setattr(argon2.PasswordHasher, "verify", recording_verify)
    return seen


def _refused(auth: Authsome, email: str, password: str, ip: str) -> None:
    with pytest.raises(InvalidCredentials):
        auth.sign_in(email, password, ip=ip)


def _upgraded_engine(make_auth: AuthFactory) -> Authsome:
    """An engine on NEW parameters over a store holding users hashed with OLD ones."""
    store = MemoryStore()
    old = make_auth(store=store, password_hashing=OLD)
    old.users.register("old@example.com", PASSWORD)
    new = make_auth(store=store, password_hashing=NEW)
    new.users.register("new@example.com", PASSWORD)
    return new


def test_unknown_and_known_accounts_cost_the_same_argon2_checks(
    make_auth: AuthFactory, checked: list[str]
) -> None:
    auth = _upgraded_engine(make_auth)
    checked.clear()
    _refused(auth, "old@example.com", "wrong password!", "192.0.2.1")  # meets the OLD set
    first = Counter(checked)
    paths = {}
    for i, email in enumerate(["nobody@example.com", "old@example.com", "new@example.com"]):
        checked.clear()
        _refused(auth, email, "wrong password!", f"192.0.2.{10 + i}")
        paths[email] = Counter(checked)
    assert paths["nobody@example.com"] == Counter({_set(OLD): 1, _set(NEW): 1})
    assert paths["old@example.com"] == paths["nobody@example.com"]
    assert paths["new@example.com"] == paths["nobody@example.com"]
    assert first == paths["nobody@example.com"]  # meeting a set costs no extra check


def test_a_correct_password_still_signs_in_and_upgrades_the_hash(make_auth: AuthFactory) -> None:
    auth = _upgraded_engine(make_auth)
    user = auth.sign_in("old@example.com", PASSWORD, ip="192.0.2.1").user
    stored = auth.store.get_password_hash(user.id)
    assert stored is not None
    assert _parameters(stored) == _set(NEW)
    assert auth.sign_in("old@example.com", PASSWORD, ip="192.0.2.1").user == user
    _refused(auth, "old@example.com", "wrong password!", "192.0.2.2")
    _refused(auth, "nobody@example.com", PASSWORD, "192.0.2.3")


def test_unknown_accounts_are_not_slower_than_accounts_on_old_parameters(
    make_auth: AuthFactory,
) -> None:
    # Costs far apart (the old check is over 100x cheaper), so before equal work the
    # ratio was well over 10, and loose bounds leave room for a loaded machine.
    store = MemoryStore()
    make_auth(store=store, password_hashing=OLD).users.register("old@example.com", PASSWORD)
    auth = make_auth(
        store=store, password_hashing=PasswordHashing(time_cost=2, memory_cost_kib=2048)
    )
    _refused(auth, "old@example.com", "wrong password!", "192.0.2.1")
    known: list[float] = []
    unknown: list[float] = []
    for i in range(15):  # interleaved, best of each
        for email, times in (("old@example.com", known), ("nobody@example.com", unknown)):
            start = time.perf_counter()
            _refused(auth, email, "wrong password!", f"198.51.100.{i}")
            times.append(time.perf_counter() - start)
    ratio = min(unknown) / min(known)
    assert 0.25 < ratio < 4.0, f"unknown/known-old = {ratio:.2f}"
