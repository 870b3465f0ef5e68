"""``python -m authsome``: the command line.

``demo`` runs the library end to end and prints what the ledger saw.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from authsome._demo import run_demo
from authsome.errors import AuthsomeError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="authsome", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run an end-to-end demo: two plans, gating and a usage report")
    args = parser.parse_args(argv)
    if args.command == "demo":
        lines: list[str] = []
        try:
            run_demo(lines)
        except AuthsomeError as exc:
            print(f"authsome: {exc}", file=sys.stderr)
            return 1
        print("\n".join(lines))
    return 0
