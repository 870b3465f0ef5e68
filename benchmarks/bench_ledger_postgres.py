"""Benchmark of the ledger on PostgreSQL: ``python benchmarks/bench_ledger_postgres.py``.

Uses the server named by ``AUTHSOME_PG_DSN`` (in a throwaway schema, dropped at the
end) or starts a throwaway one itself from Debian's ``postgresql`` binaries, the same
way the test suite does (that server runs with ``fsync=off``: commits are not
durable, so write numbers are upper bounds for a production server).

Prints:

* microseconds per uncached ``entitled`` on PostgreSQL over loopback (one usage
  read per call) and per fully cold one (``cache_ttl=0``: subscription, plan and
  usage reads), against the same run's SQLite numbers and a bare ``SELECT 1``
  round trip (the floor any PostgreSQL read pays);
* aggregate metering throughput of 4 processes, each with its own engine and store
  on one schema, timed from a common start until every event is committed: with a
  fresh ``event_id`` per event (one row each) and without ids (aggregated counters),
  against 1 process on PostgreSQL and 4 processes on one SQLite file.

Targets: uncached check <= 500 us; 4 processes >= 50,000 events/s. Runs in well
under a minute.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from authsome import ledger  # noqa: E402
from tests.support.pgschema import drop_schema  # noqa: E402
from tests.support.pgserver import server_dsn  # noqa: E402

CHECK_N = 5_000
COLD_N = 1_000
PING_N = 5_000
EVENTS_PER_PROCESS = 100_000
PROCESSES = 4


def best_of(runs: int, fn: Callable[[], float]) -> float:
    """The best (smallest) of ``runs`` timings: the least disturbed by the machine."""
    return min(fn() for _ in range(runs))


def plan() -> ledger.Plan:
    return ledger.Plan(
        "bench",
        [ledger.Feature.metered("api.calls", limit=10**12), ledger.Feature.boolean("sso")],
    )


def make_store(kind: str, target: str, schema: str) -> ledger.LedgerStore:
    if kind == "postgres":
        return ledger.PostgresStore(target, schema=schema, max_size=4)
    return ledger.SQLiteStore(target)


# --- uncached entitlement checks ------------------------------------------------------


def bench_checks(store: ledger.LedgerStore) -> tuple[float, float]:
    """(s per uncached check, s per fully cold check) on ``store``."""
    eng = ledger.Engine(store=store, flush_interval=3600)
    eng.define_plan(plan())
    eng.subscribe("acme", "bench")
    eng.meter("acme", "api.calls", 5)
    eng.flush()
    entitled = eng.entitled

    def uncached() -> float:
        # requested=2 is never cached: every call reads the period's usage from the store.
        t = time.perf_counter()
        for _ in range(CHECK_N):
            entitled("acme", "api.calls", requested=2)
        return (time.perf_counter() - t) / CHECK_N

    warm = best_of(3, uncached)
    eng.close()
    cold_eng = ledger.Engine(store=store, flush_interval=3600, cache_ttl=0)

    def cold() -> float:
        t = time.perf_counter()
        for _ in range(COLD_N):
            cold_eng.entitled("acme", "api.calls")
        return (time.perf_counter() - t) / COLD_N

    coldest = best_of(3, cold)
    cold_eng.close()
    return warm, coldest


def bench_ping(dsn: str) -> float:
    """s per ``SELECT 1`` round trip on one connection (prepared, like the store's reads)."""
    with psycopg.connect(dsn, autocommit=True) as conn:

        def run() -> float:
            t = time.perf_counter()
            for _ in range(PING_N):
                conn.execute("SELECT 1", prepare=True).fetchone()
            return (time.perf_counter() - t) / PING_N

        return best_of(3, run)


# --- multi-process metering ------------------------------------------------------------


def meter_worker(
    kind: str, target: str, schema: str, proc: int, ids: bool, barrier: Any, out: Any
) -> None:
    """One process: meter EVENTS_PER_PROCESS events, then wait until they are committed."""
    store = make_store(kind, target, schema)
    eng = ledger.Engine(store=store, flush_interval=0.05, batch_size=10_000, max_buffer=200_000)
    meter = eng.meter
    prefix = f"p{proc}-"
    barrier.wait()
    t0 = time.monotonic()
    if ids:
        for i in range(EVENTS_PER_PROCESS):
            meter("acme", "api.calls", event_id=prefix + str(i))
    else:
        for _ in range(EVENTS_PER_PROCESS):
            meter("acme", "api.calls")
    eng.flush(timeout=120)
    t1 = time.monotonic()
    eng.close()
    store.close()
    out.put((t0, t1))


def bench_metering(kind: str, target: str, schema: str, processes: int, ids: bool) -> float:
    """Aggregate events/s of ``processes`` processes metering into one ledger."""
    store = make_store(kind, target, schema)
    with ledger.Engine(store=store) as eng:
        if store.get_plan("bench") is None:
            eng.define_plan(plan())
        eng.subscribe("acme", "bench")
        period = eng.period("acme", "api.calls")
        before = eng.usage("acme", "api.calls", period=period)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=meter_worker, args=(kind, target, schema, p, ids, barrier, out))
        for p in range(processes)
    ]
    for p in procs:
        p.start()
    spans = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise RuntimeError(f"a metering process failed (exit code {p.exitcode})")
    total = processes * EVENTS_PER_PROCESS
    after = store.get_usage("acme", "api.calls", int(period.start.timestamp()))
    store.close()
    if after - before != total:
        raise RuntimeError(f"lost or doubled events: expected {total}, stored {after - before}")
    wall = max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans)
    return total / wall


def main() -> None:
    schema = f"bench_{secrets.token_hex(4)}"
    with server_dsn() as dsn, tempfile.TemporaryDirectory() as tmp:
        try:
            ping = bench_ping(dsn)
            pg = ledger.PostgresStore(dsn, schema=schema)
            pg_warm, pg_cold = bench_checks(pg)
            pg.close()
            lite = ledger.SQLiteStore(Path(tmp) / "checks.db")
            lite_warm, lite_cold = bench_checks(lite)
            lite.close()

            rates: dict[str, float] = {}
            for label, kind, n, ids in [
                ("pg4_ids", "postgres", PROCESSES, True),
                ("pg4_agg", "postgres", PROCESSES, False),
                ("pg1_ids", "postgres", 1, True),
            ]:
                rates[label] = bench_metering(kind, dsn, f"{schema}_{label}", n, ids)
            lite_db = str(Path(tmp) / "meter.db")
            rates["lite4_ids"] = bench_metering("sqlite", lite_db, "", PROCESSES, True)
        finally:
            for suffix in ("", "_pg4_ids", "_pg4_agg", "_pg1_ids"):
                drop_schema(dsn, schema + suffix)

    where = "AUTHSOME_PG_DSN" if os.environ.get("AUTHSOME_PG_DSN") else "local throwaway server"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, PostgreSQL: {where}")
    print(f"baseline SELECT 1 round trip      {ping * 1e6:9.1f} us")
    print(
        f"entitled uncached, PostgreSQL     {pg_warm * 1e6:9.1f} us   "
        f"{pg_warm / ping:4.1f}x SELECT 1   {pg_warm / lite_warm:5.1f}x SQLite   "
        "target <= 500 us"
    )
    print(f"entitled uncached, SQLite         {lite_warm * 1e6:9.1f} us")
    print(
        f"entitled cache_ttl=0, PostgreSQL  {pg_cold * 1e6:9.1f} us   "
        f"{pg_cold / ping:4.1f}x SELECT 1   {pg_cold / lite_cold:5.1f}x SQLite   "
        "(subscription + plan + usage)"
    )
    print(f"entitled cache_ttl=0, SQLite      {lite_cold * 1e6:9.1f} us")
    n = f"{PROCESSES} x {EVENTS_PER_PROCESS:,}"
    print(
        f"meter {n}, PostgreSQL, ids    {rates['pg4_ids']:>10,.0f} ev/s   "
        f"{rates['pg4_ids'] / rates['pg1_ids']:4.2f}x 1 process   "
        f"{rates['pg4_ids'] / rates['lite4_ids']:4.2f}x SQLite   target >= 50,000 ev/s"
    )
    print(f"meter {n}, PostgreSQL, no ids {rates['pg4_agg']:>10,.0f} ev/s   (aggregated)")
    print(f"meter 1 x {EVENTS_PER_PROCESS:,}, PostgreSQL, ids    {rates['pg1_ids']:>10,.0f} ev/s")
    print(f"meter {n}, SQLite file, ids   {rates['lite4_ids']:>10,.0f} ev/s")


if __name__ == "__main__":
    main()
