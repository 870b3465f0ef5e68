"""Several processes on one PostgreSQL ledger: exact totals, a held limit, no torn batch.

Each worker is a real process (``tests/support/ledger_pg_worker.py``) with its own
engine and its own store on the same schema, as web workers would be.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from authsome import ledger
from tests.support import ledger_pg_worker as worker
from tests.support.pgschema import drop_schema

ROOT = Path(__file__).resolve().parents[2]
PROCESSES, THREADS, EVENTS = 4, 2, 25_000  # events per thread; every tenth is a retry
CONSUMES = 100  # tries per thread at the limited feature: 800 in all for a limit of 300
BATCH = 20_000  # events per batch of the flush loop that gets killed


def spawn(mode: str, dsn: str, schema: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.ledger_pg_worker", mode, "--dsn", dsn,
         "--schema", schema, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@pytest.fixture
def schema(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """The test's schema, dropped afterwards."""
    yield pg_schema
    drop_schema(pg_dsn, pg_schema)


def test_processes_meter_exact_totals_and_never_exceed_a_limit(pg_dsn: str, schema: str) -> None:
    store = ledger.PostgresStore(pg_dsn, schema=schema)
    try:
        with ledger.Engine(store=store) as eng:
            eng.define_plan(worker.PLAN)
            eng.subscribe(worker.TENANT, "multi")
            period = eng.period(worker.TENANT, worker.METERED)
            start = int(period.start.timestamp())
        procs = [
            spawn("meter", pg_dsn, schema, "--proc", str(p), "--threads", str(THREADS),
                  "--events", str(EVENTS), "--consumes", str(CONSUMES))
            for p in range(PROCESSES)
        ]  # fmt: skip
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))

        expected = worker.expected_total(PROCESSES, THREADS, EVENTS)
        assert store.get_usage(worker.TENANT, worker.METERED, start) == expected
        distinct = PROCESSES * THREADS * EVENTS * 9 // 10
        with psycopg.connect(pg_dsn) as conn:
            query = sql.SQL("SELECT count(*) FROM {}.ledger_events WHERE feature = %s")
            row = conn.execute(query.format(sql.Identifier(schema)), (worker.METERED,)).fetchone()
        assert row == (distinct,)

        limit = 300
        assert sum(r["accepted"] for r in reports) == limit  # demand was 800
        assert sum(r["violations"] for r in reports) == 0
        assert store.get_usage(worker.TENANT, worker.LIMITED, start) == limit
    finally:
        store.close()


def _backend_gone(dsn: str, app: str) -> None:
    """Wait until the server has ended the session of a killed client."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(500):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
            ).fetchone()
            if row == (0,):
                return
            time.sleep(0.01)
    raise AssertionError(f"the session of {app} outlived its process")


def _batches_present(dsn: str, schema: str) -> dict[tuple[int, int], int]:
    """Events stored per (round, batch) of the flush loop."""
    query = sql.SQL(
        "SELECT split_part(event_id, '-', 1), split_part(event_id, '-', 2), count(*) "
        "FROM {}.ledger_events GROUP BY 1, 2"
    ).format(sql.Identifier(schema))
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(query).fetchall()
    return {(int(r[1:]), int(b[1:])): int(n) for r, b, n in rows}


def test_a_worker_killed_mid_flush_leaves_no_partial_batch(pg_dsn: str, schema: str) -> None:
    store = ledger.PostgresStore(pg_dsn, schema=schema)
    rng = random.Random(7)
    committed: dict[int, set[int]] = {}
    began_last: dict[int, int] = {}
    try:
        for round_ in range(3):
            app = f"ledger-kill-{round_}"
            with spawn("flush-loop", f"{pg_dsn} application_name={app}", schema,
                       "--proc", str(round_), "--batch", str(BATCH)) as proc:  # fmt: skip
                assert proc.stdout is not None
                assert proc.stderr is not None
                done: set[int] = set()
                for line in proc.stdout:
                    word, number = line.split()
                    if word == "committed":
                        done.add(int(number))
                    elif len(done) >= 2:  # a batch is on its way: kill it somewhere inside
                        began_last[round_] = int(number)
                        time.sleep(rng.uniform(0.0, 0.15))
                        proc.send_signal(signal.SIGKILL)
                        break
                proc.wait(timeout=30)
                assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
                for line in proc.stdout:  # lines written before the kill landed
                    word, number = line.split()
                    if word == "committed":
                        done.add(int(number))
            committed[round_] = done
            _backend_gone(pg_dsn, app)

        present = _batches_present(pg_dsn, schema)
        assert set(present.values()) == {BATCH}  # every stored batch is whole
        for round_, done in committed.items():
            stored = {b for r, b in present if r == round_}
            assert done <= stored  # everything acknowledged is there
            # ... and at most the batch in flight more (its COMMIT may have reached the
            # server just before the kill, with the acknowledgement still unprinted).
            assert stored - done <= {began_last[round_]}
        total = worker.batch_total(BATCH) * len(present)
        assert store.get_usage(worker.TENANT, worker.METERED, 0) == total
        store.apply_usage(ledger.stores.UsageBatch([ledger.stores.UsageDelta("acme", "api", 0, 1)]))
        assert store.get_usage(worker.TENANT, worker.METERED, 0) == total + 1
    finally:
        store.close()


def test_processes_migrating_at_once_migrate_once(pg_dsn: str, schema: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [spawn("migrate", pg_dsn, schema, "--proc", str(p), "--go", str(go)) for p in range(6)]
    time.sleep(1.0)  # let them all start and wait at the line
    go.touch()
    versions = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        versions.append(int(out.strip()))
    current = len(ledger.stores.postgres.MIGRATIONS)
    assert versions == [current] * 6
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            sql.SQL("SELECT version FROM {}.ledger_schema ORDER BY version").format(
                sql.Identifier(schema)
            )
        ).fetchall()
    assert rows == [(v,) for v in range(1, current + 1)]
    store = ledger.PostgresStore(pg_dsn, schema=schema)
    try:
        assert store.plan_keys() == [f"plan-{p}" for p in range(6)]
    finally:
        store.close()
