"""SSRF: authsome reaches an identity provider only at public addresses. Every
provider host (issuer, discovered endpoints, GitHub's API) is resolved when a
connection opens and refused unless all its addresses are public (loopback too
with ``sso_allow_insecure_loopback``); the socket connects to the checked address,
never to the name again. The resolver is a fake: nothing here reaches the network."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsome import Authsome
from authsome._oidc import OIDCClient, OIDCError
from authsome._provider_http import address_allowed
from authsome.errors import InvalidCredentials
from authsome.sso import OIDCConnection
from tests.conftest import PASSWORD, AuthFactory, FakeClock

TENANT = "acme"
REFUSED = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "100.100.100.200",  # shared (CGNAT): Alibaba's metadata service
    "169.254.169.254",  # link-local: the cloud metadata service
    "0.0.0.0",  # noqa: S104 - an address to refuse, not one to bind
    "224.0.0.1",
    "240.0.0.1",
    "fd00:ec2::254",  # unique local: AWS's IPv6 metadata service
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "::",
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo
]
LOOPBACK = ["127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"]


class FakeResolver:
    """Names to addresses; an IP literal resolves to itself. Records each lookup."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        if host not in self.names:
            raise socket.gaierror("no such name")
        return self.names[host]


def _start(auth: Authsome, issuer: str, caplog: pytest.LogCaptureFixture) -> str:
    """Configure a connection at ``issuer`` and begin a sign-in; the refusal's log."""
    owner = auth.users.register(f"o{len(caplog.records)}@acme.test", PASSWORD, tenant=TENANT)
    org = auth.orgs.create(owner.id, "Acme")
    connection = auth.sso.configure(org.id, OIDCConnection(issuer, "client", "a-client-secret"))
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.raises(InvalidCredentials):
        auth.sso.begin(connection.id, redirect_uri="https://app.example/cb", tenant=TENANT)
    return caplog.text


@pytest.mark.parametrize("address", REFUSED + LOOPBACK)
def test_an_issuer_resolving_to_a_non_public_address_is_refused(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture, address: str
) -> None:
    auth = make_auth(sso_resolver=FakeResolver({"idp.example": [address]}))
    assert "non-public address" in _start(auth, "https://idp.example", caplog)


@pytest.mark.parametrize("address", REFUSED)
def test_an_ip_literal_issuer_that_is_not_public_is_refused(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture, address: str
) -> None:
    host = f"[{address}]" if ":" in address else address
    auth = make_auth(sso_allow_insecure_loopback=True, sso_resolver=FakeResolver({}))
    assert "non-public address" in _start(auth, f"https://{host}", caplog)


def test_one_private_address_among_public_ones_is_refused(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    resolver = FakeResolver({"idp.example": ["93.184.215.14", "10.0.0.1"]})
    auth = make_auth(sso_resolver=resolver)
    assert "non-public address" in _start(auth, "https://idp.example", caplog)


def test_the_loopback_option_admits_loopback_and_nothing_else() -> None:
    for address in LOOPBACK:
        assert address_allowed(address, allow_loopback=True)
        assert not address_allowed(address, allow_loopback=False)
    for address in REFUSED:
        assert not address_allowed(address, allow_loopback=True)
    assert address_allowed("93.184.215.14", allow_loopback=False)
    assert address_allowed("2606:4700::1111", allow_loopback=False)


@given(st.ip_addresses(network="10.0.0.0/8") | st.ip_addresses(network="169.254.0.0/16"))
def test_private_ipv4_is_refused_in_every_ipv6_spelling(address: ipaddress.IPv4Address) -> None:
    spellings = [
        str(address),
        f"::ffff:{address}",
        str(ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80))),
        str(ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))),
    ]
    for text in spellings:
        assert not address_allowed(text, allow_loopback=True), text


@contextmanager
def _listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP listener on 127.0.0.1 recording who connected (it speaks no TLS)."""
    server = socket.create_server(("127.0.0.1", 0))
    peers: list[str] = []

    def accept() -> None:
        try:
            conn, peer = server.accept()
        except OSError:
            return
        peers.append(peer[0])
        conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1]), peers
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(timeout=5)


def test_the_connection_goes_to_the_checked_address(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """``idp.test`` exists only in the fake resolver: a connection to the listener
    proves the socket went to the address that was checked, looked up once."""
    resolver = FakeResolver({"idp.test": ["127.0.0.1"]})
    auth = make_auth(sso_allow_insecure_loopback=True, sso_resolver=resolver)
    with _listener() as (port, peers):
        _start(auth, f"https://idp.test:{port}", caplog)
    assert peers == ["127.0.0.1"]
    assert resolver.lookups == ["idp.test"]


def test_a_client_the_application_passes_is_checked_before_each_request(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(500))
    with httpx.Client(transport=transport) as http:
        auth = make_auth(
            http_client=http, sso_resolver=FakeResolver({"idp.example": ["169.254.169.254"]})
        )
        assert "non-public address" in _start(auth, "https://idp.example", caplog)
    assert sent == []


def test_discovered_endpoints_pass_the_same_check() -> None:
    """The discovery document is served from a public name; its key set lives at a
    metadata address. Fetching the keys is refused like the issuer would be."""
    resolver = FakeResolver({"idp.example": ["93.184.215.14"], "keys.example": ["169.254.169.254"]})

    def provider(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"keys": []})

    with httpx.Client(transport=httpx.MockTransport(provider)) as http:
        client = OIDCClient(FakeClock(), http=http, resolver=resolver)
        with pytest.raises(OIDCError, match="non-public address"):
            client._key_set("https://keys.example/jwks", None)
