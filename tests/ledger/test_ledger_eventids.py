"""The event-id set (a sorted tail plus a set) of the memory store and the metering
buffer behaves like a set."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsome import ledger
from authsome.ledger.eventids import EventIdSet
from authsome.ledger.stores import EventIds, UsageBatch, UsageDelta

ids = st.text(alphabet="abc\x00é", max_size=3)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), ids),
        st.tuples(st.just("add_all"), st.lists(ids, max_size=100)),  # > _FEW: in bulk
        st.tuples(st.just("add_all"), st.lists(ids, max_size=100).map(sorted)),
        st.tuples(st.just("add_new"), st.lists(ids, max_size=100)),
        st.tuples(st.just("add_new"), st.lists(ids, max_size=100).map(sorted)),
        st.tuples(st.just("add_new"), st.sets(ids, max_size=100).map(sorted)),
    ),
    max_size=30,
)


@given(operations, st.lists(ids, max_size=10), st.lists(ids, max_size=80))
def test_event_ids_count_and_answer_like_a_set(
    ops: list[tuple[str, object]], probes: list[str], others: list[str]
) -> None:
    index = EventIdSet()
    model: set[str] = set()
    other = EventIdSet()  # add_new also refuses ids held here (the in-flight batch)
    other.add_all(others)
    for name, arg in ops:
        if name == "add":
            assert isinstance(arg, str)
            assert index.add(arg) == (arg not in model)
            model.add(arg)
        elif name == "add_all":
            assert isinstance(arg, list)
            assert index.add_all(arg) == len(set(arg) - model)
            model.update(arg)
        else:
            assert isinstance(arg, list)
            new = len(set(arg)) == len(arg) and not set(arg) & (model | set(others))
            assert index.add_new(arg, other) == new
            if new:
                model.update(arg)
        assert len(index) == len(model)
        assert index.isdisjoint(set(probes)) == (not set(probes) & model)
        assert index.ordered == sorted(set(index.ordered))  # strictly increasing
        assert not index.scattered & set(index.ordered)
        assert set(index.ordered) | index.scattered == model
        assert index.top == (max(model) if model else None)
    for probe in [*probes, *model]:
        assert (probe in index) == (probe in model)


def test_ids_in_increasing_batches_are_appended_and_counted_once() -> None:
    store = ledger.MemoryStore()
    first = [f"akv_{i:08d}" for i in range(1000)]
    later = [f"akv_{i:08d}" for i in range(1000, 2000)]
    store.apply_usage(UsageBatch([], [], None, [EventIds("t", "f", 0, 1, first)]))
    store.apply_usage(UsageBatch([], [], None, [EventIds("t", "f", 0, 1, later)]))
    retries = first[::-50]  # a few, out of order: looked up one by one
    store.apply_usage(UsageBatch([], [], None, [EventIds("t", "f", 0, 1, retries)]))
    assert store.get_usage("t", "f", 0) == 2000
    assert store.known_events("t", "f", ["akv_00000999", "akv_00001999", "nope"]) == {
        "akv_00000999",
        "akv_00001999",
    }


def test_random_ids_in_bulk_count_once() -> None:
    store = ledger.MemoryStore()
    batches = [[uuid.uuid4().hex for _ in range(500)] for _ in range(4)]
    for batch in batches:
        store.apply_usage(UsageBatch([], [], None, [EventIds("t", "f", 0, 1, batch)]))
    store.apply_usage(UsageBatch([], [], None, [EventIds("t", "f", 0, 1, batches[1])]))  # again
    assert store.get_usage("t", "f", 0) == 2000
    assert store.known_events("t", "f", [batches[0][0], batches[3][-1], "nope"]) == {
        batches[0][0],
        batches[3][-1],
    }


def test_a_batch_with_an_id_that_is_not_a_str_changes_nothing() -> None:
    store = ledger.MemoryStore()
    store.apply_usage(UsageBatch([], [], "b-1", [EventIds("t", "f", 0, 1, ["a", "b"])]))
    bad = UsageBatch(
        [UsageDelta("t", "f", 0, 3, "c")],
        [],
        "b-2",
        [EventIds("t", "f", 0, 1, ["d", 5])],  # type: ignore[list-item]
    )
    with pytest.raises(TypeError, match="event ids must be str"):
        store.apply_usage(bad)
    assert store.get_usage("t", "f", 0) == 2
    assert store.known_events("t", "f", ["c", "d", 5]) == set()  # type: ignore[list-item]
    store.apply_usage(UsageBatch([UsageDelta("t", "f", 0, 3, "c")], [], "b-2"))  # not taken as done
    assert store.get_usage("t", "f", 0) == 5
