"""Text shown to people (a user's name, an org's name, a passkey's relying-party
name, a TOTP issuer) is refused at the API edge when it holds control characters,
on every store alike: nothing is written, and no store sees a NUL (PostgreSQL
would answer one with an error of its own)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsome import ValidationError
from authsome._validation import check_name
from authsome.stores import MemoryStore, SQLiteStore, Store
from tests.conftest import PASSWORD, AuthFactory
from tests.stores.conftest import StoreFactory, postgres_store

STORES: dict[str, StoreFactory] = {
    "memory": lambda _request: MemoryStore(),
    "postgres": postgres_store,
    "sqlite": lambda request: SQLiteStore(request.getfixturevalue("tmp_path") / "auth.db"),
}
RP = {"rp_id": "example.com", "origin": "https://example.com"}
CONTROLS = ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\u202e", "\u2066"]


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Store:
    return STORES[request.param](request)


@pytest.mark.parametrize("control", CONTROLS)
def test_a_user_name_with_a_control_character_is_refused_on_every_store(
    make_auth: AuthFactory, store: Store, control: str
) -> None:
    auth = make_auth(store=store)
    with pytest.raises(ValidationError, match="control characters"):
        auth.users.register("ada@example.com", PASSWORD, name=f"Ada{control}Lovelace")
    assert auth.users.find_by_email("ada@example.com") is None  # nothing half-written
    ada = auth.users.register("ada@example.com", PASSWORD, name="Ada Lovelace")
    assert auth.users.get(ada.id).name == "Ada Lovelace"


def test_names_keep_the_characters_real_names_use(make_auth: AuthFactory, store: Store) -> None:
    auth = make_auth(store=store)
    # Joiners shape Persian and Indic names and emoji; right-to-left text is fine.
    for i, name in enumerate(["می\u200cخواهم", "क्\u200dष", "👩\u200d💻 Ada", "عائشة", "Zoë"]):
        user = auth.users.register(f"user{i}@example.com", PASSWORD, name=name)
        assert auth.users.get(user.id).name == name


@given(st.text(st.characters(categories=["Cc", "Zl", "Zp"]), min_size=1, max_size=3), st.text())
def test_any_control_character_in_a_name_is_refused(controls: str, rest: str) -> None:
    text = f"a{controls}b{rest}"
    with pytest.raises(ValidationError):
        check_name(text)


@pytest.mark.parametrize("control", CONTROLS)
def test_org_names_rp_names_and_issuers_refuse_control_characters(
    make_auth: AuthFactory, control: str
) -> None:
    auth = make_auth()
    user = auth.users.register("ada@example.com", PASSWORD)
    with pytest.raises(ValidationError, match="control characters"):
        auth.orgs.create(user.id, f"Acme{control}Corp")
    with pytest.raises(ValidationError, match="control characters"):
        auth.passkeys.begin_registration(user.id, rp_name=f"Example{control}App", **RP)
    with pytest.raises(ValidationError, match="control characters"):
        auth.mfa.begin_totp(user.id, issuer=f"Example{control}App")
    assert auth.store.list_mfa_factors(user.id) == []
    # The same texts without the control character are fine.
    auth.orgs.create(user.id, "Acme Corp")
    auth.passkeys.begin_registration(user.id, rp_name="Example App", **RP)
    assert "Example%20App" in auth.mfa.begin_totp(user.id, issuer="Example App").provisioning_uri
