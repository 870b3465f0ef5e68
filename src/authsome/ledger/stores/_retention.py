"""How long a ledger store remembers event ids, and when it prunes the old ones.

An event id is what makes a retried event count once. It needs remembering only
while a retry can still arrive and still matter: retries come within seconds (the
engine's flush retries) or hours (a spool replayed after an outage), and once the
period the event counted in is invoiced, nobody re-bills it. So a store forgets an
id ``retention`` after it recorded it. The default is the longest period of any
stored plan plus :data:`RETENTION_MARGIN`: an event is recorded after its period
began, so its id outlives the end of that period by at least the margin. A retry
arriving later than that counts again.

Stores prune on their own, from :meth:`~authsome.ledger.stores.LedgerStore.apply_usage`
(which the engine calls from its background flusher): at most every
:data:`PRUNE_INTERVAL` seconds of the store's clock, at most a bounded number of
rows per batch, so a flush never stalls on a large prune and the table stays bounded
by what arrives within ``retention``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from authsome.ledger.clock import Clock, system_clock
from authsome.ledger.errors import InvalidArgument, InvalidArgumentType
from authsome.ledger.plans import Period, Plan

__all__ = [
    "PRUNE_CHUNK",
    "PRUNE_INTERVAL",
    "RETENTION_MARGIN",
    "PruneSchedule",
    "check_limit",
    "check_retention",
    "chunk_for",
    "default_retention",
]

RETENTION_MARGIN = timedelta(days=35)
PRUNE_INTERVAL = 3600.0  # seconds of the store's clock between looks for expired ids
PRUNE_CHUNK = 10_000  # rows deleted per batch at least (more for big batches)
_LONGEST = {Period.YEARLY: timedelta(days=366), Period.MONTHLY: timedelta(days=31)}


def check_retention(value: object) -> float | None:
    """``value`` (a positive :class:`~datetime.timedelta` or ``None``) in seconds."""
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise InvalidArgumentType(
            f"event_id_retention must be a timedelta or None, not {type(value).__name__}"
        )
    if value <= timedelta(0):
        raise InvalidArgument("event_id_retention must be positive")
    return value.total_seconds()


def check_limit(limit: object) -> int | None:
    """``limit`` of :meth:`prune_event_ids`: a positive int, or ``None`` for no limit."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidArgumentType(f"limit must be an int or None, not {type(limit).__name__}")
    if limit < 1:
        raise InvalidArgument("limit must be positive")
    return limit


def default_retention(plans: Iterable[Plan]) -> float:
    """The longest period of ``plans`` (a month when none resets) plus the margin, in s.

    Features that never reset have no period end; their ids follow the same rule, so
    they are kept a month plus the margin after they were recorded at least.
    """
    longest = _LONGEST[Period.MONTHLY]
    for plan in plans:
        for feature in plan.features:
            longest = max(longest, _LONGEST.get(feature.period, longest))
    return (longest + RETENTION_MARGIN).total_seconds()


class PruneSchedule:
    """When a store should next look for expired event ids (not thread-safe: stores
    call it under their own lock or accept a rare extra look)."""

    def __init__(self, retention: object, clock: Clock | None) -> None:
        self.retention = check_retention(retention)
        if clock is not None and not callable(clock):
            raise InvalidArgumentType("clock must be a callable returning a datetime")
        self.clock: Clock = clock or system_clock
        self._next = 0.0
        self._behind = False  # the last prune hit its row limit: more is expired

    def now(self) -> float:
        """The store's clock, in seconds since the epoch."""
        return self.clock().timestamp()

    def due(self, now: float) -> bool:
        """Whether a batch applied at ``now`` should prune too."""
        return self._behind or now >= self._next

    def done(self, now: float, deleted: int, limit: int) -> None:
        """Record a prune at ``now`` that deleted ``deleted`` of at most ``limit`` rows."""
        self._behind = deleted >= limit
        self._next = now + PRUNE_INTERVAL


def chunk_for(batch_size: int) -> int:
    """Rows a prune may delete alongside a batch of ``batch_size``: at least twice what
    the batch adds, so pruning keeps up with any rate of new ids."""
    return max(PRUNE_CHUNK, 2 * batch_size)
