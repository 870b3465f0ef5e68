"""The public entry points a newcomer reaches for first: imports, names, version."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import authsome
import authsome.bridge
import authsome.stores
from authsome import (
    Authsome,
    Feature,
    FeatureNotEntitled,
    GatedFeature,
    PasswordHashing,
    UsageEvent,
    ledger,
)
from authsome.bridge import Ledger, LedgerAdapter, LedgerContext, LedgerEngine
from authsome.bridge import ledgeradapter as adapter_module

PASSWORD = "correct horse battery staple"


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(Path(authsome.__file__).parent.parent)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# --- the bridge's front door ---------------------------------------------------------


def test_ledger_adapter_is_importable_from_the_bridge() -> None:
    assert LedgerAdapter is adapter_module.LedgerAdapter
    assert LedgerEngine is adapter_module.LedgerEngine
    assert {"LedgerAdapter", "LedgerEngine"} <= set(authsome.bridge.__all__)
    assert "LedgerAdapter" in dir(authsome.bridge)
    with pytest.raises(AttributeError, match="no attribute 'LedgerAdaptor'"):
        _ = authsome.bridge.LedgerAdaptor  # type: ignore[attr-defined]


def test_importing_authsome_does_not_load_the_ledger_engine_until_asked() -> None:
    loaded = _python(
        "import sys, authsome, authsome.bridge\n"
        "print('authsome.ledger' in sys.modules)\n"
        "from authsome.bridge import *\n"
        "print('authsome.ledger' in sys.modules, LedgerAdapter.__name__)\n"
    )
    assert loaded.splitlines() == ["False", "True LedgerAdapter"]


# --- Authsome(ledger=<a ledger engine>) ------------------------------------------------


def _starter(eng: ledger.Engine) -> None:
    eng.define_plan(
        ledger.Plan(
            "starter",
            [
                ledger.Feature.boolean(GatedFeature.ORGS, enabled=False),
                ledger.Feature.metered(UsageEvent.USERS_ACTIVE, limit=10, aggregation="unique"),
            ],
        )
    )
    eng.subscribe("acme", "starter")


def test_an_engine_given_as_the_ledger_is_wrapped_in_an_adapter() -> None:
    with ledger.Engine() as eng:
        _starter(eng)
        with Authsome(
            ledger=eng, password_hashing=PasswordHashing.fast_insecure_for_tests()
        ) as auth:
            assert isinstance(auth.ledger, LedgerAdapter)
            assert auth.ledger.engine is eng
            ada = auth.users.register("ada@example.com", PASSWORD, tenant="acme")
            auth.sign_in("ada@example.com", PASSWORD, tenant="acme", ip="203.0.113.7")
            assert eng.entitled("acme", UsageEvent.USERS_ACTIVE).used == 1
            with pytest.raises(FeatureNotEntitled) as denied:
                auth.orgs.create(ada.id, "Acme Inc")
            assert denied.value.feature == GatedFeature.ORGS
        assert eng.entitled("acme", UsageEvent.USERS_ACTIVE).used == 1  # still open: ours


def test_any_object_with_meter_and_entitled_is_wrapped() -> None:
    class Decision:
        allowed = False

    class TinyEngine:
        def __init__(self) -> None:
            self.metered: list[tuple[str, str]] = []

        def meter(self, tenant: str, key: str, quantity: int = 1, **ids: object) -> None:
            self.metered.append((tenant, key))

        def entitled(self, tenant: str, key: str) -> Decision:
            return Decision()

    engine = TinyEngine()
    auth = Authsome(ledger=engine, password_hashing=PasswordHashing.fast_insecure_for_tests())
    user = auth.users.register("ada@example.com", PASSWORD, tenant="acme")
    assert engine.metered == [("acme", UsageEvent.USERS_CREATED)]
    with pytest.raises(FeatureNotEntitled):
        auth.orgs.create(user.id, "Acme Inc")


def test_a_bridge_ledger_is_used_as_it_is_even_if_it_meters_too() -> None:
    class Both:
        def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
            pass

        def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
            return True

        def meter(self, tenant: str, key: str, quantity: int = 1) -> None:
            raise AssertionError("the bridge methods come first")

        def entitled(self, tenant: str, key: str) -> None:
            raise AssertionError("the bridge methods come first")

    bridge = Both()
    assert isinstance(bridge, Ledger)
    assert Authsome(ledger=bridge).ledger is bridge


@pytest.mark.parametrize("wrong", [object(), "billing", ledger.MemoryStore()])
def test_neither_a_ledger_nor_an_engine_is_refused(wrong: object) -> None:
    with pytest.raises(TypeError, match=r"record_usage\(\).*meter\(\)"):
        Authsome(ledger=wrong)  # type: ignore[arg-type]


# --- names that do not collide ---------------------------------------------------------


def test_gated_feature_is_the_name_and_feature_its_alias() -> None:
    assert Feature is GatedFeature
    assert GatedFeature.SSO == "authsome.feature.sso"
    assert "GatedFeature" in authsome.__all__
    assert GatedFeature is not ledger.Feature


def test_every_colliding_name_has_a_distinct_preferred_name() -> None:
    auth_names = set(authsome.__all__) | set(authsome.stores.__all__)
    collisions = auth_names & set(ledger.__all__)
    preferred = {
        "Feature": (authsome.GatedFeature, ledger.Feature),
        "MemoryStore": (authsome.stores.MemoryStore, ledger.MemoryLedgerStore),
        "SQLiteStore": (authsome.stores.SQLiteStore, ledger.SQLiteLedgerStore),
        "PostgresStore": (authsome.stores.PostgresStore, ledger.PostgresLedgerStore),
    }
    assert collisions == set(preferred)
    for name, (ours, theirs) in preferred.items():
        assert ours is not theirs, name
    assert ledger.SQLiteLedgerStore is ledger.SQLiteStore
    assert ledger.MemoryLedgerStore is ledger.MemoryStore
    assert ledger.PostgresLedgerStore is ledger.PostgresStore
    assert {"MemoryLedgerStore", "SQLiteLedgerStore", "PostgresLedgerStore"} <= set(ledger.__all__)


def test_star_imports_of_both_keep_the_preferred_names_apart() -> None:
    names = _python(
        "from authsome import *\n"
        "from authsome.stores import *\n"
        "from authsome.ledger import *\n"
        "import authsome, authsome.stores as S, authsome.ledger as L\n"
        "print(GatedFeature is authsome.GatedFeature, UsageEvent is authsome.UsageEvent,\n"
        "      SQLiteLedgerStore is L.SQLiteStore, SQLiteLedgerStore is not S.SQLiteStore)\n"
    )
    assert names == "True True True True"


# --- the version -------------------------------------------------------------------------


def test_version_comes_from_the_installed_distribution() -> None:
    assert authsome.__version__ == importlib.metadata.version("authsome-engine")
    assert "__version__" in authsome.__all__


def test_version_has_a_fallback_without_distribution_metadata() -> None:
    version = _python(
        "import importlib.metadata as m\n"
        "def missing(name):\n"
        "    raise m.PackageNotFoundError(name)\n"
        "m.version = missing\n"
        "import authsome\n"
        "print(authsome.__version__)\n"
    )
    assert version == "0+unknown"


def test_the_command_line_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    from authsome.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"authsome {authsome.__version__}\n"


# --- one rule for ``tenant`` -----------------------------------------------------------

SERVICES = ("users", "sessions", "mfa", "api_keys", "orgs", "sso", "passkeys", "domains")
# These bind a credential to the tenant a request serves; without one the credential's
# own tenant stands, so their default is "not checked" rather than "default".
BINDING = {
    "sessions.validate",
    "sessions.refresh",
    "sessions.revoke",
    "api_keys.validate",
    "mfa.verify",
    "passkeys.finish_authentication",
}


def _methods_taking_a_tenant() -> dict[str, inspect.Parameter]:
    auth = Authsome(password_hashing=PasswordHashing.fast_insecure_for_tests())
    found = {"sign_in": inspect.signature(auth.sign_in).parameters["tenant"]}
    for service_name in SERVICES:
        service = getattr(auth, service_name)
        for name, method in inspect.getmembers(service, inspect.ismethod):
            parameters = inspect.signature(method).parameters
            if not name.startswith("_") and "tenant" in parameters:
                found[f"{service_name}.{name}"] = parameters["tenant"]
    return found


def test_tenant_is_a_keyword_defaulting_to_default_everywhere() -> None:
    found = _methods_taking_a_tenant()
    assert {"sign_in", "users.register", "domains.add", "domains.list"} <= set(found)
    assert set(found) >= BINDING
    for name, parameter in found.items():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert parameter.default == (None if name in BINDING else "default"), name


# --- private plumbing --------------------------------------------------------------------

# Modules the documentation tells users to import, whatever they hold: the error tree,
# and the key enums (the design's layout names ``authsome.features`` as their home).
DOCUMENTED_MODULES = {"errors", "features"}


@pytest.mark.parametrize("name", ["signin", "billing"])
def test_plumbing_modules_are_private(name: str) -> None:
    assert importlib.util.find_spec(f"authsome.{name}") is None
    assert importlib.util.find_spec(f"authsome._{name}") is not None


def test_every_public_module_offers_more_than_the_front_door() -> None:
    # A module whose every public name is already in ``authsome`` is plumbing: it is
    # private, so that there is one place to import each name from.
    for info in pkgutil.iter_modules(authsome.__path__):
        if info.name.startswith("_") or info.ispkg or info.name in DOCUMENTED_MODULES:
            continue
        module = importlib.import_module(f"authsome.{info.name}")
        own = [
            name
            for name in module.__all__
            if getattr(authsome, name, None) is not getattr(module, name)
        ]
        assert own, f"authsome.{info.name} holds only names of the front door"


def test_every_front_door_name_is_importable() -> None:
    for name in authsome.__all__:
        assert getattr(authsome, name) is not None, name
