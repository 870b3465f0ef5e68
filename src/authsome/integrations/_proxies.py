"""Which address a request comes from, given the proxies the deployment trusts.

``X-Forwarded-For`` is a list that every proxy appends its peer's address to, so
only its right-most entries were written by proxies the deployment runs; anything
further left came from the client and is whatever the client chose. By default
no forwarded header is trusted and the socket peer is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from authsome.throttle import parse_address

__all__ = ["TrustedProxies", "client_address"]

_MAX_HOPS = 20  # entries read from the right of X-Forwarded-For; more is never needed
_MAX_COUNT = _MAX_HOPS
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The reverse proxies in front of the app, whose ``X-Forwarded-For`` is believed.

    * ``TrustedProxies()`` (the default): none. The socket peer is the client and
      ``X-Forwarded-For`` is ignored, so a client cannot choose its own address.
    * ``TrustedProxies(count=n)``: exactly ``n`` proxies stand in front of the app,
      each appending its peer's address; the client is the ``n``-th entry from the
      right (like django-allauth's ``ALLAUTH_TRUSTED_PROXY_COUNT``).
    * ``TrustedProxies(networks=["10.0.0.0/8", ...])``: the proxies are the peers in
      these networks; the client is the right-most address that is not one of them.
    """

    count: int = 0
    networks: tuple[str, ...] = ()
    _parsed: tuple[_Network, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise TypeError(f"count must be an int, not {type(self.count).__name__}")
        if not 0 <= self.count <= _MAX_COUNT:
            raise ValueError(f"count must be 0..{_MAX_COUNT}")
        given: object = self.networks
        if isinstance(given, str):
            raise TypeError("networks must be a sequence of networks, not one str")
        networks = tuple(self.networks)
        if self.count and networks:
            raise ValueError("give either a count of proxies or their networks, not both")
        object.__setattr__(self, "networks", networks)
        object.__setattr__(self, "_parsed", tuple(_network(n) for n in networks))

    @property
    def trusts_nobody(self) -> bool:
        """Whether no forwarded header is believed at all."""
        return not self.count and not self._parsed

    def is_proxy(self, address: str) -> bool:
        """Whether ``address`` (canonical) lies in one of the trusted networks."""
        ip = ipaddress.ip_address(address)
        return any(ip in network for network in self._parsed)


def _network(value: object) -> _Network:
    if not isinstance(value, str):
        raise TypeError(f"a network must be a str, not {type(value).__name__}")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IP network: {value!r}") from None


def client_address(
    peer: str | None, forwarded_for: Iterable[str], proxies: TrustedProxies
) -> str | None:
    """The client's address: ``peer`` (the socket's) unless trusted proxies forwarded it.

    ``forwarded_for`` holds the request's ``X-Forwarded-For`` values in order. The
    header is read only when the peer is a trusted proxy (``networks``) or the
    deployment says how many proxies stand in front (``count``); otherwise it is the
    client's own claim and changes nothing. A server that rewrites the peer from the
    header itself (uvicorn's ``--forwarded-allow-ips``, 127.0.0.1 by default) has
    made that trust decision before the app runs: configure it with the same proxies.
    """
    if proxies.trusts_nobody:
        return peer
    hops = _hops(forwarded_for)
    if proxies.count:
        if len(hops) < proxies.count:
            return peer  # fewer hops than proxies: the request did not come through them
        return hops[-proxies.count] or peer
    canonical_peer = _canonical(peer) if peer is not None else None
    if canonical_peer is None or not proxies.is_proxy(canonical_peer):
        return peer  # not from a trusted proxy: its header is the client's own claim
    return _right_most_untrusted(hops, proxies) or peer


def _right_most_untrusted(hops: Sequence[str | None], proxies: TrustedProxies) -> str | None:
    for address in reversed(hops):
        if address is None:
            return None  # a trusted proxy forwarded garbage: the caller keeps the peer
        if not proxies.is_proxy(address):
            return address
    return hops[0] if hops else None


def _hops(values: Iterable[str]) -> list[str | None]:
    """The right-most entries of X-Forwarded-For, canonical (``None`` where unreadable)."""
    joined = ",".join(values)
    entries = joined.rsplit(",", _MAX_HOPS)[-_MAX_HOPS:] if joined.strip() else []
    return [_canonical(entry) for entry in entries]


def _canonical(text: str) -> str | None:
    """``text`` as a canonical IP address (a port or brackets stripped), else ``None``."""
    host = text.strip()
    if host.startswith("["):
        end = host.find("]")
        host = host[1:end] if end > 0 else ""
    elif host.count(":") == 1:
        host = host.partition(":")[0]  # IPv4 with a port
    ip = parse_address(host)
    return None if ip is None else str(ip)
