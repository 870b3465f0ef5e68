"""Contract of ``Store.atomic``: an operation's calls as one transaction."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from authsome.stores import MemoryStore, Store

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


class _Boom(Exception):
    pass


def test_a_blocks_writes_are_there_inside_and_after_it(store: Store) -> None:
    with store.atomic():
        store.hit_counter("a", NOW, 60)
        assert store.get_counter("a", NOW) is not None  # the block reads its own writes
        with store.atomic():  # an inner block joins the outer one
            store.hit_counter("a", NOW, 60)
        store.hit_counter("b", NOW, 60)

    assert store.get_counter("a", NOW) == (2, store.get_counter("b", NOW)[1])  # type: ignore[index]
    assert store.get_counter("b", NOW) is not None


def test_a_block_that_raises_leaves_nothing_behind(store: Store) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("the memory store keeps what a failed block wrote (documented)")
    store.hit_counter("kept", NOW, 60)

    def failing_block() -> None:
        with store.atomic():
            store.hit_counter("kept", NOW, 60)
            store.hit_counter("new", NOW, 60)
            store.delete_counter("kept")
            raise _Boom

    with pytest.raises(_Boom):
        failing_block()

    assert store.get_counter("new", NOW) is None
    kept = store.get_counter("kept", NOW)
    assert kept is not None and kept[0] == 1
    # The store is usable afterwards, in and out of blocks.
    with store.atomic():
        store.hit_counter("new", NOW, 60)
    assert store.get_counter("new", NOW) is not None


def test_racing_blocks_lose_no_update(store: Store) -> None:
    threads, blocks = 4, 10
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(blocks):
                with store.atomic():
                    # A read that decides nothing, then two writes: no other block's
                    # writes may land between them and be lost.
                    store.get_counter("a", NOW)
                    store.hit_counter("a", NOW, 60)
                    store.hit_counter("b", NOW, 60)
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert failures == []
    assert store.get_counter("a", NOW) == store.get_counter("b", NOW)
    counted = store.get_counter("a", NOW)
    assert counted is not None and counted[0] == threads * blocks
