"""What metering costs end to end: the FastAPI example under uvicorn, over HTTP.

    python benchmarks/bench_http.py                 # 7 rounds of 2,000 requests each
    python benchmarks/bench_http.py --rounds 11 -n 4000 --concurrency 16

Two servers run the same app (``examples/fastapi_app.py`` under uvicorn on 127.0.0.1,
one worker, a SQLite auth store each): one with ``NoopLedger``, one with the embedded
ledger on a SQLite file (``AUTHSOME_LEDGER_DB``), its tenant on an unlimited plan. The
route is ``GET /me`` with an API key: every request validates the key, and on the
metered server meters ``authsome.apikeys.validated``.

A local asyncio load generator sends a bounded number of requests per round over
keep-alive connections (``--concurrency`` of them, each sending its share one after
the other), and times each request. Rounds are interleaved (Noop then metered, then
the other way round, and so on), so both see the same machine state. Per round it
reports requests per second, the p50/p99 latencies and the server's CPU time per
request (every thread of the server process, so the ledger's flusher too; it depends
far less on other processes competing for the cores than wall time does). The
verdict is the median of the per-round ratios (metered ÷ Noop), printed with their
range.

After the last round both servers stop (gracefully: the ledger drains at exit) and the
ledger is checked to hold every validation the metered server answered.

``--control`` runs two NoopLedger servers against each other instead (an A/A run): how
far apart two identical servers come out on this machine, the noise floor of a verdict.

Targets: requests/s with metering ≥ 0.95 of NoopLedger, p99 latency ≤ 1.10 times (exit
status 1 if not). Shared machines are noisy: run it more than once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "src"), str(REPO_ROOT)]

import httpx  # noqa: E402

from authsome import ledger  # noqa: E402
from tests.examples._servers import authsome_cli, running_server  # noqa: E402

TENANT = "bench"
PASSWORD = "correct horse battery staple"  # noqa: S105 - a benchmark user
PLANS = str(REPO_ROOT / "examples" / "plans.toml")
EVENT = "authsome.apikeys.validated"
RPS_TARGET = 0.95
P99_TARGET = 1.10
SIDES = ("noop", "metered")


@dataclass
class Server:
    """One running example, the API key its requests carry, and what it answered."""

    side: str
    port: int
    pid: int
    api_key: str = ""
    answered: int = 0
    cpu: list[float] = field(default_factory=list)  # server CPU seconds per request
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


@contextmanager
def serving(side: str, workdir: Path) -> Iterator[Server]:
    """The FastAPI example under uvicorn, with or without the embedded ledger, its
    files in ``workdir``."""
    workdir.mkdir()
    auth_db = workdir / f"{side}.db"
    env = {"AUTHSOME_DB": str(auth_db)}
    if side == "metered":
        ledger_db = workdir / "ledger.db"
        authsome_cli("migrate", "--db", str(auth_db), "--ledger-db", str(ledger_db))
        authsome_cli("plans", "load", PLANS, "--db", str(auth_db), "--ledger-db", str(ledger_db))
        authsome_cli(
            "subscribe", TENANT, "business", "--db", str(auth_db), "--ledger-db", str(ledger_db)
        )
        env["AUTHSOME_LEDGER_DB"] = str(ledger_db)
    argv = [
        sys.executable, "-m", "uvicorn", "--factory", "examples.fastapi_app:create_app",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with running_server(lambda fd: [*argv, "--fd", str(fd)], env) as served:
        server = Server(side, served.port, served.pid)
        server.api_key = api_key_of_new_user(served.url)
        yield server


def api_key_of_new_user(base_url: str) -> str:
    """Sign a new user up and in, and create an API key for it."""
    credentials = {"email": "bench@example.com", "password": PASSWORD, "tenant": TENANT}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        client.post("/signup", json=credentials).raise_for_status()
        signin = client.post("/signin", json=credentials)
        signin.raise_for_status()
        bearer = {"Authorization": f"Bearer {signin.json()['access_token']}"}
        created = client.post("/api-keys", headers=bearer)
        created.raise_for_status()
        secret: str = created.json()["secret"]
        return secret


async def one_connection(server: Server, count: int, latencies: list[float]) -> None:
    """``count`` requests one after the other on one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = (
        f"GET /me HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-API-Key: {server.api_key}\r\n\r\n"
    ).encode()
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = _content_length(head)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(f"{server.side}: {head.splitlines()[0]!r}")
    finally:
        writer.close()
        await writer.wait_closed()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise RuntimeError("a response without Content-Length")


async def load(server: Server, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """Send ``requests`` over ``concurrency`` connections: requests/s and latencies."""
    shares = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(one_connection(server, share, latencies) for share in shares))
    elapsed = time.perf_counter() - started
    server.answered += requests
    return requests / elapsed, latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used, all threads (the ledger's flusher too); Linux."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_round(server: Server, requests: int, concurrency: int) -> None:
    cpu_before = cpu_seconds(server.pid)
    rps, latencies = asyncio.run(load(server, requests, concurrency))
    server.cpu.append((cpu_seconds(server.pid) - cpu_before) / requests)
    server.rps.append(rps)
    server.p50.append(percentile(latencies, 0.50))
    server.p99.append(percentile(latencies, 0.99))


def spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}..{max(ratios):.3f})"


def report(noop: Server, metered: Server) -> bool:
    print(f"{'round':>5}  {'side':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>11}")
    for i in range(len(noop.rps)):
        for server in (noop, metered):
            print(
                f"{i + 1:>5}  {server.side:<8} {server.rps[i]:>8.0f}"
                f" {server.p50[i] * 1e3:>8.2f} {server.p99[i] * 1e3:>8.2f}"
                f" {server.cpu[i] * 1e6:>11.0f}"
            )
    rps = [m / n for m, n in zip(metered.rps, noop.rps, strict=True)]
    p50 = [m / n for m, n in zip(metered.p50, noop.p50, strict=True)]
    p99 = [m / n for m, n in zip(metered.p99, noop.p99, strict=True)]
    cpu = [m / n for m, n in zip(metered.cpu, noop.cpu, strict=True)]
    print()
    for server in (noop, metered):
        print(
            f"{server.side:<8} median req/s {statistics.median(server.rps):.0f},"
            f" p50 {statistics.median(server.p50) * 1e3:.2f} ms,"
            f" p99 {statistics.median(server.p99) * 1e3:.2f} ms,"
            f" server CPU {statistics.median(server.cpu) * 1e6:.0f} µs/request"
        )
    print(f"{metered.side} ÷ {noop.side}, median of the rounds (range):")
    print(f"  requests/s  {spread(rps)}   target ≥ {RPS_TARGET}")
    print(f"  p50 latency {spread(p50)}")
    print(f"  p99 latency {spread(p99)}   target ≤ {P99_TARGET}")
    print(f"  server CPU per request {spread(cpu)}   (steadier under load than wall time)")
    return statistics.median(rps) >= RPS_TARGET and statistics.median(p99) <= P99_TARGET


def metered_count(ledger_db: Path) -> int:
    store = ledger.SQLiteStore(ledger_db)
    try:
        with ledger.Engine(store=store) as engine:
            return engine.usage(TENANT, EVENT)
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2_000, help="requests per round and server")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per server")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--warmup", type=int, default=500, help="requests before the rounds")
    parser.add_argument("--control", action="store_true", help="NoopLedger against itself")
    args = parser.parse_args(argv)
    sides = ("noop", "noop") if args.control else SIDES
    print(
        f"FastAPI example under uvicorn, GET /me with an API key: {args.rounds} rounds of"
        f" {args.n} requests on {args.concurrency} keep-alive connections per server"
    )
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as servers:
        workdir = Path(scratch)
        noop, metered = (
            servers.enter_context(serving(side, workdir / f"{i}")) for i, side in enumerate(sides)
        )
        if args.control:
            metered.side = "noop-2"
        for server in (noop, metered):
            asyncio.run(load(server, args.warmup, args.concurrency))
        for i in range(args.rounds):
            order = (noop, metered) if i % 2 == 0 else (metered, noop)
            for server in order:
                run_round(server, args.n, args.concurrency)
        servers.close()  # SIGTERM: the metered server drains its ledger on the way out
        counted = None if args.control else metered_count(workdir / "1" / "ledger.db")
    met = report(noop, metered)
    if counted is None:
        return 0
    print(f"ledger: {counted} of {metered.answered} validations metered")
    return 0 if met and counted == metered.answered else 1


if __name__ == "__main__":
    sys.exit(main())
