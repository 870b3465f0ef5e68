"""The ledger bridge: how authsome talks to a billing ledger.

Two calls, as in the Go engine's ``bridge.Ledger``, but with an explicit, typed
:class:`LedgerContext` that names who is billed instead of untyped context keys:

* :meth:`Ledger.record_usage` after an operation succeeded (raises on failure);
* :meth:`Ledger.check_entitlement` before a plan-gated operation (raises on failure).

A ledger may also implement :class:`ReleasingLedger`, an addition to the seed's two
calls: :meth:`ReleasingLedger.release_usage` gives back seats (a member left an org).
A ledger without it keeps working; its seats then only grow. A ledger may also
implement :class:`ConsumingLedger`: :meth:`ConsumingLedger.consume_usage` checks a
limit and counts the use in one atomic step, which ``Authsome(enforce_limits=...)``
needs to make a plan's limits hold.

Only the engine's billing module (``authsome._billing``) calls these; services never do.

:class:`LedgerAdapter` (from :mod:`authsome.bridge.ledgeradapter`) turns a ledger
engine, the embedded :class:`authsome.ledger.Engine` first of all, into a
:class:`Ledger`; it is importable from here too, and loaded on first use so that
``import authsome`` does not load the ledger engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from authsome.errors import LedgerUnavailable

if TYPE_CHECKING:
    from authsome.bridge.ledgeradapter import LedgerAdapter, LedgerEngine

__all__ = [
    "ConsumingLedger",
    "Ledger",
    "LedgerAdapter",
    "LedgerContext",
    "LedgerEngine",
    "LedgerUnavailable",
    "NoopLedger",
    "ReleasingLedger",
    "validate_feature_key",
    "validate_quantity",
]

_FROM_ADAPTER = frozenset({"LedgerAdapter", "LedgerEngine"})


def __getattr__(name: str) -> Any:
    """Load :class:`LedgerAdapter` and :class:`LedgerEngine` (and the ledger) on first use."""
    if name in _FROM_ADAPTER:
        from authsome.bridge import ledgeradapter

        return getattr(ledgeradapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_FROM_ADAPTER})


_MAX_FIELD = 256


def _check_optional_id(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"LedgerContext.{name} must be a str or None, not {type(value).__name__}")
    if not value or len(value) > _MAX_FIELD:
        raise ValueError(f"LedgerContext.{name} must be 1..{_MAX_FIELD} characters")


@dataclass(frozen=True, slots=True)
class LedgerContext:
    """Who is billed for one ledger call.

    ``tenant`` is always set; ``user_id`` and ``org_id`` attribute the usage further;
    ``event_id`` is the idempotency key: a ledger counts one ``event_id`` once, so a
    retried call never double-counts.
    """

    tenant: str
    user_id: str | None = None
    org_id: str | None = None
    event_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.tenant, str):
            raise TypeError(f"LedgerContext.tenant must be a str, not {type(self.tenant).__name__}")
        if not self.tenant or len(self.tenant) > _MAX_FIELD:
            raise ValueError(f"LedgerContext.tenant must be 1..{_MAX_FIELD} characters")
        _check_optional_id("user_id", self.user_id)
        _check_optional_id("org_id", self.org_id)
        _check_optional_id("event_id", self.event_id)


def validate_feature_key(feature_key: object) -> str:
    """Return ``feature_key`` if it is a non-empty ``str``; raise ``TypeError``/``ValueError``."""
    if not isinstance(feature_key, str):
        raise TypeError(f"feature_key must be a str, not {type(feature_key).__name__}")
    if not feature_key.strip() or len(feature_key) > _MAX_FIELD:
        raise ValueError(f"feature_key must be 1..{_MAX_FIELD} non-blank characters")
    return feature_key


def validate_quantity(quantity: object) -> int:
    """Return ``quantity`` if it is a positive ``int`` (``bool`` is refused)."""
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise TypeError(f"quantity must be an int, not {type(quantity).__name__}")
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    return quantity


def _validate_context(ctx: object) -> LedgerContext:
    if not isinstance(ctx, LedgerContext):
        raise TypeError(f"ctx must be a LedgerContext, not {type(ctx).__name__}")
    return ctx


@runtime_checkable
class Ledger(Protocol):
    """A billing ledger as authsome sees it."""

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Record ``quantity`` units of ``feature_key`` for ``ctx``; raise on failure."""
        ...

    def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
        """Return whether ``ctx.tenant`` may use ``feature_key``; raise on failure."""
        ...


@runtime_checkable
class ReleasingLedger(Protocol):
    """A ledger that can also give back seat usage: optional, detected once by the engine."""

    def release_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Give back ``quantity`` units of the seat feature ``feature_key`` for ``ctx``
        (idempotent per ``ctx.event_id``, never below 0); raise on failure."""
        ...


@runtime_checkable
class ConsumingLedger(Protocol):
    """A ledger that can check a limit and count a use in one step: optional, detected
    once by the engine, and required for ``Authsome(enforce_limits=...)``.

    The contract a third-party ledger implements:

    * ``True``: the use is counted (or was already: the same ``ctx.event_id`` again, or,
      for a feature counting unique users, a ``ctx.user_id`` already counted in the
      current period; nothing more is counted then);
    * ``False``: counting it would exceed the tenant's limit (or the tenant may not use
      the key at all); nothing is counted;
    * the check and the count are one atomic step for the tenant and key, across every
      thread and process sharing the ledger: N concurrent calls with one unit left
      admit exactly one;
    * raise on failure (the engine's ``on_ledger_error`` policy decides then).

    A use counted here is not recorded again with :meth:`Ledger.record_usage`.
    """

    def consume_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> bool:
        """Count ``quantity`` units of ``feature_key`` for ``ctx`` if the limit allows;
        return whether it is counted; raise on failure."""
        ...


class NoopLedger:
    """The development ledger: every feature allowed (fail-open), usage discarded.

    Arguments are still validated, so a bug that would break a real ledger breaks
    here too.
    """

    __slots__ = ()

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Validate the arguments and discard the usage."""
        _validate_context(ctx)
        validate_feature_key(feature_key)
        validate_quantity(quantity)

    def release_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Validate the arguments and discard the release."""
        self.record_usage(ctx, feature_key, quantity)

    def consume_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> bool:
        """Validate the arguments and allow: always ``True`` (nothing is limited)."""
        self.record_usage(ctx, feature_key, quantity)
        return True

    def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
        """Validate the arguments and allow: always ``True``."""
        _validate_context(ctx)
        validate_feature_key(feature_key)
        return True

    def __repr__(self) -> str:
        return "NoopLedger()"
