"""Run one action from many threads at once, for the tests of races."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

from authsome.errors import InvalidToken

__all__ = ["race", "race_to_use"]

T = TypeVar("T")
A = TypeVar("A")


def race(attempt: Callable[[A], T], arguments: Iterable[A]) -> list[T]:
    """Call ``attempt(argument)`` for each argument, each in its own thread, all
    released together by a barrier; the results in the order the calls returned.

    A call that raises leaves no result, so the caller's count of outcomes shows it.
    """
    todo = list(arguments)
    barrier = threading.Barrier(len(todo))
    results: list[T] = []
    lock = threading.Lock()

    def run(argument: A) -> None:
        barrier.wait()
        result = attempt(argument)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(argument,)) for argument in todo]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def race_to_use(use: Callable[[], object], times: int = 8) -> list[bool]:
    """Call ``use()`` from ``times`` threads at once (see :func:`race`); whether each
    call got through, ``False`` for one refused with :class:`InvalidToken`. A single
    use token or code gives exactly one ``True``."""

    def attempt(_: int) -> bool:
        try:
            use()
        except InvalidToken:
            return False
        return True

    return race(attempt, range(times))
