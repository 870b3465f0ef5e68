"""Stores opened before ``fork()`` (``gunicorn --preload``, multiprocessing in fork mode):
each process works with connections of its own, and the parent keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stores._fork_scenarios import AFTER_CHILDREN, EMAILS
from tests.support.pgschema import drop_schema

from ._processes import child_env

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_scenario(kind: str, target: str = "", mode: str = "plain") -> dict[str, Any]:
    env = child_env()
    env["PYTHONPATH"] = f"{REPO_ROOT}:{env['PYTHONPATH']}"
    done = subprocess.run(
        [sys.executable, "-m", "tests.stores._fork_scenarios", kind, target, mode],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["exit_codes"] == [0, 0]
    return report


@pytest.fixture
def pg_target(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    yield f"{pg_dsn}|{pg_schema}"
    drop_schema(pg_dsn, pg_schema)


def assert_shared_database(report: dict[str, Any]) -> None:
    """Each child wrote through a connection of its own and saw the parent's user;
    the parent, still on its own connections, sees everyone's."""
    for index, seen in enumerate(report["children"]):
        assert "error" not in seen, seen
        assert {EMAILS[0], EMAILS[index + 1]} <= set(seen["seen"])
    assert report["parent_sees"] == [*EMAILS, AFTER_CHILDREN]


def test_sqlite_store_opened_before_fork_reconnects_in_each_child(tmp_path: Path) -> None:
    assert_shared_database(run_scenario("sqlite", str(tmp_path / "auth.db")))


def test_postgres_store_opened_before_fork_opens_a_pool_per_child(pg_target: str) -> None:
    # The parent's one pooled connection crossed the fork; it still works after the
    # children used and closed their stores, so they never touched it.
    assert_shared_database(run_scenario("postgres", pg_target))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_child_closing_an_inherited_store_leaves_the_parents_connections_alone(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target = request.getfixturevalue("pg_target") if kind == "postgres" else str(tmp_path / "a.db")

    report = run_scenario(kind, target, mode="close-unused")

    assert report["parent_sees"] == [EMAILS[0], AFTER_CHILDREN]


@pytest.mark.parametrize("kind", ["memory", "sqlite-memory"])
def test_in_memory_store_is_copied_into_each_child(kind: str) -> None:
    report = run_scenario(kind)

    for index, seen in enumerate(report["children"]):
        assert seen["seen"] == [EMAILS[0], EMAILS[index + 1]]
    assert report["parent_sees"] == [EMAILS[0], AFTER_CHILDREN]


def test_sqlite_store_refuses_a_child_forked_while_other_threads_held_connections(
    tmp_path: Path,
) -> None:
    report = run_scenario("sqlite", str(tmp_path / "auth.db"), mode="busy-thread")

    for seen in report["children"]:
        assert "StoreError" in seen["error"]
        assert "other threads had connections open" in seen["error"]
    assert report["parent_sees"] == [EMAILS[0], AFTER_CHILDREN]


def test_postgres_store_on_a_pool_passed_in_refuses_a_forked_child(pg_target: str) -> None:
    report = run_scenario("postgres-pool", pg_target)

    for seen in report["children"]:
        assert "StoreError" in seen["error"]
        assert "open the pool and the store after fork" in seen["error"]
    assert report["parent_sees"] == [EMAILS[0], AFTER_CHILDREN]
