"""A set of event ids that is cheap for ids coming in increasing order.

Event ids that grow with time (the auth engine's ``new_ordered_id`` ones, for
instance ``authsome.apikeys.validated``'s) go to a sorted list that a batch extends
at its end; the rest go to a set. Appending thousands of new ids needs neither their
hashes nor random writes into a large table, which is what adding them to a set of
millions costs (it is bound by memory latency). Membership is a set lookup, then a
binary search.

The memory store keeps the ids it has counted in one; the metering buffer keeps
the ids it holds, to count a retried event once before it reaches the store.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Sequence
from itertools import islice
from operator import ge

__all__ = ["EventIdSet"]

_FEW = 64  # batches up to this size that cannot be appended are added id by id


class EventIdSet:
    """Event ids, as a sorted tail (``ordered``) plus a ``scattered`` set."""

    __slots__ = ("ordered", "scattered", "top")

    def __init__(self) -> None:
        self.ordered: list[str] = []  # strictly increasing
        self.scattered: set[str] = set()
        self.top: str | None = None  # the largest id in either

    def __contains__(self, event_id: object) -> bool:
        if not isinstance(event_id, str):
            return False
        if event_id in self.scattered:
            return True
        ordered = self.ordered
        i = bisect_left(ordered, event_id)
        return i < len(ordered) and ordered[i] == event_id

    def __len__(self) -> int:
        return len(self.ordered) + len(self.scattered)

    def add(self, event_id: str) -> bool:
        """Add one id; whether it was new."""
        if event_id in self:
            return False
        if self.top is None or event_id > self.top:
            self.ordered.append(event_id)
            self.top = event_id
        else:
            self.scattered.add(event_id)
        return True

    def add_all(self, event_ids: Sequence[str]) -> int:
        """Add ids (duplicates allowed); how many were new."""
        if not event_ids:
            return 0
        ids, increasing = _in_order(event_ids)
        if increasing:
            k = self._overlap(ids)
            if k <= _FEW:  # at most a few below the top (late or retried): look each up
                return sum(map(self.add, ids[:k])) + self._append(ids, k)
        elif len(ids) <= _FEW:
            return sum(map(self.add, ids))
        return self._merge(ids)

    def add_new(self, event_ids: Sequence[str], other: EventIdSet | None = None) -> bool:
        """Add ``event_ids`` if they are distinct and none is in here or in ``other``;
        otherwise change nothing. Whether they were added."""
        if not event_ids:
            return True
        ids, increasing = _in_order(event_ids)
        if increasing:  # distinct; only those up to a set's top can be in it
            k = self._overlap(ids)
            j = 0 if other is None else other._overlap(ids)
            if k <= _FEW and j <= _FEW:
                if any(map(self.__contains__, ids[:k])) or (
                    other is not None and any(map(other.__contains__, ids[:j]))
                ):
                    return False
                self.scattered.update(ids[:k])
                self._append(ids, k)
                return True
        new = set(ids)
        if (
            len(new) != len(ids)
            or not self.isdisjoint(new)
            or (other is not None and not other.isdisjoint(new))
        ):
            return False
        self._merge(ids)
        return True

    def isdisjoint(self, event_ids: Collection[str]) -> bool:
        """Whether none of ``event_ids`` is in here."""
        if not self.scattered.isdisjoint(event_ids):
            return False
        ordered = self.ordered
        if not ordered:
            return True
        lo, hi = ordered[0], ordered[-1]
        return not any(e in self for e in event_ids if lo <= e <= hi)

    def _overlap(self, increasing: Sequence[str]) -> int:
        """How many of the (strictly increasing) ids are not above every id in here."""
        return 0 if self.top is None else bisect_right(increasing, self.top)

    def _append(self, increasing: Sequence[str], start: int) -> int:
        """Add ``increasing[start:]``: strictly increasing ids above every id in here."""
        if start < len(increasing):
            self.ordered.extend(increasing[start:] if start else increasing)
            self.top = increasing[-1]
        return len(increasing) - start

    def _merge(self, event_ids: Sequence[str]) -> int:
        """Add ids in bulk through the set; how many were new. Membership in the sorted
        list is one binary search per id in Python, so when the batch reaches into its
        range the list joins the set (each id moves at most once)."""
        ordered, scattered = self.ordered, self.scattered
        if ordered and min(event_ids) <= ordered[-1]:
            scattered.update(ordered)
            self.ordered = []
        before = len(scattered)
        scattered.update(event_ids)
        highest = max(event_ids)
        if self.top is None or highest > self.top:
            self.top = highest
        return len(scattered) - before


def _in_order(event_ids: Sequence[str]) -> tuple[Sequence[str], bool]:
    """``event_ids``, sorted if only a few neighbours were out of order (a few threads'
    ids interleaved: timsort does that in O(n)), and whether that is strictly
    increasing (which makes them distinct)."""
    disorder = _disorder(event_ids)
    if disorder and disorder * 64 <= len(event_ids):
        event_ids = sorted(event_ids)
        disorder = _disorder(event_ids)
    return event_ids, not disorder


def _disorder(items: Sequence[str]) -> int:
    """How many neighbours in ``items`` are not strictly increasing (0: sorted, unique)."""
    return sum(map(ge, items, islice(items, 1, None)))
