"""The metering buffer: raw events, staged aggregates, the background flusher, the spool.

Life of a metered event:

1. ``Engine.meter`` adds a raw event to :attr:`Meter.raw` under :attr:`Meter.lock`
   (and, with a spool, writes it to the spool file) and returns. Nothing else.

   ``raw`` is flat: the :data:`FIELDS` fields of each event one after the other, not
   a tuple per event. No object per event outlives the call, so a busy meter does not
   feed the garbage collector thousands of young tuples to traverse, and staging
   reads a field of every event with one slice (``raw[i::FIELDS]``), a memcpy-like
   C loop, instead of a Python-level getter per event.

   The bridge adapter's entry (``Engine._record``) appends to a :class:`Lane` instead
   when one is open for the event's ``(tenant, key, user_id, quantity)``: only the
   event id, with one ``list.append`` and no lock (atomic under the GIL; staging takes
   the first ``n`` ids with a slice copy and a slice delete, each atomic too, and
   appends can only come after them).
2. *Staging* folds raw events and lanes into :class:`Pending` buckets per ``(tenant,
   feature, period_start)``: quantities add up, event ids and users are deduplicated.
   It happens in the flusher, and whenever an uncached entitlement needs exact
   pending usage.
3. The flusher takes all pending buckets as the *in-flight* batch and applies it to
   the store in one transaction. Only success releases it (and the spool segments it
   came from); a failure keeps it and retries with exponential back-off.

Two locks: ``lock`` (cheap, taken by ``meter``) guards the raw list, the lanes'
bookkeeping and the spool file;
``state`` (re-entrant, never taken by ``meter``) serializes staging, store writes and
reads of pending usage, so a reader never sees a batch both pending and persisted.
Lock order: ``state`` before ``lock``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from authsome.ledger.errors import (
    BufferFull,
    LedgerClosed,
    LedgerDataError,
    LedgerError,
    SpoolError,
)
from authsome.ledger.eventids import EventIdSet
from authsome.ledger.stores._protocol import (
    EventIds,
    LedgerStore,
    UniqueUse,
    UsageBatch,
    UsageDelta,
)

try:  # the spool lock is advisory and POSIX-only; elsewhere one engine per spool is on you
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FIELDS",
    "MAX_LANES",
    "Combination",
    "Lane",
    "Meter",
    "Pending",
    "Quarantined",
    "RawEvent",
    "Spool",
    "events_of",
]

log = logging.getLogger(__name__)

RawEvent = tuple[float, str, str, int, str | None, str | None, bool]
"""(timestamp, tenant, feature, quantity, user_id, event_id, id_is_fresh).

``id_is_fresh`` marks ids the engine generated itself: they cannot be in the store
yet, so pending usage need not ask the store about them.
"""

FIELDS = 7
"""Items per event in the flat :attr:`Meter.raw` (the length of a :data:`RawEvent`)."""


def events_of(flat: list[Any]) -> list[RawEvent]:
    """The events of a flat raw list, as :data:`RawEvent` tuples."""
    items = iter(flat)
    return list(zip(*[items] * FIELDS, strict=True))


_MAX_DELTA = 2**62


class Quarantined(NamedTuple):
    """A usage record the store refused for good (:class:`LedgerDataError`), set aside."""

    record: UsageDelta | UniqueUse
    error: str


Resolver = Callable[[str, str, float], tuple[int, bool]]
"""(tenant, feature, timestamp) -> (period_start, counts_unique_users)."""


class _Bucket:
    """Pending usage of one ``(tenant, feature, period_start)``."""

    __slots__ = ("anon", "checked", "ids", "total", "users")

    def __init__(self) -> None:
        self.total = 0  # quantities that surely are not persisted yet
        self.anon = 0  # quantities without an event id
        self.ids: dict[int, list[str]] = {}  # quantity -> every event id, for the store
        self.checked: dict[int, list[str]] = {}  # ids the store may already know
        self.users: set[str] = set()


_TENANT_KEY = itemgetter(1, 2)

Combination = tuple[str, str, str | None, int]
"""(tenant, key, user_id, quantity): what the events of one :class:`Lane` share."""

MAX_LANES = 1_024
"""Open lanes at most; one more retires them all (the busy ones reopen on their next event)."""


class Lane:
    """Event ids of one :data:`Combination` whose timestamps fall in ``[lo, hi)``, a
    window inside one period (``start``) that ends no later than the tenant's cached
    plan view does.

    ``Engine._record`` appends an id with one ``list.append`` and no lock while the lane
    is ``open``, the clock is in the window and ``ids`` is shorter than ``cap`` (the
    room reserved for it under ``max_buffer``). The events of a lane need no timestamp,
    tenant or key of their own, and staging folds them with :meth:`Pending.add_lane`.

    Closing is ``open = False`` then a last drain, both under :attr:`Meter.lock`; an
    appender reads ``open`` again *after* its append, so an id added after the last
    drain is seen and taken back (:meth:`Meter.recall`) and recorded the slow way.
    """

    __slots__ = (
        "cap",
        "hi",
        "ids",
        "key",
        "lo",
        "open",
        "quantity",
        "start",
        "tenant",
        "unique",
        "user_id",
    )

    def __init__(self, combination: Combination, unique: bool, lo: float, hi: float) -> None:
        self.tenant, self.key, self.user_id, self.quantity = combination
        self.start = int(lo)  # the period's start, as the store keys it
        self.unique = unique
        self.lo = lo
        self.hi = hi
        self.ids: list[str | None] = []
        self.cap = 0  # len(ids) up to which appends need no lock; see Meter.grow
        self.open = True

    def reserved(self) -> int:
        """Events this lane holds or may take without asking: counted against max_buffer."""
        return max(self.cap, len(self.ids))


class Pending:
    """Staged events, aggregated; what one flush writes."""

    __slots__ = ("buckets", "events", "seen", "segments")

    def __init__(self) -> None:
        self.buckets: dict[tuple[str, str, int], _Bucket] = {}
        self.seen: dict[tuple[str, str], EventIdSet] = {}  # event ids held, per (tenant, key)
        self.events = 0  # raw events folded in: the unit of back-pressure
        self.segments: list[Path] = []  # spool files whose events are all in here

    def __bool__(self) -> bool:
        return bool(self.events or self.segments)

    def _bucket(self, counter: tuple[str, str, int]) -> _Bucket:
        bucket = self.buckets.get(counter)
        if bucket is None:
            bucket = self.buckets[counter] = _Bucket()
        return bucket

    def _seen(self, tenant: str, key: str) -> EventIdSet:
        seen = self.seen.get((tenant, key))
        if seen is None:
            seen = self.seen[(tenant, key)] = EventIdSet()
        return seen

    def add(self, ev: RawEvent, period_start: int, unique: bool, other: Pending | None) -> None:
        """Fold one raw event in; ``other`` (the in-flight batch) also dedupes event ids."""
        _, tenant, key, qty, user_id, event_id, fresh = ev
        self.events += 1
        bucket = self._bucket((tenant, key, period_start))
        if unique and user_id is not None:
            bucket.users.add(user_id)
            return
        if event_id is None:
            bucket.anon += qty
            bucket.total += qty
            return
        seen = self._seen(tenant, key)
        held = None if other is None else other.seen.get((tenant, key))
        if event_id in seen or (held is not None and event_id in held):
            return  # a retry of an event this process still holds: count it once
        seen.add(event_id)
        bucket.ids.setdefault(qty, []).append(event_id)
        if fresh:
            bucket.total += qty
        else:
            bucket.checked.setdefault(qty, []).append(event_id)

    def add_run(
        self, run: list[Any], period_start: int, unique: bool, other: Pending | None
    ) -> None:
        """Fold in the events of a flat ``run`` (see :data:`FIELDS`) of one
        ``(tenant, key)`` and one period, like :meth:`add` each.

        The usual run (thousands of events of one feature, one quantity, each with a
        new event id, or none without) is folded with a few C-level passes over it;
        anything else event by event.
        """
        n = len(run) // FIELDS
        if not unique and n > 1:
            tenant, key, qty, fresh = run[1], run[2], run[3], run[6]
            # Each column holds one type (exact ints, bools), so count() by value is exact.
            if (
                run[3::FIELDS].count(qty) == n
                and run[6::FIELDS].count(fresh) == n
                and self._add_ids(tenant, key, qty, fresh, run[5::FIELDS], period_start, other)
            ):
                return
        for ev in events_of(run):
            self.add(ev, period_start, unique, other)

    def add_lane(self, lane: Lane, ids: list[str | None], other: Pending | None) -> None:
        """Fold in events drained from ``lane``, like :meth:`add` each."""
        tenant, key, qty, user_id = lane.tenant, lane.key, lane.quantity, lane.user_id
        start = lane.start
        if lane.unique and user_id is not None:  # what counts is the user, once
            self._bucket((tenant, key, start)).users.add(user_id)
            self.events += len(ids)
            return
        if len(ids) > 1 and self._add_ids(tenant, key, qty, False, ids, start, other):
            return
        for event_id in ids:
            self.add((0.0, tenant, key, qty, user_id, event_id, False), start, lane.unique, other)

    def _add_ids(
        self,
        tenant: str,
        key: str,
        qty: int,
        fresh: bool,
        ids: list[Any],
        period_start: int,
        other: Pending | None,
    ) -> bool:
        """Fold in ``len(ids)`` events of one counter and quantity in bulk, if that is
        exact: all without an id, or all with new, distinct ids. Else change nothing
        and return False."""
        n = len(ids)
        if ids[0] is None and ids.count(None) == n:  # without event ids: a sum
            bucket = self._bucket((tenant, key, period_start))
            bucket.anon += qty * n
            bucket.total += qty * n
            self.events += n
            return True
        held = None if other is None else other.seen.get((tenant, key))
        # Time-ordered ids (the usual ones) go in without hashing: see EventIdSet.
        if None in ids or not self._seen(tenant, key).add_new(ids, held):
            return False
        bucket = self._bucket((tenant, key, period_start))
        bucket.ids.setdefault(qty, []).extend(ids)
        if fresh:
            bucket.total += qty * n
        else:
            bucket.checked.setdefault(qty, []).extend(ids)
        self.events += n
        return True

    def batch(self, batch_id: str | None = None) -> UsageBatch:
        """The store records for everything in here."""
        deltas: list[UsageDelta] = []
        uniques: list[UniqueUse] = []
        events: list[EventIds] = []
        for (tenant, key, start), b in self.buckets.items():
            anon = b.anon
            while anon:  # keep each delta well inside a signed 64-bit integer
                part = max(-_MAX_DELTA, min(anon, _MAX_DELTA))
                deltas.append(UsageDelta(tenant, key, start, part))
                anon -= part
            events.extend(EventIds(tenant, key, start, q, ids) for q, ids in b.ids.items())
            uniques.extend(UniqueUse(tenant, key, start, u) for u in b.users)
        return UsageBatch(deltas, uniques, batch_id, events)


class Spool:
    """An append-only, segmented event log that makes ``meter`` survive a killed process.

    ``meter`` writes each event with one ``write(2)`` before it returns, so once it
    returned the event is in the kernel and survives the death of the process (also
    SIGKILL). Segments are ``fsync``'d when they are rotated and at every flush, so an
    OS crash or power loss loses at most the events since the last flush. A segment is
    deleted only after every event in it was committed to the store; on start the
    engine replays what is left, and event ids make the replay idempotent.
    """

    _encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lockfd = os.open(self.dir / "spool.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory: {exc}") from exc
        if fcntl is not None:
            try:
                fcntl.flock(self._lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(self._lockfd)
                raise SpoolError("spool directory is in use by another engine") from exc
        self.leftover = self._segments()
        self._seq = max((self._number(p) for p in self.leftover), default=0)
        self._fd = -1
        self._dirty = False
        self._path = self._open_next()

    @staticmethod
    def _number(path: Path) -> int:
        return int(path.stem.split("-")[1])

    def _segments(self) -> list[Path]:
        return sorted(self.dir.glob("segment-*.log"), key=self._number)

    def _open_next(self) -> Path:
        self._seq += 1
        path = self.dir / f"segment-{self._seq:012d}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._dirty = False
        return path

    def replay(self) -> list[RawEvent]:
        """The events of segments left by an earlier run (their ids make them idempotent)."""
        events: list[RawEvent] = []
        for path in self.leftover:
            events.extend(self._read(path))
        return events

    @staticmethod
    def _read(path: Path) -> Iterable[RawEvent]:
        data = path.read_bytes()
        for number, line in enumerate(data.split(b"\n")):
            if not line:
                continue
            try:
                ts, tenant, key, qty, user, eid = json.loads(line)
                ok = isinstance(qty, int) and isinstance(eid, str) and isinstance(tenant, str)
            except ValueError:
                ok = False
            if not ok:  # only a torn final write can do this: it was never acknowledged
                log.warning("skipping unreadable spool record %s:%d", path.name, number + 1)
                continue
            yield (float(ts), tenant, key, qty, user, eid, False)

    def write(self, ev: RawEvent) -> None:
        """Append one event with a single ``write(2)``. Call with the meter lock held."""
        try:
            data = (self._encode(ev[:6]) + "\n").encode()
        except (ValueError, TypeError) as exc:  # e.g. a lone surrogate: never acknowledged
            raise SpoolError(f"cannot encode event for the spool: {exc}") from exc
        try:
            os.write(self._fd, data)
        except OSError as exc:
            raise SpoolError(f"cannot append to spool: {exc}") from exc
        self._dirty = True

    def sync(self) -> None:
        """``fsync`` the open segment (group commit of everything written so far)."""
        with contextlib.suppress(OSError):
            os.fsync(self._fd)

    def rotate(self) -> list[Path]:
        """Seal the open segment and start a new one; return the sealed ones."""
        sealed, self.leftover = self.leftover, []
        if self._dirty:
            os.fsync(self._fd)
            os.close(self._fd)
            sealed.append(self._path)
            self._path = self._open_next()
        return sealed

    def delete(self, paths: Iterable[Path]) -> None:
        """Remove segments whose events are all committed."""
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def close(self) -> None:
        """Close the open segment (removing it when empty) and release the lock."""
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            if not self._dirty:
                self.delete([self._path])
        os.close(self._lockfd)


class Meter:
    """Buffer, stager and flusher of one engine. See the module docstring."""

    def __init__(
        self,
        store: LedgerStore,
        resolve: Resolver,
        *,
        refresh: Callable[[], None] = lambda: None,
        flush_interval: float,
        batch_size: int,
        max_buffer: int,
        buffer_timeout: float,
        retry_backoff: tuple[float, float],
        spool: Spool | None,
    ) -> None:
        self.store = store
        self.resolve = resolve
        self.refresh = refresh  # called before each background flush (see Engine)
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.buffer_timeout = buffer_timeout
        self.retry_backoff = retry_backoff
        self.spool = spool
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)
        self.state = threading.RLock()
        self.raw: list[Any] = []  # flat: FIELDS items per event, see the module docstring
        self.lanes: dict[Combination, Lane] = {}  # the open lanes (Engine._record reads it)
        self.lane_list: list[Lane] = []  # what staging drains: open lanes and closed ones
        self.lane_caps = 0  # sum of the lanes' caps: room reserved under max_buffer
        self.lane_epoch = 0  # bumped by retire_lanes: a lane planned before is refused
        self.lanes_paused = 0  # plan or subscription changes under way: no lane opens
        self.pending = Pending()
        self.inflight: Pending | None = None
        self._parts: list[UsageBatch] = []  # what of the in-flight batch is left to apply
        self.quarantined: list[Quarantined] = []
        self._batch_prefix = f"{secrets.token_hex(8)}-"
        self._batch_numbers = itertools.count(1)
        self.held = 0  # events staged or in flight (raw ones are len(raw) // FIELDS)
        # len(raw) (in items) at which adding takes the lock: wake the flusher, maybe wait
        self.trigger = min(batch_size, max_buffer) * FIELDS
        self.closed = False
        self.failures = 0  # consecutive failed flushes, for observability
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- producer side (called with ``lock`` held) ---

    def make_room(self) -> None:
        """Called by ``meter`` when the raw list hit its trigger: wake the flusher, and
        block while the buffer is full, up to ``buffer_timeout``; then raise BufferFull."""
        room = self._room(wake=True, lane=False)
        self.trigger = (len(self.raw) // FIELDS + min(self.batch_size, room)) * FIELDS

    def _free(self, *, lane: bool) -> int:
        """Events that fit under ``max_buffer`` beside the staged and raw ones and the
        room the lanes reserved; for a lane, beside the raw list's reservation too
        (up to its trigger), which the raw list's own adds may use."""
        raw = len(self.raw) // FIELDS
        free = self.max_buffer - self.held - raw - self.lane_caps
        return free - max(0, self.trigger // FIELDS - raw) if lane else free

    def _room(self, *, wake: bool, lane: bool) -> int:
        """How many more events fit under ``max_buffer`` (at least 1): waits while none
        do (waking the flusher), up to ``buffer_timeout``, then raises BufferFull.
        Before waiting, room reserved but not used is taken back (:meth:`_reclaim`)."""
        deadline: float | None = None
        while True:
            if self.closed:
                raise LedgerClosed("the ledger engine is closed")
            room = self._free(lane=lane)
            if room <= 0 and self._reclaim():
                continue
            if wake or room <= 0:
                self._wake.set()
            if room > 0:
                return room
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.buffer_timeout
            if now >= deadline:
                raise BufferFull(
                    f"metering buffer full ({self.max_buffer} events) for "
                    f"{self.buffer_timeout} s; the store is not keeping up or is down"
                )
            self.room.wait(deadline - now)

    def _reclaim(self) -> bool:
        """Take back the room reserved and not used: lanes' caps set to their ids (which
        also counts ids a racing append put past a cap), the raw list's trigger down to
        its length (their next add reserves anew). Whether any came back.
        Reservations are what spares most adds the lock; when they fill
        ``max_buffer`` the buffer is not full yet, so they must not refuse events.
        """
        freed = max(0, self.trigger - len(self.raw)) // FIELDS
        self.trigger = min(self.trigger, len(self.raw))
        for lane in self.lane_list:
            n = len(lane.ids)  # read once: an append without the lock may come between
            freed += max(0, lane.cap - n)
            # cap == n also counts ids appended beyond the cap by appenders racing an
            # earlier reclaim or drain, so they cannot pile up uncounted
            self._set_cap(lane, n)
        return freed > 0

    # --- lanes (see Lane; called with ``lock`` held unless said otherwise) ---

    def open_lane(self, lane: Lane, epoch: int) -> bool:
        """Open ``lane`` for its combination, unless lanes were retired since ``epoch``
        was read (or the meter closed). Takes the lock."""
        with self.lock:
            if self.closed or self.lanes_paused or epoch != self.lane_epoch:
                return False
            combination = (lane.tenant, lane.key, lane.user_id, lane.quantity)
            old = self.lanes.get(combination)
            if old is not None:
                self._close(old)  # its window ended: staging drains it a last time
            elif len(self.lanes) >= MAX_LANES:
                self.retire_lanes()
            self._grant(lane, self._free(lane=True))
            self.lanes[combination] = lane
            self.lane_list.append(lane)
            return True

    def retire_lanes(self) -> None:
        """Close every open lane: their events are drained by the next staging, and
        their combinations take the slow path until a lane opens again."""
        for lane in self.lanes.values():
            self._close(lane)
        self.lanes = {}
        self.lane_epoch += 1
        self.room.notify_all()  # their unused room is free: waiters need not time out

    def _close(self, lane: Lane) -> None:
        lane.open = False
        # No room left: an appender's first check fails, so it needs no other.
        self._set_cap(lane, len(lane.ids))  # len read once: an append may come between

    def grow(self, lane: Lane) -> None:
        """Reserve room for more events of a lane that is at its cap; wake the flusher
        when the lane holds a batch. Blocks or raises like :meth:`make_room`."""
        room = self._room(wake=len(lane.ids) >= self.batch_size, lane=True)
        if lane.open:  # _room() may have waited, releasing the lock: closed and gone?
            self._grant(lane, room)

    def _grant(self, lane: Lane, room: int) -> None:
        self._set_cap(lane, lane.reserved() + max(0, min(self.batch_size, room)))

    def _set_cap(self, lane: Lane, cap: int) -> None:
        self.lane_caps += cap - lane.cap  # kept equal to the sum of the caps
        lane.cap = cap

    def recall(self, lane: Lane, event_id: str | None) -> bool:
        """Take back an id appended to ``lane`` after it closed, unless its last drain
        took it (then it is counted); whether it was taken back. Takes the locks."""
        with self.state, self.lock:  # state: no staging is half done
            ids = lane.ids
            for i in range(len(ids) - 1, -1, -1):
                if ids[i] == event_id:  # an equal id is as good as this one: it counts the same
                    del ids[i]
                    return True
            return False

    def _drain_lanes(self) -> list[tuple[Lane, list[str | None]]]:
        """Take the ids out of every lane, release their reserved room, and forget the
        closed lanes (this was their last drain)."""
        drained = []
        for lane in self.lane_list:
            ids = lane.ids
            n = len(ids)
            if n:
                drained.append((lane, ids[:n]))
                del ids[:n]  # ids appended meanwhile stay, and count against max_buffer
            left = len(ids) if lane.open else 0  # a closed lane's late ids are recalled
            self._set_cap(lane, left)
        self.lane_list = [lane for lane in self.lane_list if lane.open]
        return drained

    # --- staging and flushing (called with ``state`` held) ---

    def stage(self, *, rotate: bool = False) -> None:
        """Fold raw events into pending buckets (and seal the spool segment if asked).

        Events come in runs of one ``(tenant, key)`` (``groupby``); a run whose first
        and last timestamps fall in one period is in that period as a whole (periods
        are intervals) and is folded in bulk.
        """
        with self.lock:
            queue = self.raw  # adds may go on meanwhile: take what is there now
            taken = len(queue)  # whole events: each add is one atomic extend
            raw = queue[:taken]
            del queue[:taken]
            lanes = self._drain_lanes()
            sealed = self.spool.rotate() if rotate and self.spool is not None else []
            self.held += taken // FIELDS + sum(len(ids) for _, ids in lanes)
            self._retrigger()
        pending, other, resolve = self.pending, self.inflight, self.resolve
        done = 0  # items of raw folded in
        folded = 0  # lanes folded in
        try:
            for lane, ids in lanes:
                pending.add_lane(lane, ids, other)
                folded += 1
            for (tenant, key), run in _runs(raw):
                stamps = run[0::FIELDS]
                first = resolve(tenant, key, min(stamps))
                if len(stamps) == 1 or first == resolve(tenant, key, max(stamps)):
                    pending.add_run(run, first[0], first[1], other)
                    done += len(run)
                    continue
                for ev in events_of(run):
                    start, unique = resolve(tenant, key, ev[0])
                    pending.add(ev, start, unique, other)
                    done += FIELDS
        except BaseException:
            # e.g. the store is down: keep, retry later
            self._unstage(raw[done:], sealed, lanes[folded:])
            raise
        pending.segments.extend(sealed)

    def _unstage(
        self, rest: list[Any], sealed: list[Path], lanes: list[tuple[Lane, list[str | None]]]
    ) -> None:
        """Put events that could not be staged back: flat ones in front of the raw list,
        lane ones in front of their lane (which staging then drains again)."""
        with self.lock:
            self.raw[:0] = rest
            self.held -= len(rest) // FIELDS
            for lane, ids in lanes:
                lane.ids[:0] = ids
                self.held -= len(ids)
                self._set_cap(lane, lane.cap + len(ids))  # they count against max_buffer again
                if lane not in self.lane_list:
                    self.lane_list.append(lane)
            if self.spool is not None:  # their segments may only go once they are flushed
                self.spool.leftover[:0] = sealed
            self._retrigger()

    def _retrigger(self) -> None:
        room = len(self.raw) // FIELDS + min(self.batch_size, self._free(lane=False))
        self.trigger = max(0, room) * FIELDS
        self.room.notify_all()

    def flush_once(self) -> bool:
        """Write one batch; return whether another batch is waiting. Raises on failure,
        keeping the batch for the next attempt."""
        with self.state:
            if self.inflight is None:
                self.stage(rotate=True)
                if not self.pending:
                    return False
                self.inflight, self.pending = self.pending, Pending()
                batch = self.inflight.batch(f"{self._batch_prefix}{next(self._batch_numbers)}")
                self._parts = [batch] if len(batch) else []
            done = self.inflight
            self._apply_parts()
            self.inflight = None
            with self.lock:
                self.held -= done.events
                self._retrigger()
            more = bool(self.pending) or bool(self.raw)
        if self.spool is not None:
            self.spool.delete(done.segments)
        return more

    def _apply_parts(self) -> None:
        """Apply what is left of the in-flight batch. A transient failure propagates (the
        rest stays for the retry); a record the store can never take is isolated by
        halving the batch that holds it, then quarantined, so it cannot block the rest."""
        parts = self._parts
        bulk = getattr(self.store, "accepts_event_ids", False) is True
        while parts:
            part = parts[0]
            try:
                self.store.apply_usage(part if bulk else part.expanded())
            except Exception as exc:
                if not _permanent(exc):
                    raise
                del parts[0]
                if len(part) > 1:
                    parts[:0] = _halves(part.expanded())
                else:
                    # A lone event id travels as an EventIds group: expand it to name it.
                    single = part.expanded()
                    record: UsageDelta | UniqueUse = (
                        single.deltas[0] if single.deltas else single.uniques[0]
                    )
                    log.error("ledger store refused %r for good, quarantined: %s", record, exc)
                    self.quarantined.append(Quarantined(record, str(exc)))
                continue
            del parts[0]

    def drain(self, timeout: float | None) -> None:
        """Flush until empty, retrying failures with back-off; raise the last error
        when ``timeout`` runs out (the events stay buffered)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = self.retry_backoff[0]
        while True:
            try:
                while self.flush_once():
                    pass
            except Exception:
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, self.retry_backoff[1])
                continue
            if self.spool is not None:
                with self.lock:  # rotate() closes the fd under this lock
                    self.spool.sync()
            return

    def unflushed(self) -> int:
        """Events not yet committed to the store."""
        with self.lock:
            in_lanes = sum(len(lane.ids) for lane in self.lane_list)
            return self.held + len(self.raw) // FIELDS + in_lanes

    # --- pending usage, for entitlements (called with ``state`` held) ---

    def pending_parts(
        self, tenant: str, key: str, start: int
    ) -> tuple[int, dict[str, int], set[str]]:
        """This process's uncommitted usage of one period: a sure total, event ids the
        store may already have counted, and users it may already know."""
        total = 0
        checked: dict[str, int] = {}
        users: set[str] = set()
        counter = (tenant, key, start)
        for part in (self.inflight, self.pending):
            bucket = None if part is None else part.buckets.get(counter)
            if bucket is not None:
                total += bucket.total
                for qty, ids in bucket.checked.items():  # each id is held once
                    checked.update(dict.fromkeys(ids, qty))
                users |= bucket.users
        return total, checked, users

    # --- the background thread ---

    def start(self) -> None:
        """Start the flusher thread."""
        self._thread = threading.Thread(target=self._run, name="authsome-ledger-flusher")
        self._thread.daemon = True  # the atexit hook drains; never block interpreter exit
        self._thread.start()

    def _run(self) -> None:
        delay = self.retry_backoff[0]
        while not self._stop.is_set():
            if self.failures:
                self._stop.wait(delay)  # back off: meters waking us must not hammer a dead store
            else:
                self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh()
                while self.flush_once() and not self._stop.is_set():
                    pass
                if self.spool is not None:
                    with self.lock:  # rotate() closes the fd under this lock
                        self.spool.sync()
            except Exception as exc:
                self.failures += 1
                log.warning(
                    "ledger flush failed (%d in a row), retrying in %.2f s: %s",
                    self.failures,
                    delay,
                    exc,
                )
                delay = min(delay * 2, self.retry_backoff[1]) if self.failures > 1 else delay
            else:
                self.failures = 0
                delay = self.retry_backoff[0]

    def wake(self) -> None:
        """Have the flusher run now (a flush of whatever is there)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the flusher thread (after its current attempt)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


def _runs(raw: list[Any]) -> Iterable[tuple[tuple[str, str], list[Any]]]:
    """Flat ``raw`` in flat runs of one ``(tenant, key)``; often it is all one run,
    cheap to see."""
    if raw:
        tenants = raw[1::FIELDS]
        keys = raw[2::FIELDS]
        tenant, key = tenants[0], keys[0]
        if tenants.count(tenant) == len(tenants) and keys.count(key) == len(keys):
            return [((tenant, key), raw)]
    return (
        (pair, list(itertools.chain.from_iterable(group)))
        for pair, group in groupby(events_of(raw), _TENANT_KEY)
    )


def _permanent(exc: Exception) -> bool:
    """Whether applying the same records again must fail the same way."""
    if isinstance(exc, LedgerError):
        return isinstance(exc, LedgerDataError)
    return isinstance(exc, ValueError | TypeError | ArithmeticError)  # a foreign store's


def _halves(batch: UsageBatch) -> list[UsageBatch]:
    records = [*batch.deltas, *batch.uniques]
    mid = len(records) // 2
    out = []
    for n, half in enumerate((records[:mid], records[mid:])):
        deltas = [r for r in half if isinstance(r, UsageDelta)]
        uniques = [r for r in half if isinstance(r, UniqueUse)]
        bid = None if batch.batch_id is None else f"{batch.batch_id}.{n}"  # new, unique ids
        out.append(UsageBatch(deltas, uniques, bid))
    return out
