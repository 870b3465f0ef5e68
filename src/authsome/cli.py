"""``python -m authsome`` and the ``authsome`` console script.

Argument parsing and dispatch only: the commands live in ``_cli_db`` (databases),
``_plans_toml`` (plans files) and ``_cli_ledger`` (plans, subscriptions, reports).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import date
from typing import NoReturn

from authsome import __version__
from authsome import _cli_ledger as cmd
from authsome._cli_db import (
    Location,
    ledger_location,
    migrate,
    open_auth_store,
    open_ledger_store,
    parse_db,
)
from authsome._demo import run_demo
from authsome._plans_example import example_plans
from authsome._plans_toml import load_plans_file
from authsome.crypto import Resealed
from authsome.engine import Authsome
from authsome.errors import AuthsomeError, DecryptionError, ValidationError
from authsome.ledger import Engine, LedgerError
from authsome.ledger.plans import check_key

__all__ = ["main"]

DB_ENV = "AUTHSOME_DB"
LEDGER_DB_ENV = "AUTHSOME_LEDGER_DB"
SECRET_KEY_ENV = "AUTHSOME_SECRET_KEY"  # noqa: S105 - a variable name, not a key
PREVIOUS_KEYS_ENV = "AUTHSOME_PREVIOUS_SECRET_KEYS"
_KEY_BYTES = 32
# Failures the user can act on: reported in one line. Anything else is a bug and
# keeps its traceback.
_REPORTED = (AuthsomeError, LedgerError, OSError, tomllib.TOMLDecodeError)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

Handler = Callable[[argparse.Namespace], list[str]]

_DESCRIPTION = """\
Run the demo, set up a database, load plans, subscribe tenants and read their
usage and entitlements.

Every command but demo works on the database given by --db URL (or the
AUTHSOME_DB environment variable): a SQLite path, sqlite:///path, or a
postgresql:// DSN. Bad input ends with one line on stderr and exit status 2
(bad usage) or 1 (anything else).
"""

_DB_HELP = f"""\
databases:
  --db takes a SQLite file (app.db), a SQLite URL (sqlite:///app.db,
  sqlite:////abs/app.db) or a PostgreSQL DSN (postgresql://user@host/db), and
  defaults to ${DB_ENV}. With SQLite the ledger (plans, subscriptions, usage)
  lives beside the auth database: app.db -> app.ledger.db. With PostgreSQL both
  share the database. --ledger-db (or ${LEDGER_DB_ENV}) puts the ledger elsewhere.
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``authsome: <problem> (see ...)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"authsome: {_one_line(message)} (see: {self.prog} --help)\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _key(name: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        try:
            return check_key(value, name)
        except LedgerError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number of days, got {value!r}")
    return int(value)


def _period(value: str) -> cmd.PeriodChoice:
    if value in ("current", "previous"):
        return value  # type: ignore[return-value]  # narrowed by the test above
    bad = argparse.ArgumentTypeError(
        f"must be 'current', 'previous' or a date YYYY-MM-DD, got {value!r}"
    )
    if not _DATE.fullmatch(value):
        raise bad
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise bad from None
    if not 1970 <= day.year <= 9998:  # periods around it must stay representable
        raise argparse.ArgumentTypeError(f"the date must be in 1970..9998, got {value}")
    return day


# --- handlers ------------------------------------------------------------------------


def _locations(args: argparse.Namespace) -> tuple[Location, Location]:
    parser: _Parser = args.parser
    if not args.db:
        parser.error(f"--db URL is required (or set {DB_ENV})")
    try:
        auth = parse_db(args.db)
        ledger_given = parse_db(args.ledger_db) if args.ledger_db else None
    except ValidationError as exc:
        parser.error(str(exc))
    # A --db the ledger's default place cannot be derived from (a directory, say)
    # is a database problem, reported like the others, not a usage error.
    return auth, ledger_given or ledger_location(auth)


@contextmanager
def _engine(args: argparse.Namespace) -> Iterator[Engine]:
    _, where = _locations(args)
    with ExitStack() as stack:
        store = open_ledger_store(where)
        close = getattr(store, "close", None)
        if callable(close):
            stack.callback(close)
        yield stack.enter_context(Engine(store=store))


def _demo(args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    run_demo(lines)
    return lines


def _migrate(args: argparse.Namespace) -> list[str]:
    auth, ledger_at = _locations(args)
    rows = []
    for done in migrate(auth, ledger_at):
        schema = "" if done.schema_version is None else f" (schema {done.schema_version})"
        rows.append((f"{done.store} store", str(done.location), f"ready{schema}"))
    return cmd.render_table(("store", "database", "state"), rows)


def _secret_key(text: str, name: str) -> bytes:
    """A 32-byte key written as 64 hex digits or as base64 (standard or URL-safe).
    The messages never repeat the value: it is a secret."""
    text = text.strip()
    try:
        if len(text) == 2 * _KEY_BYTES:
            key = bytes.fromhex(text)
        else:
            key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (ValueError, binascii.Error):
        raise ValidationError(f"{name} is neither hex nor base64") from None
    if len(key) != _KEY_BYTES:
        raise ValidationError(f"{name} must hold exactly {_KEY_BYTES} bytes, not {len(key)}")
    return key


def _keys_from_env() -> tuple[bytes, list[bytes]]:
    current = os.environ.get(SECRET_KEY_ENV, "")
    if not current.strip():
        raise ValidationError(f"set {SECRET_KEY_ENV} to the key to seal under")
    previous = os.environ.get(PREVIOUS_KEYS_ENV, "").replace(",", " ").split()
    return (
        _secret_key(current, SECRET_KEY_ENV),
        [_secret_key(k, f"{PREVIOUS_KEYS_ENV} #{n}") for n, k in enumerate(previous, 1)],
    )


def _reseal(args: argparse.Namespace) -> list[str]:
    auth_at, _ = _locations(args)
    current, previous = _keys_from_env()
    with Authsome(
        store=open_auth_store(auth_at), secret_key=current, previous_secret_keys=previous
    ) as auth:
        report = auth.reseal_secrets()
    kinds = (
        ("TOTP secrets", report.totp_secrets),
        ("SSO client secrets", report.sso_client_secrets),
        ("social sign-in secrets", report.social_client_secrets),
    )
    unreadable = [record for _, done in kinds for record in done.unreadable]
    if unreadable:
        # Record ids only: they are not secret, and say which rows to look at.
        raise DecryptionError(
            f"{len(unreadable)} stored value(s) open under none of the given keys and were"
            f" left as they are: {', '.join(unreadable)} ({_summary(kinds)})"
        )
    rows = [(kind, str(done.resealed), str(done.current)) for kind, done in kinds]
    return cmd.render_table(("secrets", "resealed", "already current"), rows, (1, 2))


def _summary(kinds: tuple[tuple[str, Resealed], ...]) -> str:
    return "; ".join(f"{kind}: {done.resealed} resealed" for kind, done in kinds)


def _plans_example(args: argparse.Namespace) -> list[str]:
    return [example_plans().rstrip("\n")]


def _plans_load(args: argparse.Namespace) -> list[str]:
    plans = load_plans_file(args.file)  # the whole file is checked before a plan is stored
    with _engine(args) as eng:
        loaded = cmd.define_plans(eng, plans)
    rows = [
        (p.key, p.name, f"v{p.version}", str(p.features), "defined" if p.changed else "unchanged")
        for p in loaded
    ]
    head = f"loaded {len(loaded)} plan(s) from {args.file}"
    return [head, *cmd.render_table(("plan", "name", "version", "features", "status"), rows, (3,))]


def _subscribe(args: argparse.Namespace) -> list[str]:
    with _engine(args) as eng:
        done = cmd.subscribe(eng, args.tenant, args.plan, trial_days=args.trial_days)
    sub = done.subscription
    if done.action == "unchanged":
        return [f"{sub.tenant}: already on plan {sub.plan}; nothing changed"]
    if done.action == "changed":
        return [
            f"{sub.tenant}: moved from plan {done.previous_plan} to {sub.plan}; "
            f"billing anchor {sub.anchor:%Y-%m-%d %H:%M} UTC and this period's usage kept"
        ]
    line = f"{sub.tenant}: subscribed to plan {sub.plan} from {sub.anchor:%Y-%m-%d %H:%M} UTC"
    if sub.trial_end is not None:
        line += f", trial until {sub.trial_end:%Y-%m-%d %H:%M} UTC"
    return [line]


def _usage(args: argparse.Namespace) -> list[str]:
    with _engine(args) as eng:
        report = cmd.usage(eng, args.tenant, args.period)
    if args.json:
        return [json.dumps(cmd.usage_json(report), indent=2)]
    return cmd.usage_table(report)


def _entitlements(args: argparse.Namespace) -> list[str]:
    with _engine(args) as eng:
        report = cmd.entitlements(eng, args.tenant)
    if args.json:
        return [json.dumps(cmd.entitlements_json(report), indent=2)]
    return cmd.entitlements_table(report)


# --- the parser ----------------------------------------------------------------------


def _db_options() -> _Parser:
    common = _Parser(add_help=False)
    group = common.add_argument_group("database")
    group.add_argument(
        "--db",
        metavar="URL",
        default=os.environ.get(DB_ENV) or None,
        help=f"SQLite path, sqlite:///path or postgresql:// DSN (default: ${DB_ENV})",
    )
    group.add_argument(
        "--ledger-db",
        metavar="URL",
        default=os.environ.get(LEDGER_DB_ENV) or None,
        help=f"the ledger's database, if not the default beside --db (${LEDGER_DB_ENV})",
    )
    return common


def _command(
    commands: argparse._SubParsersAction[_Parser],
    name: str,
    handler: Handler | None,
    summary: str,
    description: str,
    parents: Sequence[_Parser] = (),
    epilog: str | None = None,
) -> _Parser:
    sub = commands.add_parser(
        name,
        help=summary,
        description=description,
        parents=list(parents),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(handler=handler, parser=sub)
    return sub


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="authsome",
        description=_DESCRIPTION,
        epilog="Run 'authsome COMMAND --help' for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"authsome {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    db = [_db_options()]
    _command(
        commands,
        "demo",
        _demo,
        "run an end-to-end demo: two plans, gating, limits and a usage report",
        "Run the library end to end on embedded SQLite in a temporary directory: two "
        "tenants on two plans sign up and in, try the plan-gated operations and the "
        "enforced seat and active-user limits, a password reset and a magic-link "
        "sign-in go through an outbox, and each tenant's usage report is printed. "
        "Nothing is kept.",
    )
    _command(
        commands,
        "migrate",
        _migrate,
        "create or upgrade the auth and ledger schemas",
        "Create the auth store's and the ledger's tables at --db, or upgrade them to "
        "this version's schema. Safe to run again.",
        db,
        epilog=f"example:\n  authsome migrate --db app.db\n\n{_DB_HELP}",
    )
    _command(
        commands,
        "reseal",
        _reseal,
        "seal every stored TOTP, SSO and social sign-in secret under the current key",
        "Seal under the current secret key every TOTP secret, SSO client secret and "
        "social sign-in secret of the auth store at --db that is stored in clear or "
        "under a previous key. "
        "Safe to run while the application serves requests, and again. The keys come "
        f"from the environment, never the command line: ${SECRET_KEY_ENV} (the "
        f"current key) and ${PREVIOUS_KEYS_ENV} (earlier keys, comma-separated), each "
        "32 bytes as 64 hex digits or base64. Values no given key opens are left as "
        "they are, named by record id, and the exit status is 1.",
        db,
        epilog=f"example:\n  {SECRET_KEY_ENV}=... {PREVIOUS_KEYS_ENV}=... "
        f"authsome reseal --db app.db\n\n{_DB_HELP}",
    )
    plans = _command(
        commands,
        "plans",
        None,  # a subcommand is required and brings its own handler
        "manage plans",
        "Manage the ledger's plans.",
    )
    plan_commands = plans.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = _command(
        plan_commands,
        "load",
        _plans_load,
        "define the plans of a TOML file",
        "Define (or redefine) every plan of a TOML file. The whole file is checked "
        "first; the first error is reported with its location and nothing is stored. "
        "A plan identical to its stored version is left unchanged.",
        db,
        epilog=_PLANS_EPILOG + "\n" + _DB_HELP,
    )
    load.add_argument("file", metavar="FILE", help="the plans file (TOML)")
    _command(
        plan_commands,
        "example",
        _plans_example,
        "print a commented sample plans file",
        "Print a sample plans file, commented: the two plans of the demo (Starter and "
        "Business) with every authsome feature key. Save it, edit it, load it.",
        epilog="example:\n  authsome plans example > plans.toml\n"
        "  authsome plans load plans.toml --db app.db",
    )
    sub = _command(
        commands,
        "subscribe",
        _subscribe,
        "put a tenant on a plan",
        "Subscribe TENANT to PLAN. A tenant already on a live plan moves to the new "
        "one and keeps its billing anchor and this period's usage; otherwise (or with "
        "--trial-days) a new subscription starts now.",
        db,
        epilog=f"example:\n  authsome subscribe acme starter --db app.db\n\n{_DB_HELP}",
    )
    sub.add_argument("tenant", metavar="TENANT", type=_key("tenant"), help="the tenant")
    sub.add_argument("plan", metavar="PLAN", type=_key("plan"), help="a defined plan's key")
    sub.add_argument(
        "--trial-days",
        metavar="N",
        type=_positive_int,
        default=None,
        help="start a trial of N days (features are refused after it unless activated)",
    )
    use = _command(
        commands,
        "usage",
        _usage,
        "show a tenant's usage of its metered and seat features",
        "Show how much TENANT used of each metered and seat feature of its plan, "
        "against the plan's limits. Periods follow the subscription's billing anchor.",
        db,
        epilog=f"example:\n  authsome usage acme --period previous --db app.db\n\n{_DB_HELP}",
    )
    use.add_argument("tenant", metavar="TENANT", type=_key("tenant"), help="the tenant")
    use.add_argument(
        "--period",
        type=_period,
        default="current",
        metavar="PERIOD",
        help="current (default), previous, or YYYY-MM-DD: the period containing that day",
    )
    use.add_argument("--json", action="store_true", help="print JSON for scripts")
    ent = _command(
        commands,
        "entitlements",
        _entitlements,
        "show what a tenant's plan allows right now",
        "Ask the ledger about every feature of TENANT's plan: allowed or not, why, "
        "and the usage and limit behind the answer. Records nothing.",
        db,
        epilog=f"example:\n  authsome entitlements acme --db app.db\n\n{_DB_HELP}",
    )
    ent.add_argument("tenant", metavar="TENANT", type=_key("tenant"), help="the tenant")
    ent.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


_PLANS_EPILOG = """\
plans file:
  [[plans]]
  key = "starter"               # required
  name = "Starter"              # optional display name
  interval = "monthly"          # optional: monthly (default) or yearly

  [[plans.features]]
  key = "reports.export"
  kind = "boolean"              # boolean, metered or seat
  enabled = false               # boolean only (default true)

  [[plans.features]]
  key = "api.calls"
  kind = "metered"
  limit = 1000                  # metered/seat; omit for unlimited
  soft_limit = 800              # metered/seat; past it: overage, still allowed
  period = "monthly"            # metered: monthly (default), yearly or none
  aggregation = "sum"           # metered: sum (default) or unique (distinct users)

A commented sample: authsome plans example

example:
  authsome plans example > plans.toml
  authsome plans load plans.toml --db app.db
"""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror}"
    if isinstance(exc, tomllib.TOMLDecodeError):
        return f"malformed TOML: {exc}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed, 2 bad usage)."""
    try:
        args = _build_parser().parse_args(argv)
        handler: Handler = args.handler
        lines = handler(args)
    except SystemExit as exc:  # --help, or a usage error already reported by _Parser
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    except _REPORTED as exc:
        print(f"authsome: {_one_line(_describe(exc))}", file=sys.stderr)
        return 1
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:  # the reader left early (| head): no traceback for that
        # Python flushes stdout again at exit; point it at /dev/null so that is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
