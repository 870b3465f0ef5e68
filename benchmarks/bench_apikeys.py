"""What metering costs on the API-key hot path.

    python benchmarks/bench_apikeys.py                    # instructions, wall, CPU, outage
    python benchmarks/bench_apikeys.py --no-instructions  # without valgrind
    python benchmarks/bench_apikeys.py --only-limits      # only the hard-limit costs

Times ``auth.api_keys.validate`` on a MemoryStore and on a SQLite file, once with
``NoopLedger`` and once with a metering ledger, in the same run and interleaved
round by round, so both see the same machine state. The metering ledger is
``LedgerAdapter`` over the embedded ``authsome.ledger.Engine`` when that is
installed, otherwise ``RecordingLedger``; the output says which. Both sides share
one store and one key, so the only difference is the ledger; the metering side
includes its background flushes (the run ends with a flush, and checks that every
validation was metered).

Shared machines are noisy, so the verdict is the median of the *paired* per-round
ratios (each round times both ledgers back to back), printed with their quartiles.
Process CPU time (every thread, so the flusher too) is printed beside it. Each
side also runs under callgrind (when valgrind is installed) at two loop lengths: the
difference of the instruction counts divided by the difference of the lengths is
the instructions per call, with setup and start-up cancelled out. It does not
depend on the machine's load, but it cannot see cache misses, which wall time pays.

Last, a ledger store outage: 10,000 validations through ``LedgerAdapter`` with the
ledger's store raising on every write, against the same with the store up, for
``durability="spool"`` and ``"memory"`` (paired rounds, as above). No call may wait
on the store, so the outage may cost at most 20%.

Then hard limits (``Authsome(enforce_limits=...)``), on both stores with the embedded
ledger, paired rounds as above, all against the same metering engine without
``enforce_limits``: the same engine again (the noise floor, A/A), an engine enforcing
the *other* limits (seats, active users: enforcement off for this path), and one
enforcing ``authsome.apikeys.validated`` (a plan limit never reached, so every call
pays the atomic check-and-count in the ledger's store and none is refused). Beside
them, the off path's own added cost (``Billing.use`` against ``Billing.record``,
which is what the path called before there were limits).

Targets: metering costs at most 15% more instructions than NoopLedger on both
stores; the outage at most 1.2x (exit status 1 if a target is missed). The wall
ratios are reported beside them.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from authsome import Authsome, PasswordHashing, UsageEvent
from authsome.bridge import Ledger, NoopLedger
from authsome.stores import MemoryStore, SQLiteStore, Store
from authsome.testing import RecordingLedger

TENANT = "bench"
TARGET = 1.15  # instructions, metered / NoopLedger
OUTAGE_TARGET = 1.2  # wall, store down / store up
OUTAGE_N = 10_000
EVENT = UsageEvent.APIKEYS_VALIDATED.value
STORES = ("memory", "sqlite")


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


@dataclass
class Sides:
    """One store, one key, and a validate call through each ledger."""

    noop: Callable[[], object]
    metered: Callable[[], object]
    metering: Metering


@contextmanager
def sides(kind: str, workdir: Path) -> Iterator[Sides]:
    metering = metering_ledger(workdir, kind)
    with open_store(kind, workdir) as store:
        hashing = PasswordHashing.fast_insecure_for_tests()
        noop = Authsome(store=store, ledger=NoopLedger(), password_hashing=hashing)
        metered = Authsome(store=store, ledger=metering.ledger, password_hashing=hashing)
        user = noop.users.register("bench@example.com", "bench passphrase 1", tenant=TENANT)
        secret = noop.api_keys.create(user.id, "bench", scopes=["read"]).secret
        try:
            yield Sides(
                lambda: noop.api_keys.validate(secret),
                lambda: metered.api_keys.validate(secret),
                metering,
            )
        finally:
            metering.close()


def time_calls(call: Callable[[], object], n: int) -> tuple[float, float]:
    """Wall and process CPU microseconds per call over ``n`` calls."""
    gc.collect()
    cpu = time.process_time_ns()
    start = time.perf_counter_ns()
    for _ in range(n):
        call()
    wall = time.perf_counter_ns() - start
    return wall / n / 1000, (time.process_time_ns() - cpu) / n / 1000


@dataclass
class Result:
    kind: str
    noop_us: float  # medians over the rounds
    metered_us: float
    ratios: list[float]  # metered / noop, round by round
    cpu_ratio: float  # of the medians of process CPU time
    complete: bool  # every validation metered

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def quartiles(self) -> tuple[float, float]:
        q1, _, q3 = statistics.quantiles(self.ratios, n=4, method="inclusive")
        return q1, q3


def bench_store(kind: str, workdir: Path, n: int, rounds: int) -> Result:
    with sides(kind, workdir) as s:
        for call in (s.noop, s.metered):  # warm up caches and connections
            time_calls(call, n // 10)
        walls: dict[str, list[float]] = {"noop": [], "metered": []}
        cpus: dict[str, list[float]] = {"noop": [], "metered": []}
        for i in range(rounds):
            # Alternate the order so neither side always runs right after a GC or flush.
            order = [("noop", s.noop), ("metered", s.metered)]
            for name, call in order if i % 2 == 0 else reversed(order):
                wall, cpu = time_calls(call, n)
                walls[name].append(wall)
                cpus[name].append(cpu)
        expected = n // 10 + n * rounds
        got = s.metering.metered()
        print(f"  {kind:<6} metering ledger: {s.metering.name}")
        print(f"  {kind:<6} metered events:  {got} (expected {expected})")
    ratios = [m / o for m, o in zip(walls["metered"], walls["noop"], strict=True)]
    return Result(
        kind,
        statistics.median(walls["noop"]),
        statistics.median(walls["metered"]),
        ratios,
        statistics.median(cpus["metered"]) / statistics.median(cpus["noop"]),
        got == expected,
    )


def ledger_call_cost(workdir: Path, n: int) -> None:
    """Where the metering time goes: the bridge call alone, and the flush after it."""
    from authsome.bridge import LedgerContext
    from authsome.crypto import new_ordered_id

    contexts = [
        LedgerContext(TENANT, user_id="usr_x", event_id=new_ordered_id("akv")) for _ in range(n)
    ]
    metering = metering_ledger(workdir, "memory")
    for _ in range(100):  # warm up
        metering.ledger.record_usage(LedgerContext(TENANT, user_id="usr_x"), EVENT, 1)
    metering.metered()
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


# -- instruction counts -------------------------------------------------------------


def worker(side: str, kind: str, n: int) -> None:
    """The loop callgrind counts: ``n`` validations through one side, then the drain."""
    with tempfile.TemporaryDirectory() as tmp, sides(kind, Path(tmp)) as s:
        call = s.noop if side == "noop" else s.metered
        # Warm up into the steady state the wall-clock rounds see (plan and
        # subscription cached). The same in every run, so it cancels out.
        for _ in range(100):
            call()
        s.metering.metered()
        for i in range(n):
            call()
            if i % 500 == 0:
                # Under valgrind a busy thread keeps the GIL far beyond the 5 ms switch
                # interval, so the flusher would hardly run; yield as CPython would.
                time.sleep(0)
        s.metering.metered()  # the flush belongs to the metering cost


def instructions(valgrind: str, side: str, kind: str, n: int, workdir: Path) -> int:
    """Instructions callgrind counts for one :func:`worker` run (every thread)."""
    out = workdir / f"callgrind-{side}-{kind}-{n}.out"
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same set layouts on every run
    subprocess.run(  # noqa: S603 - a fixed argument list, no shell
        [
            valgrind,
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--worker",
            side,
            kind,
            str(n),
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no instruction total in {out.name}")
    return int(match.group(1))


def instruction_ratios(workdir: Path, short: int, long: int) -> dict[str, float]:
    """Metered / NoopLedger instructions per call, per store (empty without valgrind)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("\ninstructions: valgrind is not installed, skipped")
        return {}
    ratios = {}
    print(f"\ninstructions per call (callgrind, {long} minus {short} calls):")
    print(f"  {'store':<8}{'NoopLedger':>14}{'metering':>14}{'ratio':>9}")
    for kind in STORES:
        per_call = {}
        for side in ("noop", "metered"):
            counts = [instructions(valgrind, side, kind, n, workdir) for n in (short, long)]
            per_call[side] = (counts[1] - counts[0]) / (long - short)
        ratio = ratios[kind] = per_call["metered"] / per_call["noop"]
        print(f"  {kind:<8}{per_call['noop']:>14,.0f}{per_call['metered']:>14,.0f}{ratio:>9.3f}")
    return ratios


# -- a ledger store outage ------------------------------------------------------------


class DownStore:
    """A ledger store that raises on every write while ``down`` (reads still work)."""

    def __init__(self, inner: Any, down: bool) -> None:
        self.inner = inner
        self.down = down

    def apply_usage(self, batch: Any) -> None:
        if self.down:
            from authsome import ledger

            raise ledger.LedgerStoreError("ledger store is down (benchmark)")
        self.inner.apply_usage(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def outage_round(workdir: Path, durability: str, down: bool, n: int) -> tuple[float, int]:
    """(µs per validation, events counted once the store is back) for one engine."""
    from authsome import ledger
    from authsome.bridge.ledgeradapter import LedgerAdapter

    tag = f"{durability}-{down}-{time.monotonic_ns()}"
    store = DownStore(ledger.SQLiteStore(workdir / f"outage-{tag}.db"), down)
    options: dict[str, Any] = {"max_buffer": 1_000, "batch_size": 500}
    if durability == "spool":
        options.update(durability="spool", spool_path=workdir / f"spool-{tag}")
    engine = ledger.Engine(store=store, **options)
    engine.define_plan(ledger.Plan("bench", [ledger.Feature.metered(EVENT, None)]))
    engine.subscribe(TENANT, "bench")
    with open_store("memory", workdir) as auth_store:
        hashing = PasswordHashing.fast_insecure_for_tests()
        auth = Authsome(store=auth_store, ledger=LedgerAdapter(engine), password_hashing=hashing)
        user = auth.users.register("bench@example.com", "bench passphrase 1", tenant=TENANT)
        secret = auth.api_keys.create(user.id, "bench", scopes=["read"]).secret
        for _ in range(100):
            auth.api_keys.validate(secret)
        wall, _ = time_calls(lambda: auth.api_keys.validate(secret), n)
    store.down = False
    engine.close()
    counted = _counted(store.inner)
    store.inner.close()
    return wall, counted


def _counted(store: Any) -> int:
    return sum(r.used for r in store.usage_records(TENANT) if r.feature == EVENT)


def outage(workdir: Path, rounds: int) -> dict[str, float]:
    """Median ratio store-down / store-up per durability (and, for memory, with the
    auth engine's warning per failed record switched off); checks the spool's count."""
    log = logging.getLogger("authsome")
    log.addHandler(logging.FileHandler(workdir / "auth.log"))
    log.propagate = False  # failed records are logged, to a file, as in production
    print(f"\nledger store down, {OUTAGE_N:,} validations (paired rounds, store on SQLite):")
    ratios = {}
    for durability in ("spool", "memory", "memory, failure log off"):
        log.setLevel(logging.ERROR if "off" in durability else logging.NOTSET)
        per_round = []
        counted = []
        for i in range(rounds):
            order = (False, True) if i % 2 == 0 else (True, False)
            walls = {}
            for down in order:
                walls[down], got = outage_round(workdir, durability[:6], down, OUTAGE_N)
                if down:
                    counted.append(got)
            per_round.append(walls[True] / walls[False])
        ratio = ratios[durability] = statistics.median(per_round)
        lost = "every one counted once it was back" if durability == "spool" else "dropped"
        expected = OUTAGE_N + 100  # the validations and the warm-up
        print(
            f"  {durability:<24} down/up {ratio:.3f} (rounds {min(per_round):.3f}.."
            f"{max(per_round):.3f}); counted after the outage: {min(counted):,}..{max(counted):,}"
            f" of {expected:,} ({lost})"
        )
        if durability == "spool" and min(counted) != expected:
            ratios[durability] = float("inf")  # a lost event fails the target
    return ratios


# -- hard limits ------------------------------------------------------------------------

ENFORCEMENT_SIDES = ("same engine (A/A)", "other limits enforced", "apikeys enforced")


@contextmanager
def limit_sides(kind: str, workdir: Path) -> Iterator[dict[str, Callable[[], object]]]:
    """Validate through the baseline (metering, nothing enforced) and each compared side;
    every side has a ledger engine of its own on the same kind of store."""
    from authsome import ledger
    from authsome.bridge.ledgeradapter import LedgerAdapter

    enforce: dict[str, list[UsageEvent]] = {
        "baseline": [],
        "same engine (A/A)": [],
        "other limits enforced": [UsageEvent.ORGS_MEMBERS, UsageEvent.USERS_ACTIVE],
        "apikeys enforced": [UsageEvent.APIKEYS_VALIDATED],
    }
    engines = []
    with open_store(kind, workdir) as store:
        hashing = PasswordHashing.fast_insecure_for_tests()
        calls: dict[str, Callable[[], object]] = {}
        secret = ""
        for name, keys in enforce.items():
            path = workdir / f"limits-{time.monotonic_ns()}.db"
            ledger_store = ledger.SQLiteStore(str(path)) if kind == "sqlite" else None
            engine = ledger.Engine(store=ledger_store or ledger.MemoryStore())
            engines.append(engine)
            engine.define_plan(ledger.Plan("bench", [ledger.Feature.metered(EVENT, 10**12)]))
            engine.subscribe(TENANT, "bench")
            auth = Authsome(
                store=store,
                ledger=LedgerAdapter(engine),
                password_hashing=hashing,
                enforce_limits=keys,
            )
            if not secret:
                user = auth.users.register("bench@example.com", "bench passphrase 1", tenant=TENANT)
                secret = auth.api_keys.create(user.id, "bench", scopes=["read"]).secret
            calls[name] = lambda auth=auth, secret=secret: auth.api_keys.validate(secret)
        try:
            yield calls
        finally:
            for engine in engines:
                engine.close()


def enforcement(workdir: Path, n: int, rounds: int) -> None:
    """Paired ratios of each side to the baseline, per store, and the off path's cost."""
    print(f"\nhard limits, {n} validations x {rounds} rounds (paired with the baseline):")
    print(f"  {'store':<8}{'side':<24}{'µs/call':>9}{'+µs/call':>10}{'ratio':>8}  [quartiles]")
    for kind in STORES:
        with limit_sides(kind, workdir) as calls:
            for call in calls.values():
                time_calls(call, n // 10)
            for side in ENFORCEMENT_SIDES:
                base, other, ratios = [], [], []
                for i in range(rounds):
                    pair = [("base", calls["baseline"]), ("side", calls[side])]
                    walls = {}
                    for name, call in pair if i % 2 == 0 else reversed(pair):
                        walls[name] = time_calls(call, n)[0]
                    base.append(walls["base"])
                    other.append(walls["side"])
                    ratios.append(walls["side"] / walls["base"])
                q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
                extra = statistics.median(o - b for o, b in zip(other, base, strict=True))
                print(
                    f"  {kind:<8}{side:<24}{statistics.median(other):>9.2f}{extra:>+10.2f}"
                    f"{statistics.median(ratios):>8.3f}  [{q1:.3f}, {q3:.3f}]"
                )
    off_path_cost(n * 5)


def off_path_cost(n: int) -> None:
    """What enforcement off adds per call: ``Billing.use`` (is the key enforced? no:
    record) against ``Billing.record``, through NoopLedger so the ledger adds nothing."""
    from authsome._billing import Billing
    from authsome.bridge import LedgerContext

    billing = Billing(NoopLedger())
    ctx = LedgerContext(TENANT, user_id="usr_x", event_id="akv_x")
    event = UsageEvent.APIKEYS_VALIDATED
    per_call: dict[str, list[float]] = {"record": [], "use": []}
    for _ in range(7):
        for name, call in (("record", billing.record), ("use", billing.use)):
            gc.collect()
            start = time.perf_counter_ns()
            for _ in range(n):
                call(event, ctx)
            per_call[name].append((time.perf_counter_ns() - start) / n)
    record, use = (statistics.median(per_call[k]) for k in ("record", "use"))
    print(
        f"  off path alone: Billing.use {use:.0f} ns/call, Billing.record {record:.0f} ns/call"
        f" (+{use - record:.0f} ns)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="validations per round")
    parser.add_argument("--rounds", type=int, default=11, help="rounds per ledger")
    parser.add_argument(
        "--no-instructions", action="store_true", help="skip the callgrind instruction counts"
    )
    parser.add_argument("--outage-rounds", type=int, default=5, help="rounds of the outage test")
    parser.add_argument(
        "--only-limits", action="store_true", help="run only the hard-limit comparison"
    )
    parser.add_argument("--worker", nargs=3, metavar=("SIDE", "STORE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        side, kind, n = args.worker
        worker(side, kind, int(n))
        return 0
    if args.n < 10 or args.rounds < 2:
        parser.error("-n must be at least 10 and --rounds at least 2")

    if args.only_limits:
        with tempfile.TemporaryDirectory() as tmp:
            enforcement(Path(tmp), args.n, args.rounds)
        return 0
    print(f"api_keys.validate, {args.n} calls x {args.rounds} rounds per ledger")
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench_store(kind, Path(tmp), args.n, args.rounds) for kind in STORES]
        print()
        ledger_call_cost(Path(tmp), args.n * 5)
        instr = {} if args.no_instructions else instruction_ratios(Path(tmp), 2_000, 12_000)
        outages = outage(Path(tmp), args.outage_rounds)
        enforcement(Path(tmp), args.n, args.rounds)

    print("\nwall clock (medians; ratio: median of the paired per-round ratios [quartiles]):")
    print(f"  {'store':<8}{'NoopLedger':>14}{'metering':>14}{'ratio':>9}{'':>18}{'CPU ratio':>11}")
    ok = all(r.complete for r in results)
    for r in results:
        q1, q3 = r.quartiles
        print(
            f"  {r.kind:<8}{r.noop_us:>11.2f} µs{r.metered_us:>11.2f} µs{r.ratio:>9.3f}"
            f"  [{q1:.3f}, {q3:.3f}]{r.cpu_ratio:>11.3f}"
        )
    print()
    for kind, ratio in instr.items():
        met = ratio <= TARGET
        ok = ok and met
        print(
            f"target: {kind} instructions x{ratio:.3f} <= x{TARGET}: {'met' if met else 'NOT met'}"
        )
    for durability, ratio in outages.items():
        if "off" in durability:
            continue  # for the reader: what the failure warnings cost
        met = ratio <= OUTAGE_TARGET
        ok = ok and met
        print(
            f"target: store down, {durability}, x{ratio:.3f} <= x{OUTAGE_TARGET}: "
            f"{'met' if met else 'NOT met'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
