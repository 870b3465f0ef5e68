"""``authsome reseal`` reports social sign-in secrets like TOTP and SSO secrets: a
row in its table, and a value no given key opens fails the command (exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authsome.cli import PREVIOUS_KEYS_ENV, SECRET_KEY_ENV, main
from authsome.stores import SQLiteStore
from tests.conftest import AuthFactory

OLD = bytes(range(32))
NEW = bytes(range(100, 132))


def _configure_github(make_auth: AuthFactory, path: Path, secret_key: bytes | None) -> str:
    auth = make_auth(store=SQLiteStore(path), secret_key=secret_key)
    configured = auth.social.configure(
        "github", tenant="acme", client_id="Iv1.abc", client_secret="gh"
    )
    auth.close()
    return configured.id


def test_the_reseal_command_seals_and_reports_social_secrets(
    make_auth: AuthFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "auth.db"
    _configure_github(make_auth, path, secret_key=OLD)
    monkeypatch.setenv(SECRET_KEY_ENV, NEW.hex())
    monkeypatch.setenv(PREVIOUS_KEYS_ENV, OLD.hex())

    status = main(["reseal", "--db", str(path)])

    out = capsys.readouterr().out
    assert status == 0, out
    rows = {line.rsplit(None, 2)[0]: line.split()[-2:] for line in out.splitlines()[1:]}
    assert rows["social sign-in secrets"] == ["1", "0"]


def test_the_reseal_command_fails_on_a_social_secret_no_key_opens(
    make_auth: AuthFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "auth.db"
    record_id = _configure_github(make_auth, path, secret_key=bytes(32))
    monkeypatch.setenv(SECRET_KEY_ENV, NEW.hex())
    monkeypatch.delenv(PREVIOUS_KEYS_ENV, raising=False)

    status = main(["reseal", "--db", str(path)])

    err = capsys.readouterr().err
    assert status == 1
    assert record_id in err and "social sign-in secrets: 0 resealed" in err
