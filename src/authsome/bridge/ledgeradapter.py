"""The bridge to a ledger engine: ``LedgerAdapter(engine)`` is a :class:`~authsome.bridge.Ledger`.

It turns the bridge's two calls into the engine's ``meter`` and ``entitled``, mapping
:class:`~authsome.bridge.LedgerContext` (``tenant``, ``user_id``, ``event_id``) to the
engine's arguments. Any object with those two methods works (:class:`LedgerEngine`);
the embedded :class:`authsome.ledger.Engine` first of all.

Failures: arguments are validated exactly like :class:`~authsome.bridge.NoopLedger`
does (``TypeError``/``ValueError``, the caller's bug), and so are the engine's own
argument errors (``InvalidArgument`` is a ``ValueError``, ``InvalidArgumentType`` a
``TypeError``: they propagate as they are). Anything else the engine raises,
including a full buffer, a closed engine or a store error, becomes
:class:`~authsome.errors.LedgerUnavailable` with a generic message and the engine's
error chained, so the auth engine's ``on_ledger_error`` policy decides what happens.
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

_MAX_KEYS = 1_000  # feature keys remembered as valid (authsome has a few dozen)


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

    __slots__ = ("_entitled", "_keys", "_meter", "_record", "engine")

    def __init__(self, engine: LedgerEngine) -> None:
        if not callable(getattr(engine, "meter", None)) or not callable(
            getattr(engine, "entitled", None)
        ):
            raise TypeError("engine must have meter() and entitled() methods")
        self.engine = engine
        self._meter = engine.meter  # bound once: this is on every metered request
        self._entitled = engine.entitled
        # The embedded engine has a positional entry point with the same checks and
        # effects as meter(), made for this adapter's hot path (Engine._record).
        # Only when meter() is Engine's own: a subclass that overrides it must see
        # every event.
        self._record = None
        if isinstance(engine, Engine):
            own = type(engine)
            if own.meter is Engine.meter and own._record is Engine._record:
                self._record = engine._record
        self._keys: set[str] = set()  # feature keys that passed validate_feature_key

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Meter ``quantity`` of ``feature_key`` for ``ctx.tenant`` (idempotent per event id)."""
        record = self._record
        if record is not None and ctx.__class__ is LedgerContext:
            # The embedded engine's entry checks every argument itself (exact types,
            # and in full whatever it has not seen before), so the common case costs
            # one call; on an error the arguments are explained like NoopLedger would.
            try:
                record(ctx.tenant, feature_key, quantity, ctx.user_id, ctx.event_id)
            except Exception as exc:
                self._validate(ctx, feature_key, quantity)
                _raise_unavailable(exc, "record")
            return
        # A LedgerContext validated its fields when it was built (it is frozen), so the
        # common case is an exact-type check and a feature key seen before; anything
        # unusual is validated in full.
        if (
            ctx.__class__ is not LedgerContext
            or feature_key.__class__ is not str
            or feature_key not in self._keys
            or quantity.__class__ is not int
            or quantity <= 0
        ):
            self._validate(ctx, feature_key, quantity)
        try:
            self._meter(
                ctx.tenant, feature_key, quantity, user_id=ctx.user_id, event_id=ctx.event_id
            )
        except Exception as exc:
            _raise_unavailable(exc, "record")

    def _validate(self, ctx: object, feature_key: object, quantity: object) -> None:
        """Raise what NoopLedger raises for these arguments; remember a good key."""
        _validate_context(ctx)
        key = validate_feature_key(feature_key)
        validate_quantity(quantity)
        if len(self._keys) < _MAX_KEYS:
            self._keys.add(key)

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
