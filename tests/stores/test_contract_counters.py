"""Contract of the counter upkeep: ``release_counter`` (taking back one hit counted in
advance) and ``prune_counters`` (forgetting expired counters)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from authsome.stores import Store

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
EXPIRY = NOW + timedelta(seconds=60)


def test_release_takes_back_one_hit_and_keeps_the_expiry(store: Store) -> None:
    for _ in range(3):
        store.hit_counter("ip:1", NOW, 60)

    store.release_counter("ip:1", NOW + timedelta(seconds=10))

    assert store.get_counter("ip:1", NOW) == (2, EXPIRY)
    # The next hit continues the same window rather than starting a new one.
    assert store.hit_counter("ip:1", NOW + timedelta(seconds=20), 5) == (3, EXPIRY)


def test_release_never_goes_below_zero(store: Store) -> None:
    store.hit_counter("ip:1", NOW, 60)

    store.release_counter("ip:1", NOW)
    store.release_counter("ip:1", NOW)

    assert store.get_counter("ip:1", NOW) in {None, (0, EXPIRY)}
    assert store.hit_counter("ip:1", NOW, 60) == (1, EXPIRY)


def test_release_of_an_absent_counter_creates_nothing(store: Store) -> None:
    store.release_counter("ip:1", NOW)

    assert store.get_counter("ip:1", NOW) is None
    assert store.hit_counter("ip:1", NOW, 60) == (1, EXPIRY)


def test_release_of_an_expired_counter_has_no_effect(store: Store) -> None:
    store.hit_counter("ip:1", NOW, 60)
    store.hit_counter("ip:1", NOW, 60)

    store.release_counter("ip:1", EXPIRY)  # expired at that instant

    later = EXPIRY + timedelta(seconds=1)
    assert store.hit_counter("ip:1", later, 30) == (1, later + timedelta(seconds=30))


def test_release_touches_only_its_key(store: Store) -> None:
    store.hit_counter("ip:1", NOW, 60)
    store.hit_counter("ip:2", NOW, 60)

    store.release_counter("ip:1", NOW)

    assert store.get_counter("ip:2", NOW) == (1, EXPIRY)


def test_racing_hits_and_releases_cancel_out_exactly(store: Store) -> None:
    store.hit_counter("ip:1", NOW, 60)  # one hit that stays
    threads, rounds = 8, 10
    barrier = threading.Barrier(threads)

    def hit_then_release() -> None:
        barrier.wait()
        for _ in range(rounds):
            store.hit_counter("ip:1", NOW, 60)
            store.release_counter("ip:1", NOW)

    workers = [threading.Thread(target=hit_then_release) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert store.get_counter("ip:1", NOW) == (1, EXPIRY)


def test_prune_deletes_only_expired_counters(store: Store) -> None:
    store.hit_counter("short", NOW, 10)
    store.hit_counter("long", NOW, 120)
    later = NOW + timedelta(seconds=10)  # "short" expires exactly now

    assert store.prune_counters(later) == 1
    assert store.get_counter("long", later) == (1, NOW + timedelta(seconds=120))
    assert store.prune_counters(later) == 0
    # A pruned key starts a fresh window, like any expired one.
    assert store.hit_counter("short", later, 10) == (1, later + timedelta(seconds=10))
