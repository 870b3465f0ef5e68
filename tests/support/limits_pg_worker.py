"""A separate process that races for a hard limit, auth store and ledger on PostgreSQL.

Run as ``python -m tests.support.limits_pg_worker MODE --dsn DSN --schema S --go FILE
--ids ID,ID`` with MODE ``join`` (add each user id to ``--org``) or ``sign-in`` (sign
each e-mail in). Each process has its own stores and ledger engine on the shared
schemas, as a web worker would, and enforces the limits. It waits for ``--go`` (a
file, created once every process has printed ``ready``) so that they all start at
once, then prints one JSON line: the outcome
of each attempt, ``"ok"`` or the refused feature key.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from authsome import Authsome, FeatureNotEntitled, PasswordHashing, UsageEvent, ledger
from authsome.bridge import LedgerAdapter
from authsome.stores import PostgresStore

TENANT = "acme"
PASSWORD = "correct horse battery staple"
ENFORCED = [UsageEvent.ORGS_MEMBERS, UsageEvent.USERS_ACTIVE]


def open_auth(dsn: str, schema: str) -> tuple[Authsome, ledger.Engine]:
    """The engine one process uses: its own stores on the shared schemas."""
    engine = ledger.Engine(
        store=ledger.PostgresLedgerStore(dsn, schema=f"{schema}_ledger"), flush_interval=60
    )
    auth = Authsome(
        store=PostgresStore(dsn, schema=f"{schema}_auth"),
        ledger=LedgerAdapter(engine),
        password_hashing=PasswordHashing.fast_insecure_for_tests(),
        enforce_limits=ENFORCED,
    )
    return auth, engine


def _attempt(auth: Authsome, mode: str, org: str, item: str) -> str:
    try:
        if mode == "join":
            auth.orgs.add_member(org, item)
        else:
            auth.sign_in(item, PASSWORD, tenant=TENANT)
    except FeatureNotEntitled as exc:
        return exc.feature
    return "ok"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["join", "sign-in"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--go", required=True)
    parser.add_argument("--org", default="")
    parser.add_argument("--ids", required=True)
    args = parser.parse_args()
    auth, engine = open_auth(args.dsn, args.schema)
    print("ready", flush=True)
    go = Path(args.go)
    while not go.exists():  # the start line: every process is connected and waiting
        time.sleep(0.001)
    outcomes = [_attempt(auth, args.mode, args.org, item) for item in args.ids.split(",")]
    auth.close()
    engine.close()
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()
