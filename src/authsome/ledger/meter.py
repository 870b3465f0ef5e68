"""The metering buffer: raw events, staged aggregates, the background flusher, the spool.

The invariant (tests/ledger/test_ledger_buffer_invariant.py checks it)
-----------------------------------------------------------------------

Every event that ``Engine.meter`` (or ``release``) *acknowledged*, that is returned
from without raising, is in exactly one of these places until the store has it:

* **raw**: appended to :attr:`Meter.raw`, not staged yet;
* **spilled** (spool only): written to a spill segment of the spool on disk while
  the buffer was full, not read back yet (:attr:`Spool.backlog`);
* **pending**: folded into :attr:`Meter.pending`;
* **in flight**: in :attr:`Meter.inflight`, the batch being applied to the store;
* **stored**: committed by the store (the only place it leaves, except quarantine:
  a record the store refuses for good is logged and kept in ``quarantined``).

:meth:`Meter.unflushed` is the number of events in the first four. ``Engine.close``
returns only when it is 0; otherwise it raises :class:`UnflushedEvents`, which says
how many are left and, with a spool, that they are safe on disk.

``raw + pending + in flight <= max_buffer`` always: a full buffer makes ``meter``
wait (up to ``buffer_timeout``) or fail at once with :class:`BufferFull`
(``wait=False``, what the bridge adapter uses) or, with a spool, spill the event to
disk. It never drops an acknowledged event and never grows the memory beyond it.

Life of an event
----------------

1. ``Engine.meter`` validates it and calls :meth:`Meter.add`, which appends it to
   ``raw`` under :attr:`Meter.lock` (with a spool, it writes it there first). ``raw``
   is flat: the :data:`FIELDS` fields of each event one after the other, so a busy
   meter allocates no object per event and staging reads a field of every event with
   one slice.
2. *Staging* folds raw events into :class:`Pending` buckets per ``(tenant, feature,
   period_start)``: quantities add up, event ids and users are deduplicated against
   everything this process still holds. The flusher stages, and so does an uncached
   entitlement that needs exact pending usage.
3. The flusher takes all pending buckets as the in-flight batch and applies it to
   the store in one transaction. Only success releases it (and the spool segments
   it came from); a failure keeps it and retries with exponential back-off.

Two locks: ``lock`` (taken by ``meter``, held for an append) guards ``raw``, the
counters and the spool files; ``state`` (re-entrant, never taken by ``meter``)
serializes staging, store writes and reads of pending usage, so a reader never sees
a batch both pending and stored. Lock order: ``state`` before ``lock``. ``meter``
never waits for the store: only for room in the buffer (and, with a spool, a disk
write).
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
from collections import deque
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

__all__ = ["FIELDS", "Meter", "Pending", "Quarantined", "RawEvent", "Spool", "events_of"]

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
    """Pending usage of one ``(tenant, feature, period_start)``.

    ``total`` is what the store surely has not counted yet: quantities without an
    event id, fresh ids, and ids and users already looked up in the store
    (:meth:`Meter.pending_parts` looks up each one once, when it is first needed).
    """

    __slots__ = ("anon", "ids", "total", "unsettled", "unsettled_users", "users")

    def __init__(self) -> None:
        self.total = 0
        self.anon = 0  # quantities without an event id
        self.ids: dict[int, list[str]] = {}  # quantity -> every event id, for the store
        self.unsettled: dict[int, list[str]] = {}  # ids not looked up in the store yet
        self.users: set[str] = set()
        self.unsettled_users: list[str] = []  # users not looked up in the store yet


_TENANT_KEY = itemgetter(1, 2)


class Pending:
    """Staged events, aggregated; what one flush writes."""

    __slots__ = ("buckets", "events", "seen", "segments")

    def __init__(self) -> None:
        self.buckets: dict[tuple[str, str, int], _Bucket] = {}
        self.seen: dict[tuple[str, str], set[str]] = {}  # event ids held, per (tenant, key)
        self.events = 0  # raw events folded in: the unit of max_buffer
        self.segments: list[Path] = []  # spool files whose events are all in here or before

    def __bool__(self) -> bool:
        return bool(self.events or self.segments)

    def _bucket(self, counter: tuple[str, str, int]) -> _Bucket:
        bucket = self.buckets.get(counter)
        if bucket is None:
            bucket = self.buckets[counter] = _Bucket()
        return bucket

    def _seen(self, tenant: str, key: str) -> set[str]:
        seen = self.seen.get((tenant, key))
        if seen is None:
            seen = self.seen[(tenant, key)] = set()
        return seen

    def add(self, ev: RawEvent, period_start: int, unique: bool, other: Pending | None) -> None:
        """Fold one raw event in; ``other`` (the in-flight batch) also dedupes."""
        _, tenant, key, qty, user_id, event_id, fresh = ev
        self.events += 1
        counter = (tenant, key, period_start)
        bucket = self._bucket(counter)
        if unique and user_id is not None:
            held = None if other is None else other.buckets.get(counter)
            if user_id not in bucket.users and (held is None or user_id not in held.users):
                bucket.users.add(user_id)
                bucket.unsettled_users.append(user_id)
            return
        if event_id is None:
            bucket.anon += qty
            bucket.total += qty
            return
        seen = self._seen(tenant, key)
        held_ids = None if other is None else other.seen.get((tenant, key))
        if event_id in seen or (held_ids is not None and event_id in held_ids):
            return  # a retry of an event this process still holds: count it once
        seen.add(event_id)
        bucket.ids.setdefault(qty, []).append(event_id)
        if fresh:
            bucket.total += qty
        else:
            bucket.unsettled.setdefault(qty, []).append(event_id)

    def add_run(
        self, run: list[Any], period_start: int, unique: bool, other: Pending | None
    ) -> None:
        """Fold in the events of a flat ``run`` (see :data:`FIELDS`) of one
        ``(tenant, key)`` and one period, like :meth:`add` each.

        The usual run (thousands of events of one feature and quantity, each with a
        new event id, or all without) is folded with a few C-level passes over it.
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
        bucket = self._bucket((tenant, key, period_start))
        if ids[0] is None and ids.count(None) == n:  # without event ids: a sum
            bucket.anon += qty * n
            bucket.total += qty * n
            self.events += n
            return True
        new = set(ids)
        seen = self._seen(tenant, key)
        held = None if other is None else other.seen.get((tenant, key))
        if (
            None in new
            or len(new) != n
            or not seen.isdisjoint(new)
            or (held is not None and not held.isdisjoint(new))
        ):
            return False
        seen |= new
        bucket.ids.setdefault(qty, []).extend(ids)
        if fresh:
            bucket.total += qty * n
        else:
            bucket.unsettled.setdefault(qty, []).extend(ids)
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
    SIGKILL). Segments are ``fsync``'d when they are sealed and at every flush, so an
    OS crash or power loss loses at most the events since the last flush. A segment is
    deleted only after every event in it was committed to the store; event ids make
    reading one again idempotent.

    Two kinds of segment: ``segment-*`` hold events that are also in memory; ``spill-*``
    hold events written while the buffer was full, which are on disk only. Spill
    segments, and every segment an earlier run left, form the :attr:`backlog` that
    the flusher reads back as room frees up (:meth:`Meter.reload`), so the spool is
    bounded by the disk, not by memory.

    A child process (``fork``) never writes to its parent's spool: it gets one of its
    own in ``worker-<pid>`` under the directory (:meth:`for_child`). A spool that
    opens adopts the segments of worker spools nobody holds any more.
    """

    _encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def __init__(self, directory: str | os.PathLike[str], *, spill_every: int = 10_000) -> None:
        self.dir = Path(directory)
        self.spill_every = spill_every  # events per spill segment: one fits in the buffer
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lockfd = os.open(self.dir / "spool.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory: {exc}") from exc
        if not _lock(self._lockfd):
            os.close(self._lockfd)
            raise SpoolError("spool directory is in use by another engine")
        self._adopt_orphans()
        self._seq = max((_number(p) for p in self._files()), default=0)
        self.backlog: deque[tuple[Path, int]] = deque((p, _lines(p)) for p in self._files())
        self.backlog_events = sum(n for _, n in self.backlog)
        self.leftover: list[Path] = []  # read back, to be released with the next flush
        self._fd = -1
        self._size = 0
        self._dirty = False
        self._path = self._open_next("segment")
        self._spill_fd = -1
        self._spill_path: Path | None = None
        self._spill_size = 0
        self.open_spilled = 0  # events in the open spill segment

    def _files(self) -> list[Path]:
        return sorted([*self.dir.glob("segment-*.log"), *self.dir.glob("spill-*.log")], key=_number)

    def _open_next(self, kind: str) -> Path:
        self._seq += 1
        path = self.dir / f"{kind}-{self._seq:012d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if kind == "segment":
            self._fd, self._size, self._dirty = fd, 0, False
        else:
            self._spill_fd = fd
        return path

    def _adopt_orphans(self) -> None:
        """Move the segments of worker spools whose process is gone into this one."""
        root = self.dir.parent if self.dir.name.startswith("worker-") else self.dir
        for worker in sorted(root.glob("worker-*")):
            if worker == self.dir:
                continue
            try:
                fd = os.open(worker / "spool.lock", os.O_RDWR)
            except OSError:
                continue
            try:
                if not _lock(fd):
                    continue  # its process is alive and holds it
                seq = max((_number(p) for p in self._files()), default=0)
                for n, path in enumerate(sorted(worker.glob("*-*.log"), key=_number), seq + 1):
                    os.rename(path, self.dir / f"spill-{n:012d}.log")
                (worker / "spool.lock").unlink()
                worker.rmdir()
            except OSError as exc:
                log.warning("could not adopt the spool of %s: %s", worker.name, exc)
            finally:
                os.close(fd)

    def read(self, path: Path) -> list[RawEvent]:
        """The events of one segment (ids make reading one again idempotent)."""
        events: list[RawEvent] = []
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
            events.append((float(ts), tenant, key, qty, user, eid, False))
        return events

    def _line(self, ev: RawEvent) -> bytes:
        try:
            return (self._encode(ev[:6]) + "\n").encode()
        except (ValueError, TypeError) as exc:  # e.g. a lone surrogate: never acknowledged
            raise SpoolError(f"cannot encode event for the spool: {exc}") from exc

    def write(self, ev: RawEvent) -> None:
        """Append one event that is also in memory. Call with the meter lock held."""
        self._size += _append(self._fd, self._line(ev), self._size)
        self._dirty = True

    def spill(self, ev: RawEvent) -> None:
        """Append one event that is on disk only (the buffer is full). Call with the
        meter lock held."""
        data = self._line(ev)
        if self._spill_path is None:
            self._spill_path = self._open_next("spill")
            self._spill_size = 0
        self._spill_size += _append(self._spill_fd, data, self._spill_size)
        self.open_spilled += 1
        self.backlog_events += 1
        if self.open_spilled >= self.spill_every:
            self.seal_spill()

    def seal_spill(self) -> None:
        """Close the open spill segment and put it on the backlog. Call with the lock held."""
        if self._spill_path is None:
            return
        with contextlib.suppress(OSError):
            os.fsync(self._spill_fd)
        os.close(self._spill_fd)
        self.backlog.append((self._spill_path, self.open_spilled))
        self._spill_fd, self._spill_path, self.open_spilled = -1, None, 0

    def sync(self) -> None:
        """``fsync`` the open segments (group commit of everything written so far)."""
        for fd in (self._fd, self._spill_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.fsync(fd)

    def rotate(self) -> list[Path]:
        """Seal the open segment and start a new one; return the segments whose events
        are all in memory now (sealed and read back ones)."""
        sealed, self.leftover = self.leftover, []
        if self._dirty:
            os.fsync(self._fd)
            os.close(self._fd)
            sealed.append(self._path)
            self._path = self._open_next("segment")
        return sealed

    def delete(self, paths: Iterable[Path]) -> None:
        """Remove segments whose events are all committed."""
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def close(self) -> None:
        """Close the open segments (removing an empty one) and release the lock."""
        self.seal_spill()
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            if not self._dirty:
                self.delete([self._path])
        os.close(self._lockfd)

    def for_child(self) -> Spool:
        """In a forked child: let go of the parent's files (without unlocking them: the
        lock belongs to the parent too) and open a spool of the child's own."""
        for fd in (self._fd, self._spill_fd, self._lockfd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        root = self.dir.parent if self.dir.name.startswith("worker-") else self.dir
        return Spool(root / f"worker-{os.getpid()}", spill_every=self.spill_every)


def _lock(fd: int) -> bool:
    """Take the spool lock of ``fd`` without waiting; whether it was free (or no
    ``fcntl`` here: one engine per spool is then on the user)."""
    if fcntl is None:  # pragma: no cover - not on POSIX
        return True  # type: ignore[unreachable]
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _number(path: Path) -> int:
    return int(path.stem.split("-")[1])


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def _append(fd: int, data: bytes, size: int) -> int:
    """Write ``data`` at the end of the file of ``fd`` (``size`` bytes long) with one
    ``write(2)``; on failure cut the file back, so no torn line is left to swallow the
    next event. Returns the bytes written."""
    try:
        written = os.write(fd, data)
    except OSError as exc:
        raise SpoolError(
            f"cannot append to the spool (disk full?): {exc}; the event was not recorded"
        ) from exc
    if written != len(data):
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise SpoolError(
            "cannot append to the spool (disk full?): short write; the event was not recorded"
        )
    return written


class Meter:
    """Buffer, stager and flusher of one engine. See the module docstring."""

    def __init__(
        self,
        store: LedgerStore,
        resolve: Resolver,
        cache: dict[tuple[str, str], Any],
        *,
        flush_interval: float,
        batch_size: int,
        max_buffer: int,
        buffer_timeout: float,
        retry_backoff: tuple[float, float],
        spool: Spool | None,
    ) -> None:
        self.store = store
        self.resolve = resolve
        self.cache = cache  # the engine's entitlement cache: an add invalidates its entry
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.buffer_timeout = buffer_timeout
        self.retry_backoff = retry_backoff
        self.spool = spool
        self.quarantined: list[Quarantined] = []
        self.closed = False
        self._fresh_state()

    def _fresh_state(self) -> None:
        """Empty buffers, new locks, a new batch-id prefix: at start and in a forked child."""
        self.lock = threading.Lock()
        self.room = threading.Condition(self.lock)
        self.state = threading.RLock()
        self.raw: list[Any] = []  # flat: FIELDS items per event, see the module docstring
        self.pending = Pending()
        self.inflight: Pending | None = None
        self._parts: list[UsageBatch] = []  # what of the in-flight batch is left to apply
        self._batch_prefix = f"{secrets.token_hex(8)}-"
        self._batch_numbers = itertools.count(1)
        self.held = 0  # events pending or in flight
        self.failures = 0  # consecutive failed flushes, for observability
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._relimit()

    def _relimit(self) -> None:
        """Set ``limit``: the length of ``raw`` (in items) at which an add takes the slow
        way (:meth:`_make_room`): a batch to wake the flusher for, or a full buffer."""
        if self.spool is not None and self.spool.backlog_events:
            self.limit = 0  # older events wait on disk: every add spills behind them
            return
        room = self.max_buffer - self.held - len(self.raw) // FIELDS
        self.limit = len(self.raw) + max(0, min(self.batch_size, room)) * FIELDS

    # --- producer side ---

    def add(self, ev: RawEvent, wait: bool) -> None:
        """Buffer one event (the one way in). A full buffer spills it to the spool, or
        waits up to ``buffer_timeout`` (``wait``) or raises :class:`BufferFull`."""
        with self.lock:
            if self.closed:
                raise LedgerClosed("the ledger engine is closed")
            if len(self.raw) >= self.limit and not self._make_room(wait):
                self.spool.spill(ev)  # type: ignore[union-attr]  # _make_room: spool only
            else:
                raw = self.raw  # read after _make_room: staging swaps the list while it waits
                at = len(raw)
                raw.extend(ev)
                if self.spool is not None:
                    try:
                        self.spool.write(ev)
                    except BaseException:
                        del raw[at:]  # not on disk, so not acknowledged: not counted
                        raise
            self.cache.pop((ev[1], ev[2]), None)

    def _make_room(self, wait: bool) -> bool:
        """Called with the lock held when ``raw`` reached ``limit``: wake the flusher;
        when the buffer is full, or events already wait in the spool, tell a spooling
        caller to spill (False: events reach the store in the order they were
        metered, so the first copy of a retried id is the one that counts); else wait
        for room (up to ``buffer_timeout``, only if ``wait``), then raise BufferFull."""
        self._wake.set()
        if self.spool is not None and self.spool.backlog_events:
            return False  # in call order: behind the events already spilled
        deadline: float | None = None
        while self.held + len(self.raw) // FIELDS >= self.max_buffer:
            if self.spool is not None:
                return False
            now = time.monotonic()
            if deadline is None:
                deadline = now + (self.buffer_timeout if wait else 0.0)
            if now >= deadline:
                raise BufferFull(
                    f"metering buffer full ({self.max_buffer} events); "
                    "the store is not keeping up or is down"
                )
            self.room.wait(deadline - now)
            if self.closed:
                raise LedgerClosed("the ledger engine is closed")
        # Room: no slow way again until the buffer is full (staging resets the limit).
        self.limit = (self.max_buffer - self.held) * FIELDS
        return True

    # --- staging and flushing (called with ``state`` held) ---

    def stage(self, *, rotate: bool = False) -> None:
        """Fold raw events into pending buckets (and seal the spool segment if asked).

        Events come in runs of one ``(tenant, key)`` (``groupby``); a run whose first
        and last timestamps fall in one period is in that period as a whole (periods
        are intervals) and is folded in bulk.
        """
        with self.lock:
            raw, self.raw = self.raw, []
            sealed = self.spool.rotate() if rotate and self.spool is not None else []
            self.held += len(raw) // FIELDS
            self._relimit()
        pending, other, resolve = self.pending, self.inflight, self.resolve
        done = 0  # items of raw folded in
        try:
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
            self._unstage(raw[done:], sealed)  # e.g. the store is down: keep, retry later
            raise
        pending.segments.extend(sealed)

    def _unstage(self, rest: list[Any], sealed: list[Path]) -> None:
        """Put events that could not be staged back in front of the raw list."""
        with self.lock:
            self.raw[:0] = rest
            self.held -= len(rest) // FIELDS
            if self.spool is not None:  # their segments may only go once they are flushed
                self.spool.leftover[:0] = sealed
            self._relimit()

    def reload(self) -> None:
        """Read spilled segments back into ``raw`` while they fit under ``max_buffer``
        (one always does into an empty buffer)."""
        spool = self.spool
        if spool is None:
            return
        while True:
            with self.lock:
                used = self.held + len(self.raw) // FIELDS
                room = self.max_buffer - used
                spilling = spool.open_spilled
                if not spool.backlog and spilling and (not used or spilling <= room):
                    spool.seal_spill()  # the store caught up: read the open one too
                if not spool.backlog:
                    return
                path, count = spool.backlog[0]
                if used and count > room:
                    return
            events = spool.read(path)
            with self.lock:
                spool.backlog.popleft()
                spool.backlog_events -= count
                self.raw.extend(itertools.chain.from_iterable(events))
                spool.leftover.append(path)  # released with the flush that stages these
                self._relimit()

    def flush_once(self) -> bool:
        """Write one batch; return whether more is waiting. Raises on failure, keeping
        the batch for the next attempt."""
        with self.state:
            if self.inflight is None:
                self.reload()
                self.stage(rotate=True)
                if not self.pending:
                    return self._more()
                self.inflight, self.pending = self.pending, Pending()
                batch = self.inflight.batch(f"{self._batch_prefix}{next(self._batch_numbers)}")
                self._parts = [batch] if len(batch) else []
            done = self.inflight
            self._apply_parts()
            self.inflight = None
            with self.lock:
                self.held -= done.events
                self._relimit()
                self.room.notify_all()
            more = self._more()
        if self.spool is not None:
            self.spool.delete(done.segments)
        return more

    def _more(self) -> bool:
        """Whether anything is left to flush: raw, pending or spilled events."""
        spilled = self.spool is not None and self.spool.backlog_events > 0
        return bool(self.raw) or bool(self.pending) or spilled

    def _apply_parts(self) -> None:
        """Apply what is left of the in-flight batch. A transient failure propagates (the
        rest stays for the retry); a record the store can never take is isolated by
        halving the batch that holds it, then quarantined, so it cannot block the rest."""
        parts = self._parts
        bulk = self.store.accepts_event_ids
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
        """Flush until nothing is left, retrying failures with back-off; raise the last
        error when ``timeout`` runs out (the events stay where they are)."""
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
            self._sync()
            return

    def _sync(self) -> None:
        if self.spool is not None:
            with self.lock:  # rotate() closes the fd under this lock
                self.spool.sync()

    def unflushed(self) -> int:
        """Events acknowledged and not in the store yet (raw, spilled, pending, in flight)."""
        with self.lock:
            spilled = 0 if self.spool is None else self.spool.backlog_events
            return self.held + len(self.raw) // FIELDS + spilled

    # --- pending usage, for entitlements (called with ``state`` held) ---

    def pending_parts(self, tenant: str, key: str, start: int) -> tuple[int, set[str]]:
        """This process's usage of one period that the store has not counted, and the
        users it holds. Ids and users staged since the last call are looked up in the
        store first, once each, so the cost follows what is new, not what is held.

        An id another process commits after its lookup counts twice here until this
        process flushes it (the store counts it once): an overcount, never an undercount.
        """
        total = 0
        users: set[str] = set()
        counter = (tenant, key, start)
        for part in (self.inflight, self.pending):
            bucket = None if part is None else part.buckets.get(counter)
            if bucket is None:
                continue
            if bucket.unsettled:
                ids = {e: q for q, group in bucket.unsettled.items() for e in group}
                known = self.store.known_events(tenant, key, ids)
                bucket.total += sum(q for e, q in ids.items() if e not in known)
                bucket.unsettled = {}
            if bucket.unsettled_users:
                new = bucket.unsettled_users
                bucket.total += len(new) - len(self.store.known_users(tenant, key, start, new))
                bucket.unsettled_users = []
            total += bucket.total
            users |= bucket.users
        return total, users

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
                while self.flush_once() and not self._stop.is_set():
                    pass
                self._sync()
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

    def after_fork(self) -> None:
        """In a forked child: forget the parent's buffer (the parent flushes it), take
        a spool of the child's own, and start a flusher."""
        self._fresh_state()
        self.quarantined = []
        if self.spool is not None and not self.closed:
            self.spool = self.spool.for_child()
        if not self.closed:
            self.start()


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
