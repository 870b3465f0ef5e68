"""The bridge to a ledger engine: ``LedgerAdapter(engine)`` is a :class:`~authsome.bridge.Ledger`.

It turns the bridge's two calls into the engine's ``meter`` and ``entitled``, mapping
:class:`~authsome.bridge.LedgerContext` (``tenant``, ``user_id``, ``event_id``) to the
engine's arguments. Any object with those two methods works (:class:`LedgerEngine`);
the embedded :class:`authsome.ledger.Engine` first of all.

Failures: arguments are validated exactly like :class:`~authsome.bridge.NoopLedger`
does (``TypeError``/``ValueError``, the caller's bug); anything the engine raises,
including a full buffer or a store error, becomes
:class:`~authsome.errors.LedgerUnavailable` (chained), so the auth engine's
``on_ledger_error`` policy decides what happens.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from authsome.bridge import (
    LedgerContext,
    _validate_context,
    validate_feature_key,
    validate_quantity,
)
from authsome.errors import LedgerUnavailable

__all__ = ["LedgerAdapter", "LedgerEngine"]


class _Decision(Protocol):
    @property
    def allowed(self) -> bool: ...


@runtime_checkable
class LedgerEngine(Protocol):
    """What the adapter needs from a ledger engine."""

    def meter(
        self,
        tenant: str,
        key: str,
        quantity: int = 1,
        *,
        user_id: str | None = None,
        event_id: str | None = None,
    ) -> object:
        """Record usage; may buffer; raises on failure."""
        ...

    def entitled(self, tenant: str, key: str) -> _Decision:
        """Decide whether ``tenant`` may use ``key``; the answer has ``.allowed``."""
        ...


class LedgerAdapter:
    """A :class:`~authsome.bridge.Ledger` backed by a :class:`LedgerEngine`."""

    __slots__ = ("engine",)

    def __init__(self, engine: LedgerEngine) -> None:
        if not callable(getattr(engine, "meter", None)) or not callable(
            getattr(engine, "entitled", None)
        ):
            raise TypeError("engine must have meter() and entitled() methods")
        self.engine = engine

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Meter ``quantity`` of ``feature_key`` for ``ctx.tenant`` (idempotent per event id)."""
        _validate_context(ctx)
        validate_feature_key(feature_key)
        validate_quantity(quantity)
        try:
            self.engine.meter(
                ctx.tenant, feature_key, quantity, user_id=ctx.user_id, event_id=ctx.event_id
            )
        except Exception as exc:
            raise LedgerUnavailable(f"ledger could not record {feature_key}: {exc}") from exc

    def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
        """Whether ``ctx.tenant`` is entitled to ``feature_key`` (``Entitlement.allowed``)."""
        _validate_context(ctx)
        validate_feature_key(feature_key)
        try:
            allowed = self.engine.entitled(ctx.tenant, feature_key).allowed
        except Exception as exc:
            raise LedgerUnavailable(f"ledger could not check {feature_key}: {exc}") from exc
        if not isinstance(allowed, bool):
            raise LedgerUnavailable(f"ledger answered {feature_key} without a bool 'allowed'")
        return allowed

    def __repr__(self) -> str:
        return f"LedgerAdapter({self.engine!r})"
