"""The store's own keys and the walk over sealed values, checked against every store:
``keep_store_key``, ``list_*_secrets`` / ``replace_*_secret`` (what re-sealing uses)
and ``sample_passkey`` (what passkey decoys are shaped after)."""

from __future__ import annotations

import secrets

import pytest

from authsome.models import (
    Membership,
    MfaFactor,
    MfaMethod,
    Org,
    OrgRole,
    Passkey,
    SSOConnectionInfo,
    SSOProtocol,
    StoredSecret,
)
from authsome.stores import Store
from tests.support.race import race

from ._factories import NOW, add_user

# -- keys kept in the store ------------------------------------------------------------


def test_the_first_key_kept_under_a_name_wins(store: Store) -> None:
    first = store.keep_store_key("root", b"\x01" * 32)

    assert first == b"\x01" * 32
    assert store.keep_store_key("root", b"\x02" * 32) == first
    assert store.keep_store_key("other", b"\x03" * 32) == b"\x03" * 32


def test_threads_racing_on_a_new_key_all_get_the_same_one(store: Store) -> None:
    candidates = [secrets.token_bytes(32) for _ in range(8)]

    kept = race(lambda candidate: store.keep_store_key("root", candidate), candidates)

    assert len(kept) == 8
    assert len(set(kept)) == 1
    assert kept[0] in candidates


# -- MFA secrets -----------------------------------------------------------------------


def _factor(store: Store, user_id: str, factor_id: str, secret: str) -> None:
    add_user(store, user_id, email=f"{user_id}@example.com")
    store.create_mfa_factor(MfaFactor(factor_id, user_id, MfaMethod.TOTP, NOW), secret)


def test_mfa_secrets_are_listed_in_pages_by_id(store: Store) -> None:
    for number in (3, 1, 2):
        _factor(store, f"u{number}", f"mfa_{number}", f"secret-{number}")

    assert store.list_mfa_secrets("", 2) == [("mfa_1", "secret-1"), ("mfa_2", "secret-2")]
    assert store.list_mfa_secrets("mfa_2", 2) == [("mfa_3", "secret-3")]
    assert store.list_mfa_secrets("mfa_3", 2) == []


def test_an_mfa_secret_is_replaced_only_if_it_is_unchanged(store: Store) -> None:
    _factor(store, "u1", "mfa_1", "clear")

    assert store.replace_mfa_secret("mfa_1", "stale", "v1.new") is False
    assert store.get_mfa_secret("mfa_1") == "clear"
    assert store.replace_mfa_secret("mfa_1", "clear", "v1.new") is True
    assert store.get_mfa_secret("mfa_1") == "v1.new"
    assert store.replace_mfa_secret("mfa_9", "clear", "v1.new") is False


def test_racing_replacements_of_one_mfa_secret_let_one_win(store: Store) -> None:
    _factor(store, "u1", "mfa_1", "clear")

    won = race(lambda n: store.replace_mfa_secret("mfa_1", "clear", f"v1.{n}"), range(6))

    assert sorted(won) == [False] * 5 + [True]


# -- SSO client secrets ----------------------------------------------------------------


def _connection(store: Store, connection_id: str, secret: StoredSecret | None) -> None:
    if store.get_org("o1") is None:
        add_user(store, "owner", email="owner@example.com")
        org = Org(id="o1", tenant="default", slug="org1", name="Org", created_at=NOW)
        store.create_org(org, Membership("o1", "owner", OrgRole.OWNER, NOW))
    info = SSOConnectionInfo(
        id=connection_id,
        org_id="o1",
        protocol=SSOProtocol.OIDC,
        domains=(),
        created_at=NOW,
        updated_at=NOW,
        issuer="https://idp.example",
        client_id="client",
        scopes=("openid",),
        has_client_secret=secret is not None,
    )
    store.create_sso_connection(info, secret)


def test_sso_secrets_are_listed_in_pages_by_id_skipping_connections_without(
    store: Store,
) -> None:
    _connection(store, "sso_3", StoredSecret("v1.sealed", sealed=True))
    _connection(store, "sso_1", StoredSecret("clear", sealed=False))
    _connection(store, "sso_2", None)

    assert store.list_sso_client_secrets("", 1) == [("sso_1", StoredSecret("clear"))]
    assert store.list_sso_client_secrets("sso_1", 5) == [
        ("sso_3", StoredSecret("v1.sealed", sealed=True))
    ]


@pytest.mark.parametrize(
    "expected",
    [StoredSecret("clear", sealed=True), StoredSecret("other", sealed=False)],
    ids=["flag-differs", "value-differs"],
)
def test_an_sso_secret_is_replaced_only_if_value_and_flag_are_unchanged(
    store: Store, expected: StoredSecret
) -> None:
    clear = StoredSecret("clear", sealed=False)
    sealed = StoredSecret("v1.sealed", sealed=True)
    _connection(store, "sso_1", clear)

    assert store.replace_sso_client_secret("sso_1", expected, sealed) is False
    assert store.get_sso_client_secret("sso_1") == clear
    assert store.replace_sso_client_secret("sso_1", clear, sealed) is True
    assert store.get_sso_client_secret("sso_1") == sealed
    assert store.get_sso_connection("sso_1").has_client_secret  # type: ignore[union-attr]


# -- sampling a passkey ----------------------------------------------------------------


def _passkey(credential_id: str, user_id: str, *, tenant: str = "default") -> Passkey:
    return Passkey(
        credential_id=credential_id,
        user_id=user_id,
        tenant=tenant,
        rp_id="example.com",
        public_key=b"\xa5",
        sign_count=0,
        transports=("usb",),
        created_at=NOW,
    )


def test_sampling_without_passkeys_finds_none(store: Store) -> None:
    assert store.sample_passkey("default", "example.com", "M") is None


def test_sampling_takes_the_next_id_and_wraps_around(store: Store) -> None:
    add_user(store, "u1", email="u1@example.com")
    add_user(store, "u2", email="u2@example.com", tenant="other")
    for credential_id in ("B", "D", "F"):
        store.create_passkey(_passkey(credential_id, "u1"))
    store.create_passkey(_passkey("E", "u2", tenant="other"))

    def sampled(point: str) -> str | None:
        found = store.sample_passkey("default", "example.com", point)
        return None if found is None else found.credential_id

    assert [sampled(p) for p in ("A", "B", "C", "E", "F", "G", "_", "a")] == [
        "B", "B", "D", "F", "F", "B", "B", "B"
    ]  # fmt: skip
    assert store.sample_passkey("default", "other.example", "A") is None
