"""A throwaway PostgreSQL server for the test suite.

Started from the Debian ``postgresql`` package's binaries in a temporary data
directory on a free loopback port, torn down at the end of the session. As root,
``initdb`` and the server run as the ``postgres`` user (PostgreSQL refuses root).

In CI (``CI=true``) a server that cannot start is an error, not a skip.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_tcp_port

__all__ = ["PgServer", "PgUnavailable", "running_server", "server_dsn"]


class PgUnavailable(RuntimeError):
    """No PostgreSQL server could be started here."""


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"


def _bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for path in candidates:
        if (Path(path) / "initdb").exists():
            return Path(path)
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PgUnavailable("PostgreSQL binaries (initdb) not found; install Debian's postgresql")


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise PgUnavailable(f"{cmd[-1] if cmd else ''} failed: {result.stderr.strip()[-500:]}")


@contextmanager
def running_server() -> Iterator[PgServer]:
    """Start a server for the duration of the ``with`` block."""
    bindir = _bindir()
    base = Path(tempfile.mkdtemp(prefix="authsome-pg-"))
    data = base / "data"
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    if os.geteuid() == 0:
        shutil.chown(base, user="postgres")
    port = free_tcp_port()
    try:
        _run(
            _as_server_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            )
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -k {base} "
            "-c fsync=off -c max_connections=200 -c shared_buffers=64MB"
        )
        _run(
            _as_server_user(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(base / "log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        )
        _wait_ready(port)
        yield PgServer(host="127.0.0.1", port=port, user=user)
    finally:
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
            timeout=60,
        )
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def server_dsn() -> Iterator[str]:
    """``AUTHSOME_PG_DSN`` if set, else the DSN of a throwaway server started for the
    duration of the ``with`` block (for the benchmarks, which run outside pytest)."""
    configured = os.environ.get("AUTHSOME_PG_DSN")
    if configured:
        yield configured
        return
    with running_server() as server:
        yield server.dsn()


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise PgUnavailable("PostgreSQL did not accept connections within 30 s")
