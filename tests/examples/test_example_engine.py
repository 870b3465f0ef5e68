"""The examples' engine: the embedded ledger when the environment configures one,
``NoopLedger`` (everything allowed) otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from examples._engine import build_auth, close_auth, configured_ledger

from authsome import Authsome, FeatureNotEntitled, PasswordHashing, ledger
from tests.examples._servers import REPO_ROOT, authsome_cli

PLANS = str(REPO_ROOT / "examples" / "plans.toml")
ORGS = "authsome.feature.orgs"
FAST = PasswordHashing.fast_insecure_for_tests()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTHSOME_DB", "AUTHSOME_LEDGER_DB", "AUTHSOME_PLANS"):
        monkeypatch.delenv(name, raising=False)


def refused_feature(auth: Authsome, tenant: str) -> str | None:
    """The feature refused when a new user of ``tenant`` creates an organization."""
    with auth:
        user = auth.users.register(
            f"ada@{tenant}.example", "correct horse battery staple", tenant=tenant
        )
        try:
            auth.orgs.create(user.id, "Rockets")
        except FeatureNotEntitled as exc:
            return exc.feature
        return None


def test_without_a_ledger_every_feature_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHSOME_DB", str(tmp_path / "auth.db"))  # no ledger file beside it

    assert configured_ledger() is None
    assert refused_feature(build_auth(password_hashing=FAST), "globex") is None


def test_ledger_file_and_plans_file_gate_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger_db = tmp_path / "ledger.db"
    monkeypatch.setenv("AUTHSOME_LEDGER_DB", str(ledger_db))
    monkeypatch.setenv("AUTHSOME_PLANS", PLANS)
    auth = build_auth(password_hashing=FAST)  # loads the plans
    store = ledger.SQLiteStore(ledger_db)
    with ledger.Engine(store=store) as engine:
        engine.subscribe("acme", plan="starter")
    store.close()

    assert refused_feature(auth, "acme") is None
    assert refused_feature(build_auth(password_hashing=FAST), "globex") == ORGS  # no plan


def test_ledger_beside_the_auth_database_is_found_as_the_cli_leaves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth_db = str(tmp_path / "app.db")
    authsome_cli("migrate", "--db", auth_db)  # makes app.ledger.db
    authsome_cli("plans", "load", PLANS, "--db", auth_db)
    authsome_cli("subscribe", "acme", "starter", "--db", auth_db)
    monkeypatch.setenv("AUTHSOME_DB", auth_db)

    engine = configured_ledger()
    assert engine is not None
    with engine:
        assert engine.subscription("acme") is not None  # the CLI's file, not a new one
    engine.store.close()
    assert refused_feature(build_auth(password_hashing=FAST), "acme") is None
    assert refused_feature(build_auth(password_hashing=FAST), "globex") == ORGS


def stored_usage(ledger_db: Path, tenant: str, feature: str) -> int:
    store = ledger.SQLiteStore(ledger_db)
    try:
        with ledger.Engine(store=store) as engine:
            return engine.usage(tenant, feature)
    finally:
        store.close()


def test_close_auth_drains_the_ledger_engine_it_opened_into_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger_db = tmp_path / "ledger.db"
    monkeypatch.setenv("AUTHSOME_LEDGER_DB", str(ledger_db))
    monkeypatch.setenv("AUTHSOME_PLANS", PLANS)
    auth = build_auth(password_hashing=FAST)
    auth.users.register("ada@acme.example", "correct horse battery staple", tenant="acme")

    close_auth(auth)  # before the engine's next flush (every second)

    assert stored_usage(ledger_db, "acme", "authsome.users.created") == 1


def test_close_auth_leaves_a_ledger_engine_the_caller_passed_in_open(tmp_path: Path) -> None:
    with ledger.Engine() as engine:
        auth = build_auth(engine, password_hashing=FAST)
        auth.users.register("ada@acme.example", "correct horse battery staple", tenant="acme")

        close_auth(auth)

        engine.meter("acme", "api")  # still open: a closed engine would refuse
