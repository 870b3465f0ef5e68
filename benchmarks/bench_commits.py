"""What an operation's commits cost on a SQLite file.

    python benchmarks/bench_commits.py [--rounds 200] [--dir DIR]

Times a password sign-in, an MFA verify and a refresh on a ``SQLiteStore`` in a
file (in ``DIR``, default a temporary directory: put it on the disk you deploy on,
since a commit's cost is the disk's flush), and prints the median and quartiles of
each in milliseconds, with the same operations on a ``MemoryStore`` beside them
(no commits at all: what is left is the library's own work). Password hashing uses
the cheap test parameters, so the figures are the store's share of a sign-in.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp

from authsome import Authsome, PasswordHashing
from authsome.stores import MemoryStore, SQLiteStore, Store

EMAIL = "ann@example.com"
PASSWORD = "correct horse battery staple"  # noqa: S105 - a benchmark's user
IP = "203.0.113.7"


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _timed(operation: Callable[[], object]) -> float:
    start = time.perf_counter()
    operation()
    return (time.perf_counter() - start) * 1000


def measure(store: Store, rounds: int) -> dict[str, list[float]]:
    clock = _Clock()
    auth = Authsome(
        store=store, clock=clock, password_hashing=PasswordHashing.fast_insecure_for_tests()
    )
    plain = auth.users.register("bob@example.com", PASSWORD, tenant="acme")
    user = auth.users.register(EMAIL, PASSWORD, tenant="acme")
    setup = auth.mfa.begin_totp(user.id)
    totp = pyotp.TOTP(setup.secret)
    auth.mfa.confirm_totp(user.id, totp.at(clock.now))
    times: dict[str, list[float]] = {"sign-in": [], "mfa.verify": [], "refresh": []}
    signed_in = auth.sign_in(plain.email, PASSWORD, tenant="acme", ip=IP)
    assert signed_in.tokens is not None
    refresh_token = signed_in.tokens.refresh_token
    for _ in range(rounds):
        clock.now += timedelta(seconds=30)  # a fresh TOTP time-step each round
        times["sign-in"].append(
            _timed(lambda: auth.sign_in(plain.email, PASSWORD, tenant="acme", ip=IP))
        )
        ticket = auth.sign_in(EMAIL, PASSWORD, tenant="acme", ip=IP).ticket
        assert ticket is not None
        code = totp.at(clock.now)
        times["mfa.verify"].append(_timed(lambda t=ticket, c=code: auth.mfa.verify(t, c)))
        rotated: list[str] = []
        times["refresh"].append(
            _timed(
                lambda r=refresh_token, out=rotated: out.append(
                    auth.sessions.refresh(r).refresh_token
                )
            )
        )
        refresh_token = rotated[0]
    auth.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        results = {
            "sqlite": measure(SQLiteStore(Path(directory) / "auth.db"), args.rounds),
            "memory": measure(MemoryStore(), args.rounds),
        }
    print(f"{'operation':<12} {'store':<7} {'median ms':>10} {'q1':>8} {'q3':>8}")
    for operation in ("sign-in", "mfa.verify", "refresh"):
        for kind, times in results.items():
            q1, median, q3 = statistics.quantiles(times[operation], n=4)
            print(f"{operation:<12} {kind:<7} {median:>10.3f} {q1:>8.3f} {q3:>8.3f}")


if __name__ == "__main__":
    main()
