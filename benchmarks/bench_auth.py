"""Auth engine hot paths: session validation and refresh, per store.

Run from a checkout: ``python benchmarks/bench_auth.py``. Each figure is printed
with its ratio to a baseline measured in the same run (hashing one token with
SHA-256, the least work a validation can do), because absolute timings on shared
machines are noise.

PostgreSQL is measured in the same run, over loopback: on the server named by
``AUTHSOME_PG_DSN`` if set (in a throwaway schema), else on one started from the
local ``postgresql`` binaries the way the test suite does; skipped, with the reason
printed, when neither is possible.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support.pgserver

from authsome import Authsome, PasswordHashing
from authsome.crypto import new_token
from authsome.stores import MemoryStore, SQLiteStore, Store

PASSWORD = "correct horse battery staple"  # noqa: S105 - benchmark account


def per_op_us(fn: Callable[[], object], *, seconds: float = 0.5) -> float:
    """Median of 5 timed rounds, in microseconds per call."""
    rounds = []
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 5:
            for _ in range(100):
                fn()
            n += 100
        rounds.append(elapsed / n * 1e6)
    return sorted(rounds)[2]


THREADS = 4


def threads_ops_per_s(fn: Callable[[], object], *, seconds: float = 0.5) -> float:
    """Calls per second of ``THREADS`` threads calling ``fn`` together: a store that
    waits on a server (not on the GIL) gains from several connections at once."""
    stop = threading.Event()
    counts = [0] * THREADS

    def worker(index: int) -> None:
        while not stop.is_set():
            for _ in range(20):
                fn()
            counts[index] += 20

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    start = time.perf_counter()
    for thread in workers:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in workers:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def bench_store(name: str, store: Store, baseline: float) -> None:
    auth = Authsome(store=store, password_hashing=PasswordHashing.fast_insecure_for_tests())
    auth.users.register("bench@example.com", PASSWORD)
    signed = auth.sign_in("bench@example.com", PASSWORD)
    assert signed.tokens is not None
    token = signed.tokens.access_token
    validate = per_op_us(lambda: auth.sessions.validate(token))
    state = {"refresh": signed.tokens.refresh_token}

    def refresh() -> None:
        state["refresh"] = auth.sessions.refresh(state["refresh"]).refresh_token

    # Before the refresh loop, which rotates ``token`` out.
    parallel = threads_ops_per_s(lambda: auth.sessions.validate(token))
    rotate = per_op_us(refresh)
    for label, micros in (("validate", validate), ("refresh ", rotate)):
        print(
            f"{name:<8} {label} {micros:8.2f} us  {1e6 / micros:9,.0f}/s"
            f"  ({micros / baseline:6.1f}x baseline)"
        )
    print(f"{name:<8} validate in {THREADS} threads: {parallel:9,.0f}/s together")
    auth.close()


def bench_postgres(baseline: float) -> None:
    try:
        from authsome.stores import PostgresStore
        from tests.support.pgschema import drop_schema
        from tests.support.pgserver import server_dsn
    except ImportError as exc:
        print(f"postgres skipped: {exc}")
        return
    schema = f"bench_auth_{os.getpid()}"
    try:
        with server_dsn() as dsn:
            try:
                bench_store("postgres", PostgresStore(dsn, schema=schema), baseline)
            finally:
                drop_schema(dsn, schema)
    except Exception as exc:  # the other figures stand without it
        print(f"postgres skipped: {type(exc).__name__}: {exc}")


def main() -> None:
    token = new_token()
    baseline = per_op_us(lambda: hashlib.sha256(token.encode()).hexdigest())
    print(f"python {sys.version.split()[0]}; baseline sha256(token) {baseline:.3f} us")
    bench_store("memory", MemoryStore(), baseline)
    with tempfile.TemporaryDirectory() as tmp:
        bench_store("sqlite", SQLiteStore(Path(tmp) / "auth.db"), baseline)
    bench_postgres(baseline)
    hashing = PasswordHashing()
    auth = Authsome(password_hashing=hashing)
    auth.users.register("cost@example.com", PASSWORD)
    start = time.perf_counter()
    for _ in range(5):
        auth.sign_in("cost@example.com", PASSWORD)
    sign_in_ms = (time.perf_counter() - start) / 5 * 1e3
    print(f"password sign-in with production argon2id {hashing}: {sign_in_ms:.1f} ms")


if __name__ == "__main__":
    main()
