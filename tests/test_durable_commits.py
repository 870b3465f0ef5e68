"""Every auth operation that writes commits once.

A durable commit (a WAL append, fsynced under ``synchronous=FULL``) costs far more
than the statements themselves, so an operation's writes go in one transaction.
On SQLite the trace callback sees every statement the store's connections run; from
it we count the transactions that wrote and the write statements run outside one
(each commits by itself). On PostgreSQL every transaction that writes takes a
transaction id, so the ids the server handed out count them.

Password sign-in and password change are the exceptions, by design: their throttle
hits are committed before the password hash is checked (racing guesses must see
each other's hits, and no write lock may be held across a slow hash), and the
outcome after it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from authsome import Authsome, User, ValidationError
from authsome.stores import SQLiteStore
from authsome.testing import Outbox, RecordingLedger
from tests.conftest import PASSWORD, AuthFactory, FakeClock
from tests.support.stores import postgres_store
from tests.support.webauthn_authenticator import SoftwareAuthenticator
from tests.test_mfa import code, enrol

TENANT = "acme"
IP = "203.0.113.7"
NEW = "a brand new passphrase"
RP = {"rp_id": "example.com", "rp_name": "Example", "origin": "https://example.com"}

_WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


class CommitCounter:
    """Counts durable commits from the statements a connection traces."""

    def __init__(self) -> None:
        self.commits = 0
        self.statements: list[str] = []
        self._open: dict[int, bool] = {}  # connection id -> "the transaction wrote"

    def watch(self, conn: sqlite3.Connection) -> None:
        key = id(conn)
        conn.set_trace_callback(lambda sql: self._seen(key, sql))

    def _seen(self, key: int, sql: str) -> None:
        text = sql.strip()
        if text.startswith("--"):  # a trigger's statement, part of its parent
            return
        self.statements.append(text)
        word = text.split(None, 1)[0].upper() if text else ""
        if word == "BEGIN":
            self._open[key] = False
        elif word in {"COMMIT", "END"}:
            if self._open.pop(key, False):
                self.commits += 1
        elif word == "ROLLBACK" and not text.upper().startswith("ROLLBACK TO"):
            self._open.pop(key, None)
        elif _WRITE.search(text) and word not in {"SELECT", "PRAGMA"}:
            if key in self._open:
                self._open[key] = True
            else:
                self.commits += 1  # autocommit: the statement is its own transaction

    def during(self, operation: Callable[[], Any]) -> int:
        before = self.commits
        del self.statements[:]
        operation()
        return self.commits - before


class XidCounter:
    """Counts the PostgreSQL transactions that wrote: each took a transaction id.

    Read from a connection of its own, without taking an id itself; nothing else
    writes to the test's server meanwhile."""

    def __init__(self, dsn: str) -> None:
        self._conn = psycopg.connect(dsn, autocommit=True)

    def _next_xid(self) -> int:
        row = self._conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()
        assert row is not None
        return int(row[0])

    def during(self, operation: Callable[[], Any]) -> int:
        before = self._next_xid()
        operation()
        return self._next_xid() - before


class Counting(Protocol):
    def during(self, operation: Callable[[], Any]) -> int: ...


@pytest.fixture(params=["sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def commits(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Counting]:
    if kind == "postgres":
        counter = XidCounter(request.getfixturevalue("pg_dsn"))
        yield counter
        counter._conn.close()
        return
    traced_counter = CommitCounter()
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        traced_counter.watch(conn)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    yield traced_counter


@pytest.fixture
def auth(
    make_auth: AuthFactory,
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    commits: Counting,
    outbox: Outbox,
) -> Authsome:
    store = postgres_store(request) if kind == "postgres" else SQLiteStore(tmp_path / "auth.db")
    return make_auth(store=store, ledger=RecordingLedger(), mailer=outbox)


@pytest.fixture
def ann(auth: Authsome) -> User:
    user = auth.users.register("ann@example.com", PASSWORD, tenant=TENANT)
    # Warm up what an engine writes once in its life (its throttle key, the first
    # sweep of expired counters), so the counts below are those of every sign-in.
    auth.sign_in("ann@example.com", PASSWORD, tenant=TENANT, ip=IP)
    return user


def _sign_in(auth: Authsome, password: str = PASSWORD) -> Any:
    return auth.sign_in("ann@example.com", password, tenant=TENANT, ip=IP)


def test_a_password_sign_in_commits_its_reservation_and_its_outcome(
    auth: Authsome, ann: User, commits: Counting
) -> None:
    assert commits.during(lambda: _sign_in(auth)) <= 2


def test_a_wrong_password_commits_once(auth: Authsome, ann: User, commits: Counting) -> None:
    def wrong() -> None:
        with pytest.raises(Exception, match="invalid"):
            _sign_in(auth, "not the password at all")

    assert commits.during(wrong) <= 1


def test_a_sign_in_with_mfa_and_its_verify_commit_once_each(
    auth: Authsome, ann: User, clock: FakeClock, commits: Counting
) -> None:
    setup, _ = enrol(auth, ann, clock)
    results: list[Any] = []
    assert commits.during(lambda: results.append(_sign_in(auth))) <= 2
    ticket = results[0].ticket
    assert ticket is not None
    assert commits.during(lambda: results.append(auth.mfa.verify(ticket, code(setup, clock)))) == 1
    assert results[1].tokens is not None


def test_a_wrong_mfa_code_commits_once(
    auth: Authsome, ann: User, clock: FakeClock, commits: Counting
) -> None:
    setup, _ = enrol(auth, ann, clock)
    ticket = _sign_in(auth).ticket
    wrong_code = f"{(int(code(setup, clock)) + 1) % 1_000_000:06d}"

    def wrong() -> None:
        with pytest.raises(Exception, match="invalid code"):
            auth.mfa.verify(ticket, wrong_code)

    assert commits.during(wrong) == 1


def test_a_refresh_commits_once(auth: Authsome, ann: User, commits: Counting) -> None:
    tokens = _sign_in(auth).tokens
    assert commits.during(lambda: auth.sessions.refresh(tokens.refresh_token)) == 1


def test_a_passkey_sign_in_commits_once(auth: Authsome, ann: User, commits: Counting) -> None:
    pytest.importorskip("webauthn")
    device = SoftwareAuthenticator()
    options = auth.passkeys.begin_registration(ann.id, **RP)
    auth.passkeys.finish_registration(ann.id, device.register(options, origin=RP["origin"]))
    options = auth.passkeys.begin_authentication(
        rp_id=RP["rp_id"], origin=RP["origin"], tenant=TENANT
    )
    response = device.authenticate(options, origin=RP["origin"])
    assert commits.during(lambda: auth.passkeys.finish_authentication(response)) == 1


def test_an_api_key_validation_commits_at_most_once(
    auth: Authsome, ann: User, commits: Counting
) -> None:
    secret = auth.api_keys.create(ann.id, "ci").secret
    assert commits.during(lambda: auth.api_keys.validate(secret)) <= 1
    # The last-used time is written at most once per resolution: no write now.
    assert commits.during(lambda: auth.api_keys.validate(secret)) == 0


def test_the_count_sees_each_commit_and_a_block_as_one(
    auth: Authsome, clock: FakeClock, commits: Counting
) -> None:
    store = auth.store

    def two_commits() -> None:
        store.hit_counter("a", clock.now, 60)
        store.hit_counter("b", clock.now, 60)

    def one_block() -> None:
        with store.atomic():
            two_commits()

    assert commits.during(two_commits) == 2
    assert commits.during(one_block) == 1


def test_enrolment_disabling_and_signing_out_everywhere_commit_once_each(
    auth: Authsome, ann: User, clock: FakeClock, commits: Counting
) -> None:
    setup = auth.mfa.begin_totp(ann.id)
    assert commits.during(lambda: auth.mfa.confirm_totp(ann.id, code(setup, clock))) == 1
    clock.advance(seconds=30)
    assert commits.during(lambda: auth.mfa.disable(ann.id, code(setup, clock))) == 1
    assert commits.during(lambda: auth.sessions.revoke_all(ann.id)) == 1


def test_a_password_reset_commits_once(
    auth: Authsome, ann: User, outbox: Outbox, commits: Counting
) -> None:
    _sign_in(auth)  # a live session the reset ends, in the same commit
    auth.users.request_password_reset("ann@example.com", tenant=TENANT, ip=IP)
    auth.flush_mail()
    token = outbox.token()
    assert commits.during(lambda: auth.users.reset_password(token, NEW, tenant=TENANT)) == 1
    with pytest.raises(Exception, match="invalid"):
        _sign_in(auth)


def test_a_refused_reset_password_writes_nothing(
    auth: Authsome, ann: User, outbox: Outbox, commits: Counting
) -> None:
    auth.users.request_password_reset("ann@example.com", tenant=TENANT, ip=IP)
    auth.flush_mail()
    token = outbox.token()

    def refused() -> None:
        with pytest.raises(ValidationError):
            auth.users.reset_password(token, "ann@example.com", tenant=TENANT)

    assert commits.during(refused) == 0


def test_a_password_change_commits_its_reservation_and_its_change(
    auth: Authsome, ann: User, commits: Counting
) -> None:
    session = _sign_in(auth).tokens.session

    def change() -> None:
        auth.users.change_password(ann.id, PASSWORD, NEW, keep_session_id=session.id, ip=IP)

    assert commits.during(change) == 2


def test_a_magic_link_sign_in_commits_once(
    auth: Authsome, ann: User, outbox: Outbox, commits: Counting
) -> None:
    auth.passwordless.begin("ann@example.com", tenant=TENANT, ip=IP)
    auth.flush_mail()
    token = outbox.token()
    results: list[Any] = []
    assert (
        commits.during(lambda: results.append(auth.passwordless.complete(token, tenant=TENANT)))
        == 1
    )
    assert results[0].tokens is not None
