"""The only caller of the ledger bridge.

Services call :meth:`Billing.require` *before* a plan-gated operation and
:meth:`Billing.record` *after* an operation succeeded and its data is committed.
The failure policies live here, written once:

* a failing ``record_usage`` never fails the operation: it is counted in
  :attr:`Billing.stats` and logged on the ``authsome.ledger`` logger — a warning for
  the first failure in each :data:`RECORD_WARNING_INTERVAL` (naming how many failed
  since the last one), each failure at DEBUG, so that a ledger outage does not turn
  every request into a formatted log record;
* a failing ``check_entitlement`` raises :class:`LedgerUnavailable` under
  ``on_ledger_error="raise"`` (the default) or lets the operation through, logged,
  under ``"allow"``. A failure is never turned into a silent deny or allow.

:meth:`Billing.release` gives seats back (a member left) through the optional
:class:`~authsome.bridge.ReleasingLedger` call, with ``record``'s failure policy. A
ledger without it keeps working: the release is skipped (seats then only grow) and
that is logged once, as a warning.

:meth:`Billing.consume` makes a plan's limit hold for the usage keys given to
``Authsome(enforce_limits=...)``: one atomic check-and-count through the optional
:class:`~authsome.bridge.ConsumingLedger` call, *before* the operation writes. Over
the limit it raises :class:`FeatureNotEntitled`; a failing call follows
``on_ledger_error`` like :meth:`Billing.require` (under ``"allow"`` the use is not
counted there, so the caller records it after its commit as usual).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from authsome.bridge import ConsumingLedger, Ledger, LedgerContext, ReleasingLedger
from authsome.errors import FeatureNotEntitled, LedgerUnavailable, ValidationError
from authsome.features import Feature, UsageEvent

__all__ = ["Billing", "LedgerErrorPolicy", "LedgerStats"]

logger = logging.getLogger("authsome.ledger")

RECORD_WARNING_INTERVAL = 10.0
"""Seconds between two warnings about failed usage records (each is logged at DEBUG)."""

LedgerErrorPolicy = Literal["raise", "allow"]
_POLICIES: tuple[LedgerErrorPolicy, ...] = ("raise", "allow")

ENFORCEABLE = (UsageEvent.ORGS_MEMBERS, UsageEvent.USERS_ACTIVE, UsageEvent.APIKEYS_VALIDATED)
"""The usage keys whose plan limits ``Authsome(enforce_limits=...)`` can make hold."""


def check_enforced(keys: Iterable[object], ledger: Ledger) -> frozenset[UsageEvent]:
    """The usage keys to enforce, checked: each one of :data:`ENFORCEABLE`, and a
    ledger that can consume (:class:`ConsumingLedger`) when there is any."""
    if isinstance(keys, str):
        raise ValidationError("enforce_limits must be a list of usage keys, not one string")
    allowed = ", ".join(key.value for key in ENFORCEABLE)
    enforced: set[UsageEvent] = set()
    for key in keys:
        if not isinstance(key, str) or key not in ENFORCEABLE:
            raise ValidationError(f"enforce_limits takes only these usage keys: {allowed}")
        enforced.add(UsageEvent(key))
    if enforced and not _can_consume(ledger):
        raise ValidationError(
            f"enforce_limits needs a ledger with consume_usage() (a ConsumingLedger);"
            f" {type(ledger).__name__} has none, so no limit could hold"
        )
    return frozenset(enforced)


def _can_consume(ledger: Ledger) -> bool:
    # LedgerAdapter always has the method; whether its engine can is its ``can_consume``.
    return isinstance(ledger, ConsumingLedger) and getattr(ledger, "can_consume", True) is True


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """How often the ledger failed, by call."""

    record_failures: int = 0
    check_failures: int = 0


class Billing:
    """Entitlement checks before, usage records after, with the failure policies."""

    def __init__(
        self,
        ledger: Ledger,
        on_ledger_error: LedgerErrorPolicy = "raise",
        enforce_limits: Iterable[object] = (),
    ) -> None:
        if not isinstance(ledger, Ledger):
            raise TypeError(
                "ledger must provide record_usage() and check_entitlement(), "
                f"not {type(ledger).__name__}"
            )
        if on_ledger_error not in _POLICIES:
            raise ValueError(f"on_ledger_error must be one of {_POLICIES}, not {on_ledger_error!r}")
        self.ledger = ledger
        # Detected once: the optional call is a property of the ledger, not of a call.
        self._releasing: ReleasingLedger | None = (
            ledger if isinstance(ledger, ReleasingLedger) else None
        )
        self._warned_no_release = False
        self.enforced = check_enforced(enforce_limits, ledger)
        self.on_ledger_error: LedgerErrorPolicy = on_ledger_error
        self._lock = threading.Lock()
        self._record_failures = 0
        self._check_failures = 0
        self._warned_failures = 0  # record failures counted at the last warning
        self._last_warning = -math.inf  # time.monotonic() of the last warning

    @property
    def stats(self) -> LedgerStats:
        """Failure counts since this engine started."""
        with self._lock:
            return LedgerStats(self._record_failures, self._check_failures)

    def require(self, feature: Feature, ctx: LedgerContext) -> None:
        """Raise :class:`FeatureNotEntitled` unless ``ctx.tenant`` may use ``feature``."""
        if not self.allows(feature, ctx):
            raise FeatureNotEntitled(feature.value)

    def allows(self, feature: Feature, ctx: LedgerContext) -> bool:
        """Whether ``ctx.tenant`` may use ``feature``, for callers that answer a denial
        otherwise than with an error (routing). Ledger failures follow the policy:
        :class:`LedgerUnavailable` under ``"raise"``, ``True`` (logged) under ``"allow"``."""
        try:
            allowed = self.ledger.check_entitlement(ctx, feature.value)
            if not isinstance(allowed, bool):
                raise TypeError(f"check_entitlement returned {type(allowed).__name__}, not bool")
        except Exception as exc:  # any ledger failure goes through the policy
            self._check_failed("entitlement check", feature.value, ctx, exc)
            return True
        return allowed

    def enforces(self, event: UsageEvent) -> bool:
        """Whether ``event``'s plan limit must hold (it was given to ``enforce_limits``)."""
        return event in self.enforced

    def consume(self, event: UsageEvent, ctx: LedgerContext, quantity: int = 1) -> bool:
        """Count a use of an enforced key before the operation writes; return whether the
        ledger counted it (``False`` only when a failure was let through by policy: then
        record it after the commit). Over the limit: :class:`FeatureNotEntitled`."""
        ledger: ConsumingLedger = self.ledger  # type: ignore[assignment]  # checked at init
        try:
            counted = ledger.consume_usage(ctx, event._value_, quantity)
            if not isinstance(counted, bool):
                raise TypeError(f"consume_usage returned {type(counted).__name__}, not bool")
        except Exception as exc:  # any ledger failure goes through the policy
            self._check_failed("usage limit check", event.value, ctx, exc)
            return False
        if not counted:
            raise FeatureNotEntitled(event.value)
        return True

    def use(self, event: UsageEvent, ctx: LedgerContext) -> None:
        """For an operation with nothing to commit afterwards (an API key validation):
        consume when ``event`` is enforced, else (or when a failure was let through)
        record."""
        if event in self.enforced and self.consume(event, ctx):
            return
        self.record(event, ctx)

    def record(self, event: UsageEvent, ctx: LedgerContext, quantity: int = 1) -> None:
        """Record usage after success; a ledger failure is logged and counted, never raised."""
        try:
            # _value_, not .value: the same str, without Enum's property descriptor (this
            # runs on every metered request).
            self.ledger.record_usage(ctx, event._value_, quantity)
        except Exception as exc:  # usage must never fail the user's operation
            self._record_failed(event, ctx, exc)

    def release(self, event: UsageEvent, ctx: LedgerContext, quantity: int = 1) -> None:
        """Give back seat usage after success; failures are logged and counted, never raised."""
        if self._releasing is None:
            self._skip_release(event)
            return
        try:
            self._releasing.release_usage(ctx, event._value_, quantity)
        except Exception as exc:  # like a record: never fail the user's operation
            self._record_failed(event, ctx, exc)

    def _skip_release(self, event: UsageEvent) -> None:
        with self._lock:
            warn = not self._warned_no_release
            self._warned_no_release = True
        if warn:
            logger.warning(
                "ledger %s has no release_usage(): %s is not released, seats only grow",
                type(self.ledger).__name__,
                event.value,
            )

    def _record_failed(self, event: UsageEvent, ctx: LedgerContext, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self._record_failures += 1
            warn = now - self._last_warning >= RECORD_WARNING_INTERVAL
            if warn:
                since = self._record_failures - self._warned_failures - 1
                self._warned_failures = self._record_failures
                self._last_warning = now
        if warn:
            logger.warning(
                "usage not recorded: event=%s tenant=%s event_id=%s error=%s"
                " (%d more since the last warning)",
                event.value,
                ctx.tenant,
                ctx.event_id,
                type(exc).__name__,
                since,
            )
        else:
            logger.debug(
                "usage not recorded: event=%s tenant=%s event_id=%s error=%s",
                event.value,
                ctx.tenant,
                ctx.event_id,
                type(exc).__name__,
            )

    def _check_failed(self, check: str, feature: str, ctx: LedgerContext, exc: Exception) -> None:
        """Count a failed check and apply the policy: under ``"raise"`` log and raise
        :class:`LedgerUnavailable`; under ``"allow"`` log and return (the caller lets
        the operation through)."""
        with self._lock:
            self._check_failures += 1
        if self.on_ledger_error == "raise":
            logger.error(
                "%s failed, operation refused: feature=%s tenant=%s error=%s",
                check,
                feature,
                ctx.tenant,
                type(exc).__name__,
            )
            raise LedgerUnavailable(f"ledger could not check {feature}") from exc
        logger.warning(
            "%s failed, allowed by policy: feature=%s tenant=%s error=%s",
            check,
            feature,
            ctx.tenant,
            type(exc).__name__,
        )
