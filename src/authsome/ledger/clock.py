"""Clocks: the engine asks a clock for "now", so tests can travel in time.

A clock is any zero-argument callable returning an aware :class:`~datetime.datetime`.
:func:`system_clock` is the default; :class:`ManualClock` is for tests and demos.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from authsome.ledger.errors import InvalidArgument, InvalidArgumentType

__all__ = ["Clock", "ManualClock", "system_clock", "to_utc"]

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def to_utc(value: datetime, name: str = "datetime") -> datetime:
    """Return ``value`` in UTC; naive datetimes are refused (their zone is a guess)."""
    if not isinstance(value, datetime):
        raise InvalidArgumentType(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


class ManualClock:
    """A clock that only moves when told to. Thread-safe.

    >>> clock = ManualClock(datetime(2024, 1, 31, tzinfo=UTC))
    >>> clock.advance(days=29)
    datetime.datetime(2024, 2, 29, 0, 0, tzinfo=datetime.timezone.utc)
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = to_utc(start, "start") if start is not None else system_clock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, now: datetime) -> None:
        """Jump to ``now`` (backwards too, if a test needs it)."""
        value = to_utc(now, "now")
        with self._lock:
            self._now = value

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)``; return the new now."""
        step = delta if delta is not None else timedelta(**kwargs)
        with self._lock:
            self._now += step
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self().isoformat()})"
