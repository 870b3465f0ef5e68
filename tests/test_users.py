"""Registration: normalization, NIST length rules, argon2id, and bad input that writes nothing."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authsome import AlreadyExists, Authsome, NotFound, ValidationError
from authsome._validation import COMMON_PASSWORDS, MAX_PASSWORD, MIN_PASSWORD, normalize_email
from authsome.stores import MemoryStore
from authsome.testing import RecordingLedger
from tests.conftest import FAST, PASSWORD, AuthFactory


def test_register_stores_a_normalized_user(auth: Authsome) -> None:
    user = auth.users.register("  Ann@Example.COM ", PASSWORD, tenant="acme", name=" Ann ")
    assert user.email == "ann@example.com"
    assert user.tenant == "acme"
    assert user.name == "Ann"
    assert user.id.startswith("usr_")
    assert auth.users.get(user.id) == user
    assert auth.users.find_by_email("ANN@example.com", tenant="acme") == user
    assert auth.users.find_by_email("ann@example.com") is None  # other tenant


def test_the_password_is_stored_as_argon2id_only(auth: Authsome) -> None:
    user = auth.users.register("ann@example.com", PASSWORD)
    stored = auth.store.get_password_hash(user.id)
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert PASSWORD not in repr(user)


def test_duplicates_are_refused_case_and_width_insensitively(auth: Authsome) -> None:
    auth.users.register("ann@example.com", PASSWORD)
    for variant in ("ANN@EXAMPLE.COM", "ａｎｎ@example.com", " ann@example.com"):
        with pytest.raises(AlreadyExists):
            auth.users.register(variant, PASSWORD)


def test_same_email_in_two_tenants_is_two_users(auth: Authsome) -> None:
    a = auth.users.register("ann@example.com", PASSWORD, tenant="t1")
    b = auth.users.register("ann@example.com", PASSWORD, tenant="t2")
    assert a.id != b.id


def test_get_unknown_user_raises_not_found(auth: Authsome) -> None:
    with pytest.raises(NotFound):
        auth.users.get("usr_missing")


BAD_INPUT = [
    pytest.param({"email": ""}, ValidationError, id="empty-email"),
    pytest.param({"email": "a" * 250 + "@x.io"}, ValidationError, id="oversized-email"),
    pytest.param({"email": "no-at-sign"}, ValidationError, id="no-at"),
    pytest.param({"email": "ann@localhost"}, ValidationError, id="no-dot-domain"),
    pytest.param({"email": "an n@example.com"}, ValidationError, id="space"),
    pytest.param({"email": "ann@ex..com"}, ValidationError, id="double-dot"),
    pytest.param({"email": "x" * 65 + "@example.com"}, ValidationError, id="long-local"),
    pytest.param({"email": None}, TypeError, id="email-none"),
    pytest.param({"email": b"ann@example.com"}, TypeError, id="email-bytes"),
    pytest.param({"password": ""}, ValidationError, id="empty-password"),
    pytest.param({"password": "short"}, ValidationError, id="short-password"),
    pytest.param({"password": "p" * (MAX_PASSWORD + 1)}, ValidationError, id="huge-password"),
    pytest.param({"password": "password123"}, ValidationError, id="common-password"),
    pytest.param({"password": "ann@example.com"}, ValidationError, id="password-is-email"),
    pytest.param({"password": 12345678}, TypeError, id="password-int"),
    pytest.param({"tenant": ""}, ValidationError, id="empty-tenant"),
    pytest.param({"tenant": "t" * 129}, ValidationError, id="long-tenant"),
    pytest.param({"tenant": 3}, TypeError, id="tenant-int"),
    pytest.param({"name": "n" * 201}, ValidationError, id="long-name"),
    pytest.param({"name": 5}, TypeError, id="name-int"),
]


@pytest.mark.parametrize(("override", "error"), BAD_INPUT)
def test_bad_input_gets_a_typed_error_and_writes_nothing(
    make_auth: AuthFactory, override: dict[str, object], error: type[Exception]
) -> None:
    store, ledger = MemoryStore(), RecordingLedger()
    auth = make_auth(store=store, ledger=ledger)
    args: dict[str, object] = {"email": "ann@example.com", "password": PASSWORD, "tenant": "t"}
    args.update(override)
    with pytest.raises(error) as info:
        auth.users.register(**args)  # type: ignore[arg-type]
    assert store.find_user_by_email("t", "ann@example.com") is None
    assert store._users == {}
    assert ledger.calls == []
    if isinstance(override.get("password"), str) and override["password"]:
        assert str(override["password"]) not in str(info.value)


def test_validation_error_is_also_a_value_error(auth: Authsome) -> None:
    with pytest.raises(ValueError, match="password"):
        auth.users.register("ann@example.com", "short")


def test_nist_lengths_no_composition_rules(auth: Authsome) -> None:
    auth.users.register("a@example.com", "a" * MIN_PASSWORD + "zz")  # no digit/symbol needed
    auth.users.register("b@example.com", "b" * MAX_PASSWORD)
    auth.users.register("c@example.com", "😀" * MIN_PASSWORD)  # counted in code points


def test_production_hashing_defaults_are_owasp_argon2id() -> None:
    auth = Authsome()  # real cost: one hash here, cheap ones elsewhere
    user = auth.users.register("ann@example.com", PASSWORD)
    stored = auth.store.get_password_hash(user.id)
    assert stored is not None
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


LABELS = st.text(st.characters(categories=["Ll", "Lu", "Nd"]), min_size=1, max_size=20)
TLDS = st.sampled_from(["com", "io", "de", "COM"])
EMAILS = st.builds(lambda local, domain, tld: f"{local}@{domain}.{tld}", LABELS, LABELS, TLDS)
ASCII_LABELS = st.text(
    st.characters(categories=["Ll", "Lu", "Nd"], max_codepoint=127), min_size=1, max_size=20
)


@given(LABELS, LABELS, TLDS)
def test_normalization_is_idempotent_and_case_insensitive(
    local: str, domain: str, tld: str
) -> None:
    email = f"{local}@{domain}.{tld}"
    normalized = normalize_email(email)
    assert normalize_email(normalized) == normalized
    assert normalized == unicodedata.normalize("NFKC", normalized)
    # The local part is case-folded, the domain lower-cased.
    assert normalize_email(f"{local.casefold()}@{domain}.{tld}") == normalized
    assert normalize_email(f"{local}@{domain.lower()}.{tld.lower()}") == normalized
    swapped = f"{local.swapcase()}@{domain}.{tld}"
    assert normalize_email(f"{local.swapcase().casefold()}@{domain}.{tld}") == normalize_email(
        swapped
    )


@given(ASCII_LABELS, ASCII_LABELS, TLDS)
def test_ascii_addresses_are_case_insensitive_as_a_whole(local: str, domain: str, tld: str) -> None:
    email = f"{local}@{domain}.{tld}"
    variants = {email.upper(), email.lower(), email.swapcase(), email.casefold()}
    assert {normalize_email(variant) for variant in variants} == {email.lower()}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("x@straße.de", "x@straße.de"),  # folding would give strasse.de, another domain
        ("x@STRAßE.DE", "x@straße.de"),
        ("x@ὀδυσσεύς.gr", "x@ὀδυσσεύς.gr"),  # no final-sigma rewriting either
        ("Straße@example.com", "strasse@example.com"),  # the local part is folded
    ],
)
def test_case_folding_never_rewrites_the_domain(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


def test_a_folded_domain_is_a_different_address(auth: Authsome) -> None:
    sharp = auth.users.register("x@straße.de", PASSWORD)
    plain = auth.users.register("x@strasse.de", PASSWORD)
    assert sharp.email == "x@straße.de"
    assert sharp.id != plain.id
    assert auth.users.find_by_email("X@STRAßE.DE") == sharp
    assert auth.users.find_by_email("x@strasse.de") == plain


@given(st.text(max_size=300))
def test_normalization_never_fails_with_anything_but_validation_error(text: str) -> None:
    try:
        result = normalize_email(text)
    except ValidationError:
        return
    assert "@" in result
    assert len(result) <= 254


@settings(max_examples=25, deadline=None)
@given(st.text(min_size=0, max_size=MIN_PASSWORD + 4))
def test_password_length_rule_is_exactly_the_minimum(password: str) -> None:
    auth = Authsome(password_hashing=FAST)
    normalized = unicodedata.normalize("NFKC", password)
    try:
        auth.users.register("p@example.com", password)
    except ValidationError:
        too_short = len(normalized) < MIN_PASSWORD
        folded = normalized.casefold()
        guessable = folded in COMMON_PASSWORDS or folded in {"p@example.com", "p"}
        assert too_short or guessable
        return
    assert len(normalized) >= MIN_PASSWORD
