"""Key rotation of sealed secrets (TOTP secrets, SSO client secrets): values stored in
clear or under a previous key still open, are sealed under the current key when read,
``reseal_secrets``/``authsome reseal`` seal them all at once, and a missing key is
warned about once. No key or secret shows in any log, repr or error."""

from __future__ import annotations

import base64
import inspect
import logging
from pathlib import Path

import pyotp
import pytest
from psycopg.conninfo import conninfo_to_dict

from authsome import Authsome, DecryptionError, OIDCConnection, TOTPSetup, User
from authsome.cli import PREVIOUS_KEYS_ENV, SECRET_KEY_ENV, main
from authsome.crypto import Keyring
from authsome.stores import PostgresStore, SQLiteStore, Store
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.pgschema import drop_schema
from tests.support.race import race
from tests.support.shared_store import SharedStore, shared_store

__all__ = ["shared_store"]  # the fixture, imported to be found by pytest

OLD = bytes(range(32))
NEW = bytes(range(100, 132))
EMAIL = "ann@example.com"
CLIENT_SECRET = "idp-client-secret-Zq8"
DEFAULT_SCHEMA = inspect.signature(PostgresStore).parameters["schema"].default


def _code(setup: TOTPSetup, clock: FakeClock) -> str:
    return pyotp.TOTP(setup.secret).at(clock.now)


def _enrol(auth: Authsome, clock: FakeClock) -> tuple[User, TOTPSetup]:
    user = auth.users.register(EMAIL, PASSWORD, tenant="acme")
    setup = auth.mfa.begin_totp(user.id)
    auth.mfa.confirm_totp(user.id, _code(setup, clock))
    clock.advance(seconds=30)
    return user, setup


def _sign_in_with_totp(auth: Authsome, setup: TOTPSetup, clock: FakeClock) -> None:
    started = auth.sign_in(EMAIL, PASSWORD, tenant="acme", ip="203.0.113.7")
    assert started.mfa_required and started.ticket is not None
    assert auth.mfa.verify(started.ticket, _code(setup, clock)).tokens is not None
    clock.advance(seconds=30)


def _configure_sso(auth: Authsome) -> str:
    owner = auth.users.register("owner@example.com", PASSWORD, tenant="acme")
    org = auth.orgs.create(owner.id, "acme corp")
    connection = OIDCConnection(
        issuer="https://idp.acme.example",
        client_id="acme-client",
        client_secret=CLIENT_SECRET,
        domains=("acme.example",),
    )
    return auth.sso.configure(org.id, connection).id


def _stored_totp(store: Store, user: User) -> str:
    [factor] = store.list_mfa_factors(user.id)
    stored = store.get_mfa_secret(factor.id)
    assert stored is not None
    return stored


# -- TOTP -----------------------------------------------------------------------------


def test_totp_enrolled_without_a_key_works_once_a_key_is_configured_and_gets_sealed(
    make_auth: AuthFactory, clock: FakeClock, shared_store: SharedStore
) -> None:
    user, setup = _enrol(make_auth(store=shared_store.open()), clock)

    keyed = make_auth(store=shared_store.open(), secret_key=NEW)
    _sign_in_with_totp(keyed, setup, clock)

    stored = _stored_totp(keyed.store, user)
    assert stored.startswith("v1.") and setup.secret not in stored
    # Sealed under the new key: an engine with that key alone still signs in.
    _sign_in_with_totp(make_auth(store=shared_store.open(), secret_key=NEW), setup, clock)


def test_a_rotated_key_opens_old_values_and_reseals_them(
    make_auth: AuthFactory, clock: FakeClock, shared_store: SharedStore
) -> None:
    user, setup = _enrol(make_auth(store=shared_store.open(), secret_key=OLD), clock)
    sealed_under_old = _stored_totp(shared_store.open(), user)

    rotated = make_auth(store=shared_store.open(), secret_key=NEW, previous_secret_keys=[OLD])
    _sign_in_with_totp(rotated, setup, clock)

    assert _stored_totp(rotated.store, user) != sealed_under_old
    _sign_in_with_totp(make_auth(store=shared_store.open(), secret_key=NEW), setup, clock)
    with pytest.raises(DecryptionError):
        _sign_in_with_totp(make_auth(store=shared_store.open(), secret_key=OLD), setup, clock)


def test_without_the_old_key_a_sealed_value_is_refused_and_left_alone(
    make_auth: AuthFactory, clock: FakeClock
) -> None:
    first = make_auth(secret_key=OLD)
    user, setup = _enrol(first, clock)
    before = _stored_totp(first.store, user)

    with pytest.raises(DecryptionError):
        _sign_in_with_totp(make_auth(store=first.store, secret_key=NEW), setup, clock)
    assert _stored_totp(first.store, user) == before


# -- SSO client secrets ---------------------------------------------------------------


def test_sso_secret_stored_without_a_key_opens_and_gets_sealed_under_a_new_key(
    make_auth: AuthFactory, shared_store: SharedStore
) -> None:
    connection_id = _configure_sso(make_auth(store=shared_store.open()))

    keyed = make_auth(store=shared_store.open(), secret_key=NEW)
    assert keyed.sso._client_secret(connection_id) == CLIENT_SECRET

    stored = keyed.store.get_sso_client_secret(connection_id)
    assert stored is not None and stored.sealed and CLIENT_SECRET not in stored.value
    only_new = make_auth(store=shared_store.open(), secret_key=NEW)
    assert only_new.sso._client_secret(connection_id) == CLIENT_SECRET


def test_sso_secret_under_a_previous_key_opens_and_is_resealed(
    make_auth: AuthFactory, shared_store: SharedStore
) -> None:
    connection_id = _configure_sso(make_auth(store=shared_store.open(), secret_key=OLD))

    rotated = make_auth(store=shared_store.open(), secret_key=NEW, previous_secret_keys=[OLD])
    assert rotated.sso._client_secret(connection_id) == CLIENT_SECRET

    only_new = make_auth(store=shared_store.open(), secret_key=NEW)
    assert only_new.sso._client_secret(connection_id) == CLIENT_SECRET


def test_racing_reads_of_a_stale_secret_all_open_it_and_leave_it_sealed(
    make_auth: AuthFactory, shared_store: SharedStore
) -> None:
    connection_id = _configure_sso(make_auth(store=shared_store.open(), secret_key=OLD))
    rotated = make_auth(store=shared_store.open(), secret_key=NEW, previous_secret_keys=[OLD])

    opened = race(lambda _n: rotated.sso._client_secret(connection_id), range(8))

    assert opened == [CLIENT_SECRET] * 8
    only_new = make_auth(store=shared_store.open(), secret_key=NEW)
    assert only_new.sso._client_secret(connection_id) == CLIENT_SECRET


# -- all at once ------------------------------------------------------------------------


def test_reseal_secrets_seals_every_value_and_reports_what_it_did(
    make_auth: AuthFactory, clock: FakeClock, shared_store: SharedStore
) -> None:
    plain = make_auth(store=shared_store.open())
    users = [plain.users.register(f"u{n}@example.com", PASSWORD) for n in range(3)]
    setups = [plain.mfa.begin_totp(user.id) for user in users]
    _configure_sso(plain)
    old = make_auth(store=shared_store.open(), secret_key=OLD)
    old_setup = old.mfa.begin_totp(old.users.register("v@example.com", PASSWORD).id)
    old_connection = _configure_sso_again(old)

    rotated = make_auth(store=shared_store.open(), secret_key=NEW, previous_secret_keys=[OLD])
    report = rotated.reseal_secrets()

    assert (report.totp_secrets.resealed, report.totp_secrets.current) == (4, 0)
    assert (report.sso_client_secrets.resealed, report.sso_client_secrets.current) == (2, 0)
    again = rotated.reseal_secrets()
    assert (again.totp_secrets.resealed, again.totp_secrets.current) == (0, 4)
    only_new = make_auth(store=shared_store.open(), secret_key=NEW)
    for setup, user_id in [(s, u.id) for s, u in zip(setups, users, strict=True)]:
        only_new.mfa.confirm_totp(user_id, _code(setup, clock))
    assert old_setup.factor_id in {f.id for f in only_new.mfa.factors(_user_id(only_new))}
    assert only_new.sso._client_secret(old_connection) == CLIENT_SECRET


def _configure_sso_again(auth: Authsome) -> str:
    owner = auth.users.register("owner2@example.com", PASSWORD, tenant="acme")
    org = auth.orgs.create(owner.id, "acme two")
    connection = OIDCConnection(
        issuer="https://idp.acme.example", client_id="c2", client_secret=CLIENT_SECRET
    )
    return auth.sso.configure(org.id, connection).id


def _user_id(auth: Authsome) -> str:
    found = auth.users.find_by_email("v@example.com")
    assert found is not None
    return found.id


def test_reseal_lists_values_no_key_opens_and_leaves_them(make_auth: AuthFactory) -> None:
    stranger = make_auth(secret_key=bytes(32))
    setup = stranger.mfa.begin_totp(stranger.users.register(EMAIL, PASSWORD).id)

    report = make_auth(store=stranger.store, secret_key=NEW).reseal_secrets()

    assert report.totp_secrets.unreadable == (setup.factor_id,)
    assert report.totp_secrets.resealed == 0


# -- the command line --------------------------------------------------------------------


@pytest.mark.parametrize(
    "encode", [bytes.hex, lambda k: base64.urlsafe_b64encode(k).decode()], ids=["hex", "base64"]
)
def test_the_reseal_command_seals_every_value(
    make_auth: AuthFactory,
    clock: FakeClock,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    encode: object,
) -> None:
    path = tmp_path / "auth.db"
    plain = make_auth(store=SQLiteStore(path))
    user = plain.users.register(EMAIL, PASSWORD)
    setup = plain.mfa.begin_totp(user.id)
    connection_id = _configure_sso(plain)
    plain.close()
    assert callable(encode)
    monkeypatch.setenv(SECRET_KEY_ENV, encode(NEW))
    monkeypatch.setenv(PREVIOUS_KEYS_ENV, f"{encode(OLD)}, {encode(bytes(32))}")

    status = main(["reseal", "--db", str(path)])

    out = capsys.readouterr().out
    assert status == 0, out
    assert "TOTP secrets" in out and "SSO client secrets" in out
    assert [line.split()[-2:] for line in out.splitlines()[1:3]] == [["1", "0"], ["1", "0"]]
    only_new = make_auth(store=SQLiteStore(path), secret_key=NEW)
    assert _stored_totp(only_new.store, user).startswith("v1.")
    only_new.mfa.confirm_totp(user.id, _code(setup, clock))
    stored = only_new.store.get_sso_client_secret(connection_id)
    assert stored is not None and stored.sealed


def test_the_reseal_command_on_postgres(
    make_auth: AuthFactory,
    pg_dsn: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params = conninfo_to_dict(pg_dsn)
    url = "postgresql://{user}@{host}:{port}/{dbname}".format(**params)
    store = PostgresStore(pg_dsn, schema=DEFAULT_SCHEMA)  # where the command looks
    try:
        plain = make_auth(store=store)
        setup = plain.mfa.begin_totp(plain.users.register(EMAIL, PASSWORD).id)
        monkeypatch.setenv(SECRET_KEY_ENV, NEW.hex())
        monkeypatch.delenv(PREVIOUS_KEYS_ENV, raising=False)

        status = main(["reseal", "--db", url])

        assert status == 0, capsys.readouterr().err
        assert store.get_mfa_secret(setup.factor_id).startswith("v1.")  # type: ignore[union-attr]
    finally:
        store.close()
        drop_schema(pg_dsn, DEFAULT_SCHEMA)


@pytest.mark.parametrize(
    ("current", "previous", "message"),
    [
        (None, None, SECRET_KEY_ENV),
        ("zz" * 32, None, "neither hex nor base64"),
        ("ab" * 16, None, "exactly 32 bytes"),
        (NEW.hex(), "not-a-key!", f"{PREVIOUS_KEYS_ENV} #1"),
    ],
    ids=["missing", "not-hex", "short", "bad-previous"],
)
def test_the_reseal_command_refuses_bad_keys_without_repeating_them(
    make_auth: AuthFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    current: str | None,
    previous: str | None,
    message: str,
) -> None:
    make_auth(store=SQLiteStore(tmp_path / "auth.db")).close()
    for name, value in ((SECRET_KEY_ENV, current), (PREVIOUS_KEYS_ENV, previous)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)

    status = main(["reseal", "--db", str(tmp_path / "auth.db")])

    err = capsys.readouterr().err
    assert status == 1
    assert message in err
    for value in (current, previous):
        assert value is None or value not in err


def test_the_reseal_command_names_values_it_cannot_open(
    make_auth: AuthFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stranger = make_auth(store=SQLiteStore(tmp_path / "auth.db"), secret_key=bytes(32))
    setup = stranger.mfa.begin_totp(stranger.users.register(EMAIL, PASSWORD).id)
    stranger.close()
    monkeypatch.setenv(SECRET_KEY_ENV, NEW.hex())

    status = main(["reseal", "--db", str(tmp_path / "auth.db")])

    err = capsys.readouterr().err
    assert status == 1
    assert setup.factor_id in err and setup.secret not in err


# -- the options, the warning, no secret anywhere ------------------------------------------


def test_previous_keys_need_a_current_key_and_must_be_keys() -> None:
    with pytest.raises(ValueError, match="secret_key"):
        Authsome(previous_secret_keys=[OLD])
    with pytest.raises(TypeError):
        Authsome(secret_key=NEW, previous_secret_keys=OLD)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        Authsome(secret_key=NEW, previous_secret_keys=[b"short"])


def test_storing_secrets_without_a_key_is_warned_about_once(
    make_auth: AuthFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="authsome.security")
    auth = make_auth()
    for n in range(3):
        auth.mfa.begin_totp(auth.users.register(f"u{n}@example.com", PASSWORD).id)
    _configure_sso(auth)

    warnings = [r for r in caplog.records if r.name == "authsome.security"]
    assert len(warnings) == 1
    assert "secret_key" in warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING

    caplog.clear()
    keyed = make_auth(secret_key=NEW)
    keyed.mfa.begin_totp(keyed.users.register(EMAIL, PASSWORD).id)
    assert [r for r in caplog.records if r.name == "authsome.security"] == []


def test_no_key_or_secret_in_any_log_repr_or_error(
    make_auth: AuthFactory, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plain = make_auth()
    _user, setup = _enrol(plain, clock)
    connection_id = _configure_sso(plain)
    rotated = make_auth(store=plain.store, secret_key=NEW, previous_secret_keys=[OLD])
    _sign_in_with_totp(rotated, setup, clock)
    rotated.sso._client_secret(connection_id)
    texts = [
        repr(x)
        for x in (rotated, rotated.mfa, rotated.sso, Keyring(NEW, [OLD]), rotated.reseal_secrets())
    ]
    stranger = make_auth(store=plain.store, secret_key=bytes(32), previous_secret_keys=[OLD])
    for attempt in (
        lambda: _sign_in_with_totp(stranger, setup, clock),
        lambda: stranger.sso._client_secret(connection_id),
    ):
        with pytest.raises(DecryptionError) as caught:
            attempt()
        error = caught.value
        texts += [str(error), repr(error), repr(error.__cause__), repr(error.__context__)]
    texts += [record.getMessage() for record in caplog.records]

    forbidden = [setup.secret, CLIENT_SECRET, NEW.hex(), OLD.hex(), str(list(NEW)), repr(NEW)]
    assert texts
    for text in texts:
        for secret in forbidden:
            assert secret not in text
