"""Hard limits hold across processes: four processes, each with its own stores and
ledger engine on the same PostgreSQL schemas (auth and ledger), race for the last
seats and the last active users (``tests/support/limits_pg_worker.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from authsome import Authsome, PasswordHashing, UsageEvent, User, ledger
from authsome.bridge import LedgerAdapter
from authsome.stores import PostgresStore
from tests.support import limits_pg_worker as worker
from tests.support.pgschema import drop_schema

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 4
SEATS, MAU = UsageEvent.ORGS_MEMBERS.value, UsageEvent.USERS_ACTIVE.value
SEAT_LIMIT, MAU_LIMIT = 5, 3
PLAN = ledger.Plan(
    "starter",
    [
        ledger.Feature.boolean("authsome.feature.orgs"),
        ledger.Feature.seat(SEATS, limit=SEAT_LIMIT),
        ledger.Feature.metered(MAU, limit=MAU_LIMIT, aggregation="unique"),
    ],
)


@pytest.fixture
def schema(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    yield pg_schema
    drop_schema(pg_dsn, f"{pg_schema}_auth")
    drop_schema(pg_dsn, f"{pg_schema}_ledger")


@pytest.fixture
def setup(pg_dsn: str, schema: str) -> Iterator[tuple[Authsome, ledger.Engine]]:
    engine = ledger.Engine(
        store=ledger.PostgresLedgerStore(pg_dsn, schema=f"{schema}_ledger"), cache_ttl=0
    )
    engine.define_plan(PLAN)
    engine.subscribe(worker.TENANT, "starter")
    auth = Authsome(
        store=PostgresStore(pg_dsn, schema=f"{schema}_auth"),
        ledger=LedgerAdapter(engine),
        password_hashing=PasswordHashing.fast_insecure_for_tests(),
        # As in the workers: the owner's seat is then counted at once, in the ledger's
        # store, not buffered in this process until its next flush.
        enforce_limits=[UsageEvent.ORGS_MEMBERS, UsageEvent.USERS_ACTIVE],
    )
    yield auth, engine
    auth.close()
    engine.close()


def _users(auth: Authsome, count: int) -> list[User]:
    return [
        auth.users.register(f"u{i}@example.com", worker.PASSWORD, tenant=worker.TENANT)
        for i in range(count)
    ]


def _race(
    dsn: str, schema: str, go: Path, mode: str, work: list[list[str]], org: str = ""
) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    base = [sys.executable, "-m", "tests.support.limits_pg_worker", mode, "--dsn", dsn]
    procs = [
        subprocess.Popen(
            [*base, "--schema", schema, "--go", str(go), "--org", org, "--ids", ",".join(ids)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for ids in work
    ]
    for proc in procs:  # every process connected before any starts
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    outcomes: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outcomes += json.loads(out.strip().splitlines()[-1])
    return outcomes


def test_four_processes_joining_at_once_fill_exactly_the_seat_limit(
    pg_dsn: str, schema: str, setup: tuple[Authsome, ledger.Engine], tmp_path: Path
) -> None:
    auth, engine = setup
    owner, *others = _users(auth, 1 + 2 * PROCESSES)
    org = auth.orgs.create(owner.id, "Acme")
    work = [[u.id for u in others[p::PROCESSES]] for p in range(PROCESSES)]
    outcomes = _race(pg_dsn, schema, tmp_path / "go", "join", work, org.id)
    assert sorted(outcomes) == sorted(["ok"] * (SEAT_LIMIT - 1) + [SEATS] * 4)
    engine.flush()
    assert len(auth.orgs.members(org.id)) == SEAT_LIMIT == engine.usage(worker.TENANT, SEATS)


def test_four_processes_signing_in_at_once_admit_exactly_the_active_limit(
    pg_dsn: str, schema: str, setup: tuple[Authsome, ledger.Engine], tmp_path: Path
) -> None:
    auth, engine = setup
    active, *newcomers = _users(auth, 1 + 2 * PROCESSES)
    auth.sign_in(active.email, worker.PASSWORD, tenant=worker.TENANT)
    engine.flush()
    work = [[*(u.email for u in newcomers[p::PROCESSES]), active.email] for p in range(PROCESSES)]
    outcomes = _race(pg_dsn, schema, tmp_path / "go", "sign-in", work)
    # The active user signs in in every process; two of the eight newcomers get in.
    assert sorted(outcomes) == sorted(["ok"] * (PROCESSES + MAU_LIMIT - 1) + [MAU] * 6)
    live = sum(auth.sessions.revoke_all(u.id) for u in newcomers)
    assert live == MAU_LIMIT - 1
    engine.flush()
    assert engine.usage(worker.TENANT, MAU) == MAU_LIMIT
