"""The ``authsome`` commands end to end on SQLite files: output, JSON, errors, exit codes."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import tomllib
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import authsome
from authsome import _cli_ledger, ledger
from authsome._cli_db import parse_db, redact
from authsome._demo import _plans as demo_plans
from authsome._plans_toml import parse_plans
from authsome.cli import main
from authsome.errors import ValidationError
from authsome.features import Feature, UsageEvent
from authsome.stores import SQLiteStore

SRC = str(Path(authsome.__file__).parent.parent)
EXAMPLES = Path(__file__).parent.parent / "examples" / "plans.toml"

LIMITED = """
[[plans]]
key = "small"
name = "Small"

[[plans.features]]
key = "api.calls"
kind = "metered"
limit = 5
soft_limit = 3

[[plans.features]]
key = "export"
kind = "boolean"
enabled = false

[[plans.features]]
key = "projects"
kind = "seat"
limit = 2
"""


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authsome", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC, **(env or {})},
        timeout=60,
        check=False,
    )


def table(out: str) -> dict[str, list[str]]:
    """The rows of a printed table (after its title and header), by first column."""
    return {line.split()[0]: line.split()[1:] for line in out.strip().splitlines()[2:]}


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A migrated database with the example plans loaded."""
    path = tmp_path / "app.db"
    assert cli(capsys, "migrate", "--db", path)[0] == 0
    assert cli(capsys, "plans", "load", EXAMPLES, "--db", path)[0] == 0
    return path


@pytest.fixture
def small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A migrated database whose tenant ``t1`` is on a plan with small limits."""
    path = tmp_path / "small.db"
    plans = tmp_path / "small.toml"
    plans.write_text(LIMITED)
    assert cli(capsys, "migrate", "--db", path)[0] == 0
    assert cli(capsys, "plans", "load", plans, "--db", path)[0] == 0
    assert cli(capsys, "subscribe", "t1", "small", "--db", path)[0] == 0
    return path


def _ledger_file(db: Path) -> Path:
    return db.with_name(f"{db.stem}.ledger.db")


# --- migrate -----------------------------------------------------------------------------


def test_migrate_creates_both_schemas_and_can_run_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.db"
    status, out, err = cli(capsys, "migrate", "--db", path)
    assert (status, err) == (0, "")
    assert "auth store" in out
    assert "ledger store" in out
    assert str(_ledger_file(path)) in out
    with SQLiteStore(path) as store:  # a usable auth store
        assert store.get_user("nobody") is None
    lstore = ledger.SQLiteStore(_ledger_file(path))
    assert lstore.schema_version == len(ledger.stores.sqlite.MIGRATIONS)
    lstore.close()
    assert cli(capsys, "migrate", "--db", path)[0] == 0


def test_db_comes_from_a_sqlite_url_or_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url_db = tmp_path / "url.db"
    assert cli(capsys, "migrate", "--db", f"sqlite:///{url_db}")[0] == 0
    assert url_db.exists()
    env_db = tmp_path / "env.db"
    monkeypatch.setenv("AUTHSOME_DB", str(env_db))
    assert cli(capsys, "migrate")[0] == 0
    assert env_db.exists()
    assert _ledger_file(env_db).exists()
    elsewhere = tmp_path / "billing.db"
    assert cli(capsys, "migrate", "--ledger-db", elsewhere)[0] == 0
    assert elsewhere.exists()


def test_a_password_given_as_a_query_parameter_is_redacted_too() -> None:
    shown = redact("postgresql://user@db.example/app?sslmode=require&password=hunter2")
    assert "hunter2" not in shown
    assert "sslmode=require" in shown
    assert "password=***" in shown


def test_database_urls_are_parsed_and_passwords_redacted() -> None:
    assert parse_db("app.db").target == "app.db"
    assert parse_db("sqlite:////abs/app.db").target == "/abs/app.db"
    assert parse_db("sqlite:///rel/app.db").target == "rel/app.db"
    assert parse_db("postgresql://u@h/db").kind == "postgres"
    assert parse_db("postgres://u@h/db").kind == "postgres"
    with pytest.raises(ValidationError):
        parse_db("mysql://h/db")
    shown = redact("postgresql://user:hunter2@db.example:5432/app")
    assert "hunter2" not in shown
    assert shown == "postgresql://user:***@db.example:5432/app"


# --- plans load --------------------------------------------------------------------------


def test_plans_load_defines_the_example_plans_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.db"
    assert cli(capsys, "migrate", "--db", path)[0] == 0
    status, out, err = cli(capsys, "plans", "load", EXAMPLES, "--db", path)
    assert (status, err) == (0, "")
    rows = table(out)
    assert rows["starter"] == ["Starter", "v1", "11", "defined"]
    assert rows["business"] == ["Business", "v1", "11", "defined"]
    # Loading the same file again must not pile up plan versions.
    status, out, _ = cli(capsys, "plans", "load", EXAMPLES, "--db", path)
    assert status == 0
    assert table(out)["starter"] == ["Starter", "v1", "11", "unchanged"]


def test_example_plans_are_the_demos_plans() -> None:
    assert parse_plans(EXAMPLES.read_text()) == demo_plans()


def test_plans_example_prints_a_commented_file_that_plans_load_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, sample, err = cli(capsys, "plans", "example")
    assert (status, err) == (0, "")
    commented = [line for line in sample.splitlines() if "#" in line]
    assert len(commented) >= 20
    for explained in ("soft_limit", "aggregation", "period", "interval", "enabled", "seat"):
        assert any(explained in line for line in commented), explained
    saved = tmp_path / "plans.toml"
    saved.write_text(sample)
    path = tmp_path / "app.db"
    assert cli(capsys, "migrate", "--db", path)[0] == 0
    status, out, err = cli(capsys, "plans", "load", saved, "--db", path)
    assert (status, err) == (0, "")
    assert sorted(table(out)) == ["business", "starter"]
    assert parse_plans(sample) == parse_plans(EXAMPLES.read_text()) == demo_plans()


def test_plans_example_needs_no_file_from_a_clone(tmp_path: Path) -> None:
    # What an installed wheel has: the package alone, run from an empty directory.
    result = subprocess.run(
        [sys.executable, "-I", "-m", "authsome", "plans", "example"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert tomllib.loads(result.stdout)["plans"][0]["key"] == "starter"


def test_a_changed_plan_gets_a_new_version(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = tmp_path / "changed.toml"
    changed.write_text(LIMITED.replace("limit = 5", "limit = 50"))
    status, out, _ = cli(capsys, "plans", "load", changed, "--db", small)
    assert status == 0
    assert table(out)["small"] == ["Small", "v2", "3", "defined"]


def test_plan_file_schema_covers_every_field() -> None:
    [plan] = parse_plans(
        """
        [[plans]]
        key = "p"
        interval = "yearly"
        [[plans.features]]
        key = "mau"
        kind = "metered"
        limit = 10
        soft_limit = 8
        period = "yearly"
        aggregation = "unique"
        """
    )
    assert plan.name == "p"
    assert plan.interval is ledger.Period.YEARLY
    assert plan.features == (
        ledger.Feature.metered("mau", 10, period="yearly", aggregation="unique", soft_limit=8),
    )


@pytest.mark.parametrize(
    ("text", "location"),
    [
        ("", "file: no plans"),
        ("plans = []", "file: no plans"),
        ("plan = 1", "file.plan: unknown key"),
        ("plans = 3", "plans: must be an array of tables"),
        ("[[plans]]\nname = 'x'", "plans[0]: missing required key 'key'"),
        ("[[plans]]\nkey = 7", "plans[0].key: must be a string, got an integer"),
        ("[[plans]]\nkey = ' '", "plans[0] (' '): plan key must be 1..256"),
        ("[[plans]]\nkey = 'p'\ninterval = 'weekly'", "plans[0] ('p'): interval must be one of"),
        ("[[plans]]\nkey='p'\n[[plans]]\nkey='p'", "plans[1]: plan 'p' is defined twice"),
        (
            "[[plans]]\nkey='p'\n[[plans.features]]\nkey='f'",
            "plans[0] ('p').features[0]: missing required key 'kind'",
        ),
        (
            "[[plans]]\nkey='p'\n[[plans.features]]\nkey='f'\nkind='toggle'",
            "plans[0] ('p').features[0].kind: must be one of 'boolean', 'metered', 'seat'",
        ),
        (
            "[[plans]]\nkey='p'\n[[plans.features]]\nkey='f'\nkind='boolean'\nlimit=3",
            "plans[0] ('p').features[0].limit: unknown key",
        ),
        (
            "[[plans]]\nkey='p'\n[[plans.features]]\nkey='f'\nkind='boolean'\nenabled='no'",
            "plans[0] ('p').features[0] ('f').enabled: must be true or false, got a string",
        ),
        (
            "[[plans]]\nkey='p'\n[[plans.features]]\nkey='f'\nkind='metered'\nlimit='1000'",
            "plans[0] ('p').features[0] ('f').limit: must be an integer from 0 to",
        ),
        (
            "[[plans]]\nkey='p'\n[[plans.features]]\nkey='f'\nkind='seat'\nlimit=-1",
            "plans[0] ('p').features[0] ('f').limit: must be an integer from 0 to "
            "9223372036854775807, got -1",
        ),
        (
            "[[plans]]\nkey='p'\n[[plans.features]]\nkey='f'\nkind='metered'\nlimit=1.5",
            "got a float",
        ),
        (
            "[[plans]]\nkey='p'\n[[plans.features]]\nkey='f'\nkind='metered'\nlimit=2\nsoft_limit=3",
            "plans[0] ('p').features[0] ('f'): soft_limit must not exceed limit",
        ),
        (
            "[[plans]]\nkey='p'\n[[plans.features]]\nkey='f'\nkind='metered'\nperiod='daily'",
            "plans[0] ('p').features[0] ('f'): period must be one of",
        ),
        (
            "[[plans]]\nkey='p'\n[[plans.features]]\nkey='f'\nkind='seat'\nperiod='monthly'",
            "plans[0] ('p').features[0].period: unknown key",
        ),
        (
            "[[plans]]\nkey='p'\n[[plans.features]]\nkey='f'\nkind='seat'\n"
            "[[plans.features]]\nkey='f'\nkind='seat'",
            "plans[0] ('p').features[1]: feature 'f' is listed twice",
        ),
        ("[[plans]]\nkey='p'\nfeatures = [1]", "plans[0] ('p').features[0]: must be a table"),
    ],
)
def test_plan_file_errors_name_their_location(text: str, location: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_plans(text)
    assert location in str(caught.value)


# --- subscribe ---------------------------------------------------------------------------


def _entitlements_json(capsys: pytest.CaptureFixture[str], db: Path, tenant: str) -> dict:  # type: ignore[type-arg]
    status, out, err = cli(capsys, "entitlements", tenant, "--db", db, "--json")
    assert (status, err) == (0, "")
    return json.loads(out)  # type: ignore[no-any-return]


def test_starter_refuses_sso_as_disabled_and_business_allows_it(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "subscribe", "acme", "starter", "--db", db)[0] == 0
    assert cli(capsys, "subscribe", "globex", "business", "--db", db)[0] == 0
    status, out, _ = cli(capsys, "entitlements", "acme", "--db", db)
    assert status == 0
    assert out.splitlines()[0] == "acme: plan starter (Starter), subscription active"
    rows = table(out)
    assert rows[Feature.SSO][:3] == ["boolean", "no", "disabled"]
    assert rows[Feature.CUSTOM_DOMAINS][:3] == ["boolean", "no", "disabled"]
    assert rows[Feature.MFA][:3] == ["boolean", "yes", "ok"]
    assert rows[UsageEvent.USERS_ACTIVE] == ["metered", "yes", "ok", "0", "3", "3"]
    by_key = {f["feature"]: f for f in _entitlements_json(capsys, db, "acme")["features"]}
    assert by_key[Feature.SSO]["allowed"] is False
    assert by_key[Feature.SSO]["reason"] == "disabled"
    globex = {f["feature"]: f for f in _entitlements_json(capsys, db, "globex")["features"]}
    assert globex[Feature.SSO] | {"allowed": True, "reason": "ok"} == globex[Feature.SSO]
    assert globex[UsageEvent.USERS_ACTIVE]["reason"] == "unlimited"


def test_entitlements_json_matches_the_table(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = cli(capsys, "entitlements", "t1", "--db", small)
    assert status == 0
    rows = table(out)
    doc = _entitlements_json(capsys, small, "t1")
    assert [f["feature"] for f in doc["features"]] == list(rows)
    for f in doc["features"]:
        kind, allowed, reason, used, limit, remaining = rows[f["feature"]]
        assert (kind, allowed, reason) == (f["kind"], "yes" if f["allowed"] else "no", f["reason"])
        if kind != "boolean":
            assert used == f"{f['used']:,}"
            assert limit == ("unlimited" if f["limit"] is None else f"{f['limit']:,}")
            assert remaining == ("unlimited" if f["remaining"] is None else f"{f['remaining']:,}")


def test_subscribe_moves_a_live_tenant_keeping_its_anchor(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(capsys, "subscribe", "acme", "starter", "--db", db)
    assert (status, err) == (0, "")
    assert out.startswith("acme: subscribed to plan starter from ")
    with closing(ledger.SQLiteStore(_ledger_file(db))) as store:
        anchor = store.get_subscription("acme").anchor  # type: ignore[union-attr]
    status, out, _ = cli(capsys, "subscribe", "acme", "business", "--db", db)
    assert status == 0
    assert out.startswith("acme: moved from plan starter to business")
    status, out, _ = cli(capsys, "subscribe", "acme", "business", "--db", db)
    assert "already on plan business" in out
    with closing(ledger.SQLiteStore(_ledger_file(db))) as store:
        sub = store.get_subscription("acme")
    assert sub is not None
    assert (sub.plan, sub.anchor) == ("business", anchor)


def test_subscribe_with_a_trial(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, "subscribe", "acme", "business", "--trial-days", "14", "--db", db)
    assert status == 0
    assert ", trial until " in out
    assert _entitlements_json(capsys, db, "acme")["status"] == "trialing"


# --- usage -------------------------------------------------------------------------------


def _meter(db: Path, *events: tuple[str, int, timedelta]) -> None:
    """Record usage of tenant t1 at anchor + offset, as the auth engine would."""
    with closing(ledger.SQLiteStore(_ledger_file(db))) as store, ledger.Engine(store=store) as eng:
        anchor = eng.subscription("t1").anchor  # type: ignore[union-attr]
        for key, quantity, offset in events:
            eng.meter("t1", key, quantity, at=anchor + offset)


def test_usage_table_and_json_agree_for_each_period(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hour, day = timedelta(hours=1), timedelta(days=1)
    _meter(small, ("api.calls", 4, hour), ("api.calls", 9, -day), ("projects", 1, hour))
    expected = {"current": 4, "previous": 9}
    for period, calls in expected.items():
        status, out, err = cli(capsys, "usage", "t1", "--db", small, "--period", period)
        assert (status, err) == (0, "")
        assert out.splitlines()[0] == f"t1: plan small (Small), {period} period"
        rows = table(out)
        assert "export" not in rows  # boolean features have no usage
        assert rows["api.calls"][:4] == ["metered", str(calls), "5", "3"]
        assert rows["projects"] == ["seat", "1", "2", "-", "all", "time", "ok"]
        status, out, _ = cli(capsys, "usage", "t1", "--db", small, "--period", period, "--json")
        doc = json.loads(out)
        assert doc["period"] == period
        for f in doc["features"]:
            row = rows[f["feature"]]
            soft = "-" if f["soft_limit"] is None else f"{f['soft_limit']:,}"
            assert row[:4] == [f["kind"], f"{f['used']:,}", f"{f['limit']:,}", soft]
            assert row[-1] == f["status"]
            if f["period_end"] is not None:
                assert row[4:7] == [f["period_start"][:10], "..", f["period_end"][:10]]
    current = json.loads(cli(capsys, "usage", "t1", "--db", small, "--json")[1])
    assert current["features"][0]["status"] == "soft_limit"  # 4 used, soft limit 3
    previous = json.loads(
        cli(capsys, "usage", "t1", "--db", small, "--period", "previous", "--json")[1]
    )
    assert previous["features"][0]["status"] == "limit_reached"  # 9 used of 5
    assert previous["features"][0]["period_end"] == current["features"][0]["period_start"]


def test_usage_for_the_period_containing_a_date(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _meter(small, ("api.calls", 2, timedelta(days=-40)))
    with closing(ledger.SQLiteStore(_ledger_file(small))) as store:
        anchor = store.get_subscription("t1").anchor  # type: ignore[union-attr]
    day = (anchor - timedelta(days=40)).date().isoformat()
    doc = json.loads(cli(capsys, "usage", "t1", "--db", small, "--period", day, "--json")[1])
    assert doc["period"] == day
    assert doc["features"][0]["used"] == 2


def test_render_table_aligns_columns() -> None:
    lines = _cli_ledger.render_table(("a", "num"), [("long name", "1"), ("x", "1,000")], right=(1,))
    assert lines == ["a            num", "long name      1", "x          1,000"]


# --- bad input ----------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "bad.toml").write_text("[[plans]\nkey = 1\n")
    (tmp_path / "invalid.toml").write_text(
        "[[plans]]\nkey = 'p'\n[[plans.features]]\nkey='f'\nkind='metered'\nlimit=-3\n"
    )
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "afile").write_text("not a directory")
    (tmp_path / "notdb.db").write_text("this is not a SQLite database, it is text" * 100)
    return tmp_path


BAD_INPUT = [
    # (argv, exit status, words the one line must contain); DB is the migrated database
    (["plans", "load", "{tmp}/missing.toml"], 1, "No such file"),
    (["plans", "load", "{tmp}/bad.toml"], 1, "malformed TOML"),
    (["plans", "load", "{tmp}/invalid.toml"], 1, "features[0] ('f').limit"),
    (["plans", "load", "{tmp}/binary.toml"], 1, "not UTF-8"),
    (["plans", "load", "{tmp}"], 1, "Is a directory"),
    (["subscribe", "acme", "gold"], 1, "unknown plan 'gold' (defined plans: business, starter)"),
    (["usage", "ghost"], 1, "unknown tenant 'ghost'"),
    (["entitlements", "ghost"], 1, "unknown tenant 'ghost'"),
    (["usage", "acme", "--period", "last-week"], 2, "--period"),
    (["usage", "acme", "--period", "2025-02-30"], 2, "--period"),
    (["usage", "acme", "--period", "0001-01-01"], 2, "1970..9998"),
    (["subscribe", "acme", "starter", "--trial-days", "0"], 2, "--trial-days"),
    (["subscribe", "acme", "starter", "--trial-days", "x"], 2, "--trial-days"),
    (["subscribe", " ", "starter"], 2, "tenant must be"),
    (["subscribe", "acme"], 2, "required: PLAN"),
    (["usage"], 2, "required: TENANT"),
    (["plans"], 2, "ACTION"),
    (["frobnicate"], 2, "invalid choice"),
    (["usage", "acme", "--bogus"], 2, "unrecognized arguments"),
]
BAD_DB = [
    (["migrate", "--db", "postgresql://u:hunter2@127.0.0.1:1/nodb?connect_timeout=2"], 1, ""),
    (["migrate", "--db", "mysql://h/db"], 2, "unsupported database URL scheme"),
    (["migrate", "--db", "{tmp}/afile/app.db"], 1, "not a directory"),
    (["migrate", "--db", "{tmp}/no/such/dir/app.db"], 1, "does not exist"),
    (["migrate", "--db", "{tmp}"], 1, "is a directory"),
    (["migrate", "--db", "{tmp}/notdb.db"], 1, "cannot use"),
    (["usage", "acme", "--db", "{tmp}/never-migrated.db"], 1, "no database at"),
    (["usage", "acme", "--db", "{tmp}"], 1, "is a directory, not a database file"),
    (["entitlements", "acme", "--db", "sqlite:///{tmp}"], 1, "is a directory"),
    (["migrate", "--db", ""], 2, "--db"),
    (["migrate"], 2, "--db URL is required (or set AUTHSOME_DB)"),
]


def _check_one_line(status: int, out: str, err: str, expected: int, words: str) -> None:
    assert status == expected, err
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    assert err.startswith("authsome: ")
    assert words in err
    assert "hunter2" not in err


@pytest.mark.parametrize(("argv", "expected", "words"), BAD_INPUT)
def test_bad_input_is_one_line_and_an_exit_status(
    db: Path,
    files: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: int,
    words: str,
) -> None:
    args = [a.format(tmp=files) for a in argv]
    status, out, err = cli(capsys, *args, "--db", db)
    _check_one_line(status, out, err, expected, words)


@pytest.mark.parametrize(("argv", "expected", "words"), BAD_DB)
def test_bad_databases_are_one_line_and_an_exit_status(
    files: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    expected: int,
    words: str,
) -> None:
    monkeypatch.delenv("AUTHSOME_DB", raising=False)
    monkeypatch.delenv("AUTHSOME_LEDGER_DB", raising=False)
    status, out, err = cli(capsys, *(a.format(tmp=files) for a in argv))
    _check_one_line(status, out, err, expected, words)


FAILING_MIGRATIONS = [
    # (--db, --ledger-db): one of them cannot be used, whichever comes first
    ("{tmp}/new.db", "{tmp}/no/such/dir/x.db"),
    ("{tmp}/new.db", "{tmp}/afile/x.db"),
    ("{tmp}/new.db", "{tmp}/notdb.db"),  # fails only once SQLite opens it
    ("{tmp}/notdb.db", "{tmp}/new.ledger.db"),
    ("{tmp}/new.db", "{tmp}"),
]


@pytest.mark.parametrize(("auth_db", "ledger_db"), FAILING_MIGRATIONS)
def test_a_failed_migrate_creates_nothing(
    files: Path, capsys: pytest.CaptureFixture[str], auth_db: str, ledger_db: str
) -> None:
    before = sorted(files.rglob("*"))
    notdb = (files / "notdb.db").read_bytes()
    args = ["--db", auth_db.format(tmp=files), "--ledger-db", ledger_db.format(tmp=files)]
    status, out, err = cli(capsys, "migrate", *args)
    _check_one_line(status, out, err, 1, "")
    assert sorted(files.rglob("*")) == before
    assert (files / "notdb.db").read_bytes() == notdb  # what was there stays untouched


def test_a_failed_migrate_keeps_an_existing_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.db"
    assert cli(capsys, "migrate", "--db", path, "--ledger-db", tmp_path / "a.db")[0] == 0
    status, _, err = cli(capsys, "migrate", "--db", path, "--ledger-db", tmp_path / "x/l.db")
    assert status == 1, err
    with SQLiteStore(path) as store:  # still there, still usable
        assert store.get_user("nobody") is None


def test_unexpected_errors_keep_their_traceback(
    small: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(_cli_ledger, "usage", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["usage", "t1", "--db", str(small)])


COMMANDS = [
    [],
    ["demo"],
    ["migrate"],
    ["plans"],
    ["plans", "example"],
    ["plans", "load"],
    ["subscribe"],
    ["usage"],
    ["entitlements"],
]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = cli(capsys, *command, "--help")
    assert (status, err) == (0, "")
    assert out.startswith(f"usage: authsome {' '.join(command)}".rstrip())
    if command not in ([], ["demo"], ["plans"], ["plans", "example"]):
        assert "--db URL" in out
        assert "example:" in out


def test_plans_load_help_documents_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    out = cli(capsys, "plans", "load", "--help")[1]
    for word in ("[[plans]]", "[[plans.features]]", "soft_limit", "aggregation", "period"):
        assert word in out


# --- through a real process -----------------------------------------------------------------


def test_the_whole_path_in_real_processes(tmp_path: Path) -> None:
    env = {"AUTHSOME_DB": str(tmp_path / "app.db")}
    for args in (["migrate"], ["plans", "load", EXAMPLES], ["subscribe", "acme", "starter"]):
        result = run(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    result = run("entitlements", "acme", "--json", env=env)
    assert result.returncode == 0, result.stderr
    sso = next(f for f in json.loads(result.stdout)["features"] if f["feature"] == Feature.SSO)
    assert (sso["allowed"], sso["reason"]) == (False, "disabled")
    result = run("usage", "acme", env=env)
    assert result.returncode == 0, result.stderr
    assert table(result.stdout)[UsageEvent.USERS_ACTIVE][:3] == ["metered", "0", "3"]


def test_bad_input_in_a_real_process(tmp_path: Path) -> None:
    result = run("plans", "load", tmp_path / "missing.toml", "--db", tmp_path / "app.db")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("authsome: ")
    assert "Traceback" not in result.stderr
    result = run("usage", "acme", "--period", "soon", "--db", tmp_path / "app.db")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


# --- property: any TOML document loads or is refused in one line -----------------------------


def _toml_string(text: str) -> str:
    escaped = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            escaped.append(f"\\u{ord(ch):04x}")
        else:
            escaped.append(ch)
    return '"' + "".join(escaped) + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    assert isinstance(value, list)
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


FIELD_NAMES = st.sampled_from(
    ["key", "name", "interval", "kind", "enabled", "limit", "soft_limit", "period", "aggregation"]
) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        ["boolean", "metered", "seat", "monthly", "yearly", "none", "sum", "unique", "p", "f"]
    )
)
VALUES = SCALARS | st.lists(SCALARS, max_size=3)
TABLE = st.dictionaries(FIELD_NAMES, VALUES, max_size=6)


def _document(
    plans: list[tuple[dict[str, object], list[dict[str, object]]]], extra: dict[str, object]
) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in extra.items()]
    for plan, features in plans:
        lines.append("[[plans]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in plan.items()]
        for feature in features:
            lines.append("[[plans.features]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in feature.items()]
    return "\n".join(lines) + "\n"


KEYS = st.sampled_from(["p", "f", "g", "h", " "]) | st.text(min_size=1, max_size=10)
COUNTS = (
    st.none() | st.integers(min_value=0, max_value=50) | st.sampled_from([-1, 2**63, 1.0, True])
)


ALLOWED = {
    "boolean": ["enabled"],
    "metered": ["limit", "soft_limit", "period", "aggregation"],
    "seat": ["limit", "soft_limit"],
    "other": ["limit"],
}
OPTIONS: dict[str, st.SearchStrategy[object]] = {
    "enabled": st.booleans(),
    "limit": COUNTS,
    "soft_limit": COUNTS,
    "period": st.sampled_from(["monthly", "yearly", "none", "weekly"]),
    "aggregation": st.sampled_from(["sum", "unique", "max"]),
}


@st.composite
def _plausible_feature(draw: st.DrawFn) -> dict[str, object]:
    """A feature that is valid more often than not, so loading is exercised too."""
    kind = draw(st.sampled_from(["boolean", "metered", "seat", "boolean", "metered", "other"]))
    doc: dict[str, object] = {"key": draw(KEYS), "kind": kind}
    names = draw(st.lists(st.sampled_from(ALLOWED[kind]), unique=True, max_size=3))
    if draw(st.integers(0, 5)) == 0:  # now and then a field that does not belong
        names.append(draw(st.sampled_from(sorted(OPTIONS))))
    for name in names:
        value = draw(OPTIONS[name] | SCALARS if draw(st.integers(0, 5)) == 0 else OPTIONS[name])
        if value is not None:
            doc[name] = value
    return doc


PLAUSIBLE_PLAN = st.fixed_dictionaries(
    {"key": KEYS},
    optional={"name": st.text(max_size=10), "interval": st.sampled_from(["monthly", "yearly"])},
)
DOCUMENTS = st.builds(
    _document,
    st.lists(st.tuples(TABLE, st.lists(TABLE, max_size=3)), max_size=3),
    st.dictionaries(st.sampled_from(["plans", "other"]), VALUES, max_size=1),
) | st.builds(
    _document,
    st.lists(st.tuples(PLAUSIBLE_PLAN, st.lists(_plausible_feature(), max_size=4)), max_size=3),
    st.just({}),
)


@settings(max_examples=300, deadline=None)
@given(text=DOCUMENTS | st.text(max_size=200))
def test_any_document_parses_or_is_refused_with_a_located_message(text: str) -> None:
    error: Exception | None = None
    try:
        plans = parse_plans(text)
    except (ValidationError, tomllib.TOMLDecodeError) as exc:  # nothing else may escape
        error = exc
    if isinstance(error, ValidationError):
        assert "\n" not in str(error)
        assert ": " in str(error)  # location: problem
    elif error is None:
        assert plans
        assert all(isinstance(p, ledger.Plan) for p in plans)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=DOCUMENTS | st.text(max_size=100))
def test_plans_load_of_any_document_exits_cleanly(
    text: str, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = db.parent / "arbitrary.toml"
    path.write_text(text, encoding="utf-8")
    status, out, err = cli(capsys, "plans", "load", path, "--db", db)
    assert "Traceback" not in err
    if status == 0:
        assert err == ""
        assert out.startswith("loaded ")
    else:
        assert status == 1
        assert out == ""
        assert err.startswith("authsome: ")
        assert err.count("\n") == 1


def test_the_readme_command_line_section_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (EXAMPLES.parent.parent / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in section.strip().splitlines()]
    assert [c[1] for c in commands] == [
        "demo",
        "migrate",
        "plans",
        "plans",
        "subscribe",
        "entitlements",
        "usage",
    ]
    replace = {"app.db": str(tmp_path / "app.db"), "plans.toml": str(tmp_path / "plans.toml")}
    for command in commands:
        assert command[0] == "authsome"
        args = [replace.get(arg, arg) for arg in command[1:]]
        redirect = args.index(">") if ">" in args else None
        status, out, err = cli(capsys, *args[:redirect])
        assert (status, err) == (0, ""), command
        if redirect is not None:
            Path(args[redirect + 1]).write_text(out)


# --- PostgreSQL, with stand-ins for the stores (their own tests need a server) ------------


class _FakePgStore:
    opened: ClassVar[list[str]] = []

    def __init__(self, dsn: str) -> None:
        self.opened.append(dsn)
        self.schema_version = 3

    def close(self) -> None:
        pass


def _install(monkeypatch: pytest.MonkeyPatch, cls: object) -> None:
    monkeypatch.setattr(authsome.stores, "PostgresStore", cls, raising=False)
    monkeypatch.setattr(authsome.ledger, "PostgresStore", cls, raising=False)


def test_migrate_opens_both_postgres_stores_on_one_dsn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _install(monkeypatch, _FakePgStore)
    _FakePgStore.opened = []
    dsn = "postgresql://app:hunter2@db.example/app"
    status, out, err = cli(capsys, "migrate", "--db", dsn)
    assert (status, err) == (0, "")
    assert _FakePgStore.opened == [dsn, dsn]
    assert "hunter2" not in out
    assert out.count("postgresql://app:***@db.example/app") == 2


def test_driver_errors_become_one_line_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    psycopg = pytest.importorskip("psycopg")

    def refuse(dsn: str) -> None:
        raise psycopg.OperationalError("connection refused\nIs the server running?")

    _install(monkeypatch, refuse)
    status, out, err = cli(capsys, "migrate", "--db", "postgresql://u:hunter2@127.0.0.1:1/x")
    _check_one_line(status, out, err, 1, "cannot connect to postgresql://u:***@127.0.0.1:1/x")
    assert "connection refused" in err


def test_a_missing_driver_is_one_line_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_driver(dsn: str) -> None:
        raise ImportError("No module named 'psycopg'")

    _install(monkeypatch, no_driver)
    status, out, err = cli(capsys, "migrate", "--db", "postgresql://u@h/x")
    _check_one_line(status, out, err, 1, "authsome-engine[postgres]")
