"""What tracking session activity costs ``sessions.validate`` on a SQLite file.

Run from a checkout: ``python benchmarks/bench_session_activity.py``. Three engines
validate one access token over and over, with a clock that moves on by a fixed step
per call:

* no idle timeout (``idle_timeout=None``): validation never writes;
* the default 7-day idle timeout, 1 microsecond per call: activity is written at most
  once per hundredth of the timeout, so never in the run — the real cost of the policy;
* the same policy, 2 hours per call: every validation writes — what writing activity
  on each request would cost.

Figures are ratios to the first, measured in the same run (absolute timings on shared
machines are noise).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from authsome import Authsome, PasswordHashing, SessionPolicy
from authsome.stores import SQLiteStore

PASSWORD = "correct horse battery staple"  # noqa: S105 - benchmark account
CALLS = 4_000


class SteppingClock:
    """A clock that moves on by ``step`` every time it is read."""

    def __init__(self, step: timedelta) -> None:
        self.now = datetime.now(UTC)
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def validate_us(idle_timeout: timedelta | None, step: timedelta) -> float:
    """Median of 5 rounds of ``CALLS // 5`` validations, microseconds per call."""
    # Lifetimes far beyond the run, so that only the idle timeout matters.
    policy = SessionPolicy(
        ttl=timedelta(days=3650), access_ttl=timedelta(days=3000), idle_timeout=idle_timeout
    )
    with tempfile.TemporaryDirectory() as tmp:
        auth = Authsome(
            store=SQLiteStore(Path(tmp) / "auth.db"),
            sessions=policy,
            clock=SteppingClock(step),
            password_hashing=PasswordHashing.fast_insecure_for_tests(),
        )
        auth.users.register("bench@example.com", PASSWORD)
        tokens = auth.sign_in("bench@example.com", PASSWORD, ip="127.0.0.1").tokens
        assert tokens is not None
        rounds = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(CALLS // 5):
                auth.sessions.validate(tokens.access_token)
            rounds.append((time.perf_counter() - start) / (CALLS // 5) * 1e6)
        auth.close()
    return sorted(rounds)[2]


def main() -> None:
    week, tiny, two_hours = timedelta(days=7), timedelta(microseconds=1), timedelta(hours=2)
    none = validate_us(None, tiny)
    default = validate_us(week, tiny)
    every = validate_us(week, two_hours)
    print(f"sqlite validate, no idle timeout:          {none:8.1f} us")
    print(f"sqlite validate, 7-day idle timeout:       {default:8.1f} us  x{default / none:.2f}")
    print(f"sqlite validate, writing on every call:    {every:8.1f} us  x{every / none:.2f}")


if __name__ == "__main__":
    main()
