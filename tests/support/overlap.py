"""Make racing threads overlap for sure, without sleeping.

A check-then-act bug needs many requests to pass the check before any of them acts.
:class:`Overlap` holds every thread that reaches the slow step (``wait_for_all``)
until each of the ``parties`` has either reached it or been turned away
(``turned_away``), so the widest possible race happens on every run.
"""

from __future__ import annotations

import threading


class Overlap:
    """A gate that opens once all ``parties`` arrived at it or left early."""

    def __init__(self, parties: int, timeout: float = 10.0) -> None:
        self._parties = parties
        self._timeout = timeout
        self._arrived = 0
        self._cond = threading.Condition()
        self.reached = 0  # how many threads got to the guarded step

    def wait_for_all(self) -> None:
        """Called by a thread at the guarded step: wait for the others."""
        with self._cond:
            self.reached += 1
            self._arrive()
            # The timeout only guards against a hung test; it never decides the outcome.
            self._cond.wait_for(lambda: self._arrived >= self._parties, self._timeout)

    def turned_away(self) -> None:
        """Called by a thread that will never reach the guarded step."""
        with self._cond:
            self._arrive()

    def _arrive(self) -> None:
        self._arrived += 1
        self._cond.notify_all()
