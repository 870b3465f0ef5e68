"""What metering costs on the API-key hot path.

    python benchmarks/bench_apikeys.py

Times ``auth.api_keys.validate`` (µs per call) on a MemoryStore and on a SQLite
file, once with ``NoopLedger`` and once with a metering ledger, in the same run
and interleaved round by round, so both see the same machine state. The metering
ledger is ``LedgerAdapter`` over the embedded ``authsome.ledger.Engine`` when that
is installed, otherwise ``RecordingLedger``; the output says which.

Both engines share one store and one key, so the only difference is the ledger.
Target: metering costs at most 10% over NoopLedger (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from authsome import Authsome, PasswordHashing, UsageEvent
from authsome.bridge import Ledger, NoopLedger
from authsome.stores import MemoryStore, SQLiteStore, Store
from authsome.testing import RecordingLedger

TENANT = "bench"
TARGET = 1.10
EVENT = UsageEvent.APIKEYS_VALIDATED.value


@dataclass
class Metering:
    """A metering ledger, how to describe it, and how to count what it metered."""

    ledger: Ledger
    name: str
    metered: Callable[[], int]
    close: Callable[[], None]


def metering_ledger(workdir: Path, store_kind: str) -> Metering:
    """``LedgerAdapter`` over the embedded engine when importable, else ``RecordingLedger``."""
    try:
        from authsome import ledger
        from authsome.bridge.ledgeradapter import LedgerAdapter
    except ImportError:
        recording = RecordingLedger()
        return Metering(
            recording,
            "RecordingLedger (authsome.bridge.ledgeradapter is not available)",
            lambda: len(recording.usage(EVENT)),
            lambda: None,
        )
    # Like for like: the SQLite run meters into a SQLite ledger, the memory run in memory.
    if store_kind == "sqlite":
        ledger_store = ledger.SQLiteStore(str(workdir / f"ledger-{time.monotonic_ns()}.db"))
    else:
        ledger_store = ledger.MemoryStore()
    engine = ledger.Engine(store=ledger_store)
    engine.define_plan(ledger.Plan("bench", [ledger.Feature.metered(EVENT, None)]))
    engine.subscribe(TENANT, "bench")

    def metered() -> int:
        engine.flush()
        return engine.usage(TENANT, EVENT)

    return Metering(
        LedgerAdapter(engine),
        f"LedgerAdapter(ledger.Engine(store={type(ledger_store).__name__}))",
        metered,
        engine.close,
    )


@contextmanager
def open_store(kind: str, workdir: Path) -> Iterator[Store]:
    store: Store = MemoryStore() if kind == "memory" else SQLiteStore(workdir / "auth.db")
    try:
        yield store
    finally:
        store.close()


def time_calls(call: Callable[[], object], n: int) -> float:
    """Microseconds per call over ``n`` calls."""
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(n):
        call()
    return (time.perf_counter_ns() - start) / n / 1000


def bench_store(kind: str, workdir: Path, n: int, rounds: int) -> tuple[float, float, bool]:
    """Median µs/op with NoopLedger and with metering; whether every event was metered."""
    metering = metering_ledger(workdir, kind)
    with open_store(kind, workdir) as store:
        hashing = PasswordHashing.fast_insecure_for_tests()
        noop = Authsome(store=store, ledger=NoopLedger(), password_hashing=hashing)
        metered = Authsome(store=store, ledger=metering.ledger, password_hashing=hashing)
        user = noop.users.register("bench@example.com", "bench passphrase 1", tenant=TENANT)
        secret = noop.api_keys.create(user.id, "bench", scopes=["read"]).secret

        def validate_noop() -> object:
            return noop.api_keys.validate(secret)

        def validate_metered() -> object:
            return metered.api_keys.validate(secret)

        for call in (validate_noop, validate_metered):  # warm up caches and connections
            time_calls(call, n // 10)
        noop_us: list[float] = []
        metered_us: list[float] = []
        for i in range(rounds):
            # Alternate the order so neither side always runs right after a GC or flush.
            order = [(validate_noop, noop_us), (validate_metered, metered_us)]
            for call, results in order if i % 2 == 0 else reversed(order):
                results.append(time_calls(call, n))
        expected = n // 10 + n * rounds
        complete = metering.metered() == expected
        print(f"  {kind:<6} metering ledger: {metering.name}")
        print(f"  {kind:<6} metered events:  {metering.metered()} (expected {expected})")
        metering.close()
    return statistics.median(noop_us), statistics.median(metered_us), complete


def ledger_call_cost(workdir: Path, n: int) -> None:
    """Where the metering time goes: the bridge call alone, and the flush after it."""
    from authsome.bridge import LedgerContext
    from authsome.crypto import new_id

    contexts = [LedgerContext(TENANT, user_id="usr_x", event_id=new_id("akv")) for _ in range(n)]
    metering = metering_ledger(workdir, "memory")
    for name, ledger in (("NoopLedger", NoopLedger()), ("metering", metering.ledger)):
        gc.collect()
        start = time.perf_counter_ns()
        for ctx in contexts:
            ledger.record_usage(ctx, EVENT, 1)
        per_call = (time.perf_counter_ns() - start) / n / 1000
        print(f"  record_usage alone, {name:<10} {per_call:6.2f} µs/call")
    start = time.perf_counter_ns()
    metering.metered()  # flushes what is still buffered
    drained = (time.perf_counter_ns() - start) / n / 1000
    print(f"  then draining the metering buffer: {drained:.2f} µs/event")
    metering.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="validations per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per ledger")
    args = parser.parse_args(argv)

    print(f"api_keys.validate, {args.n} calls x {args.rounds} rounds per ledger (median)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("memory", "sqlite"):
            rows.append((kind, *bench_store(kind, Path(tmp), args.n, args.rounds)))
        print()
        ledger_call_cost(Path(tmp), args.n * 5)

    print()
    print(f"  {'store':<8}{'NoopLedger':>14}{'metering':>14}{'ratio':>9}")
    ok = True
    for kind, noop_us, metered_us, complete in rows:
        ratio = metered_us / noop_us
        ok = ok and complete and ratio <= TARGET
        print(f"  {kind:<8}{noop_us:>11.2f} µs{metered_us:>11.2f} µs{ratio:>9.3f}")
    verdict = "met" if ok else "NOT met"
    print(f"\ntarget: metering <= {TARGET - 1:.0%} over NoopLedger, every event metered: {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
