"""Test doubles for your own tests of code that uses authsome.

* :class:`RecordingLedger` records every bridge call (releases of seats and limit
  checks with ``consume_usage`` included), in order, with its context, and allows
  every feature.
* :class:`DenyingLedger` records too, and denies the given feature keys (or all):
  an entitlement check answers ``False``, a ``consume_usage`` counts nothing.
* :class:`FailingLedger` raises on every call, to exercise the failure policies.
* :class:`Outbox` is a mailer that keeps the messages of the account journeys.

They validate their arguments exactly like a real ledger would.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from authsome.bridge import LedgerContext, NoopLedger
from authsome.mail import MailMessage

__all__ = [
    "DenyingLedger",
    "FailingLedger",
    "LedgerCall",
    "Outbox",
    "RecordingLedger",
    "code_in",
    "token_in",
]


_Kind = Literal["record_usage", "release_usage", "consume_usage", "check_entitlement"]


@dataclass(frozen=True, slots=True)
class LedgerCall:
    """One call seen by a :class:`RecordingLedger`."""

    kind: _Kind
    ctx: LedgerContext
    feature_key: str
    quantity: int = 1
    allowed: bool | None = None  # the answer given, for entitlement checks and consumes


class RecordingLedger:
    """A ledger that remembers every call and allows every feature. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[LedgerCall] = []
        self._validator = NoopLedger()

    @property
    def calls(self) -> list[LedgerCall]:
        """Every call so far, oldest first (a copy)."""
        with self._lock:
            return list(self._calls)

    def usage(self, feature_key: str | None = None) -> list[LedgerCall]:
        """The ``record_usage`` calls, optionally only those of ``feature_key``."""
        return [
            c
            for c in self.calls
            if c.kind == "record_usage" and (feature_key is None or c.feature_key == feature_key)
        ]

    def releases(self, feature_key: str | None = None) -> list[LedgerCall]:
        """The ``release_usage`` calls, optionally only those of ``feature_key``."""
        return [
            c
            for c in self.calls
            if c.kind == "release_usage" and (feature_key is None or c.feature_key == feature_key)
        ]

    def consumes(self, feature_key: str | None = None) -> list[LedgerCall]:
        """The ``consume_usage`` calls, optionally only those of ``feature_key``."""
        return [
            c
            for c in self.calls
            if c.kind == "consume_usage" and (feature_key is None or c.feature_key == feature_key)
        ]

    def checks(self, feature_key: str | None = None) -> list[LedgerCall]:
        """The ``check_entitlement`` calls, optionally only those of ``feature_key``."""
        return [
            c
            for c in self.calls
            if c.kind == "check_entitlement"
            and (feature_key is None or c.feature_key == feature_key)
        ]

    def clear(self) -> None:
        """Forget every call recorded so far."""
        with self._lock:
            self._calls.clear()

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Validate and remember a usage record."""
        self._validator.record_usage(ctx, feature_key, quantity)
        self._append(LedgerCall("record_usage", ctx, str(feature_key), quantity))

    def release_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Validate and remember a release of usage."""
        self._validator.release_usage(ctx, feature_key, quantity)
        self._append(LedgerCall("release_usage", ctx, str(feature_key), quantity))

    def consume_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> bool:
        """Validate, remember the call with its answer, and answer it (no limit of its
        own: ``True`` unless the key is denied)."""
        self._validator.consume_usage(ctx, feature_key, quantity)
        allowed = self._allows(str(feature_key))
        self._append(LedgerCall("consume_usage", ctx, str(feature_key), quantity, allowed))
        return allowed

    def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
        """Validate, remember the check with its answer, and answer it."""
        self._validator.check_entitlement(ctx, feature_key)
        allowed = self._allows(str(feature_key))
        self._append(LedgerCall("check_entitlement", ctx, str(feature_key), allowed=allowed))
        return allowed

    def _allows(self, feature_key: str) -> bool:
        return True

    def _append(self, call: LedgerCall) -> None:
        with self._lock:
            self._calls.append(call)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(calls={len(self.calls)})"


class DenyingLedger(RecordingLedger):
    """A recording ledger that denies ``keys`` (every key when none are given)."""

    def __init__(self, *keys: str) -> None:
        super().__init__()
        self.denied: frozenset[str] | None = frozenset(str(k) for k in keys) if keys else None

    def _allows(self, feature_key: str) -> bool:
        return self.denied is not None and feature_key not in self.denied


class FailingLedger(RecordingLedger):
    """A recording ledger whose calls raise ``error`` (for the chosen kinds) after recording."""

    def __init__(
        self,
        error: BaseException | None = None,
        *,
        fail: Iterable[_Kind] = (
            "record_usage",
            "release_usage",
            "consume_usage",
            "check_entitlement",
        ),
    ) -> None:
        super().__init__()
        self.error: BaseException = error or ConnectionError("ledger is down")
        self.fail = frozenset(fail)

    def record_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Remember the call, then raise ``error`` if ``record_usage`` is set to fail."""
        super().record_usage(ctx, feature_key, quantity)
        if "record_usage" in self.fail:
            raise self.error

    def release_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> None:
        """Remember the call, then raise ``error`` if ``release_usage`` is set to fail."""
        super().release_usage(ctx, feature_key, quantity)
        if "release_usage" in self.fail:
            raise self.error

    def consume_usage(self, ctx: LedgerContext, feature_key: str, quantity: int = 1) -> bool:
        """Remember the call, then raise ``error`` if ``consume_usage`` is set to fail."""
        allowed = super().consume_usage(ctx, feature_key, quantity)
        if "consume_usage" in self.fail:
            raise self.error
        return allowed

    def check_entitlement(self, ctx: LedgerContext, feature_key: str) -> bool:
        """Remember the call, then raise ``error`` if ``check_entitlement`` is set to fail."""
        allowed = super().check_entitlement(ctx, feature_key)
        if "check_entitlement" in self.fail:
            raise self.error
        return allowed


class Outbox:
    """A :class:`~authsome.mail.Mailer` that keeps every message instead of sending
    it. Thread-safe. ``fail_with`` makes ``send`` raise that error (a mail server
    that is down), to exercise the failure path of a journey."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[MailMessage] = []
        self.fail_with: BaseException | None = None

    @property
    def messages(self) -> list[MailMessage]:
        """Every message kept so far, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    def send(self, message: MailMessage) -> None:
        """Keep ``message`` (or raise ``fail_with``)."""
        if self.fail_with is not None:
            raise self.fail_with
        with self._lock:
            self._messages.append(message)

    def last(self, to: str | None = None) -> MailMessage:
        """The newest message (to ``to`` when given); ``LookupError`` if there is none."""
        for message in reversed(self.messages):
            if to is None or message.to == to:
                return message
        raise LookupError("no message in the outbox" + ("" if to is None else f" to {to}"))

    def token(self, to: str | None = None) -> str:
        """The one-time token in the link of the newest message (to ``to``)."""
        return token_in(self.last(to).text)

    def code(self, to: str | None = None) -> str:
        """The e-mail sign-in code in the newest message (to ``to``)."""
        return code_in(self.last(to).text)

    def clear(self) -> None:
        """Forget every message."""
        with self._lock:
            self._messages.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def __repr__(self) -> str:
        return f"Outbox(messages={len(self)})"


_TOKEN_IN_LINK = re.compile(r"[?&]token=([A-Za-z0-9_%\-]+)")


_CODE_LINE = re.compile(r"^\s*([0-9]{6,8})\s*$", re.MULTILINE)


def code_in(text: str) -> str:
    """The e-mail sign-in code of a message body (the line with only digits)."""
    found = _CODE_LINE.search(text)
    if found is None:
        raise LookupError("no sign-in code in this message")
    return found.group(1)


def token_in(text: str) -> str:
    """The token of the first journey link in a message body."""
    found = _TOKEN_IN_LINK.search(text)
    if found is None:
        raise LookupError("no link with a token in this message")
    return unquote(found.group(1))
