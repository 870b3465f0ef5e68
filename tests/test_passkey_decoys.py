"""Decoy allow-lists for e-mails without passkeys: the same in every process sharing a
store (with or without ``secret_key``), and shaped like the store's real lists."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from authsome import Authsome, Passkey
from authsome.stores import MemoryStore, Store
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.shared_store import SharedStore, shared_store
from tests.support.webauthn_authenticator import b64url, unb64url

__all__ = ["shared_store"]  # the fixture, imported to be found by pytest

RP_ID = "example.com"
ORIGIN = "https://example.com"
TENANT = "acme"


def _allowed(auth: Authsome, email: str, tenant: str = TENANT) -> list[dict[str, Any]]:
    options = auth.passkeys.begin_authentication(
        rp_id=RP_ID, origin=ORIGIN, email=email, tenant=tenant
    )
    credentials: list[dict[str, Any]] = json.loads(options)["allowCredentials"]
    return credentials


def _shape(credentials: list[dict[str, Any]]) -> list[tuple[int, tuple[str, ...]]]:
    return [(len(unb64url(c["id"])), tuple(c.get("transports", ()))) for c in credentials]


_BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _credential_id(length: int, first: str | None) -> str:
    """A random credential id; ``first`` fixes its first base64url character."""
    raw = bytearray(secrets.token_bytes(length))
    if first is not None:
        raw[0] = _BASE64URL.index(first) << 2 | raw[0] & 0b11
    return b64url(bytes(raw))


def _add_passkeys(
    store: Store, email: str, shape: list[tuple[int, tuple[str, ...]]], first: str | None = None
) -> None:
    """A user of ``TENANT`` holding passkeys of the given id lengths and transports."""
    auth = Authsome(store=store, clock=FakeClock())
    user = auth.users.register(email, PASSWORD, tenant=TENANT)
    for length, transports in shape:
        store.create_passkey(
            Passkey(
                credential_id=_credential_id(length, first),
                user_id=user.id,
                tenant=TENANT,
                rp_id=RP_ID,
                public_key=b"\xa5\x01\x02",
                sign_count=0,
                transports=transports,
                created_at=FakeClock().now,
            )
        )


def test_engines_sharing_a_store_give_one_decoy_without_a_secret_key(
    make_auth: AuthFactory, shared_store: SharedStore
) -> None:
    first = make_auth(store=shared_store.open())
    second = make_auth(store=shared_store.open())

    decoy = _allowed(first, "nobody@example.com")

    assert _allowed(second, "nobody@example.com") == decoy
    assert _allowed(first, "nobody@example.com") == decoy
    assert _allowed(second, "somebody-else@example.com") != decoy


def test_engines_with_one_secret_key_give_one_decoy(
    make_auth: AuthFactory, shared_store: SharedStore
) -> None:
    key = bytes(range(32))
    first = make_auth(store=shared_store.open(), secret_key=key)
    second = make_auth(store=shared_store.open(), secret_key=key)

    assert _allowed(first, "nobody@example.com") == _allowed(second, "nobody@example.com")


def test_a_decoy_copies_the_shape_of_the_real_lists(
    make_auth: AuthFactory, shared_store: SharedStore
) -> None:
    store = shared_store.open()
    real = [(64, ("nfc", "usb")), (64, ("nfc", "usb"))]
    _add_passkeys(store, "ann@example.com", real)
    auth = make_auth(store=store)

    assert _shape(_allowed(auth, "ann@example.com")) == real
    assert _shape(_allowed(auth, "nobody@example.com")) == real


def test_decoys_are_drawn_from_every_real_shape_and_fixed_per_email(
    make_auth: AuthFactory,
) -> None:
    store = MemoryStore()
    shapes = [
        [(16, ("hybrid", "internal"))],
        [(64, ("nfc", "usb")), (64, ("nfc", "usb"))],
        [(32, ("internal",))],
    ]
    # The users' ids start a third of the (bytewise sorted) base64url alphabet apart,
    # so each is picked for about a third of the e-mails.
    for number, (shape, first) in enumerate(zip(shapes, "-Ke", strict=True)):
        _add_passkeys(store, f"user{number}@example.com", shape, first)
    auth = make_auth(store=store)

    drawn = [_shape(_allowed(auth, f"nobody{n}@example.com")) for n in range(150)]

    assert all(shape in shapes for shape in drawn)
    # One shape left out of 150 draws would take luck of about 3 * (2/3)**150 < 10**-25.
    assert all(shape in drawn for shape in shapes)
    again = [_shape(_allowed(auth, f"nobody{n}@example.com")) for n in range(150)]
    assert again == drawn


@pytest.mark.parametrize("tenant", ["acme", "other"])
def test_without_real_passkeys_a_decoy_is_one_platform_passkey(
    make_auth: AuthFactory, tenant: str
) -> None:
    store = MemoryStore()
    _add_passkeys(store, "ann@example.com", [(64, ("usb",))])  # in "acme" only
    auth = make_auth(store=store)

    shape = _shape(_allowed(auth, "nobody@example.com", tenant=tenant))

    if tenant == "other":
        assert shape == [(16, ("hybrid", "internal"))]
    else:
        assert shape == [(64, ("usb",))]
