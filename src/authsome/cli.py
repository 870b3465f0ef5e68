"""``python -m authsome``: the command line.

``demo`` runs the library end to end and prints what the ledger saw.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from authsome.crypto import PasswordHashing
from authsome.engine import Authsome
from authsome.errors import AuthsomeError
from authsome.testing import RecordingLedger

__all__ = ["main"]


def _demo(out: list[str]) -> None:
    ledger = RecordingLedger()
    # Cheap hashing keeps the demo instant; production keeps the OWASP defaults.
    with Authsome(ledger=ledger, password_hashing=PasswordHashing(time_cost=1)) as auth:
        user = auth.users.register("ada@example.com", "correct horse battery staple", tenant="acme")
        out.append(f"registered {user.email} in tenant {user.tenant}")
        signed = auth.sign_in("ADA@example.com", "correct horse battery staple", tenant="acme")
        assert signed.tokens is not None
        out.append(f"signed in: session {signed.tokens.session.id}")
        try:
            auth.sign_in("ada@example.com", "not the password", tenant="acme")
        except AuthsomeError as exc:
            out.append(f"wrong password refused: {type(exc).__name__}")
        auth.sessions.refresh(signed.tokens.refresh_token)
        out.append("refreshed the session (rotation records no usage)")
    out.append("")
    out.append("usage recorded by the ledger:")
    for call in ledger.usage():
        ctx = call.ctx
        out.append(f"  {call.feature_key:<28} tenant={ctx.tenant} event_id={ctx.event_id}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="authsome", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run an end-to-end demo and print the recorded usage")
    args = parser.parse_args(argv)
    if args.command == "demo":
        lines: list[str] = []
        try:
            _demo(lines)
        except AuthsomeError as exc:
            print(f"authsome: {exc}", file=sys.stderr)
            return 1
        print("\n".join(lines))
    return 0
