"""Auth engine hot paths: session validation and refresh, per store.

Run from a checkout: ``python benchmarks/bench_auth.py``. Each figure is printed
with its ratio to a baseline measured in the same run (hashing one token with
SHA-256, the least work a validation can do), because absolute timings on shared
machines are noise.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

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

    rotate = per_op_us(refresh)
    print(f"{name:<8} validate {validate:8.2f} us  ({validate / baseline:6.1f}x baseline)")
    print(f"{name:<8} refresh  {rotate:8.2f} us  ({rotate / baseline:6.1f}x baseline)")
    auth.close()


def main() -> None:
    token = new_token()
    baseline = per_op_us(lambda: hashlib.sha256(token.encode()).hexdigest())
    print(f"python {sys.version.split()[0]}; baseline sha256(token) {baseline:.3f} us")
    bench_store("memory", MemoryStore(), baseline)
    with tempfile.TemporaryDirectory() as tmp:
        bench_store("sqlite", SQLiteStore(Path(tmp) / "auth.db"), baseline)
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
