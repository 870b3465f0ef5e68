"""Comparing the time of two actions in one run, robustly on a busy machine."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable


def median_ratio(
    known: Callable[[], None],
    unknown: Callable[[], None],
    rounds: int,
    *,
    settle: Callable[[], None] | None = None,
    warm_up: int = 50,
) -> float:
    """The median, over ``rounds`` back-to-back pairs, of ``unknown``'s time over
    ``known``'s.

    Each ratio compares two calls made a moment apart, so a slow spell of the machine
    (another process on the core) lengthens both and cancels out; the pairs alternate
    which goes first, so being first or second favours neither; the garbage collector
    is paused while sampling, so a collection lands in no sample; ``settle`` (waiting
    for background work an action queued) runs after each call, outside the timing,
    so each call starts from the same quiet state.
    """
    for _ in range(warm_up):
        known()
        unknown()
    if settle is not None:
        settle()
    ratios: list[float] = []
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for round_ in range(rounds):
            if round_ % 2:
                unknown_ns, known_ns = _timed(unknown, settle), _timed(known, settle)
            else:
                known_ns, unknown_ns = _timed(known, settle), _timed(unknown, settle)
            ratios.append(unknown_ns / max(known_ns, 1))
    finally:
        if collecting:
            gc.enable()
    return statistics.median(ratios)


def _timed(action: Callable[[], None], settle: Callable[[], None] | None) -> int:
    started = time.perf_counter_ns()
    action()
    elapsed = time.perf_counter_ns() - started
    if settle is not None:
        settle()
    return elapsed
