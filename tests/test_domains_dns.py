"""The dnspython-backed resolver, against a tiny DNS server on 127.0.0.1 (no network)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest

from authsome import Authsome, VerificationFailed
from authsome.domains import DnsPythonResolver
from tests.conftest import AuthFactory

# name (absolute, lower-case) -> TXT records, each a list of character-strings.
Zone = dict[str, list[list[str]]]


class _Handler(socketserver.BaseRequestHandler):
    """Answers TXT questions from the server's zone: NXDOMAIN for unknown names,
    an empty answer for known names asked another type, nothing for ``drop.``."""

    server: _ZoneServer

    def handle(self) -> None:
        data, sock = self.request
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().lower()
        if name.startswith("drop."):
            return  # never answer: lets the client time out
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name not in self.server.zone:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            texts = [" ".join(f'"{part}"' for part in record) for record in self.server.zone[name]]
            if texts:
                response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", *texts))
        sock.sendto(response.to_wire(), self.client_address)


class _ZoneServer(socketserver.ThreadingUDPServer):
    daemon_threads = True

    def __init__(self, zone: Zone) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.zone = zone


@pytest.fixture
def zone() -> Iterator[tuple[Zone, int]]:
    """A running DNS server on a free local port, stopped after the test."""
    records: Zone = {}
    server = _ZoneServer(records)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield records, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _local_resolver(port: int) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    return resolver


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def txt(zone: tuple[Zone, int]) -> DnsPythonResolver:
    return DnsPythonResolver(_local_resolver(zone[1]), lifetime=2.0)


def test_resolve_txt_returns_each_record_with_its_strings_joined(
    zone: tuple[Zone, int], txt: DnsPythonResolver
) -> None:
    records, _ = zone
    records["_authsome-challenge.login.acme.com."] = [["v=spf1 -all"], ["authsome-", "verify=abc"]]
    assert sorted(txt.resolve_txt("_authsome-challenge.login.acme.com")) == [
        "authsome-verify=abc",
        "v=spf1 -all",
    ]


def test_a_name_without_txt_records_gives_an_empty_list(
    zone: tuple[Zone, int], txt: DnsPythonResolver
) -> None:
    zone[0]["login.acme.com."] = []
    assert txt.resolve_txt("login.acme.com") == []


def test_nxdomain_is_a_verification_failure_with_a_reason(txt: DnsPythonResolver) -> None:
    with pytest.raises(VerificationFailed, match="does not exist") as excinfo:
        txt.resolve_txt("_authsome-challenge.nobody.example")
    assert excinfo.value.__cause__ is None  # no dnspython exception leaks out


def test_a_silent_server_is_a_timeout_failure(zone: tuple[Zone, int]) -> None:
    resolver = DnsPythonResolver(_local_resolver(zone[1]), lifetime=0.3)
    with pytest.raises(VerificationFailed, match="timed out"):
        resolver.resolve_txt("drop.acme.com")


def test_no_server_at_all_is_a_verification_failure() -> None:
    resolver = DnsPythonResolver(_local_resolver(_closed_port()), lifetime=0.5)
    with pytest.raises(VerificationFailed) as excinfo:
        resolver.resolve_txt("_authsome-challenge.login.example.invalid")
    assert "login.example.invalid" in excinfo.value.reason
    assert not isinstance(excinfo.value, dns.exception.DNSException)


def test_a_malformed_name_is_a_verification_failure(txt: DnsPythonResolver) -> None:
    with pytest.raises(VerificationFailed, match="failed"):
        txt.resolve_txt("a" * 70 + ".acme.com")


@pytest.mark.parametrize("lifetime", [0, -1.0, True, "5"])
def test_lifetime_must_be_positive_seconds(lifetime: object) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        DnsPythonResolver(dns.resolver.Resolver(configure=False), lifetime=lifetime)  # type: ignore[arg-type]


def test_repr_names_no_server_details() -> None:
    assert repr(DnsPythonResolver(dns.resolver.Resolver(configure=False))) == (
        "DnsPythonResolver(lifetime=5.0)"
    )


def test_engine_verifies_a_domain_through_dns_end_to_end(
    zone: tuple[Zone, int], txt: DnsPythonResolver, make_auth: AuthFactory
) -> None:
    records, _ = zone
    auth: Authsome = make_auth(dns_resolver=txt)
    challenge = auth.domains.add("Login.Acme.COM", tenant="acme")

    with pytest.raises(VerificationFailed, match="does not exist"):
        auth.domains.verify(challenge.domain.id)
    records[challenge.record_name + "."] = [["authsome-verify=not-it"]]
    with pytest.raises(VerificationFailed, match="1 record"):
        auth.domains.verify(challenge.domain.id)
    assert auth.domains.tenant_for_host("login.acme.com") is None

    # Long values are often split into several strings by DNS consoles.
    value = challenge.record_value
    records[challenge.record_name + "."].append([value[:20], value[20:]])
    assert auth.domains.verify(challenge.domain.id).verified
    assert auth.domains.tenant_for_host("login.acme.com:443") == "acme"
