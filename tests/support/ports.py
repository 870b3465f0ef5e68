"""Loopback ports for servers the tests start, and for a server that is not there."""

from __future__ import annotations

import socket


def free_tcp_port() -> int:
    """A 127.0.0.1 TCP port nobody listens on now (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
