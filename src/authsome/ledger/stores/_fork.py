"""Fork safety of the SQL ledger stores: connections and pools are per process.

A forking server (``gunicorn --preload``, ``multiprocessing`` in fork mode) may open a
store in the parent and use it in each child. A database connection must not be shared
across ``fork()``: both processes would talk over one socket or one SQLite file handle.
So every open store is tracked here, and in a child each is told that what it holds
belongs to the parent; the store then opens its own connection (or pool) on first use.

The child never closes what it inherited: closing a PostgreSQL connection sends the
server a goodbye that would end the parent's session, and SQLite's close works on
file locks that are the parent's. The inherited objects are parked in
:data:`_INHERITED` instead, so that garbage collection does not close them either.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "park_inherited", "track"]


class ForkAware(Protocol):
    def after_fork_in_child(self) -> None:
        """Replace locks (another thread may have held one at the fork) and remember
        to reconnect on first use. Called in the child, with one thread running."""
        ...


_STORES: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_INHERITED: list[object] = []


def track(store: ForkAware) -> None:
    """Call ``store.after_fork_in_child()`` in every child forked from now on."""
    _STORES.add(store)


def park_inherited(resource: object) -> None:
    """Keep a connection or pool of the parent alive, unclosed, in this child."""
    _INHERITED.append(resource)


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
