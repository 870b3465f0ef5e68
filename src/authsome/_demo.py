"""``python -m authsome demo``: the whole library on embedded SQLite, in a temp directory.

Two tenants on two plans: Starter (no SSO, no custom domains, 1,000 monthly active
users) and Business (everything). Users register and sign in, each tenant tries the
plan-gated operations, and the usage report of each tenant ends the run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from authsome import ledger
from authsome.bridge.ledgeradapter import LedgerAdapter
from authsome.crypto import PasswordHashing
from authsome.engine import Authsome
from authsome.errors import FeatureNotEntitled
from authsome.features import Feature, UsageEvent
from authsome.stores import SQLiteStore

__all__ = ["run_demo"]

PASSWORD = "correct horse battery staple"  # noqa: S105 - the demo accounts' password
TENANTS = {"acme": "starter", "globex": "business"}
# One cost step below the default so the demo stays quick; same algorithm and memory.
DEMO_HASHING = PasswordHashing(time_cost=1)


def _usage_features(mau_limit: int | None) -> list[ledger.Feature]:
    return [
        ledger.Feature.metered(UsageEvent.USERS_ACTIVE, limit=mau_limit, aggregation="unique"),
        ledger.Feature.metered(UsageEvent.USERS_CREATED),
        ledger.Feature.metered(UsageEvent.SESSIONS_CREATED),
        ledger.Feature.metered(UsageEvent.MFA_ENROLLMENTS),
        ledger.Feature.metered(UsageEvent.APIKEYS_VALIDATED),
        ledger.Feature.seat(UsageEvent.ORGS_MEMBERS),
    ]


def _plans() -> list[ledger.Plan]:
    starter_off = {Feature.SSO, Feature.CUSTOM_DOMAINS}
    starter = [ledger.Feature.boolean(f, enabled=f not in starter_off) for f in Feature]
    business = [ledger.Feature.boolean(f, enabled=True) for f in Feature]
    return [
        ledger.Plan("starter", [*starter, *_usage_features(1_000)], name="Starter"),
        ledger.Plan("business", [*business, *_usage_features(None)], name="Business"),
    ]


def _gated_operations(auth: Authsome, user_id: str) -> list[tuple[str, Callable[[], object]]]:
    """Every plan-gated operation this build offers, as (label, call)."""
    return [("create an organization", lambda: auth.orgs.create(user_id, "Engineering"))]


def _sign_up_and_in(auth: Authsome, tenant: str, out: list[str]) -> str:
    user_ids = []
    for name in ("ada", "grace", "alan"):
        user = auth.users.register(f"{name}@{tenant}.example", PASSWORD, tenant=tenant)
        user_ids.append(user.id)
        for _ in range(2):  # two sign-ins each: still one monthly active user
            auth.sign_in(f"{name.upper()}@{tenant}.example", PASSWORD, tenant=tenant)
    out.append("  registered 3 users, 6 sign-ins (3 distinct active users)")
    return user_ids[0]


def _try_gated(
    auth: Authsome, eng: ledger.Engine, tenant: str, user_id: str, out: list[str]
) -> None:
    for label, call in _gated_operations(auth, user_id):
        try:
            call()
        except FeatureNotEntitled as exc:
            reason = eng.entitled(tenant, exc.feature).reason
            out.append(f"  REFUSED  {label:<26} {exc.feature} ({reason})")
        else:
            out.append(f"  allowed  {label}")
    for feature in (Feature.SSO, Feature.CUSTOM_DOMAINS):
        decision = eng.entitled(tenant, feature)
        verdict = "allowed" if decision.allowed else "REFUSED"
        out.append(f"  {verdict:<8} {feature} by plan ({decision.reason})")


def _report(eng: ledger.Engine, tenant: str, out: list[str]) -> None:
    out.append(f"  {'feature':<32} {'used':>6} {'limit':>9}  {'period':<23} status")
    for row in eng.report(tenant):
        if row.kind is ledger.FeatureKind.BOOLEAN:
            continue
        limit = "unlimited" if row.limit is None else f"{row.limit:,}"
        period = "" if row.period_start is None else f"{row.period_start:%Y-%m-%d} .. "
        period += "" if row.period_end is None else f"{row.period_end:%Y-%m-%d}"
        out.append(f"  {row.feature:<32} {row.used:>6} {limit:>9}  {period:<23} {row.reason}")


def run_demo(out: list[str]) -> None:
    """Run the demo, appending its printable lines to ``out``."""
    with (
        tempfile.TemporaryDirectory(prefix="authsome-demo-") as tmp,
        ledger.Engine(store=ledger.SQLiteStore(Path(tmp) / "billing.db")) as eng,
    ):
        for plan in _plans():
            eng.define_plan(plan)
        for tenant, plan_key in TENANTS.items():
            eng.subscribe(tenant, plan_key)
        store = SQLiteStore(Path(tmp) / "auth.db")
        with Authsome(
            store=store, ledger=LedgerAdapter(eng), password_hashing=DEMO_HASHING
        ) as auth:
            for tenant, plan_key in TENANTS.items():
                out.append(f"{tenant} (plan {plan_key})")
                user_id = _sign_up_and_in(auth, tenant, out)
                _try_gated(auth, eng, tenant, user_id, out)
                out.append("")
        eng.flush()
        for tenant in TENANTS:
            out.append(f"usage report: {tenant}")
            _report(eng, tenant, out)
            out.append("")
