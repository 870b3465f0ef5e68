"""Which address a request comes from: the socket peer, unless trusted proxies say."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsome.integrations import TrustedProxies, client_address

ONE_HOP = TrustedProxies(count=1)
LOCAL_PROXIES = TrustedProxies(networks=("127.0.0.0/8", "10.0.0.0/8", "fd00::/8"))

ipv4 = st.ip_addresses(v=4).map(str)
public_ipv4 = ipv4.filter(lambda a: not ipaddress.ip_address(a).is_private)
anything = st.text(alphabet=st.characters(codec="latin-1"), max_size=40)


@given(peer=ipv4, forwarded=st.lists(anything, max_size=6))
def test_by_default_the_peer_is_the_client_whatever_the_header_says(
    peer: str, forwarded: list[str]
) -> None:
    joined = ", ".join(forwarded)
    assert client_address(peer, [joined], TrustedProxies()) == peer


@given(peer=ipv4, spoofed=st.lists(public_ipv4, min_size=1, max_size=5))
def test_without_trusted_proxies_a_chosen_address_is_never_the_answer(
    peer: str, spoofed: list[str]
) -> None:
    # The peer's own address among the entries changes nothing either: guessing that
    # the server had swapped it in would let a client switch its address off.
    answer = client_address(peer, [", ".join([*spoofed, peer, *spoofed])], TrustedProxies())
    assert answer == peer


@given(client=ipv4, spoofed=st.lists(anything, max_size=5), proxy=ipv4)
def test_one_trusted_hop_takes_the_right_most_entry(
    client: str, spoofed: list[str], proxy: str
) -> None:
    header = ", ".join([*spoofed, client])
    assert client_address(proxy, [header], ONE_HOP) == client


@given(client=public_ipv4, spoofed=st.lists(public_ipv4, max_size=4), hops=st.integers(1, 4))
def test_count_hops_takes_the_count_th_entry_from_the_right(
    client: str, spoofed: list[str], hops: int
) -> None:
    proxies = [f"10.0.0.{i}" for i in range(1, hops)]  # appended by the inner proxies
    header = ", ".join([*spoofed, client, *proxies])
    assert client_address("10.0.0.99", [header], TrustedProxies(count=hops)) == client


def test_a_header_shorter_than_the_hops_falls_back_to_the_peer() -> None:
    assert client_address("10.0.0.1", ["203.0.113.9"], TrustedProxies(count=2)) == "10.0.0.1"
    assert client_address("10.0.0.1", [], ONE_HOP) == "10.0.0.1"


def test_several_header_lines_read_as_one_list() -> None:
    assert client_address("10.0.0.1", ["1.1.1.1", "203.0.113.9"], ONE_HOP) == "203.0.113.9"


def test_entries_are_canonical_and_ports_stripped() -> None:
    for entry, expected in [
        ("2001:0db8:0000::0001", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("203.0.113.9:5555", "203.0.113.9"),
        (" 203.0.113.9 ", "203.0.113.9"),
    ]:
        assert client_address("10.0.0.1", [entry], ONE_HOP) == expected


def test_an_unreadable_entry_from_a_trusted_hop_falls_back_to_the_peer() -> None:
    assert client_address("10.0.0.1", ["unknown"], ONE_HOP) == "10.0.0.1"
    assert client_address("10.0.0.1", ["1.1.1.1, garbage"], LOCAL_PROXIES) == "10.0.0.1"


def test_trusted_networks_skip_every_proxy_from_the_right() -> None:
    header = ["198.51.100.1, 203.0.113.9, 10.1.1.1, 10.2.2.2"]
    assert client_address("127.0.0.1", header, LOCAL_PROXIES) == "203.0.113.9"
    assert client_address("fd00::5", header, LOCAL_PROXIES) == "203.0.113.9"


def test_trusted_networks_ignore_the_header_of_an_untrusted_peer() -> None:
    assert client_address("203.0.113.50", ["198.51.100.1"], LOCAL_PROXIES) == "203.0.113.50"
    assert client_address("testclient", ["198.51.100.1"], LOCAL_PROXIES) == "testclient"


def test_all_trusted_gives_the_left_most() -> None:
    assert client_address("127.0.0.1", ["10.0.0.7, 10.0.0.8"], LOCAL_PROXIES) == "10.0.0.7"


def test_a_client_naming_itself_in_the_header_chooses_nothing() -> None:
    # An untrusted peer that lists its own address, then one it wants, is still itself.
    for proxies in (TrustedProxies(), LOCAL_PROXIES):
        assert client_address("203.0.113.9", ["203.0.113.9, 7.7.7.7"], proxies) == "203.0.113.9"
        assert client_address("198.51.100.7", ["198.51.100.7"], proxies) == "198.51.100.7"
    # A trusted proxy's header is read by the same rules wherever the peer appears in it.
    assert client_address("203.0.113.9", ["1.1.1.1, 203.0.113.9"], ONE_HOP) == "203.0.113.9"
    assert client_address("10.1.1.1", ["203.0.113.9, 10.1.1.1"], LOCAL_PROXIES) == "203.0.113.9"


def test_a_long_header_is_read_from_the_right_only() -> None:
    header = ", ".join(["198.51.100.1"] * 100_000 + ["203.0.113.9"])
    assert client_address("10.0.0.1", [header], ONE_HOP) == "203.0.113.9"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"count": -1}, ValueError),
        ({"count": 21}, ValueError),
        ({"count": True}, TypeError),
        ({"count": "1"}, TypeError),
        ({"networks": "10.0.0.0/8"}, TypeError),
        ({"networks": ("not a network",)}, ValueError),
        ({"networks": (10,)}, TypeError),
        ({"count": 1, "networks": ("10.0.0.0/8",)}, ValueError),
    ],
)
def test_a_bad_setting_is_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        TrustedProxies(**kwargs)  # type: ignore[arg-type]


def test_networks_may_be_given_as_a_list() -> None:
    proxies = TrustedProxies(networks=["10.0.0.0/8"])  # type: ignore[arg-type]
    assert proxies.networks == ("10.0.0.0/8",)
    assert not proxies.trusts_nobody and TrustedProxies().trusts_nobody


def test_an_ipv4_mapped_peer_is_the_ipv4_address() -> None:
    # A dual-stack listener reports an IPv4 proxy as ::ffff:10.0.0.1: still trusted.
    header = ["203.0.113.9"]
    assert client_address("::ffff:10.0.0.1", header, LOCAL_PROXIES) == "203.0.113.9"
    assert client_address("10.0.0.1", ["::ffff:203.0.113.9"], ONE_HOP) == "203.0.113.9"
