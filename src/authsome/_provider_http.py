"""Which addresses authsome may reach when it talks to an identity provider, and an
httpx client that connects only to addresses it has checked.

Issuers, endpoints and the URLs a discovery document names are chosen by whoever
configures a connection or runs the provider; without a check they could point the
server at itself, its private network or a cloud metadata service (SSRF). The check
is made when a connection is opened, on the addresses the host resolves to, and the
socket connects to one of exactly those addresses: a name cannot resolve to a
public address for the check and to a private one for the connection (DNS
rebinding). ``sso_allow_insecure_loopback`` (tests) admits loopback addresses too,
nothing else.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AddressGuard",
    "HostResolver",
    "RefusedAddress",
    "address_allowed",
    "exchange_deadline",
    "guarded_client",
    "system_resolver",
]

HostResolver = Callable[[str, int], Sequence[str]]
"""``resolve(host, port) -> addresses``: the IP addresses (text) a host's name
resolves to; an IP literal resolves to itself. ``OSError`` when it does not resolve."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# When the current exchange with a provider must be over (time.monotonic()); the
# guarded client's sockets wait no longer than that, for headers and body alike.
_deadline: ContextVar[float | None] = ContextVar("authsome_provider_deadline", default=None)
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(Exception):
    """A provider host that does not resolve, or resolves to an address not allowed."""


def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer (``getaddrinfo``), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def address_allowed(text: str, *, allow_loopback: bool) -> bool:
    """Whether authsome may connect to the IP address ``text``: a public unicast
    address, or a loopback one when ``allow_loopback``. Private, shared (CGNAT),
    link-local (cloud metadata), reserved, multicast and unspecified addresses are
    not, nor an IPv6 address that carries one of them (IPv4-mapped, 6to4, Teredo,
    NAT64)."""
    try:
        address: _IPAddress = ipaddress.ip_address(text.split("%", 1)[0])  # no zone id
    except ValueError:
        return False
    if address.is_loopback:
        return allow_loopback
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return address_allowed(str(inner), allow_loopback=allow_loopback)
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_link_local
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, when it is a translation of one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@contextmanager
def exchange_deadline(seconds: float) -> Iterator[None]:
    """Within the block, every socket operation of the guarded client ends by
    ``seconds`` from now (a client the application passed is not bound by it)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _remaining(timeout: float | None) -> float | None:
    """``timeout`` shortened to what is left of the exchange; a millisecond when it
    is over, so the socket operation times out at once (zero would mean
    non-blocking to a socket, not "time out")."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = max(deadline - time.monotonic(), 0.001)
    return left if timeout is None else min(timeout, left)


class AddressGuard:
    """Resolves a provider's host and refuses it unless every address is allowed."""

    def __init__(self, resolve: HostResolver | None, *, allow_loopback: bool) -> None:
        self._resolve = resolve or system_resolver
        self.allow_loopback = allow_loopback

    def checked_addresses(self, host: str, port: int) -> list[str]:
        """The addresses of ``host``, all of them allowed; :class:`RefusedAddress`
        when it does not resolve or any address is not allowed (one bad answer among
        good ones is how a rebinding attack starts)."""
        try:
            addresses = [str(a) for a in self._resolve(host, port)]
        except (OSError, UnicodeError):
            raise RefusedAddress(f"the provider host {host!r} does not resolve") from None
        if not addresses:
            raise RefusedAddress(f"the provider host {host!r} does not resolve")
        allowed = [a for a in addresses if address_allowed(a, allow_loopback=self.allow_loopback)]
        if len(allowed) != len(addresses):
            raise RefusedAddress(f"the provider host {host!r} resolves to a non-public address")
        return allowed


def guarded_client(guard: AddressGuard, timeout: httpx.Timeout) -> httpx.Client:
    """An httpx client whose every connection goes to an address ``guard`` checked.
    It follows no redirects and reads no proxy settings from the environment (a
    proxy would connect on its own terms: pass your own client for one)."""
    import httpcore
    import httpx

    class DeadlineStream(httpcore.NetworkStream):
        """A socket whose every wait ends by the exchange's deadline: a provider
        trickling its status line or headers cannot outlast it either."""

        def __init__(self, inner: httpcore.NetworkStream) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._inner.read(max_bytes, _remaining(timeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._inner.write(buffer, _remaining(timeout))

        def close(self) -> None:
            self._inner.close()

        def start_tls(
            self,
            ssl_context: Any,
            server_hostname: str | None = None,
            timeout: float | None = None,
        ) -> httpcore.NetworkStream:
            tls = self._inner.start_tls(ssl_context, server_hostname, _remaining(timeout))
            return DeadlineStream(tls)

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class GuardedBackend(httpcore.SyncBackend):
        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
        ) -> httpcore.NetworkStream:
            try:
                addresses = guard.checked_addresses(host, port)
            except RefusedAddress as exc:
                raise httpcore.ConnectError(str(exc)) from None
            failure: httpcore.ConnectError | None = None
            for address in addresses:  # connect to what was checked, never the name
                try:
                    stream = super().connect_tcp(
                        address, port, _remaining(timeout), local_address, socket_options
                    )
                    return DeadlineStream(stream)
                except httpcore.ConnectError as exc:
                    failure = exc
            assert failure is not None
            raise failure

    class GuardedTransport(httpx.HTTPTransport):
        def __init__(self) -> None:
            super().__init__(trust_env=False)
            # The pool httpx builds, with the guarded backend: TLS still checks the
            # certificate against the URL's host name.
            self._pool = httpcore.ConnectionPool(
                ssl_context=httpx.create_ssl_context(trust_env=False),
                network_backend=GuardedBackend(),
            )

    return httpx.Client(
        timeout=timeout, follow_redirects=False, transport=GuardedTransport(), trust_env=False
    )
