"""The memory store's event-id index (a sorted tail plus a set) behaves like a set."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from authsome import ledger
from authsome.ledger.stores import EventIds, UsageBatch
from authsome.ledger.stores.memory import _EventIds

ids = st.text(alphabet="abc\x00é", max_size=3)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), ids),
        st.tuples(st.just("add_all"), st.lists(ids, max_size=8)),
        st.tuples(st.just("add_all"), st.lists(ids, max_size=8).map(sorted)),
    ),
    max_size=30,
)


@given(operations, st.lists(ids, max_size=10))
def test_event_ids_count_and_answer_like_a_set(
    ops: list[tuple[str, object]], probes: list[str]
) -> None:
    index = _EventIds()
    model: set[str] = set()
    for name, arg in ops:
        if name == "add":
            assert isinstance(arg, str)
            assert index.add(arg) == (arg not in model)
            model.add(arg)
        else:
            assert isinstance(arg, list)
            assert index.add_all(arg) == len(set(arg) - model)
            model.update(arg)
        assert index.ordered == sorted(index.ordered)
        assert len(index.ordered) == len(set(index.ordered))
        assert set(index.ordered) | index.scattered == model
    for probe in [*probes, *model]:
        assert (probe in index) == (probe in model)


def test_ids_in_increasing_batches_are_appended_and_counted_once() -> None:
    store = ledger.MemoryStore()
    first = [f"akv_{i:08d}" for i in range(1000)]
    later = [f"akv_{i:08d}" for i in range(1000, 2000)]
    store.apply_usage(UsageBatch([], [], None, [EventIds("t", "f", 0, 1, first)]))
    store.apply_usage(UsageBatch([], [], None, [EventIds("t", "f", 0, 1, later)]))
    store.apply_usage(UsageBatch([], [], None, [EventIds("t", "f", 0, 1, first[::-7])]))  # retries
    assert store.get_usage("t", "f", 0) == 2000
    assert store.known_events("t", "f", ["akv_00000999", "akv_00001999", "nope"]) == {
        "akv_00000999",
        "akv_00001999",
    }
    index = store._events[("t", "f")]
    assert len(index.ordered) == 2000
    assert not index.scattered
