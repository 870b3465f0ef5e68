"""Password sign-in: tokens, normalization, generic failures with equal work, tenants,
rehash on login, production argon2 parameters, typed input errors, no leaked secrets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import argon2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authsome import (
    Authsome,
    AuthsomeError,
    InvalidCredentials,
    InvalidToken,
    PasswordHashing,
    RateLimited,
    Session,
    SessionTokens,
    SignIn,
    User,
    ValidationError,
)
from authsome.crypto import PasswordHasher
from authsome.stores import MemoryStore, SQLiteStore
from tests.conftest import FAST, PASSWORD, AuthFactory

EMAIL = "ann@example.com"


def test_sign_in_returns_tokens_without_mfa(auth: Authsome) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    result = auth.sign_in(EMAIL, PASSWORD, ip="192.0.2.1")
    assert isinstance(result, SignIn)
    assert result.mfa_required is False
    assert result.ticket is None
    assert result.user == user
    tokens = result.tokens
    assert isinstance(tokens, SessionTokens)
    assert tokens.access_token
    assert tokens.refresh_token
    assert tokens.access_token != tokens.refresh_token
    assert tokens.session.user_id == user.id
    assert tokens.session.tenant == user.tenant
    assert auth.sessions.validate(tokens.access_token).id == tokens.session.id


def test_sign_in_without_ip_works(auth: Authsome) -> None:
    auth.users.register(EMAIL, PASSWORD)
    assert auth.sign_in(EMAIL, PASSWORD).tokens is not None


@pytest.mark.parametrize(
    "variant",
    [
        "ANN@example.com",
        "Ann@Example.com",
        " ann@EXAMPLE.COM ",
        "ＡＮＮ＠ｅｘａｍｐｌｅ．ｃｏｍ",  # fullwidth: NFKC folds it to ASCII
        "ａｎｎ@example.com",
    ],
)
def test_email_lookup_is_case_insensitive_and_nfkc(auth: Authsome, variant: str) -> None:
    user = auth.users.register("Ann@Example.com", PASSWORD)
    result = auth.sign_in(variant, PASSWORD)
    assert result.user.id == user.id
    assert result.tokens is not None


def test_password_is_nfkc_normalized_on_sign_in(auth: Authsome) -> None:
    auth.users.register(EMAIL, "ｐａｓｓｗｏｒｄ ｆｏｒ ａｎｎ")  # fullwidth letters
    assert auth.sign_in(EMAIL, "password for ann").tokens is not None


def _failure(auth: Authsome, email: str, password: str, **kw: Any) -> InvalidCredentials:
    with pytest.raises(InvalidCredentials) as info:
        auth.sign_in(email, password, **kw)
    return info.value


def test_unknown_user_and_wrong_password_fail_identically(auth: Authsome) -> None:
    auth.users.register(EMAIL, PASSWORD)
    wrong = _failure(auth, EMAIL, "not the password at all", ip="192.0.2.1")
    unknown = _failure(auth, "bob@example.com", PASSWORD, ip="192.0.2.2")
    assert type(wrong) is type(unknown) is InvalidCredentials
    assert str(wrong) == str(unknown)
    assert wrong.args == unknown.args
    assert isinstance(wrong, AuthsomeError)


def test_unknown_user_still_runs_one_argon2_verification(
    auth: Authsome, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth.users.register(EMAIL, PASSWORD)
    calls: list[str] = []
    original = argon2.PasswordHasher.verify

    def counting_verify(self: argon2.PasswordHasher, stored: str | bytes, password: Any) -> bool:
        calls.append(stored if isinstance(stored, str) else stored.decode())
        return original(self, stored, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting_verify)

    _failure(auth, "nobody@example.com", PASSWORD, ip="192.0.2.1")
    assert len(calls) == 1
    assert calls[0].startswith("$argon2id$")  # a real hash, not a shortcut

    calls.clear()
    _failure(auth, EMAIL, "wrong password here", ip="192.0.2.2")
    assert len(calls) == 1

    calls.clear()
    auth.sign_in(EMAIL, PASSWORD, ip="192.0.2.3")
    assert len(calls) == 1


def test_dummy_hash_has_the_same_parameters_as_real_hashes() -> None:
    # Equal work only holds if the dummy hash costs what a real one costs.
    params = PasswordHashing(time_cost=2, memory_cost_kib=16, parallelism=1)
    hasher = PasswordHasher(params)
    real = hasher.hash(PASSWORD)
    assert not hasher.needs_rehash(real)
    assert hasher.verify(None, PASSWORD) is False
    assert real.startswith("$argon2id$v=19$m=16,t=2,p=1$")


def test_tenants_are_isolated(auth: Authsome) -> None:
    a = auth.users.register(EMAIL, "tenant one password", tenant="t1")
    b = auth.users.register(EMAIL, "tenant two password", tenant="t2")
    assert auth.sign_in(EMAIL, "tenant one password", tenant="t1").user.id == a.id
    assert auth.sign_in(EMAIL, "tenant two password", tenant="t2").user.id == b.id
    # each tenant's password is wrong in the other tenant
    _failure(auth, EMAIL, "tenant one password", tenant="t2")
    _failure(auth, EMAIL, "tenant two password", tenant="t1")
    # and the user does not exist in a third tenant (or the default one)
    _failure(auth, EMAIL, "tenant one password", tenant="t3")
    _failure(auth, EMAIL, "tenant one password")


def test_rehash_on_login_when_parameters_change(make_auth: AuthFactory) -> None:
    store = MemoryStore()
    old = make_auth(store=store, password_hashing=PasswordHashing.fast_insecure_for_tests())
    user = old.users.register(EMAIL, PASSWORD)
    before = store.get_password_hash(user.id)
    assert before is not None
    assert before.startswith("$argon2id$v=19$m=8,t=1,p=1$")

    new = make_auth(store=store, password_hashing=PasswordHashing(time_cost=2, memory_cost_kib=16))
    assert new.sign_in(EMAIL, PASSWORD).tokens is not None
    after = store.get_password_hash(user.id)
    assert after is not None
    assert after != before
    assert after.startswith("$argon2id$v=19$m=16,t=2,p=1$")
    assert PASSWORD not in after

    # sign-in still works with the upgraded hash, and it is not rehashed again
    assert new.sign_in(EMAIL, PASSWORD).tokens is not None
    assert store.get_password_hash(user.id) == after


def test_no_rehash_on_failed_login(make_auth: AuthFactory) -> None:
    store = MemoryStore()
    user = make_auth(store=store).users.register(EMAIL, PASSWORD)
    before = store.get_password_hash(user.id)
    new = make_auth(store=store, password_hashing=PasswordHashing(time_cost=2, memory_cost_kib=16))
    _failure(new, EMAIL, "wrong password here")
    assert store.get_password_hash(user.id) == before


def test_no_rehash_when_parameters_are_unchanged(auth: Authsome) -> None:
    user = auth.users.register(EMAIL, PASSWORD)
    before = auth.store.get_password_hash(user.id)
    auth.sign_in(EMAIL, PASSWORD)
    assert auth.store.get_password_hash(user.id) == before


def test_production_defaults_are_owasp_argon2id() -> None:
    params = PasswordHashing()
    assert (params.time_cost, params.memory_cost_kib, params.parallelism) == (2, 19456, 1)
    # The engine falls back to PasswordHashing() when none is given (real cost, once).
    auth = Authsome()
    try:
        user = auth.users.register(EMAIL, PASSWORD)
        stored = auth.store.get_password_hash(user.id)
        assert stored is not None
        assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    finally:
        auth.close()


NOT_STR: list[object] = [None, 42, b"bytes", ["list"], 1.5]


@pytest.mark.parametrize("value", NOT_STR)
@pytest.mark.parametrize("arg", ["email", "password", "tenant"])
def test_non_str_arguments_raise_type_error(auth: Authsome, arg: str, value: object) -> None:
    auth.users.register(EMAIL, PASSWORD)
    kwargs: dict[str, object] = {"email": EMAIL, "password": PASSWORD, "tenant": "default"}
    kwargs[arg] = value
    with pytest.raises(TypeError):
        auth.sign_in(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [42, b"192.0.2.1", ["192.0.2.1"]])
def test_non_str_ip_raises_type_error(auth: Authsome, value: object) -> None:
    auth.users.register(EMAIL, PASSWORD)
    with pytest.raises(TypeError):
        auth.sign_in(EMAIL, PASSWORD, ip=value)  # type: ignore[arg-type]


BAD_VALUES = [
    pytest.param("", PASSWORD, id="empty-email"),
    pytest.param("   ", PASSWORD, id="blank-email"),
    pytest.param(EMAIL, "", id="empty-password"),
    pytest.param("a" * 64 + "@" + "b" * 186 + ".com", PASSWORD, id="oversized-email-255"),
    pytest.param("a" * 60 + "@" + "b" * 300 + ".com", PASSWORD, id="oversized-email"),
    pytest.param(EMAIL, "p" * 1025, id="oversized-password"),
    pytest.param("no-at-sign", PASSWORD, id="no-at"),
    pytest.param("@example.com", PASSWORD, id="no-local-part"),
    pytest.param("ann@", PASSWORD, id="no-domain"),
    pytest.param("ann@localhost", PASSWORD, id="no-dot-domain"),
    pytest.param("ann@@example.com", PASSWORD, id="double-at"),
    pytest.param("ann smith@example.com", PASSWORD, id="space"),
    pytest.param("ann@exa..mple.com", PASSWORD, id="double-dot-domain"),
]


@pytest.mark.parametrize(("email", "password"), BAD_VALUES)
def test_bad_values_raise_validation_error(auth: Authsome, email: str, password: str) -> None:
    auth.users.register(EMAIL, PASSWORD)
    with pytest.raises(ValidationError) as info:
        auth.sign_in(email, password)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AuthsomeError)


def test_size_limits_are_inclusive(auth: Authsome) -> None:
    # exactly 254 characters of e-mail / 1024 of password are input, not errors
    email = "a" * 64 + "@" + "b" * 185 + ".com"
    assert len(email) == 254
    _failure(auth, email, PASSWORD)
    _failure(auth, EMAIL, "p" * 1024)


def test_short_wrong_password_is_invalid_credentials_not_validation(auth: Authsome) -> None:
    # a too-short password is just wrong at sign-in; saying otherwise leaks the rules
    auth.users.register(EMAIL, PASSWORD)
    _failure(auth, EMAIL, "x")


def test_bad_tenant_and_ip_values_raise_validation_error(auth: Authsome) -> None:
    with pytest.raises(ValidationError):
        auth.sign_in(EMAIL, PASSWORD, tenant="")
    with pytest.raises(ValidationError):
        auth.sign_in(EMAIL, PASSWORD, tenant="t" * 129)
    with pytest.raises(ValidationError):
        auth.sign_in(EMAIL, PASSWORD, ip="")
    with pytest.raises(ValidationError):
        auth.sign_in(EMAIL, PASSWORD, ip="1" * 65)


SECRET = "Sup3r-Secret-Passphrase-!"


def _messages(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), *(str(a) for a in exc.args)]


@pytest.mark.parametrize(
    ("email", "password"),
    [
        pytest.param(EMAIL, SECRET + "x", id="wrong-password"),
        pytest.param("nobody@example.com", SECRET, id="unknown-user"),
        pytest.param("", SECRET, id="empty-email"),
        pytest.param("not-an-email", SECRET, id="bad-email"),
        pytest.param(EMAIL, SECRET * 60, id="oversized-password"),
    ],
)
def test_password_never_appears_in_exception_messages(
    auth: Authsome, email: str, password: str
) -> None:
    auth.users.register(EMAIL, SECRET)
    with pytest.raises(AuthsomeError) as info:
        auth.sign_in(email, password)
    for text in _messages(info.value):
        assert SECRET not in text


def test_password_never_appears_in_type_error_messages(auth: Authsome) -> None:
    with pytest.raises(TypeError) as info:
        auth.sign_in(EMAIL, SECRET.encode())  # type: ignore[arg-type]
    for text in _messages(info.value):
        assert SECRET not in text


def test_repr_of_sign_in_and_tokens_hides_secrets(auth: Authsome) -> None:
    auth.users.register(EMAIL, SECRET)
    result = auth.sign_in(EMAIL, SECRET)
    tokens = result.tokens
    assert tokens is not None
    for text in (repr(result), str(result), repr(tokens), str(tokens)):
        assert SECRET not in text
        assert tokens.access_token not in text
        assert tokens.refresh_token not in text
    assert tokens.session.id in repr(tokens)  # the non-secret parts are still shown


# -- sign-in without the client's address ---------------------------------------------


def _security_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "authsome.security"]


def test_sign_in_without_ip_warns_once_per_engine(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authsome.security")
    first, second = make_auth(), make_auth()
    for auth in (first, second):
        auth.users.register(EMAIL, SECRET)
        auth.sign_in(EMAIL, SECRET, ip="192.0.2.1")
    assert _security_warnings(caplog) == []  # with an address: nothing to say

    first.sign_in(EMAIL, SECRET)
    with pytest.raises(InvalidCredentials):
        first.sign_in(EMAIL, SECRET + "x")
    first.sign_in(EMAIL, SECRET)
    [warning] = _security_warnings(caplog)
    assert warning.levelno == logging.WARNING
    assert "ip" in warning.getMessage()
    assert SECRET not in warning.getMessage()
    assert EMAIL not in warning.getMessage()

    second.sign_in(EMAIL, SECRET)  # another engine warns for itself
    assert len(_security_warnings(caplog)) == 2


# -- text that cannot be encoded as UTF-8 ----------------------------------------------

LONE = "\ud800"


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda a: a.users.register(f"b{LONE}@example.com", PASSWORD), id="reg-email"),
        pytest.param(lambda a: a.users.register("bob@example.com", PASSWORD + LONE), id="reg-pw"),
        pytest.param(lambda a: a.users.register("bob@example.com", PASSWORD, name=LONE), id="name"),
        pytest.param(lambda a: a.users.register("bob@x.com", PASSWORD, tenant=LONE), id="tenant"),
        pytest.param(lambda a: a.sign_in(f"a{LONE}@example.com", PASSWORD), id="email"),
        pytest.param(lambda a: a.sign_in(EMAIL, PASSWORD + LONE), id="password"),
        pytest.param(lambda a: a.sign_in(EMAIL, PASSWORD, ip=f"192.0.2.1{LONE}"), id="ip"),
        pytest.param(lambda a: a.users.find_by_email(f"a@ex{LONE}ample.com"), id="find"),
        pytest.param(lambda a: a.sessions.validate(f"tok{LONE}en"), id="access-token"),
        pytest.param(lambda a: a.sessions.refresh(f"tok{LONE}en"), id="refresh-token"),
        pytest.param(lambda a: a.sessions.revoke(f"tok{LONE}en"), id="revoke"),
        pytest.param(lambda a: a.api_keys.validate(f"ask_{LONE}"), id="api-key"),
    ],
)
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_lone_surrogate_is_a_validation_error(
    make_auth: AuthFactory, tmp_path: Path, kind: str, call: Callable[[Authsome], object]
) -> None:
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "auth.db")
    auth = make_auth(store=store)
    auth.users.register(EMAIL, PASSWORD)
    with pytest.raises(ValidationError) as info:
        call(auth)
    assert LONE not in str(info.value)
    assert info.value.__context__ is None  # no UnicodeEncodeError carrying the text
    assert store.find_user_by_email("default", "bob@example.com") is None
    assert store.find_user_by_email("default", "bob@x.com") is None


class _WriteRecorder(MemoryStore):
    """A memory store that remembers whether a user or session was written."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def create_user(self, user: User, password_hash: str) -> None:
        self.writes.append("user")
        super().create_user(user, password_hash)

    def create_session(self, session: Session, access_hash: str, refresh_hash: str) -> None:
        self.writes.append("session")
        super().create_session(session, access_hash, refresh_hash)


# Lists joined, not st.text(): text() leaves surrogates out of a mixed alphabet.
_CHARS = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from("@.aA"))
_TEXT = st.lists(_CHARS, max_size=24).map("".join)
_WORD = st.lists(st.characters(categories=["L", "Cs"]), min_size=1, max_size=12).map("".join)
_EMAILS = st.one_of(_TEXT, st.builds("{}@{}.com".format, _WORD, _WORD))
_PASSWORDS = st.one_of(_TEXT, st.builds("{}{}".format, st.just(PASSWORD), _TEXT))
_EXPECTED = (ValidationError, TypeError, InvalidCredentials, InvalidToken, RateLimited)


def _has_surrogate(*texts: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for text in texts for ch in text)


@settings(max_examples=150, deadline=None)
@given(email=_EMAILS, password=_PASSWORDS, token=_TEXT)
def test_arbitrary_text_fails_only_with_documented_errors(
    email: str, password: str, token: str
) -> None:
    store = _WriteRecorder()
    auth = Authsome(store=store, password_hashing=FAST)
    calls: list[tuple[Callable[[], object], tuple[str, ...]]] = [
        (lambda: auth.users.register(email, password), (email, password)),
        (lambda: auth.sign_in(email, password, ip="192.0.2.1"), (email, password)),
        (lambda: auth.sessions.validate(token), (token,)),
        (lambda: auth.api_keys.validate(token), (token,)),
    ]
    for call, inputs in calls:
        before = list(store.writes)
        try:
            call()
        except _EXPECTED:
            assert store.writes == before  # a refused call writes nothing
        else:
            assert not _has_surrogate(*inputs)
    if _has_surrogate(email, password):
        assert store.writes == []
