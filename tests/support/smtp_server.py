"""A real SMTP server (aiosmtpd) on a free 127.0.0.1 port, for the mail tests.

It keeps what it received, can require STARTTLS and a login, and can refuse every
message. :func:`silent_server` is a TCP server that never answers, to make a
client time out. :func:`self_signed` makes a certificate for 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_tcp_port


@dataclass
class Received:
    """The messages a server accepted, parsed."""

    messages: list[Message] = field(default_factory=list)
    refused: list[Message] = field(default_factory=list)  # seen, then refused
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, index: int = -1, *, refused: bool = False) -> tuple[str, str]:
        """(plain text, HTML) of a received (or a refused) message."""
        with self.lock:
            message = (self.refused if refused else self.messages)[index]
        text = html = ""
        for part in message.walk():
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            if part.get_content_type() == "text/plain":
                text = payload.decode()
            elif part.get_content_type() == "text/html":
                html = payload.decode()
        return text, html


class _Handler:
    def __init__(self, received: Received, refuse: bool) -> None:
        self.received = received
        self.refuse = refuse

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.received.lock:
            kept = self.received.refused if self.refuse else self.received.messages
            kept.append(message_from_bytes(envelope.content))
        return "554 5.7.1 message refused" if self.refuse else "250 OK"


@contextmanager
def smtp_server(
    *,
    refuse: bool = False,
    tls: ssl.SSLContext | None = None,
    login: tuple[str, str] | None = None,
    implicit_tls: ssl.SSLContext | None = None,
) -> Iterator[tuple[int, Received]]:
    """Run aiosmtpd; with ``tls`` it offers (and requires) STARTTLS; with ``login``
    it requires that user and password after STARTTLS; with ``implicit_tls`` the
    connection is TLS from its first byte."""
    received = Received()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (
            login is not None and (data.login.decode(), data.password.decode()) == login
        )
        return AuthResult(success=ok, handled=False)

    options: dict[str, Any] = {}
    if tls is not None:
        options.update(tls_context=tls, require_starttls=True)
    if implicit_tls is not None:
        options.update(ssl_context=implicit_tls)
    if login is not None:
        options.update(authenticator=authenticate, auth_required=True, auth_require_tls=True)
    controller = Controller(
        _Handler(received, refuse), hostname="127.0.0.1", port=free_tcp_port(), **options
    )
    controller.start()
    try:
        yield controller.port, received
    finally:
        controller.stop()


@contextmanager
def silent_server() -> Iterator[int]:
    """A server that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    # accept() polls: closing a socket does not wake a thread blocked in accept().
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in accepted:
            conn.close()


def self_signed(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting only this certificate) for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client
