"""The ledger's own exception tree.

The embedded ledger is independent of the auth engine, so it does not reuse
``authsome.errors``: every error it raises on purpose is a :class:`LedgerError`.
Where a builtin exception means the same thing the error subclasses it too, so
``except ValueError`` catches a rejected argument and ``except LookupError`` an
unknown plan.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BufferFull",
    "InvalidArgument",
    "InvalidArgumentType",
    "LedgerClosed",
    "LedgerDataError",
    "LedgerError",
    "LedgerStoreError",
    "NoSubscription",
    "SpoolError",
    "UnflushedEvents",
    "UnknownPlan",
]


class LedgerError(Exception):
    """Base class of every error the ledger raises on purpose."""


class InvalidArgument(LedgerError, ValueError):
    """An argument has the right type but an unacceptable value; nothing was recorded."""


class InvalidArgumentType(LedgerError, TypeError):
    """An argument has the wrong type (``bool`` is never accepted as a quantity)."""


class UnknownPlan(LedgerError, LookupError):
    """No plan with this key was ever defined."""

    def __init__(self, plan: str) -> None:
        self.plan = plan
        super().__init__(f"unknown plan: {plan!r}")

    def __reduce__(self) -> tuple[type[UnknownPlan], tuple[str]]:
        return (type(self), (self.plan,))


class NoSubscription(LedgerError, LookupError):
    """The tenant has no subscription to change or cancel."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(f"tenant has no subscription: {tenant!r}")

    def __reduce__(self) -> tuple[type[NoSubscription], tuple[str]]:
        return (type(self), (self.tenant,))


class BufferFull(LedgerError, TimeoutError):
    """The metering buffer stayed full for the whole timeout.

    Raised instead of dropping an event: the event passed to the failing call
    was *not* recorded, every earlier event is still held and will be flushed.
    """


class LedgerStoreError(LedgerError):
    """The store failed; nothing of the failed operation was committed.

    Metered events of a failed flush stay buffered and are retried.
    """


class LedgerDataError(LedgerStoreError, ValueError):
    """The store can never apply this data (a value out of range, text it cannot
    encode...): retrying will not help. A flush that gets it isolates the offending
    record and quarantines it (``Engine.quarantined``) instead of retrying forever."""


class UnflushedEvents(LedgerStoreError):
    """``close`` gave up with events not stored: ``count`` of them, kept in the spool
    for the next start when ``spooled``, otherwise lost when the process exits."""

    def __init__(self, message: str, count: int, *, spooled: bool) -> None:
        super().__init__(message)
        self.count = count
        self.spooled = spooled

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unflushed, (str(self), self.count, self.spooled))


def _unflushed(message: str, count: int, spooled: bool) -> UnflushedEvents:
    return UnflushedEvents(message, count, spooled=spooled)


class SpoolError(LedgerStoreError):
    """The spool directory cannot be used (locked by another engine, unreadable...)."""


class LedgerClosed(LedgerError, RuntimeError):
    """The engine was closed; it meters and answers nothing any more."""
