"""One journey through every feature, then a scan: no secret in a repr, a str, a log
record, an exception message, nor in clear in the SQLite file.

Each feature has its own scans next to its tests; this one catches a secret that
leaks through a path no single feature owns (another feature's logs, the engine's
repr, a store error).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest

from authsome import Authsome, AuthsomeError, OIDCConnection
from authsome.stores import SQLiteStore
from authsome.testing import RecordingLedger
from tests.conftest import FAST, PASSWORD, FakeClock

SSO_SECRET = "sso-client-secret-that-must-never-leak"
KEY = bytes(range(32))


def _capture(call: Callable[[], object], seen: list[str]) -> None:
    try:
        result = call()
    except AuthsomeError as exc:
        seen.extend([str(exc), repr(exc), *(str(a) for a in exc.args)])
    else:
        seen.extend([repr(result), str(result)])


def test_no_secret_escapes_anywhere(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ledger = RecordingLedger()
    auth = Authsome(
        store=SQLiteStore(tmp_path / "auth.db"),
        ledger=ledger,
        password_hashing=FAST,
        clock=clock,
        secret_key=KEY,
    )
    seen: list[str] = [repr(auth), repr(auth.store), repr(auth.ledger)]
    secrets: list[str] = [PASSWORD, SSO_SECRET, KEY.hex()]

    user = auth.users.register("ada@acme.example", PASSWORD, tenant="acme")
    signed = auth.sign_in("ada@acme.example", PASSWORD, tenant="acme", ip="192.0.2.1")
    assert signed.tokens is not None
    secrets += [signed.tokens.access_token, signed.tokens.refresh_token]
    seen += [repr(signed), str(signed), repr(signed.tokens)]
    rotated = auth.sessions.refresh(signed.tokens.refresh_token)
    secrets += [rotated.access_token, rotated.refresh_token]
    seen.append(repr(rotated))

    setup = auth.mfa.begin_totp(user.id)
    secrets.append(setup.secret)
    seen += [repr(setup), str(setup)]
    totp = pyotp.TOTP(setup.secret)
    codes = auth.mfa.confirm_totp(user.id, totp.at(clock.now))
    secrets += codes
    clock.advance(seconds=30)
    pending = auth.sign_in("ada@acme.example", PASSWORD, tenant="acme", ip="192.0.2.1")
    assert pending.ticket is not None
    secrets.append(pending.ticket)
    seen += [repr(pending), str(pending)]
    _capture(lambda: auth.mfa.verify(pending.ticket or "", "000000"), seen)
    done = auth.mfa.verify(pending.ticket, totp.at(clock.now))
    seen.append(repr(done))

    org = auth.orgs.create(user.id, "Acme")
    created = auth.api_keys.create(org.id, "deploy", scopes=("deploy",))
    secrets.append(created.secret)
    seen += [repr(created), str(created), repr(auth.api_keys.validate(created.secret))]
    _capture(lambda: auth.api_keys.validate(created.secret[:-1]), seen)
    _capture(lambda: auth.api_keys.validate(created.secret, required_scopes=("admin",)), seen)

    connection = OIDCConnection(
        issuer="https://login.acme.example",
        client_id="authsome",
        client_secret=SSO_SECRET,
        domains=("acme.example",),
    )
    seen += [repr(connection), str(connection)]
    info = auth.sso.configure(org.id, connection)
    seen += [repr(info), repr(auth.sso.list(org.id))]
    _capture(lambda: auth.sso.configure(org.id, connection), seen)  # domain taken

    challenge = auth.domains.add("login.acme.example", tenant="acme")
    secrets.append(challenge.record_value.partition("=")[2])
    seen += [repr(challenge), str(challenge)]

    _capture(lambda: auth.sign_in("ada@acme.example", "wrong password!", tenant="acme"), seen)
    _capture(lambda: auth.sessions.validate(signed.tokens.access_token), seen)  # rotated away
    _capture(lambda: auth.sessions.refresh(signed.tokens.refresh_token), seen)  # reuse
    seen += [repr(call) for call in ledger.calls]
    seen += [r.getMessage() for r in caplog.records]
    seen += [repr(r.args) for r in caplog.records]
    auth.close()

    text = "\n".join(seen)
    for secret in secrets:
        assert secret not in text

    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("auth.db"))
    for secret in (PASSWORD, SSO_SECRET, setup.secret, created.secret, *codes):
        assert secret.encode() not in raw
    for token in (signed.tokens.access_token, rotated.refresh_token, pending.ticket):
        assert token.encode() not in raw
