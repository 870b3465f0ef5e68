"""Throttle counter keys: keyed digests (not plain SHA-256 of addresses and e-mails),
one key for every engine sharing a store, and client addresses in canonical form
(spellings of one address, IPv4-mapped IPv6 and a whole IPv6 /64 share counters)."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import sqlite3
from pathlib import Path

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from authsome import Authsome, InvalidCredentials, RateLimited, ThrottlePolicy
from authsome.stores import MemoryStore, PostgresStore, SQLiteStore, Store
from authsome.throttle import Throttle, canonical_address
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.shared_store import SharedStore, shared_store

__all__ = ["shared_store"]  # the fixture, imported to be found by pytest

EMAIL = "ann@example.com"
WRONG = "definitely not it"
NOW = FakeClock().now


def _fail(auth: Authsome, ip: str | None, email: str = EMAIL) -> None:
    with pytest.raises(InvalidCredentials):
        auth.sign_in(email, WRONG, ip=ip)


def _counter_keys(store: Store, shared: SharedStore, tmp_path: Path) -> set[str]:
    """Every counter key at rest, read past the store's API as a thief would."""
    if isinstance(store, MemoryStore):
        return set(store._counters)
    if isinstance(store, SQLiteStore):
        with sqlite3.connect(tmp_path / "auth.db") as conn:
            return {row[0] for row in conn.execute("SELECT key FROM counters")}
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store._pool.conninfo) as conn:
        query = sql.SQL("SELECT key FROM {}.counters").format(sql.Identifier(store._schema))
        return {row[0] for row in conn.execute(query)}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_counter_keys_are_not_sha256_of_what_they_count(
    make_auth: AuthFactory, shared_store: SharedStore, tmp_path: Path
) -> None:
    store = shared_store.open()
    auth = make_auth(store=store)
    auth.users.register(EMAIL, PASSWORD)
    ip = "203.0.113.7"
    _fail(auth, ip)
    auth.sign_in(EMAIL, PASSWORD, ip=ip)  # also remembers the address as known

    keys = _counter_keys(store, shared_store, tmp_path)

    assert len(keys) >= 3
    account = f"default\x00{EMAIL}"
    # The attack of the review: hash every address of the /24 (a /16 took 0.1 s) in
    # every way the counters could have been built, and look the digests up.
    guesses = {
        _sha256(text)
        for host in ipaddress.ip_network("203.0.113.0/24")
        for text in (
            str(host),
            f"throttle:ip\x00{host}",
            f"throttle:account-ip\x00{account}\x00{host}",
            f"known-ip\x00{account}\x00{host}",
        )
    }
    guesses |= {_sha256(EMAIL), _sha256(f"throttle:account\x00{account}")}
    assert keys.isdisjoint(guesses)


def test_engines_sharing_a_store_count_on_the_same_counters(
    make_auth: AuthFactory, shared_store: SharedStore
) -> None:
    policy = ThrottlePolicy(per_account_ip=4)
    first = make_auth(store=shared_store.open(), throttle=policy)
    second = make_auth(store=shared_store.open(), throttle=policy)
    for auth in (first, second, first, second):
        _fail(auth, "198.51.100.9")

    for auth in (first, second):
        with pytest.raises(RateLimited):
            auth.sign_in(EMAIL, WRONG, ip="198.51.100.9")


def test_a_secret_key_keys_the_counters_instead_of_the_store(make_auth: AuthFactory) -> None:
    store = MemoryStore()
    policy = ThrottlePolicy(per_account_ip=2)
    keyed = make_auth(store=store, throttle=policy, secret_key=bytes(range(32)))
    _fail(keyed, "198.51.100.9")
    _fail(keyed, "198.51.100.9")

    again = make_auth(store=store, throttle=policy, secret_key=bytes(range(32)))
    with pytest.raises(RateLimited):
        again.sign_in(EMAIL, WRONG, ip="198.51.100.9")
    # Under another key the names differ: these counters are not those.
    _fail(make_auth(store=store, throttle=policy), "198.51.100.9")


# -- canonical addresses ----------------------------------------------------------------

_ipv6 = st.integers(min_value=0, max_value=2**128 - 1).map(ipaddress.IPv6Address)
_ipv4 = st.integers(min_value=0, max_value=2**32 - 1).map(ipaddress.IPv4Address)


def _spellings(address: ipaddress.IPv6Address) -> list[str]:
    return [
        str(address),
        address.exploded,
        address.exploded.upper(),
        f"[{address}]",
        f"  {address.compressed}  ",
        f"{address}%eth0" if not address.ipv4_mapped else str(address),
    ]


@given(address=_ipv6)
def test_every_spelling_of_an_ipv6_address_is_one_name(address: ipaddress.IPv6Address) -> None:
    names = {canonical_address(text) for text in _spellings(address)}

    assert len(names) == 1


@given(address=_ipv4)
def test_an_ipv4_mapped_address_is_its_ipv4_address(address: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")

    assert canonical_address(str(address)) == str(address)
    assert canonical_address(str(mapped)) == str(address)
    assert canonical_address(mapped.exploded) == str(address)


@given(address=_ipv6, host=st.integers(min_value=0, max_value=2**64 - 1))
def test_ipv6_addresses_of_one_slash_64_are_one_name(
    address: ipaddress.IPv6Address, host: int
) -> None:
    neighbour = ipaddress.IPv6Address((int(address) >> 64 << 64) | host)
    if address.ipv4_mapped is None:
        assert canonical_address(str(neighbour)) == canonical_address(str(address))
        assert canonical_address(str(address)) == str(
            ipaddress.IPv6Network((int(address) >> 64 << 64, 64))
        )


@given(first=_ipv6, second=_ipv6)
def test_ipv6_addresses_of_different_slash_64s_are_different_names(
    first: ipaddress.IPv6Address, second: ipaddress.IPv6Address
) -> None:
    if int(first) >> 64 != int(second) >> 64 and not (first.ipv4_mapped or second.ipv4_mapped):
        assert canonical_address(str(first)) != canonical_address(str(second))


@pytest.mark.parametrize(
    "text", ["", "unknown", "testclient", "203.0.113", "203.0.113.256", "::g", "1" * 65, "a:b"]
)
def test_what_is_no_address_has_no_name(text: str) -> None:
    assert canonical_address(text) is None


@settings(max_examples=50, deadline=None)
@given(address=_ipv6, hosts=st.lists(st.integers(0, 2**64 - 1), min_size=2, max_size=2))
def test_two_addresses_of_one_slash_64_share_a_counter(
    address: ipaddress.IPv6Address, hosts: list[int]
) -> None:
    if address.ipv4_mapped is not None:
        return
    prefix = int(address) >> 64 << 64
    first, second = (str(ipaddress.IPv6Address(prefix | host)) for host in hosts)
    throttle = Throttle(MemoryStore(), ThrottlePolicy(per_account_ip=1))

    throttle.reserve("default", EMAIL, first, NOW)
    with pytest.raises(RateLimited):
        throttle.reserve("default", EMAIL, second, NOW)


def test_spellings_of_one_address_share_the_sign_in_counters(make_auth: AuthFactory) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_account_ip=4))
    for spelling in (
        "2001:db8::1",
        "2001:0db8:0000::0001",
        "2001:DB8:0:0:0:0:0:1",
        "[2001:db8::1]",
    ):
        _fail(auth, spelling)

    with pytest.raises(RateLimited):
        auth.sign_in(EMAIL, WRONG, ip="2001:db8::ffff")  # the same /64
    _fail(auth, "2001:db8:0:1::1")  # the next /64 is another client


def test_ipv4_mapped_ipv6_shares_the_counters_of_its_ipv4_address(
    make_auth: AuthFactory,
) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_account_ip=2))
    _fail(auth, "203.0.113.7")
    _fail(auth, "::ffff:203.0.113.7")

    with pytest.raises(RateLimited):
        auth.sign_in(EMAIL, WRONG, ip="::FFFF:cb00:7107")


# -- values that are no address -----------------------------------------------------------


def test_values_that_are_no_address_share_one_bucket_and_warn_once(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authsome.security")
    auth = make_auth(throttle=ThrottlePolicy(per_account_ip=2))
    _fail(auth, "made-up-1")
    _fail(auth, "made-up-2")

    with pytest.raises(RateLimited):
        auth.sign_in(EMAIL, WRONG, ip="made-up-3")  # a fresh value buys no fresh counter
    warnings = [r for r in caplog.records if "not an IP address" in r.getMessage()]
    assert len(warnings) == 1
    assert "made-up" not in warnings[0].getMessage()


def test_a_value_that_is_no_address_is_never_remembered_as_known(
    make_auth: AuthFactory,
) -> None:
    auth = make_auth(throttle=ThrottlePolicy(per_account_ip=50, per_account=2))
    auth.users.register(EMAIL, PASSWORD)
    auth.sign_in(EMAIL, PASSWORD, ip="made-up")  # a success from the invalid bucket
    _fail(auth, "198.51.100.1")
    _fail(auth, "198.51.100.2")

    # A real known address would be exempt from the per-account limit; this is not.
    with pytest.raises(RateLimited):
        auth.sign_in(EMAIL, PASSWORD, ip="made-up")
