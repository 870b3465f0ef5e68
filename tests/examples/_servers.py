"""Start a real server process on 127.0.0.1, wait until it answers, stop it for sure."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import authsome

__all__ = ["REPO_ROOT", "Served", "authsome_cli", "running_server", "server_env"]

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN = 60.0  # seconds: importing the app and forking its workers on a busy machine
STOP_WITHIN = 30.0


def server_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child interpreter that imports this checkout (authsome and
    the examples), plus ``extra``."""
    source_root = str(Path(authsome.__file__).resolve().parents[1])
    paths = [str(REPO_ROOT), source_root, os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}


def authsome_cli(*args: str) -> str:
    """Run ``python -m authsome *args``; its output (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "authsome", *args],
        capture_output=True,
        text=True,
        env=server_env({}),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _listening_socket() -> socket.socket:
    """A socket listening on a free port of 127.0.0.1, for the server to inherit: no
    other process can take the port between choosing it and the server's start."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.set_inheritable(True)
    return listener


def _answers(port: int) -> bool:
    """Whether the server answers an HTTP request (any status): the app is loaded."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
    except OSError:  # refused, reset, or no answer yet within the timeout
        return False
    finally:
        connection.close()
    return True


def _wait_until_serving(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN
    while not _answers(port):
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer within {READY_WITHIN}s:\n{log.read_text()}")
        time.sleep(0.05)  # polling interval, not a guess at readiness


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop: workers finish and drain), then SIGKILL to the whole
    process group if it does not end in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_WITHIN)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_WITHIN)
        raise AssertionError("the server did not stop on SIGTERM") from None
    finally:
        # Workers whose master died would keep the port: end the group whatever happened.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@dataclass(frozen=True)
class Served:
    """A server that answers: its base URL, its port and its (master) process id."""

    url: str
    port: int
    pid: int


@contextlib.contextmanager
def running_server(
    argv: Callable[[int], Sequence[str]],
    env: Mapping[str, str] | Callable[[int], Mapping[str, str]],
) -> Iterator[Served]:
    """Run the server ``argv(fd)`` from the repository root, serving on the listening
    socket it inherits as file descriptor ``fd`` (a free port of 127.0.0.1); yield it
    once it answers HTTP; stop it on the way out. Its output is shown when it fails.
    ``env`` may be a function of the port, for settings that name the server's URL."""
    with tempfile.TemporaryDirectory() as scratch, _listening_socket() as listener:
        port = listener.getsockname()[1]
        if callable(env):
            env = env(port)
        log = Path(scratch) / "server.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                list(argv(listener.fileno())),
                cwd=REPO_ROOT,
                # A home of its own: recent gunicorn puts a control socket there.
                env=server_env({"HOME": scratch, **env}),
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
                start_new_session=True,  # its own process group, killed as one
            )
            listener.close()  # the server's copy is the one that serves
            try:
                _wait_until_serving(process, port, log)
                yield Served(f"http://127.0.0.1:{port}", port, process.pid)
            finally:
                try:
                    _stop(process)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n{log.read_text()}") from None
            if process.returncode not in (0, -signal.SIGTERM):
                raise AssertionError(
                    f"the server exited with {process.returncode}:\n{log.read_text()}"
                )
