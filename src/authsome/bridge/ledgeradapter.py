"""The bridge to a ledger engine: ``LedgerAdapter(engine)`` is a :class:`~authsome.bridge.Ledger`.

It turns the bridge's two calls into the engine's ``meter`` and ``entitled`` (and
:meth:`~authsome.bridge.ReleasingLedger.release_usage` into its ``release``, when it
has one, and :meth:`~authsome.bridge.ConsumingLedger.consume_usage` into its
``consume``, when it has one), mapping :class:`~authsome.bridge.LedgerContext`
(``tenant``, ``user_id``, ``event_id``) to the engine's arguments. Any object with
those two methods works (:class:`LedgerEngine`); the embedded
:class:`authsome.ledger.Engine` first of all.

Failures: the engine validates the arguments (the embedded one with
:func:`authsome.ledger.plans.check_key`, the rule of all its entry points); when it
refuses them, the adapter explains them like :class:`~authsome.bridge.NoopLedger`
does (``TypeError``/``ValueError``, the caller's bug), and the engine's own argument
errors (``InvalidArgument`` is a ``ValueError``, ``InvalidArgumentType`` a
``TypeError``) propagate as they are. Anything else the engine raises, including a
full buffer, a closed engine or a store error, becomes
:class:`~authsome.errors.LedgerUnavailable` with a generic message and the engine's
error chained, so the auth engine's ``on_ledger_error`` policy decides what happens.

No call waits on the ledger's store: the embedded engine is called with
``wait=False``, so a full buffer fails the call at once (``durability="memory"``)
or the event goes to the spool on disk (``durability="spool"``).
"""

from __future__ import annotations

from typing import NoReturn, Protocol, runtime_checkable

from authsome.bridge import (
    _MAX_FIELD,
    LedgerContext,
    _validate_context,
    validate_feature_key,
    validate_quantity,
)
from authsome.errors import LedgerUnavailable
from authsome.ledger.engine import Engine
from authsome.ledger.errors import LedgerStoreError

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

    __slots__ = ("_entitled", "_meter", "_nowait", "engine")

    def __init__(self, engine: LedgerEngine) -> None:
        if not callable(getattr(engine, "meter", None)) or not callable(
            getattr(engine, "entitled", None)
        ):
            raise TypeError("engine must have meter() and entitled() methods")
        self.engine = engine
        self._meter = engine.meter  # bound once: this is on every metered request
        self._entitled = engine.entitled
        # The embedded engine never makes this call wait for room in its buffer.
        self._nowait = isinstance(engine, Engine)

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Meter ``quantity`` of ``feature_key`` for ``ctx.tenant`` (idempotent per event id)."""
        try:
            if self._nowait:
                self._meter(
                    ctx.tenant,
                    feature_key,
                    quantity,
                    user_id=ctx.user_id,
                    event_id=ctx.event_id,
                    wait=False,  # type: ignore[call-arg]  # Engine.meter has it
                )
            else:
                self._meter(
                    ctx.tenant, feature_key, quantity, user_id=ctx.user_id, event_id=ctx.event_id
                )
        except Exception as exc:
            _validate_context(ctx)  # the bridge's own explanation of a bad argument first
            validate_feature_key(feature_key)
            validate_quantity(quantity)
            _raise_unavailable(exc, "record")

    def release_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Give back ``quantity`` seats of ``feature_key`` through the engine's ``release``
        (idempotent per event id, never below 0). An engine without ``release`` ignores it."""
        _validate_context(ctx)
        validate_feature_key(feature_key)
        validate_quantity(quantity)
        release = getattr(self.engine, "release", None)
        if release is None:
            return
        try:
            release(ctx.tenant, feature_key, quantity, event_id=ctx.event_id)
        except Exception as exc:
            _raise_unavailable(exc, "release")

    @property
    def can_consume(self) -> bool:
        """Whether the engine has ``consume`` (an atomic check-and-count), which
        :meth:`consume_usage` needs."""
        return callable(getattr(self.engine, "consume", None))

    def consume_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> bool:
        """Count ``quantity`` of ``feature_key`` through the engine's ``consume`` if the
        tenant's limit allows (``Entitlement.allowed``); idempotent per event id, and a
        user already counted this period passes for a feature counting unique users."""
        _validate_context(ctx)
        validate_feature_key(feature_key)
        validate_quantity(quantity)
        consume = getattr(self.engine, "consume", None)
        if consume is None:
            raise LedgerUnavailable("ledger engine has no consume(): limits cannot be enforced")
        try:
            allowed = consume(
                ctx.tenant, feature_key, quantity, user_id=ctx.user_id, event_id=ctx.event_id
            ).allowed
        except Exception as exc:
            _raise_unavailable(exc, "consume")
        if not isinstance(allowed, bool):
            raise LedgerUnavailable("ledger answered without a bool 'allowed'")
        return allowed

    def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
        """Whether ``ctx.tenant`` is entitled to ``feature_key`` (``Entitlement.allowed``)."""
        if (
            ctx.__class__ is not LedgerContext
            or feature_key.__class__ is not str
            or not 0 < len(feature_key) <= _MAX_FIELD
            or feature_key.isspace()
        ):
            _validate_context(ctx)
            validate_feature_key(feature_key)
        try:
            allowed = self._entitled(ctx.tenant, feature_key).allowed
        except Exception as exc:
            _raise_unavailable(exc, "check")
        if not isinstance(allowed, bool):
            raise LedgerUnavailable("ledger answered without a bool 'allowed'")
        return allowed

    def __repr__(self) -> str:
        return f"LedgerAdapter({self.engine!r})"


def _raise_unavailable(exc: Exception, what: str) -> NoReturn:
    """Re-raise a caller's bug as it is; turn anything else into LedgerUnavailable.

    ``ValueError``/``TypeError`` from the engine (``InvalidArgument``...) mean the
    arguments were wrong, which no availability policy should paper over. Store
    errors that happen to subclass ``ValueError`` (``LedgerDataError``) are the
    ledger's trouble, not the caller's. The message is generic (it may be logged or
    shown); the engine's error is chained as ``__cause__``.
    """
    if isinstance(exc, ValueError | TypeError) and not isinstance(exc, LedgerStoreError):
        raise exc
    raise LedgerUnavailable(f"ledger unavailable: could not {what} usage") from exc
