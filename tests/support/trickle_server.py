"""An HTTP server on 127.0.0.1 that answers every request with a 200 whose body
never ends: one byte per ``interval``, until the client hangs up. A provider that
trickles like this must not hold a sign-in for longer than its deadline."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def trickle_server(interval: float = 0.05, *, headers_too: bool = False) -> Iterator[int]:
    """Serve until the block ends; yields the port. ``headers_too`` trickles the
    status line and headers as well (they never end either)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            if not headers_too:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            try:
                while not stop.wait(interval):
                    conn.sendall(b" ")
            except OSError:
                return  # the client hung up: what the test waits for

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        thread.join(timeout=5)
