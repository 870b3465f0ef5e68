"""``python -m authsome demo``: the whole library on embedded SQLite, in a temp directory.

Two tenants on two plans: Starter, a free tier (no SSO, no custom domains, 3 monthly
active users, 3 org seats) and Business (everything), the plans of ``authsome plans
example``. The engine enforces the seat and active-user limits
(``enforce_limits``). Users register and sign in, each tenant tries the plan-gated
and the limited operations, the first tenant shows a password reset and a
magic-link sign-in by e-mail (kept by an ``Outbox``, nothing is sent), and the usage
report of each tenant ends the run.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyotp

from authsome import ledger
from authsome._plans_example import example_plans
from authsome._plans_toml import parse_plans
from authsome.bridge.ledgeradapter import LedgerAdapter
from authsome.crypto import PasswordHashing
from authsome.engine import Authsome
from authsome.errors import ExtraNotInstalled, FeatureNotEntitled, InvalidToken
from authsome.features import UsageEvent
from authsome.mail import MailSettings
from authsome.sso import OIDCConnection
from authsome.stores import SQLiteStore
from authsome.testing import Outbox

__all__ = ["run_demo"]

PASSWORD = "correct horse battery staple"  # noqa: S105 - the demo accounts' password
TENANTS = {"acme": "starter", "globex": "business"}
NEW_PASSWORD = "a new and longer passphrase"  # noqa: S105 - the demo's reset
LINK_BASE = "https://app.example/account"
# One cost step below the default so the demo stays quick; same algorithm and memory.
DEMO_HASHING = PasswordHashing(time_cost=1)
HEADER = (
    "authsome demo: plan gating and usage metering for two tenants on two plans "
    "(embedded SQLite in a temporary directory; nothing is kept)"
)


class _NotRun(Exception):
    """An operation the demo could not run here; its message says why."""


def _plans() -> list[ledger.Plan]:
    return parse_plans(example_plans())


def _sign_up_and_in(auth: Authsome, tenant: str, out: list[str]) -> list[str]:
    user_ids = []
    for name in ("ada", "grace", "alan"):
        user = auth.users.register(f"{name}@{tenant}.example", PASSWORD, tenant=tenant)
        user_ids.append(user.id)
        for _ in range(2):  # two sign-ins each: still one monthly active user
            email = f"{name.upper()}@{tenant}.example"
            auth.sign_in(email, PASSWORD, tenant=tenant, ip="203.0.113.7")
    out.append("  registered 3 users, 6 sign-ins (3 distinct active users)")
    return user_ids


def _journeys(auth: Authsome, outbox: Outbox, tenant: str, out: list[str]) -> None:
    """One password reset and one magic-link sign-in, through the outbox."""
    ip = "203.0.113.7"
    out.append("  e-mail journeys (an Outbox keeps the messages; nothing is sent):")
    alan, grace = f"alan@{tenant}.example", f"grace@{tenant}.example"
    auth.users.request_password_reset(alan, tenant=tenant, ip=ip)
    auth.flush_mail()
    out.append(f"    password reset  {_shown(outbox, alan)}")
    auth.users.reset_password(outbox.token(alan), NEW_PASSWORD, tenant=tenant)
    done = auth.sign_in(alan, NEW_PASSWORD, tenant=tenant, ip=ip)
    state = "signed in with it" if done.tokens is not None else "second factor asked"
    out.append(f"                    new password set, old sessions ended; {state}")
    auth.passwordless.begin(grace, tenant=tenant, ip=ip)
    auth.flush_mail()
    out.append(f"    magic link      {_shown(outbox, grace)}")
    signed_in = auth.passwordless.complete(outbox.token(grace), tenant=tenant)
    try:
        auth.passwordless.complete(outbox.token(grace), tenant=tenant)
        again = "accepted (a bug)"
    except InvalidToken:
        again = "refused"
    state = "signed in" if signed_in.tokens is not None else "second factor asked"
    out.append(f"                    followed: {state}; followed again: {again}")


def _shown(outbox: Outbox, to: str) -> str:
    """The newest message to ``to`` in one line: subject, recipient, link path with
    its token cut short."""
    message = outbox.last(to)
    token = outbox.token(to)
    link = next(line for line in message.text.splitlines() if token in line)
    path = link.removeprefix(LINK_BASE).replace(token, token[:4] + "...")
    return f'"{message.subject}" to {to}, link ...{path}'


def _operations(
    auth: Authsome, tenant: str, user_ids: list[str]
) -> list[tuple[str, Callable[[], str]]]:
    """Every plan-gated operation, as (label, call returning what it did)."""
    owner, *members = user_ids

    def create_org() -> str:
        org = auth.orgs.create(owner, "Engineering")
        for member in members:
            auth.orgs.add_member(org.id, member)
        key = auth.api_keys.create(org.id, "ci")
        for _ in range(5):
            auth.api_keys.validate(key.secret)
        return "org with 3 members; its API key validated 5 times"

    def enrol_mfa() -> str:
        setup = auth.mfa.begin_totp(owner)
        auth.mfa.confirm_totp(owner, pyotp.TOTP(setup.secret).now())
        return "TOTP confirmed for one user"

    def add_domain() -> str:
        challenge = auth.domains.add(f"login.{tenant}.example", tenant=tenant)
        return f"publish TXT {challenge.record_name}"

    def configure_sso() -> str:
        org = auth.orgs.orgs_of(owner)[0]
        auth.sso.configure(
            org.id,
            OIDCConnection(
                issuer=f"https://idp.{tenant}.example",
                client_id="authsome",
                client_secret="demo-client-secret",  # noqa: S106 - a demo value
                domains=(f"{tenant}.example",),
            ),
        )
        return "OIDC connection for the org"

    def begin_passkey() -> str:
        origin = f"https://{tenant}.example"
        try:
            auth.passkeys.begin_registration(
                owner, rp_id=f"{tenant}.example", rp_name=tenant, origin=origin
            )
        except ExtraNotInstalled as exc:  # raised before the plan is even asked
            raise _NotRun(str(exc)) from None
        return "registration options issued (a browser would finish it)"

    def fourth_user_signs_in() -> str:
        email = f"linus@{tenant}.example"
        auth.users.register(email, PASSWORD, tenant=tenant)
        auth.sign_in(email, PASSWORD, tenant=tenant, ip="203.0.113.7")
        return "a 4th distinct active user this month"

    def active_user_again() -> str:
        auth.sign_in(f"ada@{tenant}.example", PASSWORD, tenant=tenant, ip="203.0.113.7")
        return "already counted this month"

    def fourth_member_joins() -> str:
        org = auth.orgs.orgs_of(owner)[0]
        linus = auth.users.find_by_email(f"linus@{tenant}.example", tenant=tenant)
        if linus is None:  # registered by the step before
            raise _NotRun("the 4th user was not registered")
        auth.orgs.add_member(org.id, linus.id)
        return "a 4th seat taken"

    return [
        ("create an organization", create_org),
        ("a 4th user signs in", fourth_user_signs_in),
        ("an active user signs in", active_user_again),
        ("a 4th member joins", fourth_member_joins),
        ("enrol MFA", enrol_mfa),
        ("add a custom domain", add_domain),
        ("configure SSO", configure_sso),
        ("register a passkey", begin_passkey),
    ]


def _try_gated(
    auth: Authsome,
    eng: ledger.Engine,
    tenant: str,
    user_ids: list[str],
    out: list[str],
) -> None:
    for label, call in _operations(auth, tenant, user_ids):
        try:
            done = call()
        except FeatureNotEntitled as exc:
            reason = eng.entitled(tenant, exc.feature).reason
            out.append(f"  REFUSED  {label:<24} {exc.feature} ({reason})")
        except _NotRun as exc:
            out.append(f"  NOT RUN  {label:<24} {exc}")
        else:
            out.append(f"  allowed  {label:<24} {done}")


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
    out.append(HEADER)
    out.append("")
    with tempfile.TemporaryDirectory(prefix="authsome-demo-") as tmp:
        ledger_store = ledger.SQLiteStore(Path(tmp) / "billing.db")
        try:
            with ledger.Engine(store=ledger_store) as eng:
                _run(eng, Path(tmp), out)
        finally:
            ledger_store.close()  # the engine leaves the store it was given open


def _run(eng: ledger.Engine, tmp: Path, out: list[str]) -> None:
    for plan in _plans():
        eng.define_plan(plan)
    for tenant, plan_key in TENANTS.items():
        eng.subscribe(tenant, plan_key)
    outbox = Outbox()
    with Authsome(
        store=SQLiteStore(tmp / "auth.db"),
        ledger=LedgerAdapter(eng),
        password_hashing=DEMO_HASHING,
        secret_key=secrets.token_bytes(32),  # seals TOTP and SSO secrets at rest
        mailer=outbox,
        mail=MailSettings(link_base_url=LINK_BASE),
        enforce_limits=[UsageEvent.ORGS_MEMBERS, UsageEvent.USERS_ACTIVE],
    ) as auth:
        for tenant, plan_key in TENANTS.items():
            out.append(f"{tenant} (plan {plan_key})")
            user_ids = _sign_up_and_in(auth, tenant, out)
            _try_gated(auth, eng, tenant, user_ids, out)
            if tenant == next(iter(TENANTS)):
                _journeys(auth, outbox, tenant, out)
            out.append("")
    eng.flush()
    for tenant in TENANTS:
        out.append(f"usage report: {tenant}")
        _report(eng, tenant, out)
        out.append("")
